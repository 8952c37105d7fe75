//! Response shapes: what the handlers answer, each built once from the use case's view. The
//! wire shape is the contract (field names, fields left out, enum spellings), checked by the
//! black-box suite against the document generated from these types.

use std::collections::BTreeMap;

use labeling_core::Actor;
use labeling_core::domain::presented::{LabelView, PrelabelView};
use labeling_core::usecases::dashboard;
use labeling_core::usecases::datasets::{DatasetView, UploadSlot as CoreUploadSlot};
use labeling_core::usecases::export::{self, ExportView};
use labeling_core::usecases::labeling::{
    CheckedOutItem as CoreCheckedOutItem, CheckedOutTask as CoreCheckedOutTask, LeaseView,
    SubmissionReceipt as CoreReceipt,
};
use labeling_core::usecases::projects::ProjectView;
use labeling_core::usecases::refresh;
use labeling_core::usecases::review::{ItemPage as CoreItemPage, ItemView};

use super::MlAssist;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ExportFormat, Instructions, ItemState, ProjectStatus, Role, TaskKind, TaskType};

/// The answer of `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

/// The only status a live service reports.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

impl Health {
    pub fn ok() -> Self {
        Self {
            status: HealthStatus::Ok,
        }
    }
}

/// The caller, as its token names it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub role: Role,
}

impl From<&Actor> for Me {
    fn from(actor: &Actor) -> Self {
        Self {
            user: actor.user.clone(),
            role: actor.role.into(),
        }
    }
}

/// One offending field of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer into the request (query parameters as `/name`); empty for the whole body.
    pub pointer: String,
    pub detail: String,
}

/// A label class; its id is stable and never reused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelClass {
    /// Stable, never reused.
    #[schema(minimum = 1)]
    pub id: u32,
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
}

/// A project as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    #[schema(value_type = TaskType)]
    pub task_type: String,
    pub labels: Vec<LabelClass>,
    pub instructions: Instructions,
    #[schema(schema_with = super::page_size_schema)]
    pub page_size: u32,
    /// How long a checked-out task stays leased (30 seconds to 7 days).
    #[schema(minimum = 30, maximum = 604800)]
    pub lease_seconds: u32,
    pub source: String,
    #[schema(value_type = ProjectStatus)]
    pub status: String,
    /// Why the project failed, when it did.
    #[schema(required = true)]
    pub failure: Option<String>,
    /// Labeling round; starting over begins a new one.
    pub round: u32,
    pub incremental_refresh: bool,
    pub ml_assist: MlAssist,
    /// User names of the labelers; shown to admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The last refresh and the next scheduled one; on GET /projects/{id}, for admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshView>,
}

impl From<ProjectView> for Project {
    fn from(view: ProjectView) -> Self {
        Self {
            id: view.id,
            name: view.name,
            task_type: view.task_type.to_owned(),
            labels: view
                .labels
                .into_iter()
                .map(|class| LabelClass {
                    id: class.id,
                    name: class.name,
                })
                .collect(),
            instructions: view.instructions.into(),
            page_size: view.page_size,
            lease_seconds: view.lease_seconds,
            source: view.source,
            status: view.status.to_owned(),
            failure: view.failure,
            round: view.round,
            incremental_refresh: view.incremental_refresh,
            ml_assist: view.ml_assist.into(),
            members: view.members,
            created_by: view.created_by,
            created_at: view.created_at,
            updated_at: view.updated_at,
            refresh: view.refresh.map(RefreshView::from),
        }
    }
}

/// The projects the caller may see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// What the last refresh of a project did, and when the next one is due.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefreshView {
    #[schema(required = true, format = DateTime)]
    pub last_refresh_at: Option<String>,
    /// create, on_demand, retry, schedule, low_water or object_created
    #[schema(required = true)]
    pub last_refresh_trigger: Option<String>,
    pub items_added: u64,
    /// New images left out by the 500,000-item cap.
    pub items_dropped: u64,
    /// Manifest keys no longer in the source.
    pub files_removed: u64,
    /// Entries of the source the last listing left out because they could not be read:
    /// dangling links, FIFOs, sockets, devices, folders it may not open (local folders only;
    /// always 0 on S3).
    pub files_unreadable: u64,
    #[schema(required = true, format = DateTime)]
    pub next_scheduled_at: Option<String>,
    #[schema(required = true)]
    pub note: Option<String>,
}

impl From<refresh::RefreshView> for RefreshView {
    fn from(view: refresh::RefreshView) -> Self {
        Self {
            last_refresh_at: view.last_refresh_at,
            last_refresh_trigger: view.last_refresh_trigger,
            items_added: view.items_added,
            items_dropped: view.items_dropped,
            files_removed: view.files_removed,
            files_unreadable: view.files_unreadable,
            next_scheduled_at: view.next_scheduled_at,
            note: view.note,
        }
    }
}

/// Items not labeled yet, by where they wait.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pending {
    /// Never handed out this round and not waiting in a queue.
    pub not_in_task: u64,
    /// In a leased task.
    pub in_task: u64,
    /// In a waiting task of a priority queue.
    pub queued: u64,
}

/// Waiting tasks per queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Queues {
    pub manual: u64,
    pub requeued: u64,
    pub clustered: u64,
    pub prelabeled: u64,
}

/// Submitted items whose prelabels held a class, by what the labeler did with them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Acceptance {
    /// Submitted as proposed.
    pub accepted: u64,
    /// Changed, but keeping some of the proposed classes.
    pub edited: u64,
    /// None of the proposed classes kept.
    pub replaced: u64,
    /// `accepted` out of all three; null before any such item was submitted.
    #[schema(required = true, minimum = 0, maximum = 1)]
    pub acceptance_rate: Option<f64>,
}

impl From<dashboard::Acceptance> for Acceptance {
    fn from(view: dashboard::Acceptance) -> Self {
        Self {
            accepted: view.accepted,
            edited: view.edited,
            replaced: view.replaced,
            acceptance_rate: view.acceptance_rate,
        }
    }
}

/// Prelabel boxes of a class, box by box, by what the labeler did with them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BoxAcceptance {
    /// Kept where proposed (IoU at least 0.95, same class).
    pub accepted: u64,
    /// Moved, resized or relabeled (IoU at least 0.3).
    pub edited: u64,
    /// Removed.
    pub deleted: u64,
    /// Boxes of the class drawn where no prelabel box was.
    pub added: u64,
    /// `accepted` out of accepted, edited and deleted; null before any.
    #[schema(required = true, minimum = 0, maximum = 1)]
    pub acceptance_rate: Option<f64>,
}

impl From<dashboard::BoxAcceptance> for BoxAcceptance {
    fn from(view: dashboard::BoxAcceptance) -> Self {
        Self {
            accepted: view.accepted,
            edited: view.edited,
            deleted: view.deleted,
            added: view.added,
            acceptance_rate: view.acceptance_rate,
        }
    }
}

/// A project's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dashboard {
    pub project_id: String,
    #[schema(value_type = ProjectStatus)]
    pub status: String,
    pub round: u32,
    pub total_items: u64,
    pub labeled: u64,
    pub skipped: u64,
    /// Images that could not be read when handed out.
    pub missing: u64,
    /// Objects of the source left out of the listing.
    pub dropped: u64,
    pub pending: Pending,
    pub queues: Queues,
    /// Labels given per class name this round.
    pub label_distribution: BTreeMap<String, u64>,
    /// Per class name, what labelers did this round with the prelabels that held the class
    /// (an item counts once under each class of its prelabels).
    pub prelabel_acceptance: BTreeMap<String, Acceptance>,
    /// Per class name, what labelers did this round with each prelabel box (accepted,
    /// edited and deleted count under the prelabel's class, added under the drawn box's);
    /// classes without a count are left out.
    pub box_acceptance: BTreeMap<String, BoxAcceptance>,
    #[schema(required = true, format = DateTime)]
    pub last_refresh_at: Option<String>,
    #[schema(required = true)]
    pub last_refresh_trigger: Option<String>,
    pub refresh: RefreshView,
    /// With ML assist on: the labeled count at which the next training runs, the run under
    /// way and the run whose model prelabels (`GET /projects/{id}/ml` has the details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ml: Option<DashboardMl>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DashboardMl {
    pub next_training_at: u64,
    #[schema(required = true)]
    pub active_run: Option<String>,
    #[schema(required = true)]
    pub model_run: Option<String>,
}

impl From<dashboard::Dashboard> for Dashboard {
    fn from(view: dashboard::Dashboard) -> Self {
        Self {
            project_id: view.project_id,
            status: view.status.to_owned(),
            round: view.round,
            total_items: view.total_items,
            labeled: view.labeled,
            skipped: view.skipped,
            missing: view.missing,
            dropped: view.dropped,
            pending: Pending {
                not_in_task: view.pending.not_in_task,
                in_task: view.pending.in_task,
                queued: view.pending.queued,
            },
            queues: Queues {
                manual: view.queues.manual,
                requeued: view.queues.requeued,
                clustered: view.queues.clustered,
                prelabeled: view.queues.prelabeled,
            },
            label_distribution: view.label_distribution,
            prelabel_acceptance: view
                .prelabel_acceptance
                .into_iter()
                .map(|(class, acceptance)| (class, acceptance.into()))
                .collect(),
            box_acceptance: view
                .box_acceptance
                .into_iter()
                .map(|(class, acceptance)| (class, acceptance.into()))
                .collect(),
            last_refresh_at: view.last_refresh_at,
            last_refresh_trigger: view.last_refresh_trigger,
            refresh: view.refresh.into(),
            ml: view.ml.map(|ml| DashboardMl {
                next_training_at: ml.next_training_at,
                active_run: ml.active_run,
                model_run: ml.model_run,
            }),
        }
    }
}

/// One label as a client reads it: a class name for classification; `{label, bbox}` for
/// detection; `{label, bbox, polygon}` for segmentation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Label {
    Class(String),
    Shape(ShapeLabel),
}

/// A named shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShapeLabel {
    pub label: String,
    /// `[x, y, width, height]` in image pixels.
    #[schema(required = true, min_items = 4, max_items = 4)]
    pub bbox: Option<Vec<f64>>,
    /// `[[x, y], ...]` in image pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 3)]
    pub polygon: Option<Vec<Vec<f64>>>,
}

impl From<LabelView> for Label {
    fn from(view: LabelView) -> Self {
        match view {
            LabelView::Class(name) => Self::Class(name),
            LabelView::Shape(shape) => Self::Shape(ShapeLabel {
                label: shape.label,
                bbox: shape.bbox.map(|bbox| bbox.to_vec()),
                polygon: shape
                    .polygon
                    .map(|points| points.iter().map(|point| point.to_vec()).collect()),
            }),
        }
    }
}

fn labels(views: Vec<LabelView>) -> Vec<Label> {
    views.into_iter().map(Label::from).collect()
}

/// A prelabel: a class, for detection its box, for segmentation its polygon too, and the
/// model's confidence when a model made it (absent on an earlier round's labels kept as
/// prelabels). Always an object, whatever the task type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prelabel {
    pub label: String,
    /// `[x, y, width, height]` in image pixels; detection and segmentation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 4, max_items = 4)]
    pub bbox: Option<Vec<f64>>,
    /// `[[x, y], ...]` in image pixels; segmentation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 3)]
    pub polygon: Option<Vec<Vec<f64>>>,
    /// The model's confidence in this label, 0 to 1, as the 32-bit float it is stored as
    /// (printed as the shortest decimal that reads back the same, e.g. 0.97).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: Option<f32>,
}

impl From<PrelabelView> for Prelabel {
    fn from(view: PrelabelView) -> Self {
        Self {
            label: view.label,
            bbox: view.bbox.map(|bbox| bbox.to_vec()),
            polygon: view
                .polygon
                .map(|points| points.iter().map(|point| point.to_vec()).collect()),
            confidence: view.confidence,
        }
    }
}

/// A checked-out task as the labeler receives it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckedOutTask {
    pub task_id: String,
    pub kind: TaskKind,
    #[schema(format = DateTime)]
    pub lease_expires_at: String,
    #[schema(value_type = TaskType)]
    pub task_type: String,
    pub instructions: Instructions,
    /// The project's class names.
    pub labels: Vec<String>,
    #[schema(min_items = 1)]
    pub items: Vec<CheckedOutItem>,
}

/// One image of a checked-out task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckedOutItem {
    pub item_id: u64,
    /// Object key in the source bucket.
    pub key: String,
    /// Short-lived signed URL of the image.
    #[schema(format = "uri")]
    pub image_url: String,
    #[schema(required = true, minimum = 1)]
    pub width: Option<u32>,
    #[schema(required = true, minimum = 1)]
    pub height: Option<u32>,
    /// What a model (or an earlier round, after a start-over that kept labels) proposes; in
    /// a task of kind `prelabeled`, with the model's confidences.
    pub prelabels: Vec<Prelabel>,
}

impl From<CoreCheckedOutTask> for CheckedOutTask {
    fn from(task: CoreCheckedOutTask) -> Self {
        Self {
            task_id: task.task_id,
            kind: task.kind.into(),
            lease_expires_at: task.lease_expires_at,
            task_type: task.task_type.to_owned(),
            instructions: task.instructions.into(),
            labels: task.labels,
            items: task.items.into_iter().map(CheckedOutItem::from).collect(),
        }
    }
}

impl From<CoreCheckedOutItem> for CheckedOutItem {
    fn from(item: CoreCheckedOutItem) -> Self {
        Self {
            item_id: item.item_id,
            key: item.key,
            image_url: item.image_url,
            width: item.width,
            height: item.height,
            prelabels: item.prelabels.into_iter().map(Prelabel::from).collect(),
        }
    }
}

/// A renewed lease.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lease {
    pub task_id: String,
    #[schema(format = DateTime)]
    pub lease_expires_at: String,
}

impl From<LeaseView> for Lease {
    fn from(view: LeaseView) -> Self {
        Self {
            task_id: view.task_id,
            lease_expires_at: view.lease_expires_at,
        }
    }
}

/// What a submission stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubmissionReceipt {
    pub task_id: String,
    pub labeled: u64,
    pub skipped: u64,
}

impl From<CoreReceipt> for SubmissionReceipt {
    fn from(receipt: CoreReceipt) -> Self {
        Self {
            task_id: receipt.task_id,
            labeled: receipt.labeled as u64,
            skipped: receipt.skipped as u64,
        }
    }
}

/// One item of a project, for review.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Item {
    pub item_id: u64,
    pub key: String,
    /// `s3://` (or `file://`) URI of the image.
    pub uri: String,
    /// Short-lived signed URL of the image (15 minutes, as a checkout's).
    #[schema(format = "uri")]
    pub image_url: String,
    #[schema(value_type = ItemState)]
    pub state: String,
    pub labels: Vec<Label>,
    #[schema(required = true)]
    pub labeled_by: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub labeled_at: Option<String>,
    #[schema(required = true, minimum = 1)]
    pub width: Option<u32>,
    #[schema(required = true, minimum = 1)]
    pub height: Option<u32>,
}

/// A page of items.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; null on the last page. A page may hold fewer items
    /// than `limit`, even none, and still have a next one: each request reads at most 2,000
    /// item records, so a rare state in a large project is found over several requests.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl From<CoreItemPage> for ItemPage {
    fn from(page: CoreItemPage) -> Self {
        Self {
            items: page.items.into_iter().map(Item::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

impl From<ItemView> for Item {
    fn from(item: ItemView) -> Self {
        Self {
            item_id: item.item_id,
            key: item.key,
            uri: item.uri,
            image_url: item.image_url,
            state: item.state.to_owned(),
            labels: labels(item.labels),
            labeled_by: item.labeled_by,
            labeled_at: item.labeled_at,
            width: item.width,
            height: item.height,
        }
    }
}

/// Where an export run stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// An export run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Export {
    pub id: String,
    pub project_id: String,
    pub format: ExportFormat,
    pub status: ExportStatus,
    #[schema(required = true, format = DateTime)]
    pub since: Option<String>,
    pub include_unlabeled: bool,
    /// The export holds what was labeled at this instant.
    #[schema(format = DateTime)]
    pub snapshot_at: String,
    /// `s3://bucket/export/<format>/<project-name>/<export-id>.<json|jsonl>`
    pub location: String,
    pub progress: Progress,
    /// Signed GET URL (1 hour), once succeeded.
    #[schema(required = true)]
    pub download_url: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true, format = DateTime)]
    pub started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// How far an export has got.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Progress {
    pub items_written: u64,
    pub items_total: u64,
    pub annotations_written: u64,
}

impl From<ExportView> for Export {
    fn from(view: ExportView) -> Self {
        Self {
            id: view.id,
            project_id: view.project_id,
            format: match view.format {
                export::ExportFormat::Coco => ExportFormat::Coco,
                export::ExportFormat::Jsonl => ExportFormat::Jsonl,
            },
            status: match view.status {
                export::ExportStatus::Queued => ExportStatus::Queued,
                export::ExportStatus::Running => ExportStatus::Running,
                export::ExportStatus::Succeeded => ExportStatus::Succeeded,
                export::ExportStatus::Failed => ExportStatus::Failed,
            },
            since: view.since,
            include_unlabeled: view.include_unlabeled,
            snapshot_at: view.snapshot_at,
            location: view.location,
            progress: Progress {
                items_written: view.progress.items_written,
                items_total: view.progress.items_total,
                annotations_written: view.progress.annotations_written,
            },
            download_url: view.download_url,
            created_at: view.created_at,
            started_at: view.started_at,
            finished_at: view.finished_at,
            error: view.error,
        }
    }
}

/// A project's export runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportList {
    pub exports: Vec<Export>,
}

/// A dataset of uploaded images.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dataset {
    pub name: String,
    pub description: String,
    /// `dataset:<name>`, usable as a project source.
    pub source: String,
    pub location: String,
    /// Files and bytes in the dataset's folder at the last count (`counted_at`). Reading a
    /// dataset never lists its folder: uploads queue a count, so these follow within seconds of
    /// an upload; files deleted from the bucket by hand show at the next upload's count.
    pub files: u64,
    pub bytes: u64,
    /// When `files` and `bytes` were counted; null until the first count, then under way.
    #[schema(format = DateTime, required = true)]
    pub counted_at: Option<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<DatasetView> for Dataset {
    fn from(view: DatasetView) -> Self {
        Self {
            name: view.name,
            description: view.description,
            source: view.source,
            location: view.location,
            files: view.files,
            bytes: view.bytes,
            counted_at: view.counted_at,
            created_by: view.created_by,
            created_at: view.created_at,
        }
    }
}

/// The datasets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

/// Where to send each file of an upload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Uploads {
    pub uploads: Vec<UploadSlot>,
}

/// One file of an upload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadSlot {
    pub name: String,
    pub key: String,
    /// Signed PUT URL (absent when `skip`); send the file with exactly the `headers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers the PUT must carry, each with exactly this value (they are signed; another
    /// value, or none, is refused with 403): `content-type` always (not the browser's
    /// `file.type`, which is empty or different for `.jpe` or `.jfif`), and
    /// `x-amz-checksum-sha256` (base64 of the digest) when the request gave the file's
    /// `sha256`: a body with another digest is then refused with 400 and nothing is stored.
    /// Empty when `skip`.
    #[schema(example = json!({ "content-type": "image/jpeg" }))]
    pub headers: BTreeMap<String, String>,
    /// The same file is already there: its size and stored SHA-256 match the request's. Only
    /// files uploaded with their `sha256` have a stored SHA-256 on S3; any other file is
    /// uploaded again (one more PUT, where hashing every existing file would outlast API
    /// Gateway's 30 seconds).
    pub skip: bool,
}

impl From<CoreUploadSlot> for UploadSlot {
    fn from(slot: CoreUploadSlot) -> Self {
        Self {
            name: slot.name,
            key: slot.key,
            url: slot.url,
            headers: slot.headers,
            skip: slot.skip,
        }
    }
}
