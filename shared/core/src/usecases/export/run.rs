//! Export: the job, which runs one export to its end (or its last allowed try), records its
//! outcome and progress, and streams the chosen format through a multipart upload.

use tracing::instrument;

use super::Exports;
use crate::domain::project::ProjectRecord;
use crate::keys::{self, attr};
use crate::ports::{Condition, Update};
use crate::service::{from_item, to_item};
use crate::usecases::ingest::JobError;

use super::part_writer::PartWriter;
use super::{ExportFormat, ExportRecord, ExportStatus, MAX_EXPORT_ATTEMPTS};

impl Exports<'_> {
    /// The export job. A retry starts over with a fresh upload; the object appears only when
    /// the upload completes.
    #[instrument(skip(self), err)]
    pub(crate) async fn run_export(
        &self,
        project_id: &str,
        export_id: &str,
    ) -> Result<(), JobError> {
        let key = keys::export(project_id, export_id);
        let Some(item) = self.table.get(&key).await? else {
            tracing::warn!("export record is gone; dropping the job");
            return Ok(());
        };
        let mut record: ExportRecord = from_item(&item).map_err(JobError::Unavailable)?;
        if matches!(
            record.status,
            ExportStatus::Succeeded | ExportStatus::Failed
        ) {
            return Ok(());
        }
        let Some(project_item) = self.table.get(&keys::project(project_id)).await? else {
            return Ok(());
        };
        let project: ProjectRecord = from_item(&project_item).map_err(JobError::Unavailable)?;
        let started = self.clock.now();
        if record.attempts >= MAX_EXPORT_ATTEMPTS {
            // The earlier runs died without recording an outcome (a crash or a timeout).
            record.status = ExportStatus::Failed;
            record.finished_at = Some(started);
            record.error = Some(format!(
                "the export stopped without finishing {} times; gave up",
                record.attempts
            ));
            self.table
                .put(to_item(key, keys::entity::EXPORT, &record)?, None)
                .await?;
            return Ok(());
        }
        record.status = ExportStatus::Running;
        record.started_at = Some(started);
        record.attempts += 1;
        record.items_written = 0;
        record.annotations_written = 0;
        self.table
            .put(to_item(key.clone(), keys::entity::EXPORT, &record)?, None)
            .await?;
        match self.write_export(&project, &mut record).await {
            Ok(()) => {
                record.status = ExportStatus::Succeeded;
                record.items_total = record.items_written;
                record.error = None;
                record.finished_at = Some(self.clock.now());
                self.table
                    .put(to_item(key, keys::entity::EXPORT, &record)?, None)
                    .await?;
                tracing::info!(
                    items = record.items_written,
                    annotations = record.annotations_written,
                    elapsed_ms = record.finished_at.unwrap_or(started) - started,
                    "export finished"
                );
                Ok(())
            }
            Err(error) => {
                // Show what went wrong at once; the last allowed try marks the export failed
                // and ends the job, earlier ones leave it to the queue to retry.
                let last = record.attempts >= MAX_EXPORT_ATTEMPTS;
                record.error = Some(if last {
                    format!("{error} (gave up after {} tries)", record.attempts)
                } else {
                    format!(
                        "{error} (try {} of {MAX_EXPORT_ATTEMPTS}; retrying)",
                        record.attempts
                    )
                });
                if last {
                    record.status = ExportStatus::Failed;
                    record.finished_at = Some(self.clock.now());
                }
                if let Err(put_error) = self
                    .table
                    .put(to_item(key, keys::entity::EXPORT, &record)?, None)
                    .await
                {
                    tracing::warn!(%put_error, "could not record the export's failure");
                    return Err(error);
                }
                if last {
                    tracing::error!(%error, attempts = record.attempts, "export failed");
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Counts, then streams the export through a multipart upload that appears only when
    /// complete (a failure aborts it).
    async fn write_export(
        &self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
    ) -> Result<(), JobError> {
        record.items_total = self.count_export_items(project, record).await?;
        self.save_progress(record).await;
        let mut writer = PartWriter::start(
            self,
            &record.bucket,
            &record.key,
            record.format.content_type(),
        )
        .await?;
        let outcome = match record.format {
            ExportFormat::Coco => self.write_coco(project, record, &mut writer).await,
            ExportFormat::Jsonl => self.write_jsonl(project, record, &mut writer).await,
        };
        match outcome {
            Ok(()) => Ok(writer.finish().await?),
            Err(error) => {
                writer.abort().await;
                Err(error)
            }
        }
    }

    /// Runs an export job now, without the queue (tests, benchmarks and the CLI).
    pub async fn run_export_now(&self, project_id: &str, export_id: &str) -> Result<(), JobError> {
        self.run_export(project_id, export_id).await
    }

    pub(super) async fn save_progress(&self, record: &ExportRecord) {
        let update = Update::default()
            .set(attr::ITEMS_TOTAL, record.items_total)
            .set(attr::ITEMS_WRITTEN, record.items_written)
            .set(attr::ANNOTATIONS_WRITTEN, record.annotations_written);
        if let Err(error) = self
            .table
            .update(
                &keys::export(&record.project_id, &record.id),
                update,
                Some(Condition::Exists),
            )
            .await
        {
            tracing::warn!(%error, "could not record export progress");
        }
    }
}
