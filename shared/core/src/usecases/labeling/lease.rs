//! Leases: renew, release, give back (one task, or all of a labeler's tasks).

use tracing::instrument;

use super::Labeling;
use crate::access::Actor;
use crate::domain::labeling::{ItemState, TaskEnd, TaskKind, TaskRecord, WorkEntry};
use crate::domain::names::same_name;
use crate::domain::project::ProjectRecord;
use crate::ids::new_id;
use crate::keys::{self, attr, counter};
use crate::ports::{Condition, Query, SkRange, TableError, Update, Write};
use crate::service::{from_item, to_item};
use crate::time::rfc3339;

use super::{
    LabelingError, LeaseView, TASK_ENTITY, ended_task_write, lease_entry_item, lease_entry_key,
    stats_write, waiting_entry_write,
};

impl Labeling<'_> {
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
            Err(TableError::ConditionFailed { .. }) => {
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
            stats_write(
                project_id,
                task.round,
                &[
                    (counter::IN_TASK, -n),
                    (counter::QUEUED, n),
                    (kind.queue_counter(), n),
                ],
            ),
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
            Err(TableError::ConditionFailed { .. }) => Err(LabelingError::LeaseLost),
            Err(error) => Err(error.into()),
        }
    }

    /// Why a write on a task's lease failed: the task ended meanwhile (submitted, taken over,
    /// released), or its lease moved on.
    pub(super) async fn lease_lost(
        &self,
        actor: &Actor,
        project_id: &str,
        task_id: &str,
    ) -> LabelingError {
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
}
