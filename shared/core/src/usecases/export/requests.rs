//! Export: the requests, which start an export (recording what it will hold and queueing its
//! job), show one with its progress and download URL, and list a project's exports.

use tracing::instrument;

use super::Exports;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys;
use crate::ports::{Condition, Query, SkRange};
use crate::service::{from_item, to_item};
use crate::time::rfc3339;

use super::{
    DOWNLOAD_URL_SECONDS, ExportError, ExportFormat, ExportInput, ExportRecord, ExportStatus,
    ExportView, Progress, Since, TIME_RANGE_MS,
};

impl Exports<'_> {
    #[instrument(skip(self, input))]
    pub async fn start_export(
        &self,
        actor: &Actor,
        project_id: &str,
        input: ExportInput,
    ) -> Result<ExportView, ExportError> {
        if !actor.is_admin() {
            return Err(ExportError::Forbidden);
        }
        let project = self.reader().load_project(actor, project_id).await?;
        let mut errors = ValidationErrors::default();
        let format = match input.format.as_deref() {
            Some("coco") => Some(ExportFormat::Coco),
            Some("jsonl") => Some(ExportFormat::Jsonl),
            _ => {
                errors.push("/format", "format is coco or jsonl");
                None
            }
        };
        let since = match input.since {
            None => None,
            // RFC 3339 writes the years 0000 to 9999 only, and a `since` is shown that way.
            Some(Since::At(ms)) if TIME_RANGE_MS.contains(&ms) => Some(ms),
            Some(Since::At(_) | Since::NotATime) => {
                errors.push(
                    "/since",
                    "since is an RFC 3339 time, e.g. 2024-05-01T00:00:00Z",
                );
                None
            }
        };
        errors.into_result().map_err(ExportError::Invalid)?;
        let format = format.ok_or_else(|| {
            ExportError::Invalid(ValidationErrors::single(
                "/format",
                "format is coco or jsonl",
            ))
        })?;
        if matches!(
            project.status,
            ProjectStatus::Initializing | ProjectStatus::Failed
        ) {
            return Err(ExportError::NotReady(project.status.as_str()));
        }
        let now = self.clock.now();
        let include_unlabeled = input.include_unlabeled.unwrap_or(false);
        let snapshot_items = if include_unlabeled {
            Some(
                self.reader()
                    .read_manifest(project_id)
                    .await?
                    .map_or(0, |m| m.total),
            )
        } else {
            None
        };
        let id = new_id("x");
        let bucket = self.export_bucket(&project);
        let key = format!(
            "export/{}/{}/{id}.{}",
            format.folder(),
            project.name,
            format.extension()
        );
        let record = ExportRecord {
            id: id.clone(),
            project_id: project_id.to_owned(),
            format,
            status: ExportStatus::Queued,
            since,
            include_unlabeled,
            snapshot_at: now,
            snapshot_items,
            round: project.round,
            bucket,
            key,
            items_written: 0,
            items_total: 0,
            annotations_written: 0,
            created_by: actor.user.clone(),
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
            attempts: 0,
            generation: 0,
            claims: 0,
            holder: None,
            held_until: None,
            checkpoint: None,
        };
        self.table
            .put(
                to_item(keys::export(project_id, &id), keys::entity::EXPORT, &record)?,
                Some(Condition::NotExists),
            )
            .await?;
        let job = Job::Export {
            project_id: project_id.to_owned(),
            export_id: id.clone(),
            generation: 0,
        };
        job.send(
            self.queue.as_ref(),
            &self.config.exports_queue,
            std::time::Duration::ZERO,
        )
        .await
        .map_err(|error| ExportError::Unavailable(Box::new(error)))?;
        self.export_view(&record).await
    }

    /// Where a project's exports go: its source bucket, or the service's bucket for local folders.
    fn export_bucket(&self, project: &ProjectRecord) -> String {
        match project.source.allowed(self.config.allow_file_sources) {
            Ok(source) if !source.bucket().starts_with("file://") => source.bucket().to_owned(),
            _ => self.config.system_bucket.clone(),
        }
    }

    async fn export_view(&self, record: &ExportRecord) -> Result<ExportView, ExportError> {
        let download_url = if record.status == ExportStatus::Succeeded {
            Some(
                self.blobs
                    .presign_get(
                        &record.bucket,
                        &record.key,
                        std::time::Duration::from_secs(DOWNLOAD_URL_SECONDS),
                    )
                    .await?,
            )
        } else {
            None
        };
        let location = if record.bucket.starts_with("file://") {
            format!("{}/{}", record.bucket, record.key)
        } else {
            format!("s3://{}/{}", record.bucket, record.key)
        };
        Ok(ExportView {
            id: record.id.clone(),
            project_id: record.project_id.clone(),
            format: record.format,
            status: record.status,
            since: record.since.map(rfc3339),
            include_unlabeled: record.include_unlabeled,
            snapshot_at: rfc3339(record.snapshot_at),
            location,
            progress: Progress {
                items_written: record.items_written,
                items_total: record.items_total,
                annotations_written: record.annotations_written,
            },
            download_url,
            created_at: rfc3339(record.created_at),
            started_at: record.started_at.map(rfc3339),
            finished_at: record.finished_at.map(rfc3339),
            error: record.error.clone(),
        })
    }

    #[instrument(skip(self))]
    pub async fn get_export(
        &self,
        actor: &Actor,
        project_id: &str,
        export_id: &str,
    ) -> Result<ExportView, ExportError> {
        if !actor.is_admin() {
            return Err(ExportError::Forbidden);
        }
        self.reader().load_project(actor, project_id).await?;
        let item = self
            .table
            .get(&keys::export(project_id, export_id))
            .await?
            .ok_or_else(|| ExportError::ExportNotFound(export_id.to_owned()))?;
        let record: ExportRecord = from_item(&item).map_err(ExportError::Unavailable)?;
        self.export_view(&record).await
    }

    #[instrument(skip(self))]
    pub async fn list_exports(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Vec<ExportView>, ExportError> {
        if !actor.is_admin() {
            return Err(ExportError::Forbidden);
        }
        self.reader().load_project(actor, project_id).await?;
        let mut views = Vec::new();
        let mut start_after = None;
        loop {
            let mut query = Query::new(
                keys::project_pk(project_id),
                SkRange::BeginsWith(keys::EXPORT_SK_PREFIX.to_owned()),
                100,
            );
            query.start_after = start_after;
            let page = self.table.query(query).await?;
            for item in &page.items {
                let record: ExportRecord = from_item(item).map_err(ExportError::Unavailable)?;
                views.push(self.export_view(&record).await?);
            }
            match page.last_evaluated {
                Some(last) => start_after = Some(last),
                None => break,
            }
        }
        views.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(views)
    }
}
