//! Change: every edit of a project record is a conditional write on its version, retried after a lost race; patch and delete.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::presented::ProjectChanges;
use crate::domain::project::{ProjectRecord, ProjectStatus, check_instructions, check_lease};
use crate::keys::{self, attr};
use crate::ports::{Condition, TableError, Write};
use crate::service::to_item;

use super::{ProjectError, ProjectView, require_admin};

impl Projects<'_> {
    /// Reads, changes and writes the project record under its version, retrying on races.
    pub(super) async fn change_project<F>(
        &self,
        actor: &Actor,
        project_id: &str,
        mut change: F,
    ) -> Result<ProjectRecord, ProjectError>
    where
        F: FnMut(&mut ProjectRecord) -> Result<Vec<Write>, ProjectError>,
    {
        for _ in 0..5 {
            if let Some(record) = self
                .try_change_project(actor, project_id, &mut change)
                .await?
            {
                return Ok(record);
            }
        }
        Err(ProjectError::Conflict)
    }

    /// One optimistic attempt: `None` when the project (or a row the change checks) moved
    /// since it was read.
    pub(super) async fn try_change_project<F>(
        &self,
        actor: &Actor,
        project_id: &str,
        change: &mut F,
    ) -> Result<Option<ProjectRecord>, ProjectError>
    where
        F: FnMut(&mut ProjectRecord) -> Result<Vec<Write>, ProjectError>,
    {
        let mut record = self.reader().load_project(actor, project_id).await?;
        let version = record.version;
        let mut extra = change(&mut record)?;
        record.version += 1;
        record.updated_at = self.clock.now();
        let mut writes = vec![Write::Put {
            item: to_item(keys::project(project_id), keys::entity::PROJECT, &record)?,
            condition: Some(Condition::equals(attr::VERSION, version)),
        }];
        writes.append(&mut extra);
        let outcome = if writes.len() == 1 {
            let Some(Write::Put { item, condition }) = writes.pop() else {
                return Err(ProjectError::Conflict);
            };
            self.table.put(item, condition).await
        } else {
            self.table.transact(writes).await
        };
        match outcome {
            Ok(()) => {
                self.projects.remember(&record, self.clock.now());
                Ok(Some(record))
            }
            Err(TableError::ConditionFailed { .. } | TableError::TransactionConflict) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Edits instructions, lease time and the switches. Task type, source and page size are
    /// fixed at creation; label classes are added through [`Projects::add_labels`].
    #[instrument(skip(self, changes))]
    pub async fn update_project(
        &self,
        actor: &Actor,
        project_id: &str,
        changes: ProjectChanges,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let ProjectChanges {
            instructions,
            lease_seconds,
            incremental_refresh,
            ml_assist,
        } = changes;
        let mut errors = ValidationErrors::default();
        if let Some(instructions) = &instructions {
            check_instructions(instructions, &mut errors);
        }
        if let Some(seconds) = lease_seconds {
            check_lease(seconds, &mut errors);
        }
        if let Some(input) = &ml_assist {
            input.check("/ml_assist", &mut errors);
        }
        errors.into_result().map_err(ProjectError::Invalid)?;
        let record = self
            .change_project(actor, project_id, |record| {
                if let Some(instructions) = &instructions {
                    record.instructions = instructions.clone();
                }
                if let Some(seconds) = lease_seconds {
                    record.lease_seconds = seconds;
                }
                if let Some(on) = incremental_refresh {
                    record.incremental_refresh = on;
                }
                if let Some(input) = &ml_assist {
                    record.ml_assist = record.ml_assist.clone().with(input);
                }
                Ok(Vec::new())
            })
            .await?;
        Ok(ProjectView::of(&record, actor))
    }

    /// Deletes a project. Its name stays reserved forever.
    #[instrument(skip(self))]
    pub async fn delete_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<(), ProjectError> {
        require_admin(actor)?;
        self.change_project(actor, project_id, |record| {
            record.status = ProjectStatus::Deleted;
            Ok(vec![Write::Delete {
                key: keys::project_index(project_id),
                condition: None,
            }])
        })
        .await?;
        Ok(())
    }
}
