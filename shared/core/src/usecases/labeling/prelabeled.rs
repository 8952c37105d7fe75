//! Work an ML job queues ahead of the fresh order: prelabeled and clustered tasks, written with
//! their item records in one idempotent transaction.

use std::collections::HashMap;

use tracing::instrument;

use super::Labeling;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::labeling::{
    ItemRecord, ItemState, StoredAnnotation, TaskItem, TaskKind, WorkEntry,
};
use crate::domain::project::ProjectStatus;
use crate::keys::{self, counter};
use crate::service::from_item;
use crate::transaction::{Rejected, Transaction};

use super::{
    CHECKOUT_ATTEMPTS, FirstClaim, LabelingError, LabelingWrite, first_claim_record,
    first_claim_write, stats_write, waiting_entry_write,
};

/// The longest batch id: the task id it makes stays short.
pub const MAX_BATCH_ID_LEN: usize = 64;

/// An image's object key and its width and height, read from its header.
type ReadableImage = (String, (u32, u32));

/// What [`Labeling::queue_prelabeled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWork {
    /// The waiting task's id, `t_<batch_id>`: the same on every retry.
    pub task_id: String,
    /// Items this call queued: empty when an earlier call with the same batch (or anything else)
    /// had claimed every item of it in this round already.
    pub queued: Vec<u64>,
    /// Items left out: held in this round already (claimed, queued, labeled), or whose image
    /// cannot be read now.
    pub left_out: Vec<u64>,
}

impl Labeling<'_> {
    /// Queues one waiting task of `kind` (prelabeled or clustered) holding `items`, each with
    /// the prelabels a model proposed (with their confidences; may be empty for clustered
    /// work). Checkouts hand such tasks out after requeued work and before fresh items.
    ///
    /// The contract an ML job relies on:
    /// - One transaction: the task's entry in the work partition, every item's record (state
    ///   `queued`, its prelabels) and the round's counters (`queued`, `q_prelabeled` or
    ///   `q_clustered`), all or nothing.
    /// - An item is taken only as a first claim takes it: when it has no record in the
    ///   project's round (none at all, or one of an older round, whose labels stay as history).
    ///   Items held in this round already are left out, never overwritten; the fresh order
    ///   skips the items queued here when it reaches them.
    /// - Idempotent: `batch_id` names the task (`t_<batch_id>`), and a repeated call (a
    ///   retried job, a message delivered twice, even at once) finds its records written and
    ///   adds nothing; a call that failed wrote nothing, so its retry writes it all.
    /// - At most a page of items (the project's page size), all in the manifest, each once.
    #[instrument(skip(self, items), fields(items = items.len()))]
    pub async fn queue_prelabeled(
        &self,
        project_id: &str,
        batch_id: &str,
        kind: TaskKind,
        items: &[(u64, Vec<StoredAnnotation>)],
    ) -> Result<QueuedWork, LabelingError> {
        let project = self
            .reader()
            .load_project(&Actor::admin("system"), project_id)
            .await?;
        if !matches!(
            project.status,
            ProjectStatus::Running | ProjectStatus::Paused
        ) {
            return Err(LabelingError::NotRunning(project.status.as_str()));
        }
        let manifest =
            self.reader()
                .read_manifest(project_id)
                .await?
                .ok_or(LabelingError::NotRunning(
                    ProjectStatus::Initializing.as_str(),
                ))?;
        check_batch(&project, &manifest, batch_id, kind, items).map_err(LabelingError::Invalid)?;
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| LabelingError::Unavailable(Box::new(error)))?;
        let mut images: HashMap<u64, Option<ReadableImage>> = HashMap::new();
        let task_id = format!("t_{batch_id}");
        let mut left_out = Vec::new();
        let mut remaining: Vec<(u64, Vec<StoredAnnotation>)> = items.to_vec();
        for _ in 0..CHECKOUT_ATTEMPTS {
            // Read first, so a retry whose records are all written costs one read and no
            // write; the write's own conditions still guard against whoever comes between.
            let found = self
                .table
                .batch_get(
                    &remaining
                        .iter()
                        .map(|(item, _)| keys::item(project_id, *item))
                        .collect::<Vec<_>>(),
                )
                .await?;
            let records: HashMap<u64, ItemRecord> = found
                .iter()
                .filter_map(|item| from_item::<ItemRecord>(item).ok())
                .map(|record| (record.item, record))
                .collect();
            remaining.retain(|(item, _)| {
                let held = records.get(item).is_some_and(|r| r.round >= project.round);
                if held {
                    left_out.push(*item);
                }
                !held
            });
            if remaining.is_empty() {
                break;
            }
            // Each image's key and size (from its header) once, all at once, as a claim reads
            // them; only for items still to queue, so a retry that finds its work done reads
            // no image.
            let unread: Vec<u64> = remaining
                .iter()
                .map(|(item, _)| *item)
                .filter(|item| !images.contains_key(item))
                .collect();
            let read = futures::future::join_all(unread.iter().map(|item| {
                let (manifest, bucket) = (&manifest, source.bucket());
                async move {
                    let key = self
                        .item_keys()
                        .item_key(project_id, manifest, *item)
                        .await?;
                    let size = self.image_size(bucket, &key).await?;
                    Ok::<_, LabelingError>((*item, size.map(|size| (key, size))))
                }
            }))
            .await;
            for result in read {
                let (item, image) = result?;
                images.insert(item, image);
            }
            let now = self.clock.now();
            let mut task_items = Vec::with_capacity(remaining.len());
            let mut item_writes = Vec::with_capacity(remaining.len());
            let mut unreadable = Vec::new();
            for (item, prelabels) in &remaining {
                let Some((key, size)) = images.get(item).cloned().flatten() else {
                    // A fresh claim will find it and count it missing.
                    unreadable.push(*item);
                    continue;
                };
                let mut record = first_claim_record(
                    &project,
                    records.get(item),
                    FirstClaim {
                        item: *item,
                        key,
                        size: Some(size),
                        state: ItemState::Queued,
                        task_id: None,
                        now,
                    },
                );
                if !prelabels.is_empty() {
                    record.prelabels = prelabels.clone();
                }
                item_writes.push((
                    LabelingWrite::Item(*item),
                    first_claim_write(project_id, &record)?,
                ));
                task_items.push(TaskItem {
                    item: *item,
                    key: record.key,
                    width: record.width,
                    height: record.height,
                    prelabels: record.prelabels,
                });
            }
            remaining.retain(|(item, _)| !unreadable.contains(item));
            left_out.extend(unreadable);
            if task_items.is_empty() {
                break;
            }
            let n = task_items.len() as i64;
            let entry = WorkEntry {
                task_id: task_id.clone(),
                kind,
                items: task_items,
                lease_version: 0,
                labeler: None,
            };
            let mut writes = Transaction::new();
            writes.push(
                LabelingWrite::WorkEntry,
                waiting_entry_write(project_id, project.round, now, &entry)?,
            );
            writes.push(
                LabelingWrite::Stats,
                stats_write(
                    project_id,
                    project.round,
                    &[(counter::QUEUED, n), (kind.queue_counter(), n)],
                ),
            );
            writes.extend(item_writes);
            match writes.commit(self.table.as_ref()).await {
                Ok(()) => {
                    left_out.sort_unstable();
                    return Ok(QueuedWork {
                        task_id,
                        queued: entry.items.iter().map(|i| i.item).collect(),
                        left_out,
                    });
                }
                // Someone claimed an item between the read and the write (a checkout, this
                // very batch delivered twice): read again and leave out what is held.
                Err(Rejected::Condition(LabelingWrite::Item(_)) | Rejected::Conflict) => {}
                Err(Rejected::Condition(other)) => {
                    return Err(LabelingError::Unavailable(
                        format!("unexpected failed condition on {other:?}").into(),
                    ));
                }
                Err(Rejected::Table(error)) => return Err(error.into()),
            }
        }
        if remaining.is_empty() {
            left_out.sort_unstable();
            return Ok(QueuedWork {
                task_id,
                queued: Vec::new(),
                left_out,
            });
        }
        Err(LabelingError::Contention)
    }
}

/// Refuses a batch that could never be a task: every problem named, nothing written.
fn check_batch(
    project: &crate::domain::project::ProjectRecord,
    manifest: &crate::manifest::ManifestRecord,
    batch_id: &str,
    kind: TaskKind,
    items: &[(u64, Vec<StoredAnnotation>)],
) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if batch_id.is_empty()
        || batch_id.len() > MAX_BATCH_ID_LEN
        || !batch_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errors.push(
            "/batch_id",
            format!("1 to {MAX_BATCH_ID_LEN} letters, digits, '_' or '-'"),
        );
    }
    if !matches!(kind, TaskKind::Prelabeled | TaskKind::Clustered) {
        errors.push(
            "/kind",
            "only prelabeled or clustered work is queued this way",
        );
    }
    if items.is_empty() || items.len() > project.page_size as usize {
        errors.push(
            "/items",
            format!(
                "1 to {} items (a page), got {}",
                project.page_size,
                items.len()
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (index, (item, prelabels)) in items.iter().enumerate() {
        if *item >= manifest.total {
            errors.push(
                format!("/items/{index}"),
                format!("no item {item} in the manifest"),
            );
        }
        if !seen.insert(*item) {
            errors.push(
                format!("/items/{index}"),
                format!("item {item} appears twice"),
            );
        }
        for (at, prelabel) in prelabels.iter().enumerate() {
            if project.class_name(prelabel.class_id).is_none() {
                errors.push(
                    format!("/items/{index}/prelabels/{at}"),
                    format!(
                        "class {} is not a label class of this project",
                        prelabel.class_id
                    ),
                );
            }
            if prelabel
                .confidence
                .is_some_and(|c| !(0.0..=1.0).contains(&c))
            {
                errors.push(
                    format!("/items/{index}/prelabels/{at}/confidence"),
                    "a confidence is between 0 and 1",
                );
            }
        }
    }
    errors.into_result()
}
