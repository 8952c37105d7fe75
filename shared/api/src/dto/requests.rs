//! Request shapes: bodies and queries as the handlers read them, each converted once into the
//! use cases' typed inputs. Field-by-field shape errors point at the field, as the use cases'
//! own checks do. Every field a client may leave out is `#[serde(default)]` here, so that a
//! missing field reaches the use case and is reported with the request's other problems; the
//! schema still says which fields a valid request carries.

use labeling_core::domain::ValidationErrors;
use labeling_core::domain::labeling::{
    AnnotationInput as CoreAnnotation, SubmissionInput, SubmittedItemInput,
};
use labeling_core::domain::ml_settings::MlAssistInput;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::domain::project::{Instructions as CoreInstructions, NewProjectInput};
use labeling_core::time::parse_rfc3339;
use labeling_core::usecases::datasets::{NewDatasetInput, UploadFileInput, UploadsInput};
use labeling_core::usecases::export::{ExportInput, Since};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{ExportFormat, Instructions, LabelMode, MlAssistChange, TaskType};

/// The body of `POST /projects`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewProject {
    /// Trimmed; compared case-insensitively; no control, bidirectional-override or invisible
    /// formatting characters, no '/' or '\\', not '.' or '..' (it names export folders).
    /// Unique and never reused.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub name: String,
    #[serde(default)]
    #[schema(required = true, value_type = TaskType)]
    pub task_type: String,
    /// 1 to 500 class names, at most 65,536 bytes (UTF-8) together. Each is trimmed, not
    /// blank, at most 256 characters, with no control, bidirectional-override or invisible
    /// formatting characters, and unique in the project ignoring case.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 500)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub instructions: Option<Instructions>,
    /// `s3://bucket/prefix-with-glob` (e.g. `s3://photos/cats/**/*.jpg`), or
    /// `file:///absolute/path/glob` where the deployment allows it.
    #[serde(default)]
    #[schema(required = true, max_length = 2048, examples("s3://photos/cats/**"))]
    pub source: String,
    /// Items per task (1 when left out).
    #[serde(default)]
    #[schema(schema_with = super::page_size_schema)]
    pub page_size: Option<u32>,
    /// How long a checked-out task stays leased (30 seconds to 7 days).
    #[serde(default)]
    #[schema(minimum = 30, maximum = 604800, default = 3600)]
    pub lease_seconds: Option<u32>,
    #[serde(default)]
    #[schema(default = false)]
    pub incremental_refresh: Option<bool>,
    /// Off when left out.
    #[serde(default)]
    #[schema(value_type = Option<MlAssistChange>)]
    pub ml_assist: Option<MlAssistInput>,
}

impl From<NewProject> for NewProjectInput {
    fn from(request: NewProject) -> Self {
        Self {
            name: request.name,
            task_type: request.task_type,
            labels: request.labels,
            instructions: request.instructions.map(CoreInstructions::from),
            source: request.source,
            page_size: request.page_size,
            lease_seconds: request.lease_seconds,
            incremental_refresh: request.incremental_refresh,
            ml_assist: request.ml_assist,
        }
    }
}

/// The body of `PATCH /projects/{id}`: only the fields given change. Kept as a JSON object
/// until converted, so that every wrong field (a fixed one, an unknown one, a wrong type) is
/// named with its pointer in one answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct ProjectPatch(pub Map<String, Value>);

impl TryFrom<ProjectPatch> for ProjectChanges {
    type Error = ValidationErrors;

    fn try_from(patch: ProjectPatch) -> Result<Self, Self::Error> {
        let mut errors = ValidationErrors::default();
        let mut changes = ProjectChanges::default();
        for (name, value) in patch.0 {
            let pointer = format!("/{name}");
            match name.as_str() {
                "instructions" => match serde_json::from_value::<Instructions>(value) {
                    Ok(parsed) => changes.instructions = Some(parsed.into()),
                    Err(_) => errors.push(pointer, "expected {\"text\": ..., \"url\": ...}"),
                },
                "lease_seconds" => match value.as_u64().and_then(|v| u32::try_from(v).ok()) {
                    Some(seconds) => changes.lease_seconds = Some(seconds),
                    None => errors.push(pointer, "expected a whole number of seconds"),
                },
                "incremental_refresh" => match value.as_bool() {
                    Some(on) => changes.incremental_refresh = Some(on),
                    None => errors.push(pointer, "expected true or false"),
                },
                "ml_assist" => match serde_json::from_value::<MlAssistInput>(value) {
                    Ok(input) => changes.ml_assist = Some(input),
                    Err(error) => errors.push(pointer, error.to_string()),
                },
                "task_type" | "source" | "page_size" | "name" => {
                    errors.push(pointer, format!("{name} cannot change after creation"));
                }
                "labels" => errors.push(
                    pointer,
                    "add label classes with POST /projects/{id}/labels and a mode",
                ),
                _ => errors.push(pointer, "unknown field"),
            }
        }
        errors.into_result().map(|()| changes)
    }
}

/// The settings `PATCH /projects/{id}` may change; only the fields given change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProjectPatch)]
#[allow(dead_code)]
struct ProjectPatchFields {
    instructions: Option<Instructions>,
    /// How long a checked-out task stays leased (30 seconds to 7 days).
    #[schema(minimum = 30, maximum = 604800)]
    lease_seconds: Option<u32>,
    incremental_refresh: Option<bool>,
    #[schema(value_type = Option<MlAssistChange>)]
    ml_assist: Option<MlAssistInput>,
}

impl utoipa::PartialSchema for ProjectPatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ProjectPatchFields::schema()
    }
}

impl ToSchema for ProjectPatch {
    fn name() -> std::borrow::Cow<'static, str> {
        ProjectPatchFields::name()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        ProjectPatchFields::schemas(schemas);
    }
}

/// The body of `POST /projects/{id}/labels`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddLabels {
    /// New class names, not already in the project (ignoring case); at most 500 classes and
    /// 65,536 bytes (UTF-8) of class names in all.
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    pub labels: Vec<String>,
    #[serde(default)]
    #[schema(required = true, value_type = LabelMode)]
    pub mode: Option<String>,
}

impl AddLabels {
    /// The class names and the mode, as the use case takes them.
    pub fn into_domain(self) -> (Vec<String>, Option<String>) {
        (self.labels, self.mode)
    }
}

/// The body of `POST /projects/{id}/members`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddMember {
    /// User name, at most 128 bytes (UTF-8); trimmed; compared case-insensitively; no control,
    /// bidirectional-override or invisible formatting characters. Where the service keeps the
    /// users (the embedded default) it must name an existing user (else 404) and is stored
    /// under that user's spelling. At most 1,000 members a project.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub user: String,
}

/// The body of `POST /projects/{id}/tasks/{task_id}/submit`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(examples(
    json!({ "items": [{ "item_id": 17, "labels": ["cat"] }, { "item_id": 42, "skip": true }] }),
    json!({ "items": [{ "item_id": 3, "annotations": [{ "label": "car", "bbox": [10, 20, 120, 80] }] }] }),
    json!({ "items": [{ "item_id": 5, "annotations": [{ "label": "car", "polygon": [[10, 20], [130, 20], [70, 100]] }] }] }),
))]
pub struct Submission {
    #[serde(default)]
    #[schema(required = true)]
    pub items: Vec<SubmittedItem>,
}

/// One item of the task: classification gives `labels` (exactly one for multiclass, one or
/// more for multilabel); detection and segmentation give `annotations` (empty means nothing to
/// mark); `skip: true` skips the item and carries no labels.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct SubmittedItem {
    #[schema(required = true, minimum = 0)]
    pub item_id: Option<u64>,
    /// Class names, each at most once.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// At most 1,000 boxes or polygons an image, and at most 1,000 polygon points in all.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub annotations: Option<Vec<AnnotationInput>>,
    #[serde(default)]
    pub skip: Option<bool>,
}

/// A box for object detection, a polygon for instance segmentation (its box is derived).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AnnotationInput {
    #[serde(default)]
    #[schema(required = true)]
    pub label: String,
    /// `[x, y, width, height]` in image pixels; width and height > 0. Shapes may poke out by
    /// at most 1 pixel and are clamped to the image.
    #[serde(default)]
    #[schema(min_items = 4, max_items = 4)]
    pub bbox: Option<Vec<f64>>,
    /// `[[x, y], ...]` in image pixels: 3 to 1,000 points, non-zero area, inside the image
    /// (1 pixel tolerance).
    #[serde(default)]
    #[schema(min_items = 3, max_items = 1000)]
    pub polygon: Option<Vec<Vec<f64>>>,
}

impl From<Submission> for SubmissionInput {
    fn from(submission: Submission) -> Self {
        Self {
            items: submission
                .items
                .into_iter()
                .map(|item| SubmittedItemInput {
                    item_id: item.item_id,
                    labels: item.labels,
                    annotations: item.annotations.map(|annotations| {
                        annotations
                            .into_iter()
                            .map(|a| CoreAnnotation {
                                label: a.label,
                                bbox: a.bbox,
                                polygon: a.polygon,
                            })
                            .collect()
                    }),
                    skip: item.skip,
                })
                .collect(),
        }
    }
}

/// The query of `GET /projects/{id}/items`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Which items to list. `unlabeled`: not labeled, skipped, leased, queued or missing in
    /// the current round.
    #[param(value_type = Option<super::ItemState>, default = "labeled")]
    pub state: Option<String>,
    /// `next_cursor` of the previous page; absent or empty for the first page.
    pub cursor: Option<String>,
    /// Page size; values outside 1..500 are clamped, a non-number is a 422 at `/limit`.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<usize>,
}

/// The body of `POST /datasets`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewDataset {
    #[serde(default)]
    #[schema(required = true, pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub name: String,
    /// At most 10,000 bytes of UTF-8 (422 pointing at /description above).
    #[serde(default)]
    pub description: Option<String>,
}

impl From<NewDataset> for NewDatasetInput {
    fn from(request: NewDataset) -> Self {
        Self {
            name: request.name,
            description: request.description,
        }
    }
}

/// The body of `POST /datasets/{name}/uploads`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UploadsRequest {
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 1000)]
    pub files: Vec<UploadFile>,
}

/// A file to upload: a path relative to the dataset (e.g. `cats/a.jpg`), or that path with the
/// file's size and SHA-256 (hex). With a SHA-256 the PUT is signed with the checksum (the store
/// refuses a body with another digest and keeps the checksum), and a file already stored with
/// that size and checksum is skipped without being read.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UploadFile {
    Name(String),
    Described {
        name: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        #[schema(pattern = "^[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
}

impl From<UploadsRequest> for UploadsInput {
    fn from(request: UploadsRequest) -> Self {
        Self {
            files: request
                .files
                .into_iter()
                .map(|file| match file {
                    UploadFile::Name(name) => UploadFileInput::Name(name),
                    UploadFile::Described { name, size, sha256 } => {
                        UploadFileInput::Described { name, size, sha256 }
                    }
                })
                .collect(),
        }
    }
}

/// The body of `POST /projects/{id}/exports`. `since` is RFC 3339 or epoch milliseconds, read
/// here so the use case is given a time; the use case reports one that is not, with the other
/// fields' problems.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewExport {
    #[serde(default)]
    #[schema(required = true, value_type = ExportFormat)]
    pub format: Option<String>,
    /// Only items labeled at or after this time: RFC 3339 (years 0000-9999) or epoch
    /// milliseconds in the same range.
    #[serde(default)]
    #[schema(value_type = Option<ExportSince>)]
    pub since: Option<Value>,
    /// COCO only: also list images nobody labeled yet.
    #[serde(default)]
    #[schema(default = false)]
    pub include_unlabeled: Option<bool>,
}

/// The documented shape of `since`: an RFC 3339 time or epoch milliseconds.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ExportSince {
    #[schema(format = DateTime)]
    Time(String),
    Millis(i64),
}

impl From<NewExport> for ExportInput {
    fn from(request: NewExport) -> Self {
        Self {
            format: request.format,
            since: request.since.as_ref().and_then(read_since),
            include_unlabeled: request.include_unlabeled,
        }
    }
}

/// `null` is no `since` at all, as an absent field is.
fn read_since(value: &Value) -> Option<Since> {
    if value.is_null() {
        return None;
    }
    let ms = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => parse_rfc3339(text),
        _ => None,
    };
    Some(ms.map_or(Since::NotATime, Since::At))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn since_of(body: Value) -> Option<Since> {
        let request: NewExport = serde_json::from_value(body).unwrap_or_default();
        ExportInput::from(request).since
    }

    #[test]
    fn since_is_read_from_rfc3339_or_epoch_millis() {
        assert_eq!(
            since_of(json!({ "since": "1970-01-01T00:00:00Z" })),
            Some(Since::At(0))
        );
        assert_eq!(
            since_of(json!({ "since": "2024-02-29T12:34:56.789Z" })),
            Some(Since::At(1_709_210_096_789))
        );
        assert_eq!(
            since_of(json!({ "since": "2024-02-29T14:34:56.789+02:00" })),
            Some(Since::At(1_709_210_096_789))
        );
        assert_eq!(
            since_of(json!({ "since": "9999-12-31T23:59:59.999Z" })),
            Some(Since::At(253_402_300_799_999))
        );
        assert_eq!(since_of(json!({ "since": 1234 })), Some(Since::At(1234)));
    }

    #[test]
    fn a_since_that_is_not_a_time_reaches_the_use_case_as_not_a_time() {
        for since in [
            json!("yesterday"),
            json!("2024-13-01T00:00:00Z"),
            json!("400902-01-01T00:00:00Z"),
            json!(1.5),
            json!(true),
            json!([1]),
        ] {
            assert_eq!(
                since_of(json!({ "since": since })),
                Some(Since::NotATime),
                "{since}"
            );
        }
    }

    #[test]
    fn an_absent_or_null_since_exports_every_label() {
        assert_eq!(since_of(json!({})), None);
        assert_eq!(since_of(json!({ "since": null })), None);
    }
}
