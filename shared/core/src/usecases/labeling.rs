//! Labeling: check out a task (leased), renew, release, submit. The rules that keep work safe:
//! an item is in at most one live task (item claims are conditional writes), a lease is taken
//! over only after it expired (the condition compares with now), and a submission is one
//! transaction that also closes the lease on its version.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::instrument;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::labeling::{
    EndedTask, ItemOutcome, ItemRecord, ItemState, StoredAnnotation, SubmissionInput, TaskEnd,
    TaskItem, TaskKind, TaskRecord, WorkEntry, validate_submission,
};
use crate::domain::names::same_name;
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::keys::{self, attr, counter};
use crate::manifest::ManifestRecord;
use crate::ports::{
    BlobError, BoxError, ByteRange, Condition, Item, Query, SkRange, TableError, Update, Write,
};
use crate::service::{
    Service, UnserializableRecord, from_item, number, to_attrs, to_item, to_json,
};
use crate::time::rfc3339;
use crate::transaction::{Rejected, Transaction};
use crate::usecases::projects::ProjectError;

/// Bytes read from the start of an image to find its size.
const HEADER_BYTES: u64 = 64 * 1024;
/// How many times a checkout retries after losing a race.
const CHECKOUT_ATTEMPTS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum LabelingError {
    #[error("no project {0}")]
    NotFound(String),
    #[error("no task {0} in this project")]
    TaskNotFound(String),
    #[error("this task is leased to someone else")]
    NotYourTask,
    #[error("the project is {0}; labeling needs it running")]
    NotRunning(&'static str),
    #[error("{}", ended_message(*.0))]
    TaskEnded(TaskEnd),
    #[error("the lease on this task was lost: it expired and was handed to someone else")]
    LeaseLost,
    #[error("label classes changed and labeling started over; this task was cancelled")]
    RoundChanged,
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("too many labelers raced for the same work; retry")]
    Contention,
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
}

impl DomainError for LabelingError {
    fn kind(&self) -> ErrorKind {
        match self {
            LabelingError::NotFound(_) | LabelingError::TaskNotFound(_) => ErrorKind::NotFound,
            LabelingError::NotYourTask => ErrorKind::Forbidden,
            LabelingError::NotRunning(_)
            | LabelingError::TaskEnded(_)
            | LabelingError::LeaseLost
            | LabelingError::RoundChanged
            | LabelingError::Contention => ErrorKind::Conflict,
            LabelingError::Invalid(_) => ErrorKind::Invalid,
            LabelingError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn problem_type(&self) -> Option<&'static str> {
        match self {
            LabelingError::TaskEnded(TaskEnd::Submitted) => Some("task-already-submitted"),
            LabelingError::TaskEnded(TaskEnd::TakenOver) | LabelingError::LeaseLost => {
                Some("lease-taken-over")
            }
            LabelingError::TaskEnded(TaskEnd::Released) => Some("task-released"),
            LabelingError::TaskEnded(TaskEnd::Revoked) => Some("task-revoked"),
            _ => None,
        }
    }
    fn field_errors(&self) -> &[FieldError] {
        match self {
            LabelingError::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
}

impl From<TableError> for LabelingError {
    fn from(error: TableError) -> Self {
        LabelingError::Unavailable(Box::new(error))
    }
}

impl From<BlobError> for LabelingError {
    fn from(error: BlobError) -> Self {
        LabelingError::Unavailable(Box::new(error))
    }
}

impl From<UnserializableRecord> for LabelingError {
    fn from(error: UnserializableRecord) -> Self {
        LabelingError::Unavailable(Box::new(error))
    }
}

impl From<ProjectError> for LabelingError {
    fn from(error: ProjectError) -> Self {
        match error {
            ProjectError::NotFound(id) => LabelingError::NotFound(id),
            other => LabelingError::Unavailable(Box::new(other)),
        }
    }
}

/// A checked-out task as the labeler receives it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedOutTask {
    pub task_id: String,
    pub kind: TaskKind,
    pub lease_expires_at: String,
    pub task_type: &'static str,
    pub instructions: crate::domain::project::Instructions,
    pub labels: Vec<String>,
    pub items: Vec<CheckedOutItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedOutItem {
    pub item_id: u64,
    pub key: String,
    pub image_url: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub prelabels: Vec<crate::domain::presented::LabelView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub task_id: String,
    pub lease_expires_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmissionReceipt {
    pub task_id: String,
    pub labeled: usize,
    pub skipped: usize,
}

fn ended_message(end: TaskEnd) -> &'static str {
    match end {
        TaskEnd::Submitted => "this task was submitted already; its labels are stored",
        TaskEnd::TakenOver => {
            "the lease on this task expired and another labeler took the task over; check out a new task"
        }
        TaskEnd::Released => "this task was released; its items went back to the queue",
        TaskEnd::Revoked => {
            "this task was given back when its labeler was removed from the project"
        }
    }
}

/// The task row replaced by what stays of it once it ended, on the condition `condition`.
fn ended_task_write(
    project_id: &str,
    task_id: &str,
    labeler: &str,
    end: TaskEnd,
    now: i64,
    condition: Condition,
) -> Result<Write, UnserializableRecord> {
    Ok(Write::Put {
        item: to_item(
            keys::task(project_id, task_id),
            ENDED_TASK_ENTITY,
            &EndedTask::new(task_id, labeler, end, now),
        )?,
        condition: Some(condition),
    })
}

const TASK_ENTITY: &str = "task";
const ITEM_ENTITY: &str = "item";

const ENDED_TASK_ENTITY: &str = "task_ended";

/// Fresh positions that turned into a task, or into nothing (all images missing).
enum Claim {
    Task(Box<CheckedOutTask>),
    NothingUsable,
}

fn lease_entry_item(
    project_id: &str,
    round: u32,
    task: &TaskRecord,
) -> Result<Item, UnserializableRecord> {
    let entry = WorkEntry {
        task_id: task.id.clone(),
        kind: task.kind,
        items: task.items.clone(),
        lease_version: task.lease_version,
        labeler: Some(task.labeler.clone()),
    };
    Ok(Item::new(
        keys::lease_entry(project_id, round, task.lease_expires_at, &task.id),
        to_attrs(&entry)?,
    ))
}

fn lease_entry_key(project_id: &str, task: &TaskRecord) -> crate::ports::Key {
    keys::lease_entry(project_id, task.round, task.lease_expires_at, &task.id)
}

/// The task's row, created only where none is.
fn new_task_write(project_id: &str, task: &TaskRecord) -> Result<Write, UnserializableRecord> {
    Ok(Write::Put {
        item: to_item(keys::task(project_id, &task.id), TASK_ENTITY, task)?,
        condition: Some(Condition::NotExists),
    })
}

/// A waiting task's entry at the front of its priority in the work partition.
fn waiting_entry_write(
    project_id: &str,
    round: u32,
    now: i64,
    entry: &WorkEntry,
) -> Result<Write, UnserializableRecord> {
    Ok(Write::Put {
        item: Item::new(
            keys::waiting_entry(
                project_id,
                round,
                entry.kind.priority(),
                now,
                &entry.task_id,
            ),
            to_attrs(entry)?,
        ),
        condition: None,
    })
}

fn running_in_round(round: u32) -> Condition {
    Condition::And(vec![
        Condition::equals(attr::STATUS, ProjectStatus::Running.as_str()),
        Condition::equals(attr::ROUND, round),
    ])
}

/// The writes of the labeling transactions, named so that a failed condition reads as what
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelingWrite {
    /// The work entry a checkout takes (a waiting task, an expired lease), or the lease entry
    /// a renew, release or submit moves or deletes.
    WorkEntry,
    /// The project is still running in the round (checkout), or still in the task's round
    /// (submit).
    ProjectRound,
    /// The row of a new task.
    NewTask,
    /// The lease entry of a new or renewed lease.
    NewLeaseEntry,
    /// The task's row, rewritten on its lease version (renewed, ended).
    TaskOnLease,
    /// The round's counters.
    Stats,
    /// The record of an item of the task.
    Item(u64),
}

/// What is known of an item when it is first claimed in a round.
struct FirstClaim {
    item: u64,
    key: String,
    size: Option<(u32, u32)>,
    state: ItemState,
    task_id: Option<String>,
    now: i64,
}

/// The record of an item claimed for the first time in the project's round: the labels of
/// an earlier round become prelabels (in the keep mode) and history for running exports.
fn first_claim_record(
    project: &ProjectRecord,
    earlier: Option<&ItemRecord>,
    claim: FirstClaim,
) -> ItemRecord {
    let prelabels: Vec<StoredAnnotation> = match earlier {
        Some(record) if project.keep_prelabels => {
            if record.state == ItemState::Labeled {
                record.labels.clone()
            } else {
                record.prelabels.clone()
            }
        }
        _ => Vec::new(),
    };
    ItemRecord {
        item: claim.item,
        key: claim.key,
        round: project.round,
        state: claim.state,
        task_id: claim.task_id,
        labels: Vec::new(),
        prelabels,
        labeled_by: None,
        labeled_at: None,
        width: claim.size.map(|(width, _)| width),
        height: claim.size.map(|(_, height)| height),
        superseded: earlier
            .map(|record| record.history_after_replacing(claim.now))
            .unwrap_or_default(),
    }
}

/// Creates the record unless the item already has one in this round (someone holds it).
fn first_claim_write(project_id: &str, record: &ItemRecord) -> Result<Write, UnserializableRecord> {
    Ok(Write::Put {
        item: to_item(keys::item(project_id, record.item), ITEM_ENTITY, record)?,
        condition: Some(Condition::Or(vec![
            Condition::NotExists,
            Condition::less_than(attr::ROUND, record.round),
        ])),
    })
}

fn stats_update(changes: &[(&str, i64)]) -> Update {
    changes
        .iter()
        .filter(|(_, delta)| *delta != 0)
        .fold(Update::default(), |update, (name, delta)| {
            update.add(name, *delta)
        })
}

/// Sides a header may declare for the image to be handed out: 0 x 0 is no canvas at all,
/// and sides of 2^31 and more are no real image (a crafted header) and would not fit the
/// integer width and height clients and COCO readers expect. Such images count as unreadable.
pub const MAX_IMAGE_SIDE: usize = (1 << 31) - 1;

fn usable_size(width: usize, height: usize) -> Option<(u32, u32)> {
    let side = 1..=MAX_IMAGE_SIDE;
    if side.contains(&width) && side.contains(&height) {
        Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
    } else {
        None
    }
}

impl Service {
    async fn project_for_labeling(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectRecord, LabelingError> {
        Ok(self.load_project_cached(actor, project_id).await?)
    }

    async fn load_task(
        &self,
        actor: &Actor,
        project_id: &str,
        task_id: &str,
    ) -> Result<TaskRecord, LabelingError> {
        let item = self
            .table
            .get(&keys::task(project_id, task_id))
            .await?
            .ok_or_else(|| LabelingError::TaskNotFound(task_id.to_owned()))?;
        if item.attrs.get(attr::ENTITY).and_then(Value::as_str) == Some(ENDED_TASK_ENTITY) {
            let ended: EndedTask = from_item(&item).map_err(LabelingError::Unavailable)?;
            if !ended.labeler.is_empty() && ended.labeler != actor.user && !actor.is_admin() {
                return Err(LabelingError::NotYourTask);
            }
            return Err(LabelingError::TaskEnded(ended.ended));
        }
        let task: TaskRecord = from_item(&item).map_err(LabelingError::Unavailable)?;
        if task.labeler != actor.user && !actor.is_admin() {
            return Err(LabelingError::NotYourTask);
        }
        Ok(task)
    }

    /// Hands out the next page of work: waiting tasks and expired leases first, then fresh
    /// items in the project's shuffled order. `None` when nothing is left right now.
    #[instrument(skip(self), fields(user = %actor.user))]
    pub async fn checkout(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Option<CheckedOutTask>, LabelingError> {
        let project = self.project_for_labeling(actor, project_id).await?;
        match self.checkout_from(actor, &project).await {
            // The copy of the project was stale (another process changed it): read it again.
            Err(LabelingError::RoundChanged) | Err(LabelingError::NotRunning(_)) => {
                let fresh = self.load_project(actor, project_id).await?;
                self.checkout_from(actor, &fresh).await
            }
            outcome => outcome,
        }
    }

    async fn checkout_from(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
    ) -> Result<Option<CheckedOutTask>, LabelingError> {
        let project_id = project.id.as_str();
        if project.status != ProjectStatus::Running {
            return Err(LabelingError::NotRunning(project.status.as_str()));
        }
        let mut fresh_exhausted = false;
        for attempt in 0..CHECKOUT_ATTEMPTS {
            let now = self.clock.now();
            let waiting = self
                .table
                .query(Query::new(
                    keys::work_pk(project_id, project.round),
                    SkRange::LessThan(keys::available_work_bound(now)),
                    16,
                ))
                .await?;
            if !waiting.items.is_empty() {
                let start = (attempt + actor.user.len()) % waiting.items.len();
                for offset in 0..waiting.items.len() {
                    let candidate = &waiting.items[(start + offset) % waiting.items.len()];
                    if let Some(task) = self.take_over(actor, project, candidate, now).await? {
                        return Ok(Some(task));
                    }
                }
                continue;
            }
            if fresh_exhausted {
                return Ok(None);
            }
            match self.claim_fresh(actor, project, now).await? {
                Some(Claim::Task(task)) => return Ok(Some(*task)),
                Some(Claim::NothingUsable) => continue,
                // Nothing fresh left: look once more for work released meanwhile.
                None => fresh_exhausted = true,
            }
        }
        if fresh_exhausted {
            return Ok(None);
        }
        Err(LabelingError::Contention)
    }

    /// Takes a waiting task or an expired lease; `None` when another labeler got it first.
    async fn take_over(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
        candidate: &Item,
        now: i64,
    ) -> Result<Option<CheckedOutTask>, LabelingError> {
        let entry: WorkEntry = from_item(candidate).map_err(LabelingError::Unavailable)?;
        let is_lease = keys::is_lease_sk(&candidate.key.sk);
        let task = TaskRecord {
            id: new_id("t"),
            round: project.round,
            kind: if is_lease {
                TaskKind::Requeued
            } else {
                entry.kind
            },
            items: entry.items.clone(),
            labeler: actor.user.clone(),
            lease_expires_at: now + i64::from(project.lease_seconds) * 1000,
            lease_version: 1,
            created_at: now,
        };
        let mut writes = Transaction::new();
        writes.push(
            LabelingWrite::WorkEntry,
            Write::Delete {
                key: candidate.key.clone(),
                condition: Some(Condition::Exists),
            },
        );
        writes.push(
            LabelingWrite::ProjectRound,
            Write::Check {
                key: keys::project(&project.id),
                condition: running_in_round(project.round),
            },
        );
        writes.push(LabelingWrite::NewTask, new_task_write(&project.id, &task)?);
        writes.push(
            LabelingWrite::NewLeaseEntry,
            Write::Put {
                item: lease_entry_item(&project.id, project.round, &task)?,
                condition: None,
            },
        );
        if is_lease {
            writes.push(
                LabelingWrite::TaskOnLease,
                ended_task_write(
                    &project.id,
                    &entry.task_id,
                    entry.labeler.as_deref().unwrap_or_default(),
                    TaskEnd::TakenOver,
                    now,
                    Condition::And(vec![
                        Condition::equals(attr::LEASE_VERSION, entry.lease_version),
                        Condition::less_than(attr::LEASE_EXPIRES_AT, now + 1),
                    ]),
                )?,
            );
        } else {
            let n = task.items.len() as i64;
            writes.push(
                LabelingWrite::Stats,
                Write::Update {
                    key: keys::stats(&project.id, project.round),
                    update: stats_update(&[
                        (counter::IN_TASK, n),
                        (counter::QUEUED, -n),
                        (entry.kind.queue_counter(), -n),
                    ]),
                    condition: None,
                },
            );
        }
        for item in &task.items {
            let previous_holder = if is_lease {
                Condition::equals(attr::TASK_ID, entry.task_id.as_str())
            } else {
                Condition::equals(attr::STATE, ItemState::Queued.as_str())
            };
            writes.push(
                LabelingWrite::Item(item.item),
                Write::Update {
                    key: keys::item(&project.id, item.item),
                    update: Update::default()
                        .set(attr::STATE, ItemState::InTask.as_str())
                        .set(attr::TASK_ID, task.id.as_str()),
                    condition: Some(Condition::And(vec![
                        Condition::equals(attr::ROUND, project.round),
                        previous_holder,
                    ])),
                },
            );
        }
        match writes.commit(self.table.as_ref()).await {
            Ok(()) => Ok(Some(self.present(project, &task).await?)),
            Err(Rejected::Condition(LabelingWrite::ProjectRound)) => {
                Err(self.not_running_error(actor, &project.id).await)
            }
            // Another labeler took it first.
            Err(Rejected::Condition(_) | Rejected::Conflict) => Ok(None),
            Err(Rejected::Table(error)) => Err(error.into()),
        }
    }

    async fn not_running_error(&self, actor: &Actor, project_id: &str) -> LabelingError {
        match self.load_project(actor, project_id).await {
            Ok(project) if project.status != ProjectStatus::Running => {
                LabelingError::NotRunning(project.status.as_str())
            }
            Ok(_) => LabelingError::RoundChanged,
            Err(error) => error.into(),
        }
    }

    /// Advances the round's cursor by a page and claims the items at those positions.
    async fn claim_fresh(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
        now: i64,
    ) -> Result<Option<Claim>, LabelingError> {
        let page_size = i64::from(project.page_size);
        let cursor_key = keys::cursor(&project.id, project.round);
        let cursor = match self
            .table
            .update(
                &cursor_key,
                Update::default().add(attr::NEXT, page_size),
                Some(Condition::Exists),
            )
            .await
        {
            Ok(cursor) => cursor,
            Err(TableError::ConditionFailed { .. }) => {
                return Err(LabelingError::NotRunning(
                    ProjectStatus::Initializing.as_str(),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let next = number(&cursor.attrs, attr::NEXT);
        let total = number(&cursor.attrs, attr::TOTAL);
        let start = next - page_size;
        if next > total {
            // Give back the overshoot so positions appended later by a refresh are not skipped.
            // Only the last overshooting caller's reset succeeds, which is the one that matters;
            // a refresh landing before it winds the cursor back itself (`commit_refresh`).
            let _ = self
                .table
                .update(
                    &cursor_key,
                    Update::default().set(attr::NEXT, total),
                    Some(Condition::And(vec![
                        Condition::equals(attr::NEXT, next),
                        Condition::equals(attr::TOTAL, total),
                    ])),
                )
                .await;
        }
        if project.incremental_refresh && total > 0 && (total - next.min(total)) * 10 < total {
            self.request_low_water_refresh(project, &cursor_key, total)
                .await;
        }
        if start >= total {
            return Ok(None);
        }
        let manifest = self.manifest_covering(&project.id, total as u64).await?;
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| LabelingError::Unavailable(Box::new(error)))?;
        let mut positions = Vec::new();
        for position in start..next.min(total) {
            let item = manifest
                .item_at(project.seed, project.round, position as u64)
                .ok_or_else(|| {
                    LabelingError::Unavailable("manifest has no such position".into())
                })?;
            positions.push(item);
        }
        match self
            .claim_items(actor, project, &manifest, source, &positions, now)
            .await
        {
            Ok(claim) => Ok(Some(claim)),
            Err(error) => {
                // The cursor moved past these items; park them as waiting work so they are
                // not lost (best effort: the error is still reported).
                self.park_unclaimed(project, &manifest, &positions, now)
                    .await;
                Err(error)
            }
        }
    }

    /// Fewer than 10% of the items were never handed out: look for new images once per size
    /// of the project, so labelers do not run dry (best effort).
    async fn request_low_water_refresh(
        &self,
        project: &ProjectRecord,
        cursor_key: &crate::ports::Key,
        total: i64,
    ) {
        let marked = self
            .table
            .update(
                cursor_key,
                Update::default().set(attr::LOW_WATER_TOTAL, total),
                Some(Condition::NotEquals(
                    attr::LOW_WATER_TOTAL.to_owned(),
                    total.into(),
                )),
            )
            .await;
        if marked.is_ok()
            && let Err(error) = self
                .enqueue_refresh(
                    &project.id,
                    crate::domain::refresh::RefreshTrigger::LowWater,
                    Duration::ZERO,
                )
                .await
        {
            tracing::warn!(%error, project_id = %project.id, "could not queue a low-water refresh");
        }
    }

    async fn manifest_covering(
        &self,
        project_id: &str,
        total: u64,
    ) -> Result<ManifestRecord, LabelingError> {
        if let Some(cached) = self.manifests.record_covering(project_id, total) {
            return Ok(cached);
        }
        let manifest = self
            .read_manifest(project_id)
            .await?
            .ok_or_else(|| LabelingError::NotRunning(ProjectStatus::Initializing.as_str()))?;
        self.manifests.remember_record(project_id, &manifest);
        if manifest.total < total {
            return Err(LabelingError::Unavailable("manifest behind cursor".into()));
        }
        Ok(manifest)
    }

    async fn claim_items(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
        source: &Source,
        items: &[u64],
        now: i64,
    ) -> Result<Claim, LabelingError> {
        let mut prepared = Vec::with_capacity(items.len());
        let keys_and_sizes = futures::future::join_all(items.iter().map(|item| async move {
            let key = self.item_key(&project.id, manifest, *item).await?;
            let size = self.image_size(source.bucket(), &key).await?;
            Ok::<_, LabelingError>((*item, key, size))
        }))
        .await;
        for result in keys_and_sizes {
            prepared.push(result?);
        }
        let earlier = self.earlier_records(project, items).await?;
        let task_id = new_id("t");
        let mut task = TaskRecord {
            id: task_id.clone(),
            round: project.round,
            kind: TaskKind::Manual,
            items: Vec::new(),
            labeler: actor.user.clone(),
            lease_expires_at: now + i64::from(project.lease_seconds) * 1000,
            lease_version: 1,
            created_at: now,
        };
        let mut missing = 0i64;
        let mut item_writes = Vec::new();
        for (item, key, size) in prepared {
            let state = if size.is_some() {
                ItemState::InTask
            } else {
                missing += 1;
                ItemState::Missing
            };
            let record = first_claim_record(
                project,
                earlier.get(&item),
                FirstClaim {
                    item,
                    key,
                    size,
                    state,
                    task_id: (state == ItemState::InTask).then(|| task_id.clone()),
                    now,
                },
            );
            item_writes.push((
                LabelingWrite::Item(item),
                first_claim_write(&project.id, &record)?,
            ));
            if state == ItemState::InTask {
                task.items.push(TaskItem {
                    item,
                    key: record.key,
                    width: record.width,
                    height: record.height,
                    prelabels: record.prelabels,
                });
            }
        }
        loop {
            let in_task = task.items.len() as i64;
            let mut writes = Transaction::new();
            writes.push(
                LabelingWrite::ProjectRound,
                Write::Check {
                    key: keys::project(&project.id),
                    condition: running_in_round(project.round),
                },
            );
            writes.push(
                LabelingWrite::Stats,
                Write::Update {
                    key: keys::stats(&project.id, project.round),
                    update: stats_update(&[
                        (counter::IN_TASK, in_task),
                        (counter::MISSING, missing),
                    ]),
                    condition: None,
                },
            );
            if in_task > 0 {
                writes.push(LabelingWrite::NewTask, new_task_write(&project.id, &task)?);
                writes.push(
                    LabelingWrite::NewLeaseEntry,
                    Write::Put {
                        item: lease_entry_item(&project.id, project.round, &task)?,
                        condition: None,
                    },
                );
            }
            writes.extend(item_writes.iter().cloned());
            match writes.commit(self.table.as_ref()).await {
                Ok(()) if in_task == 0 => return Ok(Claim::NothingUsable),
                Ok(()) => return Ok(Claim::Task(Box::new(self.present(project, &task).await?))),
                Err(Rejected::Condition(LabelingWrite::ProjectRound)) => {
                    return Err(self.not_running_error(actor, &project.id).await);
                }
                Err(Rejected::Condition(LabelingWrite::Item(lost))) => {
                    // Someone else holds this item in this round already: leave it out.
                    item_writes.retain(|(name, _)| *name != LabelingWrite::Item(lost));
                    let before = task.items.len();
                    task.items.retain(|i| i.item != lost);
                    if task.items.len() == before {
                        missing -= 1;
                    }
                    if item_writes.is_empty() {
                        return Ok(Claim::NothingUsable);
                    }
                }
                Err(Rejected::Condition(other)) => {
                    return Err(LabelingError::Unavailable(
                        format!("unexpected failed condition on {other:?}").into(),
                    ));
                }
                Err(Rejected::Conflict) => continue,
                Err(Rejected::Table(error)) => return Err(error.into()),
            }
        }
    }

    /// After a start-over, the items' records from earlier rounds hold labels to show as
    /// prelabels and to keep for exports that began before the start-over.
    async fn earlier_records(
        &self,
        project: &ProjectRecord,
        items: &[u64],
    ) -> Result<std::collections::HashMap<u64, ItemRecord>, LabelingError> {
        if project.round == 0 {
            return Ok(Default::default());
        }
        let record_keys: Vec<_> = items.iter().map(|i| keys::item(&project.id, *i)).collect();
        Ok(self
            .table
            .batch_get(&record_keys)
            .await?
            .iter()
            .filter_map(|item| from_item::<ItemRecord>(item).ok())
            .map(|record| (record.item, record))
            .collect())
    }

    /// Best effort after a failed claim: the items become one waiting task.
    async fn park_unclaimed(
        &self,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
        items: &[u64],
        now: i64,
    ) {
        if let Err(error) = self.try_park_unclaimed(project, manifest, items, now).await {
            tracing::error!(%error, project_id = %project.id, ?items, "could not park unclaimed items");
        }
    }

    /// Parks the items as one waiting task together with their item records in state
    /// `queued`: a take-over claims an item by moving its record from `queued` to `in_task`,
    /// so a waiting task whose items have no record could never be taken, and would keep
    /// checkouts from reaching fresh work while it sat among the first waiting rows.
    async fn try_park_unclaimed(
        &self,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
        items: &[u64],
        now: i64,
    ) -> Result<(), LabelingError> {
        let earlier = self.earlier_records(project, items).await?;
        let mut parked = Vec::with_capacity(items.len());
        for item in items {
            let Ok(key) = self.item_key(&project.id, manifest, *item).await else {
                continue;
            };
            let earlier = earlier.get(item);
            let record = first_claim_record(
                project,
                earlier,
                FirstClaim {
                    item: *item,
                    key,
                    size: None,
                    state: ItemState::Queued,
                    task_id: None,
                    now,
                },
            );
            let task_item = TaskItem {
                item: *item,
                key: record.key.clone(),
                width: None,
                height: None,
                prelabels: record.prelabels.clone(),
            };
            parked.push((
                task_item,
                (
                    LabelingWrite::Item(*item),
                    first_claim_write(&project.id, &record)?,
                ),
            ));
        }
        let task_id = new_id("t");
        for _ in 0..CHECKOUT_ATTEMPTS {
            if parked.is_empty() {
                return Ok(());
            }
            let entry = WorkEntry {
                task_id: task_id.clone(),
                kind: TaskKind::Manual,
                items: parked
                    .iter()
                    .map(|(task_item, _)| task_item.clone())
                    .collect(),
                lease_version: 0,
                labeler: None,
            };
            let n = entry.items.len() as i64;
            let mut writes = Transaction::new();
            writes.push(
                LabelingWrite::WorkEntry,
                waiting_entry_write(&project.id, project.round, now, &entry)?,
            );
            writes.push(
                LabelingWrite::Stats,
                Write::Update {
                    key: keys::stats(&project.id, project.round),
                    update: stats_update(&[
                        (counter::QUEUED, n),
                        (TaskKind::Manual.queue_counter(), n),
                    ]),
                    condition: None,
                },
            );
            writes.extend(parked.iter().map(|(_, write)| write.clone()));
            match writes.commit(self.table.as_ref()).await {
                Ok(()) => return Ok(()),
                Err(Rejected::Condition(LabelingWrite::Item(held))) => {
                    // Someone holds this item in this round already: it is not lost.
                    parked.retain(|(task_item, _)| task_item.item != held);
                }
                Err(Rejected::Condition(other)) => {
                    return Err(LabelingError::Unavailable(
                        format!("unexpected failed condition on {other:?}").into(),
                    ));
                }
                Err(Rejected::Conflict) => {}
                Err(Rejected::Table(error)) => return Err(error.into()),
            }
        }
        Err(LabelingError::Contention)
    }

    /// Reads the image's width and height from its header; `None` when the image is missing
    /// or unreadable.
    async fn image_size(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(u32, u32)>, LabelingError> {
        let head = match self
            .blobs
            .get(
                bucket,
                key,
                Some(ByteRange {
                    start: 0,
                    end: HEADER_BYTES,
                }),
            )
            .await
        {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound { .. } | BlobError::NoSuchBucket(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if let Ok(size) = imagesize::blob_size(&head) {
            return Ok(usable_size(size.width, size.height));
        }
        if head.len() as u64 == HEADER_BYTES {
            // Large metadata blocks can push the size past the first 64 KB.
            let whole = self.blobs.get(bucket, key, None).await?;
            if let Ok(size) = imagesize::blob_size(&whole) {
                return Ok(usable_size(size.width, size.height));
            }
        }
        Ok(None)
    }

    async fn present(
        &self,
        project: &ProjectRecord,
        task: &TaskRecord,
    ) -> Result<CheckedOutTask, LabelingError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| LabelingError::Unavailable(Box::new(error)))?;
        let mut items = Vec::with_capacity(task.items.len());
        for item in &task.items {
            let image_url = self
                .blobs
                .presign_get(source.bucket(), &item.key, self.config.image_url_ttl)
                .await?;
            items.push(CheckedOutItem {
                item_id: item.item,
                key: item.key.clone(),
                image_url,
                width: item.width,
                height: item.height,
                prelabels: crate::domain::presented::label_views(project, &item.prelabels),
            });
        }
        Ok(CheckedOutTask {
            task_id: task.id.clone(),
            kind: task.kind,
            lease_expires_at: rfc3339(task.lease_expires_at),
            task_type: project.task_type.as_str(),
            instructions: project.instructions.clone(),
            labels: project.classes.iter().map(|c| c.name.clone()).collect(),
            items,
        })
    }

    /// Extends the lease by the project's lease time from now.
    #[instrument(skip(self), fields(user = %actor.user))]
    pub async fn renew(
        &self,
        actor: &Actor,
        project_id: &str,
        task_id: &str,
    ) -> Result<LeaseView, LabelingError> {
        let project = self.project_for_labeling(actor, project_id).await?;
        let task = self.load_task(actor, project_id, task_id).await?;
        let now = self.clock.now();
        let mut renewed = task.clone();
        // Always later than the current expiry: the lease entry's key holds the expiry, and
        // a renew in the checkout's millisecond must not delete and put the same row.
        renewed.lease_expires_at =
            (now + i64::from(project.lease_seconds) * 1000).max(task.lease_expires_at + 1);
        renewed.lease_version += 1;
        let writes = vec![
            Write::Put {
                item: to_item(keys::task(project_id, task_id), TASK_ENTITY, &renewed)?,
                condition: Some(Condition::equals(attr::LEASE_VERSION, task.lease_version)),
            },
            Write::Delete {
                key: lease_entry_key(project_id, &task),
                condition: Some(Condition::Exists),
            },
            Write::Put {
                item: lease_entry_item(project_id, task.round, &renewed)?,
                condition: Some(Condition::NotExists),
            },
        ];
        match self.table.transact(writes).await {
            Ok(()) => Ok(LeaseView {
                task_id: task_id.to_owned(),
                lease_expires_at: rfc3339(renewed.lease_expires_at),
            }),
            Err(TableError::ConditionFailed { .. } | TableError::TransactionConflict) => {
                Err(self.lease_lost(actor, project_id, task_id).await)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Gives the task back: its items wait at the front of the queue for the next labeler.
    #[instrument(skip(self), fields(user = %actor.user))]
    pub async fn release(
        &self,
        actor: &Actor,
        project_id: &str,
        task_id: &str,
    ) -> Result<(), LabelingError> {
        self.project_for_labeling(actor, project_id).await?;
        let task = self.load_task(actor, project_id, task_id).await?;
        match self.give_back(project_id, &task, TaskEnd::Released).await {
            Err(LabelingError::LeaseLost) => Err(self.lease_lost(actor, project_id, task_id).await),
            outcome => outcome,
        }
    }

    /// Puts a leased task's items at the front of the queue and ends the task as `end`.
    async fn give_back(
        &self,
        project_id: &str,
        task: &TaskRecord,
        end: TaskEnd,
    ) -> Result<(), LabelingError> {
        let now = self.clock.now();
        let kind = TaskKind::Requeued;
        let entry = WorkEntry {
            task_id: new_id("t"),
            kind,
            items: task.items.clone(),
            lease_version: 0,
            labeler: None,
        };
        let n = task.items.len() as i64;
        let mut writes = vec![
            ended_task_write(
                project_id,
                &task.id,
                &task.labeler,
                end,
                now,
                Condition::equals(attr::LEASE_VERSION, task.lease_version),
            )?,
            Write::Delete {
                key: lease_entry_key(project_id, task),
                condition: Some(Condition::Exists),
            },
            waiting_entry_write(project_id, task.round, now, &entry)?,
            Write::Update {
                key: keys::stats(project_id, task.round),
                update: stats_update(&[
                    (counter::IN_TASK, -n),
                    (counter::QUEUED, n),
                    (kind.queue_counter(), n),
                ]),
                condition: None,
            },
        ];
        for item in &task.items {
            writes.push(Write::Update {
                key: keys::item(project_id, item.item),
                update: Update::default()
                    .set(attr::STATE, ItemState::Queued.as_str())
                    .remove(attr::TASK_ID),
                condition: Some(Condition::equals(attr::TASK_ID, task.id.as_str())),
            });
        }
        match self.table.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TableError::ConditionFailed { .. } | TableError::TransactionConflict) => {
                Err(LabelingError::LeaseLost)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Why a write on a task's lease failed: the task ended meanwhile (submitted, taken over,
    /// released), or its lease moved on.
    async fn lease_lost(&self, actor: &Actor, project_id: &str, task_id: &str) -> LabelingError {
        match self.load_task(actor, project_id, task_id).await {
            Err(ended @ LabelingError::TaskEnded(_)) => ended,
            _ => LabelingError::LeaseLost,
        }
    }

    /// Gives back every task `user` holds in the project's current round (when a member is
    /// removed), so their items wait at the front of the queue instead of until the leases
    /// expire. Leases are found through their entries in the work partition: as many reads
    /// as there are live leases, however many tasks the project ever had.
    pub(crate) async fn give_back_tasks_of(
        &self,
        project: &ProjectRecord,
        user: &str,
    ) -> Result<usize, LabelingError> {
        let mut held = Vec::new();
        let mut cursor = None;
        loop {
            let mut query = Query::new(
                keys::work_pk(&project.id, project.round),
                SkRange::BeginsWith(keys::LEASE_SK_PREFIX.to_owned()),
                100,
            );
            query.start_after = cursor.take();
            let page = self.table.query(query).await?;
            for candidate in &page.items {
                let entry: WorkEntry = from_item(candidate).map_err(LabelingError::Unavailable)?;
                match &entry.labeler {
                    Some(labeler) if !same_name(labeler, user) => continue,
                    _ => held.push(entry.task_id),
                }
            }
            match page.last_evaluated {
                Some(last) => cursor = Some(last),
                None => break,
            }
        }
        let mut given_back = 0;
        for task_id in held {
            let Some(item) = self.table.get(&keys::task(&project.id, &task_id)).await? else {
                continue;
            };
            let Ok(task) = from_item::<TaskRecord>(&item) else {
                continue;
            };
            if !same_name(&task.labeler, user) {
                continue;
            }
            match self.give_back(&project.id, &task, TaskEnd::Revoked).await {
                Ok(()) => given_back += 1,
                // Submitted, renewed or taken over meanwhile: nothing of theirs to give back.
                Err(LabelingError::LeaseLost) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(given_back)
    }

    /// Records the labels of every item of the task in one transaction, or nothing.
    /// A lease that expired but was not yet handed to anyone else is still accepted: the
    /// work is not lost.
    #[instrument(skip(self, input), fields(user = %actor.user))]
    pub async fn submit(
        &self,
        actor: &Actor,
        project_id: &str,
        task_id: &str,
        input: SubmissionInput,
    ) -> Result<SubmissionReceipt, LabelingError> {
        let mut project = self.project_for_labeling(actor, project_id).await?;
        let task = self.load_task(actor, project_id, task_id).await?;
        let mut outcomes = validate_submission(&project, &task, &input);
        if task.round != project.round || outcomes.is_err() {
            // The warm copy may predate a change (a new class, a new round): judge against
            // the stored project before refusing.
            project = self.load_project(actor, project_id).await?;
            outcomes = validate_submission(&project, &task, &input);
        }
        if task.round != project.round {
            return Err(LabelingError::RoundChanged);
        }
        let outcomes = outcomes.map_err(LabelingError::Invalid)?;
        let now = self.clock.now();
        let mut labeled = 0i64;
        let mut skipped = 0i64;
        let mut class_counts: std::collections::BTreeMap<u32, i64> = Default::default();
        let mut writes = Transaction::new();
        writes.push(
            LabelingWrite::TaskOnLease,
            ended_task_write(
                project_id,
                task_id,
                &task.labeler,
                TaskEnd::Submitted,
                now,
                Condition::equals(attr::LEASE_VERSION, task.lease_version),
            )?,
        );
        writes.push(
            LabelingWrite::WorkEntry,
            Write::Delete {
                key: lease_entry_key(project_id, &task),
                condition: Some(Condition::Exists),
            },
        );
        writes.push(
            LabelingWrite::ProjectRound,
            Write::Check {
                key: keys::project(project_id),
                condition: Condition::equals(attr::ROUND, task.round),
            },
        );
        for (item_id, outcome) in &outcomes {
            let update = match outcome {
                ItemOutcome::Labeled(labels) => {
                    labeled += 1;
                    for label in labels {
                        *class_counts.entry(label.class_id).or_default() += 1;
                    }
                    Update::default()
                        .set(attr::STATE, ItemState::Labeled.as_str())
                        .set(attr::LABELS, to_json("item's labels", labels)?)
                }
                ItemOutcome::Skipped => {
                    skipped += 1;
                    Update::default()
                        .set(attr::STATE, ItemState::Skipped.as_str())
                        .set(attr::LABELS, Value::Array(Vec::new()))
                }
            }
            .set(attr::LABELED_BY, actor.user.as_str())
            .set(attr::LABELED_AT, now)
            .remove(attr::TASK_ID);
            writes.push(
                LabelingWrite::Item(*item_id),
                Write::Update {
                    key: keys::item(project_id, *item_id),
                    update,
                    condition: Some(Condition::And(vec![
                        Condition::equals(attr::ROUND, task.round),
                        Condition::equals(attr::TASK_ID, task_id),
                    ])),
                },
            );
        }
        let n = task.items.len() as i64;
        let class_keys: Vec<(String, i64)> = class_counts
            .iter()
            .map(|(id, count)| (counter::class(*id), *count))
            .collect();
        let mut changes: Vec<(&str, i64)> = vec![
            (counter::IN_TASK, -n),
            (counter::LABELED, labeled),
            (counter::SKIPPED, skipped),
        ];
        changes.extend(class_keys.iter().map(|(k, v)| (k.as_str(), *v)));
        writes.push(
            LabelingWrite::Stats,
            Write::Update {
                key: keys::stats(project_id, task.round),
                update: stats_update(&changes),
                condition: None,
            },
        );
        match writes.commit(self.table.as_ref()).await {
            Ok(()) => Ok(SubmissionReceipt {
                task_id: task_id.to_owned(),
                labeled: labeled as usize,
                skipped: skipped as usize,
            }),
            Err(Rejected::Condition(LabelingWrite::ProjectRound)) => {
                Err(LabelingError::RoundChanged)
            }
            Err(Rejected::Condition(_) | Rejected::Conflict) => {
                Err(self.lease_lost(actor, project_id, task_id).await)
            }
            Err(Rejected::Table(error)) => Err(error.into()),
        }
    }
}
