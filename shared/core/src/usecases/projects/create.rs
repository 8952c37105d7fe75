//! Create: a new project with a unique name, its seed and its first listing queued.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::project::{LabelClass, NewProjectInput, ProjectRecord, ProjectStatus};
use crate::ids::{new_id, new_seed};
use crate::jobs::Job;
use crate::keys;
use crate::ports::{Condition, TableError, Write};
use crate::service::to_item;
use crate::transaction::{Rejected, Transaction};

use super::{ProjectError, ProjectView, require_admin};

impl Projects<'_> {
    #[instrument(skip(self, input), fields(project_name = %input.name))]
    pub async fn create_project(
        &self,
        actor: &Actor,
        input: NewProjectInput,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let mut input = input;
        if let Some(dataset) = input.source.trim().strip_prefix("dataset:") {
            let dataset = dataset.trim().to_owned();
            if !crate::usecases::datasets::valid_dataset_name(&dataset)
                || !self.datasets().dataset_exists(&dataset).await?
            {
                return Err(ProjectError::Invalid(ValidationErrors::single(
                    "/source",
                    format!("there is no dataset {dataset:?}; create the dataset first"),
                )));
            }
            input.source = format!(
                "s3://{}/{}**",
                self.config.system_bucket,
                crate::usecases::datasets::dataset_prefix(&dataset)
            );
        }
        let new = input
            .validate(self.config.allow_file_sources)
            .map_err(ProjectError::Invalid)?;
        let now = self.clock.now();
        let id = new_id("p");
        let classes: Vec<LabelClass> = new
            .labels
            .iter()
            .enumerate()
            .map(|(index, name)| LabelClass {
                id: index as u32 + 1,
                name: name.clone(),
            })
            .collect();
        let record = ProjectRecord {
            id: id.clone(),
            name: new.name.clone(),
            task_type: new.task_type,
            next_class_id: classes.len() as u32 + 1,
            classes,
            instructions: new.instructions,
            page_size: new.page_size,
            lease_seconds: new.lease_seconds,
            source: new.source,
            status: ProjectStatus::Initializing,
            failure: None,
            round: 0,
            keep_prelabels: false,
            seed: new_seed(),
            incremental_refresh: new.incremental_refresh,
            ml_assist: new.ml_assist,
            members: Vec::new(),
            created_by: actor.user.clone(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let lower_name = new.name.to_lowercase();
        let reservation = to_item(
            keys::name_reservation(&lower_name),
            keys::entity::NAME_RESERVATION,
            &keys::row::NameReservation {
                project_id: &id,
                name: &new.name,
            },
        )?;
        let index = to_item(
            keys::project_index(&id),
            keys::entity::PROJECT_INDEX,
            &keys::row::ProjectIndexEntry { project_id: &id },
        )?;
        let mut writes = Transaction::new();
        writes.push(
            CreateWrite::NameReservation,
            Write::Put {
                item: reservation,
                condition: Some(Condition::NotExists),
            },
        );
        writes.push(
            CreateWrite::Project,
            Write::Put {
                item: to_item(keys::project(&id), keys::entity::PROJECT, &record)?,
                condition: Some(Condition::NotExists),
            },
        );
        writes.push(
            CreateWrite::ProjectIndex,
            Write::Put {
                item: index,
                condition: None,
            },
        );
        match writes.commit(self.table.as_ref()).await {
            Ok(()) => {}
            Err(Rejected::Condition(CreateWrite::NameReservation)) => {
                return Err(ProjectError::NameTaken(new.name));
            }
            Err(Rejected::Condition(write)) => {
                return Err(ProjectError::Unavailable(
                    format!("the project could not be created ({write:?} was taken); try again")
                        .into(),
                ));
            }
            Err(Rejected::Conflict) => return Err(TableError::TransactionConflict.into()),
            Err(Rejected::Table(error)) => return Err(error.into()),
        }
        let job = Job::Ingest {
            project_id: id.clone(),
        };
        if let Err(error) = job
            .send(
                self.queue.as_ref(),
                &self.config.jobs_queue,
                std::time::Duration::ZERO,
            )
            .await
        {
            tracing::error!(%error, project_id = %id, "could not queue the ingest job");
            let _ = self
                .fail_project(
                    &id,
                    "the ingest job could not be queued; refresh the project to try again",
                )
                .await;
            return Err(ProjectError::Unavailable(Box::new(error)));
        }
        tracing::info!(project_id = %id, "project created");
        Ok(ProjectView::of(&record, actor))
    }
}

/// The writes of the transaction that creates a project, named so that a failed condition
/// reads as what was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateWrite {
    /// The project's name, reserved case-insensitively.
    NameReservation,
    /// The project's record under its new id.
    Project,
    /// The project's entry in the project index.
    ProjectIndex,
}
