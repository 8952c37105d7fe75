//! Refresh: the requests, on demand and on the daily schedule, that queue a refresh job, and
//! the status of the last refresh that they report.

use tracing::instrument;

use super::{RefreshStatuses, Refreshes};
use crate::access::Actor;
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::manifest::ManifestRecord;
use crate::service::to_json_bytes;
use crate::time::rfc3339;
use crate::usecases::ingest::JobError;
use crate::usecases::projects::ProjectError;

use super::{RefreshStatus, RefreshView, next_daily_run, status_key};

impl Refreshes<'_> {
    /// `POST /projects/{id}/refresh`: queues a refresh now; on a failed project, retries it
    /// (see [`Projects::retry_project`](crate::usecases::projects::Projects::retry_project)).
    #[instrument(skip(self))]
    pub async fn request_refresh(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<RefreshView, ProjectError> {
        if !actor.is_admin() {
            return Err(ProjectError::Forbidden);
        }
        let project = self.reader().load_project(actor, project_id).await?;
        if project.status == ProjectStatus::Failed {
            self.projects().retry_project(actor, project_id).await?;
            let project = self.reader().load_project(actor, project_id).await?;
            return self.refresh_view(&project).await;
        }
        if !matches!(
            project.status,
            ProjectStatus::Running | ProjectStatus::Paused
        ) {
            return Err(ProjectError::WrongStatus {
                status: project.status.as_str(),
                action: "refresh",
                needed: "running, paused or failed",
            });
        }
        self.enqueue_refresh(
            project_id,
            RefreshTrigger::OnDemand,
            std::time::Duration::ZERO,
        )
        .await
        .map_err(|e| ProjectError::Unavailable(Box::new(e)))?;
        self.refresh_view(&project).await
    }

    pub(crate) async fn enqueue_refresh(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        delay: std::time::Duration,
    ) -> Result<(), crate::ports::QueueError> {
        let job = Job::Refresh {
            project_id: project_id.to_owned(),
            trigger: trigger.as_str().to_owned(),
            request_id: new_id("r"),
        };
        job.send(self.queue.as_ref(), &self.config.jobs_queue, delay)
            .await
            .map(|_| ())
    }

    /// What the project page and dashboard show about refreshes.
    pub(crate) async fn refresh_view(
        &self,
        project: &ProjectRecord,
    ) -> Result<RefreshView, ProjectError> {
        let status = self.statuses().read_refresh_status(&project.id).await;
        let manifest = self.reader().read_manifest(&project.id).await?;
        Ok(self
            .statuses()
            .refresh_view_with(project, status, manifest.as_ref()))
    }
}

/// The refresh status a project's page and dashboard show, read without the refresh's ports.
impl RefreshStatuses<'_> {
    /// `status` must be read before `manifest`: a refresh commits the manifest, then writes
    /// its status, so a view never pairs a new status with the counts from before it.
    pub(crate) fn refresh_view_with(
        &self,
        project: &ProjectRecord,
        status: Option<RefreshStatus>,
        manifest: Option<&ManifestRecord>,
    ) -> RefreshView {
        let (at, trigger, added, dropped, removed, note) = match (&status, manifest) {
            (Some(status), _) => (
                Some(status.at),
                Some(status.trigger.as_str().to_owned()),
                status.added,
                status.dropped,
                status.removed,
                status.note.clone(),
            ),
            (None, Some(m)) => (
                m.last_refresh_at,
                m.last_refresh_trigger
                    .map(|trigger| trigger.as_str().to_owned()),
                m.last_refresh_added,
                m.dropped,
                m.removed,
                None,
            ),
            (None, None) => (None, None, 0, 0, 0, None),
        };
        let unreadable = status.as_ref().map_or(0, |status| status.unreadable);
        RefreshView {
            last_refresh_at: at.map(rfc3339),
            last_refresh_trigger: trigger,
            items_added: added,
            items_dropped: dropped,
            files_removed: removed,
            files_unreadable: unreadable,
            next_scheduled_at: project
                .incremental_refresh
                .then(|| rfc3339(next_daily_run(self.clock.now()))),
            note,
        }
    }

    pub(crate) async fn read_refresh_status(&self, project_id: &str) -> Option<RefreshStatus> {
        let body = self
            .blobs
            .get(&self.config.system_bucket, &status_key(project_id), None)
            .await
            .ok()?;
        serde_json::from_slice(&body).ok()
    }

    pub(crate) async fn write_refresh_status(
        &self,
        project_id: &str,
        status: &RefreshStatus,
    ) -> Result<(), JobError> {
        let body = to_json_bytes("refresh status", status)?;
        Ok(self
            .blobs
            .put(
                &self.config.system_bucket,
                &status_key(project_id),
                body,
                "application/json",
            )
            .await?)
    }
}

impl Refreshes<'_> {
    /// Every project with incremental refresh on gets a refresh job (the daily schedule).
    #[instrument(skip(self), err)]
    pub(crate) async fn refresh_all(&self, trigger: RefreshTrigger) -> Result<(), JobError> {
        for project in self
            .projects()
            .list_projects(&Actor::admin("system"))
            .await?
        {
            if project.incremental_refresh && matches!(project.status, "running" | "paused") {
                self.enqueue_refresh(&project.id, trigger, std::time::Duration::ZERO)
                    .await
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
            }
        }
        Ok(())
    }
}
