//! The request and response shapes of the HTTP API, each with its one conversion to or from the
//! use cases' types. The OpenAPI document is generated from these types (`crate::openapi`), so
//! what the handlers read and write and what the document says are the same code.

mod ml;
mod requests;
mod responses;
mod users;

use labeling_core::domain::project;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use ml::{
    MlAssist, MlAssistChange, MlAssistSettings, MlClass, MlCurvePoint, MlRun, MlStatus, MlStep,
};
pub use requests::{
    AddLabels, AddMember, AnnotationInput, ExportSince, ItemsQuery, NewDataset, NewExport,
    NewProject, ProjectPatch, Submission, SubmittedItem, UploadFile, UploadsRequest,
};
pub use responses::{
    Acceptance, BoxAcceptance, CheckedOutItem, CheckedOutTask, Dashboard, Dataset, DatasetList,
    Export, ExportList, FieldError, Health, Item, ItemPage, Label, Lease, Me, Pending, Prelabel,
    Progress, Project, ProjectList, Queues, RefreshView, ShapeLabel, SubmissionReceipt, UploadSlot,
    Uploads,
};
pub use users::{CreatedUser, NewUser};

/// A project's instructions for its labelers, as sent and as shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Instructions {
    /// At most 100,000 bytes (UTF-8).
    #[schema(max_length = 100000)]
    pub text: Option<String>,
    /// An http(s) URL with a host.
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = r"^https?://[^\s/?#][^\s]*$"
    )]
    pub url: Option<String>,
}

impl From<Instructions> for project::Instructions {
    fn from(instructions: Instructions) -> Self {
        Self {
            text: instructions.text,
            url: instructions.url,
        }
    }
}

impl From<project::Instructions> for Instructions {
    fn from(instructions: project::Instructions) -> Self {
        Self {
            text: instructions.text,
            url: instructions.url,
        }
    }
}

/// What a project asks of its labelers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    ImageClassificationMulticlass,
    ImageClassificationMultilabel,
    ObjectDetection,
    InstanceSegmentation,
}

/// Deleted projects are not shown (404).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    Initializing,
    Running,
    Paused,
    Failed,
}

/// `start_over_remove`: every item unlabeled again, labels dropped. `start_over_keep`: every
/// item unlabeled again, old labels shown as prelabels. `continue`: labeled items stay as they
/// are.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    StartOverRemove,
    StartOverKeep,
    Continue,
}

/// Which queue the task came from: `manual` fresh items, `requeued` released, rejected or
/// expired work.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Manual,
    Requeued,
    Prelabeled,
    Clustered,
}

impl From<labeling_core::domain::labeling::TaskKind> for TaskKind {
    fn from(kind: labeling_core::domain::labeling::TaskKind) -> Self {
        use labeling_core::domain::labeling::TaskKind as Core;
        match kind {
            Core::Manual => Self::Manual,
            Core::Requeued => Self::Requeued,
            Core::Prelabeled => Self::Prelabeled,
            Core::Clustered => Self::Clustered,
        }
    }
}

/// Where an item stands in the current round.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Labeled,
    Unlabeled,
    InTask,
    Skipped,
    Queued,
    Missing,
}

/// A caller's role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Labeler,
}

impl From<labeling_core::access::Role> for Role {
    fn from(role: labeling_core::access::Role) -> Self {
        match role {
            labeling_core::access::Role::Admin => Self::Admin,
            labeling_core::access::Role::Labeler => Self::Labeler,
        }
    }
}

/// An export's file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Coco,
    Jsonl,
}

/// The page sizes some task type allows, read from core's rule so the schema follows it:
/// 1, 4, 6 or 9 for classification; only 1 for detection and segmentation.
pub(crate) fn page_size_schema() -> utoipa::openapi::schema::Object {
    let mut sizes: Vec<u32> = project::TaskType::ALL
        .iter()
        .flat_map(|task_type| task_type.allowed_page_sizes().iter().copied())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some(sizes))
        .description(Some(
            "Items per task: 1, 4, 6 or 9 for classification; only 1 for detection and segmentation.",
        ))
        .build()
}
