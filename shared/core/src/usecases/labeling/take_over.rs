//! Take over: a waiting task or an expired lease becomes this labeler's, on the lease's version.

use super::Labeling;
use crate::access::Actor;
use crate::domain::labeling::{ItemState, TaskEnd, TaskKind, TaskRecord, WorkEntry};
use crate::domain::project::ProjectRecord;
use crate::ids::new_id;
use crate::keys::{self, attr, counter};
use crate::ports::{Condition, Item, Update, Write};
use crate::service::from_item;
use crate::transaction::{Rejected, Transaction};

use super::{
    CheckedOutTask, LabelingError, LabelingWrite, ended_task_write, lease_entry_item,
    new_task_write, stats_write,
};

impl Labeling<'_> {
    /// Takes a waiting task or an expired lease; `None` when another labeler got it first.
    pub(super) async fn take_over(
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
                stats_write(
                    &project.id,
                    project.round,
                    &[
                        (counter::IN_TASK, n),
                        (counter::QUEUED, -n),
                        (entry.kind.queue_counter(), -n),
                    ],
                ),
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
            // Another labeler took it first.
            Err(Rejected::Condition(_) | Rejected::Conflict) => Ok(None),
            Err(Rejected::Table(error)) => Err(error.into()),
        }
    }
}
