//! Status: pause, resume, retry a failed project, mark one failed.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::project::ProjectStatus;
use crate::jobs::Job;

use super::{ProjectError, ProjectView, require_admin};

impl Projects<'_> {
    #[instrument(skip(self))]
    pub async fn pause_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        self.switch_status(
            actor,
            project_id,
            ProjectStatus::Running,
            ProjectStatus::Paused,
            "pause",
        )
        .await
    }

    #[instrument(skip(self))]
    pub async fn resume_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        self.switch_status(
            actor,
            project_id,
            ProjectStatus::Paused,
            ProjectStatus::Running,
            "resume",
        )
        .await
    }

    async fn switch_status(
        &self,
        actor: &Actor,
        project_id: &str,
        from: ProjectStatus,
        to: ProjectStatus,
        action: &'static str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let record = self
            .change_project(actor, project_id, |record| {
                if record.status == to {
                    return Ok(Vec::new());
                }
                if record.status != from {
                    return Err(ProjectError::WrongStatus {
                        status: record.status.as_str(),
                        action,
                        needed: from.as_str(),
                    });
                }
                record.status = to;
                Ok(Vec::new())
            })
            .await?;
        Ok(ProjectView::of(&record, actor))
    }

    /// A failed project tries again (`POST /projects/{id}/refresh` on a failed project). One that has no items yet
    /// goes back to `initializing` and lists its source afresh; one that has them (its first
    /// listing finished) goes back to `running` with a refresh, which adds only keys it lacks,
    /// so a retry never duplicates items.
    #[instrument(skip(self))]
    pub async fn retry_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let has_items = self.reader().read_manifest(project_id).await?.is_some();
        let record = self
            .change_project(actor, project_id, |record| {
                if record.status != ProjectStatus::Failed {
                    return Err(ProjectError::WrongStatus {
                        status: record.status.as_str(),
                        action: "retry",
                        needed: ProjectStatus::Failed.as_str(),
                    });
                }
                record.status = if has_items {
                    ProjectStatus::Running
                } else {
                    ProjectStatus::Initializing
                };
                record.failure = None;
                Ok(Vec::new())
            })
            .await?;
        let queued = if has_items {
            self.refreshes()
                .enqueue_refresh(
                    project_id,
                    crate::domain::refresh::RefreshTrigger::Retry,
                    std::time::Duration::ZERO,
                )
                .await
        } else {
            let job = Job::Ingest {
                project_id: project_id.to_owned(),
            };
            job.send(
                self.queue.as_ref(),
                &self.config.jobs_queue,
                std::time::Duration::ZERO,
            )
            .await
            .map(|_| ())
        };
        if let Err(error) = queued {
            tracing::error!(%error, project_id, "could not queue the retry");
            let _ = self
                .fail_project(project_id, "the retry could not be queued; retry again")
                .await;
            return Err(ProjectError::Unavailable(Box::new(error)));
        }
        tracing::info!(project_id, has_items, "failed project retried");
        Ok(ProjectView::of(&record, actor))
    }

    /// Marks a project failed with a reason a user can act on.
    pub(crate) async fn fail_project(
        &self,
        project_id: &str,
        reason: &str,
    ) -> Result<(), ProjectError> {
        let system = Actor::admin("system");
        self.change_project(&system, project_id, |record| {
            record.status = ProjectStatus::Failed;
            record.failure = Some(reason.to_owned());
            Ok(Vec::new())
        })
        .await
        .map(|_| ())
    }
}
