//! Export: labels as COCO or as JSON Lines (Azure ML AutoML's schema), streamed page by page
//! into the project's bucket through a multipart upload, so memory stays flat however large the
//! project. The object appears whole or not at all: a multipart upload is invisible until it is
//! completed, and a retried job starts a fresh upload (abandoned parts expire by lifecycle rule).

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::geometry::shoelace_area;
use crate::domain::labeling::{ItemRecord, StoredAnnotation};
use crate::domain::project::{ProjectRecord, ProjectStatus, TaskType};
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys;
use crate::ports::{
    BlobError, BoxError, ByteRange, CompletedPart, Condition, Query, SkRange, TableError, Update,
};
use crate::service::{Service, from_item, from_item_owned, to_item, to_json_bytes};
use crate::time::rfc3339;
use crate::usecases::ingest::JobError;
use crate::usecases::projects::ProjectError;

/// Bytes buffered before a part is uploaded (S3 wants at least 5 MiB for all parts but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// How long a download URL of a finished export stays valid.
const DOWNLOAD_URL_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Coco,
    Jsonl,
}

impl ExportFormat {
    fn folder(self) -> &'static str {
        match self {
            ExportFormat::Coco => "coco",
            ExportFormat::Jsonl => "jsonl",
        }
    }
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Coco => "json",
            ExportFormat::Jsonl => "jsonl",
        }
    }
    fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Coco => "application/json",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// The stored export run (`P#<pid>` / `RUN#EXPORT#<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub id: String,
    pub project_id: String,
    pub format: ExportFormat,
    pub status: ExportStatus,
    /// Only items labeled at or after this time (epoch ms).
    pub since: Option<i64>,
    pub include_unlabeled: bool,
    /// What was labeled at this instant is what the export holds.
    pub snapshot_at: i64,
    /// With `include_unlabeled`: the project's items at the snapshot (later refreshes add
    /// items the export leaves out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_items: Option<u64>,
    pub round: u32,
    pub bucket: String,
    pub key: String,
    pub items_written: u64,
    pub items_total: u64,
    pub annotations_written: u64,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Runs started so far; the last allowed failure marks the export failed.
    #[serde(default)]
    pub attempts: u32,
}

/// Items listed at a time when an export lists unlabeled images too.
const INCLUDE_UNLABELED_BATCH: u64 = 1000;
/// Image header reads in flight at once for images no labeler has opened.
const HEADER_READS_AT_ONCE: usize = 32;

/// Runs of one export before it is marked failed (see [`crate::jobs::MAX_JOB_ATTEMPTS`]).
pub const MAX_EXPORT_ATTEMPTS: u32 = crate::jobs::MAX_JOB_ATTEMPTS;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExportInput {
    #[serde(default)]
    pub format: Option<String>,
    /// RFC 3339 or epoch milliseconds.
    #[serde(default)]
    pub since: Option<Value>,
    #[serde(default)]
    pub include_unlabeled: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub id: String,
    pub project_id: String,
    pub format: ExportFormat,
    pub status: ExportStatus,
    pub since: Option<String>,
    pub include_unlabeled: bool,
    pub snapshot_at: String,
    pub location: String,
    pub progress: Progress,
    pub download_url: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub items_written: u64,
    pub items_total: u64,
    pub annotations_written: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no project {0}")]
    NotFound(String),
    #[error("no export {0} in this project")]
    ExportNotFound(String),
    #[error("only admins may do this")]
    Forbidden,
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("the project is {0}; export needs its ingest to have finished")]
    NotReady(&'static str),
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
}

impl DomainError for ExportError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExportError::NotFound(_) | ExportError::ExportNotFound(_) => ErrorKind::NotFound,
            ExportError::Forbidden => ErrorKind::Forbidden,
            ExportError::Invalid(_) => ErrorKind::Invalid,
            ExportError::NotReady(_) => ErrorKind::Conflict,
            ExportError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn field_errors(&self) -> &[FieldError] {
        match self {
            ExportError::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
}

impl From<crate::service::UnserializableRecord> for ExportError {
    fn from(error: crate::service::UnserializableRecord) -> Self {
        ExportError::Unavailable(Box::new(error))
    }
}

impl From<TableError> for ExportError {
    fn from(error: TableError) -> Self {
        ExportError::Unavailable(Box::new(error))
    }
}

impl From<BlobError> for ExportError {
    fn from(error: BlobError) -> Self {
        ExportError::Unavailable(Box::new(error))
    }
}

impl From<ProjectError> for ExportError {
    fn from(error: ProjectError) -> Self {
        match error {
            ProjectError::NotFound(id) => ExportError::NotFound(id),
            ProjectError::Forbidden => ExportError::Forbidden,
            other => ExportError::Unavailable(Box::new(other)),
        }
    }
}

/// Epoch milliseconds of 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
pub const TIME_RANGE_MS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// An RFC 3339 time (see [`crate::time::parse_rfc3339`]) or epoch milliseconds, in the years
/// 0000 to 9999 that RFC 3339 can write (what the API documents).
pub fn parse_time(value: &Value) -> Option<i64> {
    let ms = match value.as_i64() {
        Some(ms) => ms,
        None => crate::time::parse_rfc3339(value.as_str()?)?,
    };
    TIME_RANGE_MS.contains(&ms).then_some(ms)
}

/// Buffers bytes and uploads them as parts of one multipart upload.
struct PartWriter<'a> {
    service: &'a Service,
    bucket: String,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
}

impl<'a> PartWriter<'a> {
    async fn start(
        service: &'a Service,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<Self, BlobError> {
        let upload_id = service
            .blobs
            .start_multipart(bucket, key, content_type)
            .await?;
        Ok(Self {
            service,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            buffer: Vec::with_capacity(PART_BYTES + 64 * 1024),
            parts: Vec::new(),
        })
    }

    /// True when this write uploaded a part: everything written so far is then in the store,
    /// the moment for the job to record its progress (one table write a part, not an item).
    async fn write(&mut self, bytes: &[u8]) -> Result<bool, BlobError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_BYTES {
            self.flush().await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        let part_number = self.parts.len() as u32 + 1;
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES + 64 * 1024));
        let etag = self
            .service
            .blobs
            .upload_part(&self.bucket, &self.key, &self.upload_id, part_number, body)
            .await?;
        self.parts.push(CompletedPart { part_number, etag });
        Ok(())
    }

    async fn finish(mut self) -> Result<(), BlobError> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.flush().await?;
        }
        self.service
            .blobs
            .complete_multipart(&self.bucket, &self.key, &self.upload_id, self.parts)
            .await
    }

    async fn abort(self) {
        let _ = self
            .service
            .blobs
            .abort_multipart(&self.bucket, &self.key, &self.upload_id)
            .await;
    }
}

/// Which records an export holds: labeled in the export's round by its snapshot time (with
/// the labels they had then, even when rejected or relabeled since), and not before `since`.
#[derive(Clone, Copy)]
struct Selection {
    round: u32,
    snapshot_at: i64,
    since: Option<i64>,
}

impl Selection {
    fn of(record: &ExportRecord) -> Self {
        Self {
            round: record.round,
            snapshot_at: record.snapshot_at,
            since: record.since,
        }
    }

    /// The item as the snapshot saw it, when the export holds it.
    fn snapshot(&self, item: ItemRecord) -> Option<ItemRecord> {
        let item = item.as_labeled_at(self.round, self.snapshot_at)?;
        let labeled_at = item.labeled_at?;
        self.since
            .is_none_or(|since| labeled_at >= since)
            .then_some(item)
    }
}

/// A project's item records in item order, a query page at a time, so memory stays flat.
struct ItemPages {
    pk: String,
    start_after: Option<String>,
    done: bool,
}

impl ItemPages {
    fn new(project_id: &str) -> Self {
        Self {
            pk: keys::project_pk(project_id),
            start_after: None,
            done: false,
        }
    }

    async fn next(&mut self, service: &Service) -> Result<Option<Vec<ItemRecord>>, JobError> {
        if self.done {
            return Ok(None);
        }
        let mut query = Query::new(
            self.pk.clone(),
            SkRange::BeginsWith(keys::ITEM_SK_PREFIX.to_owned()),
            5000,
        );
        query.start_after = self.start_after.take();
        let page = service.table.query(query).await?;
        self.start_after = page.last_evaluated;
        self.done = self.start_after.is_none();
        page.items
            .into_iter()
            .map(|item| from_item_owned(item).map_err(JobError::Unavailable))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn image_format(key: &str) -> String {
    let extension = key.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "jpeg" | "jpe" | "jfif" => "jpg".to_owned(),
        "tif" => "tiff".to_owned(),
        other => other.to_owned(),
    }
}

fn flat_polygon(points: &[[f64; 2]]) -> Vec<f64> {
    points.iter().flat_map(|[x, y]| [*x, *y]).collect()
}

/// Rounds to 1/1000 of a unit, so floating noise does not bloat the file.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl Service {
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
        let project = self.load_project(actor, project_id).await?;
        let mut errors = ValidationErrors::default();
        let format = match input.format.as_deref() {
            Some("coco") => Some(ExportFormat::Coco),
            Some("jsonl") => Some(ExportFormat::Jsonl),
            _ => {
                errors.push("/format", "format is coco or jsonl");
                None
            }
        };
        let since = match &input.since {
            None | Some(Value::Null) => None,
            Some(value) => {
                let parsed = parse_time(value);
                if parsed.is_none() {
                    errors.push(
                        "/since",
                        "since is an RFC 3339 time, e.g. 2024-05-01T00:00:00Z",
                    );
                }
                parsed
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
            Some(self.read_manifest(project_id).await?.map_or(0, |m| m.total))
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
        };
        self.table
            .put(
                to_item(keys::export(project_id, &id), "export", &record)?,
                Some(Condition::NotExists),
            )
            .await?;
        let job = Job::Export {
            project_id: project_id.to_owned(),
            export_id: id.clone(),
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
        self.load_project(actor, project_id).await?;
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
        self.load_project(actor, project_id).await?;
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
                .put(to_item(key, "export", &record)?, None)
                .await?;
            return Ok(());
        }
        record.status = ExportStatus::Running;
        record.started_at = Some(started);
        record.attempts += 1;
        record.items_written = 0;
        record.annotations_written = 0;
        self.table
            .put(to_item(key.clone(), "export", &record)?, None)
            .await?;
        match self.write_export(&project, &mut record).await {
            Ok(()) => {
                record.status = ExportStatus::Succeeded;
                record.items_total = record.items_written;
                record.error = None;
                record.finished_at = Some(self.clock.now());
                self.table
                    .put(to_item(key, "export", &record)?, None)
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
                if let Err(put_error) = self.table.put(to_item(key, "export", &record)?, None).await
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

    /// Streams item records in item order, page by page, calling `visit` on each.
    async fn for_each_record<F>(&self, project_id: &str, mut visit: F) -> Result<(), JobError>
    where
        F: FnMut(ItemRecord) -> Result<(), JobError>,
    {
        let mut pages = ItemPages::new(project_id);
        while let Some(page) = pages.next(self).await? {
            page.into_iter().try_for_each(&mut visit)?;
        }
        Ok(())
    }

    async fn count_export_items(
        &self,
        project: &ProjectRecord,
        record: &ExportRecord,
    ) -> Result<u64, JobError> {
        if record.include_unlabeled {
            let total = self
                .read_manifest(&project.id)
                .await?
                .map_or(0, |m| m.total);
            return Ok(record.snapshot_items.map_or(total, |n| n.min(total)));
        }
        if record.since.is_none() {
            // The round's counter, without a pass over the items: labels made after the
            // snapshot make it an upper bound, and the final count replaces it.
            let stats = self
                .table
                .get(&keys::stats(&project.id, record.round))
                .await?;
            return Ok(stats.map_or(0, |s| {
                crate::service::number(&s.attrs, "labeled").max(0) as u64
            }));
        }
        let selection = Selection::of(record);
        let mut count = 0;
        self.for_each_record(&project.id, |item| {
            if selection.snapshot(item).is_some() {
                count += 1;
            }
            Ok(())
        })
        .await?;
        Ok(count)
    }

    async fn save_progress(&self, record: &ExportRecord) {
        let update = Update::default()
            .set("items_total", record.items_total)
            .set("items_written", record.items_written)
            .set("annotations_written", record.annotations_written);
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

    /// Width and height of an image no labeler has opened yet (for `include_unlabeled`).
    async fn header_size(&self, bucket: &str, key: &str) -> (Option<u32>, Option<u32>) {
        match self
            .blobs
            .get(
                bucket,
                key,
                Some(ByteRange {
                    start: 0,
                    end: 64 * 1024,
                }),
            )
            .await
        {
            Ok(head) => match imagesize::blob_size(&head) {
                Ok(size) => (Some(size.width as u32), Some(size.height as u32)),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        }
    }

    async fn write_coco(
        &self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        writer: &mut PartWriter<'_>,
    ) -> Result<(), JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let root = source.list_prefix().to_owned();
        let dataset_root = source.object_uri(&root);
        let info = json!({
            "description": format!("{} ({})", project.name, project.task_type.as_str()),
            "version": "1.0",
            "year": rfc3339(record.snapshot_at)[..4].parse::<i64>().unwrap_or(1970),
            "contributor": "labeling",
            "url": "",
            "date_created": rfc3339(record.snapshot_at),
            "project_id": project.id,
            "project_name": project.name,
            "export_id": record.id,
            "task_type": project.task_type.as_str(),
            "dataset_root": dataset_root,
        });
        writer.write(b"{\"info\":").await?;
        writer.write(&to_json_bytes("COCO info", &info)?).await?;
        writer.write(b",\"licenses\":[],\"images\":[").await?;

        // Pass 1: images.
        let selection = Selection::of(record);
        let include_unlabeled = record.include_unlabeled;
        let mut first = true;
        let mut written = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        let image_entry = |item: u64, key: &str, width: Option<u32>, height: Option<u32>| {
            let file_name = key.strip_prefix(root.as_str()).unwrap_or(key);
            json!({
                "id": item + 1,
                "file_name": file_name,
                "width": width,
                "height": height,
                "s3_uri": source.object_uri(key),
            })
        };
        if include_unlabeled {
            // Every item of the manifest, labeled or not, in item order.
            let manifest = self.read_manifest(&project.id).await?.unwrap_or_default();
            let total = record
                .snapshot_items
                .map_or(manifest.total, |n| n.min(manifest.total));
            // Item records come in item order: walk them beside the item ids, a page at a
            // time, so memory stays flat; images no labeler opened yet get their size from
            // their headers, many reads at a time.
            let mut pages = ItemPages::new(&project.id);
            let mut known: std::collections::VecDeque<ItemRecord> = Default::default();
            let mut start = 0u64;
            while start < total {
                let end = (start + INCLUDE_UNLABELED_BATCH).min(total);
                while known.back().is_none_or(|record| record.item < end) {
                    match pages.next(self).await? {
                        Some(page) => known.extend(page),
                        None => break,
                    }
                }
                let mut batch = Vec::with_capacity((end - start) as usize);
                for item in start..end {
                    while known.front().is_some_and(|record| record.item < item) {
                        known.pop_front();
                    }
                    let size = known
                        .front()
                        .filter(|record| record.item == item)
                        .and_then(|record| record.width.zip(record.height));
                    let key = self.item_key(&project.id, &manifest, item).await?;
                    batch.push((item, key, size));
                }
                let bucket = source.bucket();
                let sized: Vec<(u64, String, Option<u32>, Option<u32>)> =
                    futures::stream::iter(batch.into_iter().map(|(item, key, size)| async move {
                        let (width, height) = match size {
                            Some((w, h)) => (Some(w), Some(h)),
                            None => self.header_size(bucket, &key).await,
                        };
                        (item, key, width, height)
                    }))
                    .buffered(HEADER_READS_AT_ONCE)
                    .collect()
                    .await;
                for (item, key, width, height) in sized {
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut pending, &image_entry(item, &key, width, height))
                        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                    written += 1;
                }
                writer.write(&pending).await?;
                pending.clear();
                record.items_written = written;
                self.save_progress(record).await;
                start = end;
            }
        } else {
            let mut pages = ItemPages::new(&project.id);
            while let Some(page) = pages.next(self).await? {
                for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(
                        &mut pending,
                        &image_entry(item.item, &item.key, item.width, item.height),
                    )
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                    written += 1;
                }
                let uploaded = writer.write(&pending).await?;
                pending.clear();
                if uploaded {
                    record.items_written = written;
                    self.save_progress(record).await;
                }
            }
        }
        record.items_written = written;
        writer.write(b"],\"annotations\":[").await?;

        // Pass 2: annotations.
        let selection = Selection::of(record);
        let mut annotation_id = 0u64;
        let mut first = true;
        let mut pages = ItemPages::new(&project.id);
        while let Some(page) = pages.next(self).await? {
            for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                for label in &item.labels {
                    annotation_id += 1;
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(
                        &mut pending,
                        &coco_annotation(project.task_type, annotation_id, item.item + 1, label),
                    )
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                }
            }
            let uploaded = writer.write(&pending).await?;
            pending.clear();
            if uploaded {
                record.annotations_written = annotation_id;
                self.save_progress(record).await;
            }
        }
        record.annotations_written = annotation_id;
        writer.write(b"],\"categories\":").await?;
        let supercategory = if project.task_type.is_classification() {
            "class"
        } else {
            "object"
        };
        let categories: Vec<Value> = project
            .classes
            .iter()
            .map(|class| json!({ "id": class.id, "name": class.name, "supercategory": supercategory }))
            .collect();
        writer
            .write(&to_json_bytes("COCO categories", &categories)?)
            .await?;
        writer.write(b"}").await?;
        Ok(())
    }

    async fn write_jsonl(
        &self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        writer: &mut PartWriter<'_>,
    ) -> Result<(), JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let selection = Selection::of(record);
        let mut written = 0u64;
        let mut annotations = 0u64;
        let mut pending = Vec::new();
        let mut pages = ItemPages::new(&project.id);
        while let Some(page) = pages.next(self).await? {
            for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                annotations += item.labels.len() as u64;
                serde_json::to_writer(&mut pending, &jsonl_line(project, source, &item))
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                pending.push(b'\n');
                written += 1;
            }
            let uploaded = writer.write(&pending).await?;
            pending.clear();
            if uploaded {
                record.items_written = written;
                record.annotations_written = annotations;
                self.save_progress(record).await;
            }
        }
        record.items_written = written;
        record.annotations_written = annotations;
        Ok(())
    }
}

/// One COCO annotation: classification has no geometry; boxes have `segmentation: []`.
fn coco_annotation(task_type: TaskType, id: u64, image_id: u64, label: &StoredAnnotation) -> Value {
    if task_type.is_classification() {
        return json!({ "id": id, "image_id": image_id, "category_id": label.class_id, "iscrowd": 0 });
    }
    let bbox = label.bbox.unwrap_or_default().map(round3);
    let (segmentation, area) = match &label.polygon {
        Some(points) => (
            json!([flat_polygon(points)
                .into_iter()
                .map(round3)
                .collect::<Vec<_>>()]),
            shoelace_area(points),
        ),
        None => (json!([]), bbox[2] * bbox[3]),
    };
    json!({
        "id": id,
        "image_id": image_id,
        "category_id": label.class_id,
        "bbox": bbox,
        "area": round3(area),
        "segmentation": segmentation,
        "iscrowd": 0,
    })
}

/// One line in Azure ML AutoML's JSON Lines schema, coordinates normalized to 0..1.
fn jsonl_line(project: &ProjectRecord, source: &Source, item: &ItemRecord) -> Value {
    let name = |id: u32| project.class_name(id).unwrap_or("?").to_owned();
    let width = f64::from(item.width.unwrap_or(1).max(1));
    let height = f64::from(item.height.unwrap_or(1).max(1));
    let normalized = |value: f64, size: f64| (value / size * 1e6).round() / 1e6;
    let label = match project.task_type {
        TaskType::ImageClassificationMulticlass => {
            json!(item.labels.first().map(|l| name(l.class_id)))
        }
        TaskType::ImageClassificationMultilabel => json!(
            item.labels
                .iter()
                .map(|l| name(l.class_id))
                .collect::<Vec<_>>()
        ),
        TaskType::ObjectDetection => json!(
            item.labels
                .iter()
                .map(|l| {
                    let [x, y, w, h] = l.bbox.unwrap_or_default();
                    json!({
                        "label": name(l.class_id),
                        "topX": normalized(x, width),
                        "topY": normalized(y, height),
                        "bottomX": normalized(x + w, width),
                        "bottomY": normalized(y + h, height),
                        "isCrowd": 0,
                    })
                })
                .collect::<Vec<_>>()
        ),
        TaskType::InstanceSegmentation => json!(
            item.labels
                .iter()
                .map(|l| {
                    let polygon: Vec<f64> = l
                        .polygon
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|[x, y]| [normalized(*x, width), normalized(*y, height)])
                        .collect();
                    json!({ "label": name(l.class_id), "isCrowd": 0, "polygon": [polygon] })
                })
                .collect::<Vec<_>>()
        ),
    };
    json!({
        "image_url": source.object_uri(&item.key),
        "image_details": {
            "format": image_format(&item.key),
            "width": item.width.map(|w| format!("{w}px")),
            "height": item.height.map(|h| format!("{h}px")),
        },
        "label": label,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_time;
    use serde_json::json;

    #[test]
    fn parses_rfc3339_and_epoch_millis() {
        assert_eq!(parse_time(&json!("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(
            parse_time(&json!("2024-02-29T12:34:56.789Z")),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_time(&json!("2024-02-29T14:34:56.789+02:00")),
            Some(1_709_210_096_789)
        );
        assert_eq!(parse_time(&json!(1234)), Some(1234));
        assert_eq!(parse_time(&json!("yesterday")), None);
        assert_eq!(parse_time(&json!("2024-13-01T00:00:00Z")), None);
        assert_eq!(parse_time(&json!("400902-01-01T00:00:00Z")), None);
        assert_eq!(parse_time(&json!(12_589_000_000_000_000_i64)), None);
        assert_eq!(
            parse_time(&json!("9999-12-31T23:59:59.999Z")),
            Some(253_402_300_799_999)
        );
    }
}
