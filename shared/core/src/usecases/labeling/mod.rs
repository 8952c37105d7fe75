//! Labeling: check out a task (leased), renew, release, submit. The rules that keep work safe:
//! an item is in at most one live task (item claims are conditional writes), a lease is taken
//! over only after it expired (the condition compares with now), and a submission is one
//! transaction that also closes the lease on its version.
//!
//! One flow a file: `checkout` (the retry loop), `take_over` (waiting tasks, expired leases),
//! `claim` (fresh items, parking), `present` (image sizes, URLs), `lease` (renew, release, give
//! back), `submit`, `stats` (the round's sharded counters); this file holds the errors, the
//! views and the writes they share.
//!
//! No per-project row is in the hot path's transactions. A checkout, take-over, release or
//! submit writes the task, its lease entry, its items and ONE random shard of the round's
//! counters; it neither writes nor condition-checks the project's `META` row nor the round's
//! base `STATS` row, which every labeler would share (DynamoDB cancels transactions that
//! overlap on any item, condition checks included, and caps an item at 1,000 write units a
//! second). Status and round are checked against the project the use case loaded: this
//! process's copy, at most [`crate::service::PROJECT_CACHE_TTL`] old, and replaced at once by
//! a pause, resume or start-over made through this process.
//!
//! Why that is safe. Item rows carry their round, and their own conditions guard them: a first
//! claim needs no record or one of an older round, a take-over needs the item queued or held
//! by the expired task in the same round, a submit needs the item's round and task id. So a
//! checkout or submit that read the project just before a pause or a start-over commits as if
//! it had happened just before that change (its reads and its writes all precede the change
//! in the order of item versions): it hands out or records work of the round it saw, and
//! cannot overwrite an item the newer round already claimed (that claim's record has the
//! newer round, and the older round's condition fails). No acknowledged label is lost: labels
//! submitted into a round that was just replaced stay on the item record as that round's
//! labels, and the new round's first claim of the item keeps them as history and shows them
//! as prelabels, exactly as it does for any older round's labels. Such a window lasts at most
//! the cache's lifetime, and only for requests served by another warm process.

use serde::Serialize;
use serde_json::Value;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::labeling::{
    EndedTask, ItemRecord, ItemState, StoredAnnotation, TaskEnd, TaskKind, TaskRecord, WorkEntry,
};
use crate::domain::project::ProjectRecord;
use crate::keys::{self, attr};
use crate::ports::{BlobError, BoxError, Condition, Item, TableError, Write};
use crate::service::{UnserializableRecord, from_item, to_attrs, to_item};
use crate::usecases::projects::ProjectError;

mod checkout;
mod claim;
mod lease;
mod prelabeled;
mod present;
pub(crate) mod stats;
mod submit;
mod take_over;

pub(crate) use claim::CursorHints;
pub use prelabeled::{MAX_BATCH_ID_LEN, QueuedWork};
use stats::stats_write;

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
    /// The store refused a write for a moment (a transaction conflict, throttling) more often
    /// than the table's retries would wait for: nothing is lost, the same request may pass.
    #[error("the store is busy with other labelers' writes; retry shortly")]
    Busy(#[source] TableError),
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
            | LabelingError::RoundChanged => ErrorKind::Conflict,
            LabelingError::Invalid(_) => ErrorKind::Invalid,
            // Losing races is no conflict of the request with the state: the same request may
            // pass a moment later (503, not 409).
            LabelingError::Contention | LabelingError::Busy(_) | LabelingError::Unavailable(_) => {
                ErrorKind::Unavailable
            }
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
            LabelingError::RoundChanged => Some("round-started-over"),
            LabelingError::NotRunning(status) => {
                Some(crate::domain::errors::not_running_problem(status))
            }
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
        if error.is_transient() {
            LabelingError::Busy(error)
        } else {
            LabelingError::Unavailable(Box::new(error))
        }
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
    pub prelabels: Vec<crate::domain::presented::PrelabelView>,
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

const TASK_ENTITY: &str = keys::entity::TASK;
const ITEM_ENTITY: &str = keys::entity::ITEM;

const ENDED_TASK_ENTITY: &str = keys::entity::TASK_ENDED;

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

/// The writes of the labeling transactions, named so that a failed condition reads as what
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelingWrite {
    /// The work entry a checkout takes (a waiting task, an expired lease), or the lease entry
    /// a renew, release or submit moves or deletes.
    WorkEntry,
    /// The row of a new task.
    NewTask,
    /// The lease entry of a new or renewed lease.
    NewLeaseEntry,
    /// The task's row, rewritten on its lease version (renewed, ended).
    TaskOnLease,
    /// One shard of the round's counters.
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
        prelabel: None,
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

/// The labeling loop: checkout, claim, submit, take over. Holds only the ports this area touches.
pub struct Labeling<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
    pub(crate) cursors: &'a CursorHints,
}

impl Labeling<'_> {
    async fn project_for_labeling(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectRecord, LabelingError> {
        Ok(self.reader().load_project_cached(actor, project_id).await?)
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
}
