//! Fresh claims: items in the project's shuffled order claimed by conditional writes; the ones not claimed are parked.

use std::time::Duration;

use super::Labeling;
use crate::access::Actor;
use crate::domain::labeling::{ItemRecord, ItemState, TaskItem, TaskKind, TaskRecord, WorkEntry};
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::keys::{self, attr, counter};
use crate::manifest::ManifestRecord;
use crate::ports::{Condition, Key, TableError, Update, Write};
use crate::service::{from_item, number};
use crate::transaction::{Rejected, Transaction};

use super::{
    CHECKOUT_ATTEMPTS, Claim, FirstClaim, LabelingError, LabelingWrite, first_claim_record,
    first_claim_write, lease_entry_item, new_task_write, stats_write, waiting_entry_write,
};

/// How many times a claim tries the increment conditional on the value it saw before it
/// takes the fallback (see `advance_cursor`).
const CURSOR_ATTEMPTS: usize = 3;
/// The cursor attribute holding the id of the last claim that took the fallback.
const LAST_CLAIM: &str = "last_claim";
/// How many recent claims the cursor remembers (a ring of attributes): a claim finds its own
/// id as long as fewer than this many pages were claimed after it.
const CLAIM_SLOTS: i64 = 16;

/// The cursor attribute that remembers who claimed the page starting at `from`.
fn claim_slot(from: i64, page_size: i64) -> String {
    format!(
        "claim_{}",
        (from / page_size.max(1)).rem_euclid(CLAIM_SLOTS)
    )
}

/// The value each cursor was last seen at by this service: a claim's condition needs the
/// value, and reading it first would cost every checkout a round trip. A stale value costs one
/// refused write and one read, never a wrong claim. Owned by the [`crate::Service`] like its
/// other caches, so it lives and dies with it.
#[derive(Debug, Default)]
pub(crate) struct CursorHints(std::sync::Mutex<std::collections::HashMap<Key, i64>>);

impl CursorHints {
    fn get(&self, key: &Key) -> Option<i64> {
        self.0.lock().ok()?.get(key).copied()
    }

    fn remember(&self, key: &Key, next: i64) {
        if let Ok(mut hints) = self.0.lock() {
            hints.insert(key.clone(), next);
        }
    }
}

impl Labeling<'_> {
    /// Advances the round's cursor by a page and claims the items at those positions.
    pub(super) async fn claim_fresh(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
        now: i64,
    ) -> Result<Option<Claim>, LabelingError> {
        let page_size = i64::from(project.page_size);
        let cursor_key = keys::cursor(&project.id, project.round);
        let cursor = self.advance_cursor(&cursor_key, page_size).await?;
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

    /// Moves the cursor by a page, on the condition that it still holds the value this
    /// process last saw, so an SDK retry of an increment that applied already (the answer was
    /// lost to a timeout) is refused instead of skipping a page for ever. Each claim also
    /// writes its id into a slot named by the page it took: a refused write whose id is found
    /// there applied, and its page is this claim's. The cursor as it is after this claim.
    ///
    /// Many labelers claiming at once would each lose that race again and again (every try a
    /// write and a read); after [`CURSOR_ATTEMPTS`] a claim takes a plain increment instead,
    /// conditional only on not being its own repeat (`last_claim`): a repeat is still refused
    /// unless another claim lands between the first send and the retry.
    async fn advance_cursor(
        &self,
        cursor_key: &crate::ports::Key,
        page_size: i64,
    ) -> Result<crate::ports::Item, LabelingError> {
        let claim = new_id("c");
        let mut expected = self.cursors.get(cursor_key);
        for _ in 0..CURSOR_ATTEMPTS {
            let from = match expected {
                Some(next) => next,
                None => number(&self.read_cursor(cursor_key).await?.attrs, attr::NEXT),
            };
            let slot = claim_slot(from, page_size);
            match self
                .table
                .update(
                    cursor_key,
                    Update::default()
                        .add(attr::NEXT, page_size)
                        .set(&slot, claim.as_str()),
                    Some(Condition::equals(attr::NEXT, from)),
                )
                .await
            {
                Ok(cursor) => {
                    self.cursors
                        .remember(cursor_key, number(&cursor.attrs, attr::NEXT));
                    return Ok(cursor);
                }
                Err(TableError::ConditionFailed { .. }) => {
                    let mut current = self.read_cursor(cursor_key).await?;
                    if current.attrs.get(&slot).and_then(serde_json::Value::as_str)
                        == Some(claim.as_str())
                    {
                        // This claim's own increment applied; what was refused is its repeat.
                        current
                            .attrs
                            .insert(attr::NEXT.to_owned(), (from + page_size).into());
                        return Ok(current);
                    }
                    let next = number(&current.attrs, attr::NEXT);
                    self.cursors.remember(cursor_key, next);
                    expected = Some(next);
                }
                Err(error) => return Err(error.into()),
            }
        }
        let fallback = self
            .table
            .update(
                cursor_key,
                Update::default()
                    .add(attr::NEXT, page_size)
                    .set(LAST_CLAIM, claim.as_str()),
                Some(Condition::And(vec![
                    Condition::Exists,
                    Condition::NotEquals(LAST_CLAIM.to_owned(), claim.as_str().into()),
                ])),
            )
            .await;
        match fallback {
            Ok(cursor) => {
                self.cursors
                    .remember(cursor_key, number(&cursor.attrs, attr::NEXT));
                Ok(cursor)
            }
            Err(TableError::ConditionFailed { .. }) => {
                let current = self.read_cursor(cursor_key).await?;
                if current
                    .attrs
                    .get(LAST_CLAIM)
                    .and_then(serde_json::Value::as_str)
                    == Some(claim.as_str())
                {
                    // The first send applied and nothing moved the cursor since: its page is
                    // the last one.
                    Ok(current)
                } else {
                    Err(LabelingError::Contention)
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn read_cursor(
        &self,
        cursor_key: &crate::ports::Key,
    ) -> Result<crate::ports::Item, LabelingError> {
        self.table
            .get(cursor_key)
            .await?
            .ok_or(LabelingError::NotRunning(
                ProjectStatus::Initializing.as_str(),
            ))
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
                .refreshes()
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
            .reader()
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
            let key = self
                .item_keys()
                .item_key(&project.id, manifest, *item)
                .await?;
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
            if earlier.get(&item).is_some_and(|r| r.round >= project.round) {
                // Held in this round already (queued ahead of the cursor by an ML job, or
                // claimed by a racing checkout): the read says so, no transaction need fail.
                continue;
            }
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
        if item_writes.is_empty() {
            return Ok(Claim::NothingUsable);
        }
        let mut read_holders = false;
        loop {
            let in_task = task.items.len() as i64;
            let mut writes = Transaction::new();
            writes.push(
                LabelingWrite::Stats,
                stats_write(
                    &project.id,
                    project.round,
                    &[(counter::IN_TASK, in_task), (counter::MISSING, missing)],
                ),
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
                Err(Rejected::Condition(LabelingWrite::Item(lost))) => {
                    // Someone else holds this item in this round already: leave it out. Held
                    // items come in runs (an ML job queues pages of upcoming items), so the
                    // first refusal reads the page's other records once and leaves out every
                    // held item, instead of failing a transaction an item.
                    let mut held = vec![lost];
                    if !read_holders {
                        read_holders = true;
                        let others: Vec<u64> = item_writes
                            .iter()
                            .filter_map(|(name, _)| match name {
                                LabelingWrite::Item(item) if *item != lost => Some(*item),
                                _ => None,
                            })
                            .collect();
                        held.extend(self.held_in_round(project, &others).await?);
                    }
                    for lost in held {
                        item_writes.retain(|(name, _)| *name != LabelingWrite::Item(lost));
                        let before = task.items.len();
                        task.items.retain(|i| i.item != lost);
                        if task.items.len() == before {
                            missing -= 1;
                        }
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
                // The table retried already: going round again at once, after the cursor
                // moved, would only add load. The caller parks the items; the labeler retries.
                Err(Rejected::Conflict) => {
                    return Err(LabelingError::Busy(TableError::TransactionConflict));
                }
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

    /// Those of `items` whose record is of the project's round (or a newer one): someone holds
    /// them already.
    async fn held_in_round(
        &self,
        project: &ProjectRecord,
        items: &[u64],
    ) -> Result<Vec<u64>, LabelingError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let record_keys: Vec<_> = items.iter().map(|i| keys::item(&project.id, *i)).collect();
        Ok(self
            .table
            .batch_get(&record_keys)
            .await?
            .iter()
            .filter_map(|item| from_item::<ItemRecord>(item).ok())
            .filter(|record| record.round >= project.round)
            .map(|record| record.item)
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
            let Ok(key) = self
                .item_keys()
                .item_key(&project.id, manifest, *item)
                .await
            else {
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
                stats_write(
                    &project.id,
                    project.round,
                    &[(counter::QUEUED, n), (TaskKind::Manual.queue_counter(), n)],
                ),
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
}
