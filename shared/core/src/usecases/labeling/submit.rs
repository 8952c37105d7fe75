//! Submit: one transaction that stores the annotations and closes the lease on its version.

use serde_json::Value;
use tracing::instrument;

use super::Labeling;
use crate::access::Actor;
use crate::domain::labeling::{
    BoxOutcome, ItemOutcome, ItemState, PrelabelOutcome, SubmissionInput, TaskEnd, judge_boxes,
    validate_submission,
};
use crate::keys::{self, attr, counter};
use crate::ports::{Condition, Update, Write};
use crate::service::to_json;
use crate::transaction::{Rejected, Transaction};

use super::{
    LabelingError, LabelingWrite, SubmissionReceipt, ended_task_write, lease_entry_key, stats_write,
};

impl Labeling<'_> {
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
            project = self.reader().load_project(actor, project_id).await?;
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
        // Items labeled per outcome and class of their prelabels (the prelabels' acceptance).
        let mut prelabel_counts: std::collections::BTreeMap<(PrelabelOutcome, u32), i64> =
            Default::default();
        // Boxes per outcome and the class they count under (the boxes' acceptance).
        let mut box_counts: std::collections::BTreeMap<(BoxOutcome, u32), i64> = Default::default();
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
        for (item_id, outcome) in &outcomes {
            let update = match outcome {
                ItemOutcome::Labeled(labels) => {
                    labeled += 1;
                    for label in labels {
                        *class_counts.entry(label.class_id).or_default() += 1;
                    }
                    // The task carries the prelabels it was handed out with: judging them
                    // costs no read. The record keeps them (written when it was claimed or
                    // queued), so exports show what the model said beside the outcome.
                    let prelabels = task
                        .items
                        .iter()
                        .find(|task_item| task_item.item == *item_id)
                        .map(|task_item| task_item.prelabels.as_slice())
                        .unwrap_or_default();
                    let update = Update::default()
                        .set(attr::STATE, ItemState::Labeled.as_str())
                        .set(attr::LABELS, to_json("item's labels", labels)?);
                    match PrelabelOutcome::judge(prelabels, labels) {
                        Some(outcome) => {
                            let classes: std::collections::BTreeSet<u32> =
                                prelabels.iter().map(|p| p.class_id).collect();
                            for class_id in classes {
                                *prelabel_counts.entry((outcome, class_id)).or_default() += 1;
                            }
                            // Empty unless the prelabels held boxes. A reject takes these
                            // back by judging the record's prelabels and labels again.
                            let boxes = judge_boxes(prelabels, labels);
                            for counted in boxes.counted(prelabels, labels) {
                                *box_counts.entry(counted).or_default() += 1;
                            }
                            update.set(attr::PRELABEL, outcome.as_str())
                        }
                        // A rejected item comes back without prelabels: an outcome of its
                        // earlier submit must not stay behind.
                        None => update.remove(attr::PRELABEL),
                    }
                }
                ItemOutcome::Skipped => {
                    skipped += 1;
                    Update::default()
                        .set(attr::STATE, ItemState::Skipped.as_str())
                        .set(attr::LABELS, Value::Array(Vec::new()))
                        .remove(attr::PRELABEL)
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
        let class_keys: Vec<(String, i64)> =
            class_counts
                .iter()
                .map(|(id, count)| (counter::class(*id), *count))
                .chain(prelabel_counts.iter().map(|((outcome, id), count)| {
                    (counter::prelabel(outcome.as_str(), *id), *count)
                }))
                .chain(box_counts.iter().map(|((outcome, id), count)| {
                    (counter::prelabel_box(outcome.as_str(), *id), *count)
                }))
                .collect();
        let mut changes: Vec<(&str, i64)> = vec![
            (counter::IN_TASK, -n),
            (counter::LABELED, labeled),
            (counter::SKIPPED, skipped),
        ];
        changes.extend(class_keys.iter().map(|(k, v)| (k.as_str(), *v)));
        writes.push(
            LabelingWrite::Stats,
            stats_write(project_id, task.round, &changes),
        );
        match writes.commit(self.table.as_ref()).await {
            Ok(()) => Ok(SubmissionReceipt {
                task_id: task_id.to_owned(),
                labeled: labeled as usize,
                skipped: skipped as usize,
            }),
            // No condition names the project's row any more: an item that left the task's
            // round was claimed by a round another process started meanwhile.
            Err(Rejected::Condition(LabelingWrite::Item(_))) => {
                match self.reader().load_project(actor, project_id).await {
                    Ok(stored) if stored.round != task.round => Err(LabelingError::RoundChanged),
                    _ => Err(self.lease_lost(actor, project_id, task_id).await),
                }
            }
            Err(Rejected::Condition(_)) => Err(self.lease_lost(actor, project_id, task_id).await),
            // Another transaction held a row this one writes (the round's counters, most
            // likely), through every retry: the lease is still valid, so say "retry", never
            // "lost".
            Err(Rejected::Conflict) => Err(LabelingError::Busy(
                crate::ports::TableError::TransactionConflict,
            )),
            Err(Rejected::Table(error)) => Err(error.into()),
        }
    }
}
