//! ML assist: the runs that featurize a project's images with the backbone, train a head on
//! the labels so far, validate it on held-out labels, and turn the next window of unlabeled
//! items into prelabeled and clustered tasks. The state of a project's ML assist is one row
//! (`ML`: the run under way, the model in use, when the next run is due) and one row a run
//! (`RUN#ML#<id>`: its stages with times, metrics and errors); the model and its validation
//! report are one object in the system bucket.
//!
//! One flow a file: `due` (deciding a run is due, starting it), `stages` (the stage messages
//! and their bookkeeping), `featurize`, `train` (training and validation), `infer` (prelabels
//! and clusters), `view` (what `GET /projects/{id}/ml` shows).
//!
//! Deciding that a run is due costs the labeling requests nothing: it is done by a scheduled
//! check (every few minutes on AWS, every few seconds locally) that reads the round's counters
//! once a project, never by a submit.

use serde::{Deserialize, Serialize};

use crate::domain::errors::{DomainError, ErrorKind};
use crate::ports::{BlobError, BoxError, TableError};
use crate::usecases::projects::ProjectError;

mod detection;
mod due;
mod featurize;
mod infer;
mod stages;
mod train;
mod view;

pub use due::next_training_at;
pub use view::{MlClassView, MlRunView, MlStageView, MlView};

/// A run that made no progress for this long is taken to have died with its worker: the next
/// check may start another.
pub const STALE_RUN_MILLIS: i64 = 30 * 60 * 1000;
/// Labeled items a run waits for beyond the last training's, as a share: it retrains when
/// the labeled count has grown by a quarter.
pub const RETRAIN_GROWTH: f64 = 1.25;
/// Labels each class that has any needs before a training (fewer would give no threshold).
pub const MIN_LABELS_PER_CLASS: u64 = 10;
/// Upcoming items one inference takes off the shuffled order and turns into prelabeled and
/// clustered tasks: a bounded window, not the whole project (no row per image up front).
pub const WINDOW_ITEMS: u64 = 2_000;
/// A window is refilled when fewer than this many prelabeled and clustered items wait.
pub const REFILL_BELOW: u64 = WINDOW_ITEMS / 4;
/// Images embedded in one call of the backbone (the adapter batches within it).
pub const EMBED_BATCH: usize = 32;
/// Items a stored part of embeddings holds.
pub const PART_ITEMS: u64 = 1_000;
/// Runs shown on the runs page.
pub const RUNS_SHOWN: usize = 20;

/// The stages of a run, in order. Validation is part of `Train` (it trains on folds of the
/// labels before training on all), clustering part of `Infer`; each is reported on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Featurize,
    Train,
    Infer,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Featurize => "featurize",
            Stage::Train => "train",
            Stage::Infer => "infer",
        }
    }
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPurpose {
    /// Enough new labels: featurize, train, validate, infer.
    Train,
    /// The prelabeled and clustered queues ran low: featurize what is new, infer a new window
    /// with the model in use.
    Refill,
    /// Instance segmentation: featurize only (polygons are labeled by hand).
    Featurize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed)
    }
}

/// One reported step of a run (featurization, training, validation, inference, clustering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: RunStatus,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Figures of the step (images embedded and refused, accuracy, prelabeled items...).
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub error: Option<String>,
}

impl StepRecord {
    fn waiting(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            status: RunStatus::Queued,
            started_at: None,
            finished_at: None,
            metrics: Default::default(),
            error: None,
        }
    }
}

/// A run as stored (`P#<pid>` / `RUN#ML#<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub purpose: RunPurpose,
    /// Who or what started it: `labels`, `refill`, `admin`.
    pub trigger: String,
    pub status: RunStatus,
    pub round: u32,
    /// Labeled items when the run started.
    pub labels: u64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub steps: Vec<StepRecord>,
    /// The stage under way (or the last one, once the run ended).
    pub stage: Stage,
    /// Failed tries of the current stage (continuations do not count).
    #[serde(default)]
    pub attempts: u32,
    /// Committed continuations of the current stage.
    #[serde(default)]
    pub step: u64,
    /// The positions of the round's order this run's inference took: `[from, to)`.
    #[serde(default)]
    pub window: Option<(u64, u64)>,
    /// The backbone whose embeddings the run used.
    #[serde(default)]
    pub backbone: Option<String>,
    /// The run whose model the inference used (this run's after training, or the model in
    /// use for a refill).
    #[serde(default)]
    pub model_run: Option<String>,
    pub error: Option<String>,
}

impl RunRecord {
    fn step_mut(&mut self, name: &str) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|step| step.name == name)
    }
}

/// A project's ML-assist state (`P#<pid>` / `ML`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MlState {
    /// The run under way, and when it last made progress.
    pub active_run: Option<String>,
    pub active_since: Option<i64>,
    /// The run whose model prelabels now, and the round it was trained in.
    pub model_run: Option<String>,
    #[serde(default)]
    pub model_round: u32,
    /// Labeled items the model in use was trained on.
    #[serde(default)]
    pub labels_at_training: u64,
    /// Positions of the round's order featurized by the last featurization.
    #[serde(default)]
    pub featurized_total: u64,
    /// Optimistic concurrency, as on projects.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(
        "ML assist trains on image classification and object detection projects; this one is {0}"
    )]
    NotClassification(&'static str),
    #[error("ML assist is off in this project; turn it on in the project's settings (ml_assist)")]
    Off,
    #[error("an ML run is under way already: {0}")]
    RunUnderWay(String),
    #[error("the project is {0}; ML runs need it running")]
    NotRunning(&'static str),
    #[error("no ML run {0} in this project")]
    RunNotFound(String),
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
}

impl DomainError for MlError {
    fn kind(&self) -> ErrorKind {
        match self {
            MlError::Project(error) => error.kind(),
            MlError::NotClassification(_)
            | MlError::Off
            | MlError::RunUnderWay(_)
            | MlError::NotRunning(_) => ErrorKind::Conflict,
            MlError::RunNotFound(_) => ErrorKind::NotFound,
            MlError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn problem_type(&self) -> Option<&'static str> {
        match self {
            MlError::Project(error) => error.problem_type(),
            MlError::RunUnderWay(_) => Some("ml-run-under-way"),
            MlError::Off => Some("ml-assist-off"),
            MlError::NotClassification(_) => Some("ml-not-supported"),
            MlError::NotRunning(status) => Some(crate::domain::errors::not_running_problem(status)),
            _ => None,
        }
    }
}

impl From<TableError> for MlError {
    fn from(error: TableError) -> Self {
        MlError::Unavailable(Box::new(error))
    }
}

impl From<BlobError> for MlError {
    fn from(error: BlobError) -> Self {
        MlError::Unavailable(Box::new(error))
    }
}

impl From<crate::service::UnserializableRecord> for MlError {
    fn from(error: crate::service::UnserializableRecord) -> Self {
        MlError::Unavailable(Box::new(error))
    }
}

/// ML assist: runs, their stages and the runs page. Holds only the ports this area touches.
pub struct Ml<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
    pub(crate) cursors: &'a crate::usecases::labeling::CursorHints,
    pub(crate) embedder: &'a crate::service::EmbedderSlot,
}
