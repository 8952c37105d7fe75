//! Export: labels as COCO or as JSON Lines (Azure ML AutoML's schema), streamed page by page
//! into the project's bucket through a multipart upload, so memory stays flat however large the
//! project. The object appears whole or not at all: a multipart upload is invisible until it is
//! completed. A job works step by step (a page of items; a part) within the service's job time
//! budget, then saves a checkpoint (the upload, its parts, the bytes not yet a part, where the
//! walk is) and continues in a new message; a failed run resumes from the last checkpoint.
//!
//! One flow a file: `requests` starts, shows and lists exports; `run` is the job that writes
//! one; `checkpoint` is what a run leaves for the next; `snapshot` chooses the items it holds;
//! `coco` and `jsonl` write the two formats a step at a time; `part_writer` uploads the bytes
//! as a multipart upload.

mod checkpoint;
mod coco;
mod jsonl;
mod part_writer;
mod requests;
mod run;
mod snapshot;

use serde::{Deserialize, Serialize};

use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::ports::{BlobError, BoxError, TableError};
use crate::usecases::projects::ProjectError;

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
    /// Failed runs so far (an error, or a run that stopped holding the export: a crash, a
    /// timeout); continuations are not failures. The last allowed failure marks it failed.
    #[serde(default)]
    pub attempts: u32,
    /// Continuations sent so far: a message of an older generation is stale and dropped.
    #[serde(default)]
    pub generation: u64,
    /// Claims by runs so far; a claim is written on the count it read, so two runs that read
    /// the same record cannot both hold the export.
    #[serde(default)]
    pub claims: u64,
    /// The run that holds the export, and until when (epoch ms): a run still holding it past
    /// then has died; while it holds, other messages for the export wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<i64>,
    /// The latest checkpoint object in the system bucket, where the next run takes up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// Items listed at a time when an export lists unlabeled images too.
const INCLUDE_UNLABELED_BATCH: u64 = 1000;
/// Image header reads in flight at once for images no labeler has opened.
const HEADER_READS_AT_ONCE: usize = 32;

/// Runs of one export before it is marked failed (see [`crate::jobs::MAX_JOB_ATTEMPTS`]).
pub const MAX_EXPORT_ATTEMPTS: u32 = crate::jobs::MAX_JOB_ATTEMPTS;

#[derive(Debug, Clone, Default)]
pub struct ExportInput {
    pub format: Option<String>,
    /// Labels made before this are left out; `None` exports them all.
    pub since: Option<Since>,
    pub include_unlabeled: Option<bool>,
}

/// Where an export's labels begin, as the edge read it. A `since` that is not a time is
/// carried as such rather than refused there, so that it is reported only once access is
/// checked, and in one answer with the request's other problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Epoch milliseconds; refused outside [`TIME_RANGE_MS`].
    At(i64),
    /// Given, but neither an RFC 3339 time nor epoch milliseconds.
    NotATime,
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
    fn problem_type(&self) -> Option<&'static str> {
        match self {
            ExportError::NotReady(_) => Some("export-not-ready"),
            _ => None,
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

/// Export requests and the export job. Holds only the ports this area touches.
pub struct Exports<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
}
