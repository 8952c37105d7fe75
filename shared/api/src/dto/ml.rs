//! ML assist as the API shows it: the settings a project carries, and the shape a request may
//! give them in.

use labeling_core::domain::ml_settings::MlAssist as CoreMlAssist;
use labeling_core::usecases::ml;
use serde::Serialize;
use utoipa::ToSchema;

/// A project's ML-assist settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlAssist {
    /// Whether a model trained on the labels so far prelabels and clusters the rest.
    pub enabled: bool,
    /// The precision a class's prelabels must reach on held-out labels before that class is
    /// prelabeled at all.
    #[schema(minimum = 0.5, maximum = 0.999)]
    pub target_precision: f64,
    /// Labels the project needs before the first training (and 10 for each class that has any).
    #[schema(minimum = 10, maximum = 500000)]
    pub min_labels: u32,
    /// The project's own ONNX backbone; EfficientNet-Lite0 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backbone: Option<OwnBackbone>,
}

/// An ONNX backbone in a bucket and how to feed it: input `[N, 3, input_size, input_size]` RGB,
/// each 0-255 pixel mapped to `(x - mean) / std` per channel after a centre crop keeping
/// `crop` of the shorter side; `embedding_output` names the `[N, D]` output.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnBackbone {
    /// `s3://bucket/key.onnx`.
    #[schema(examples("s3://models/resnet50.onnx"))]
    pub model: String,
    #[schema(minimum = 16, maximum = 2048, default = 224)]
    pub input_size: u32,
    #[schema(default = 0.875)]
    pub crop: f32,
    /// R, G, B on the 0-255 scale; torchvision's ImageNet mean by default.
    #[schema(min_items = 3, max_items = 3)]
    pub mean: [f32; 3],
    #[schema(min_items = 3, max_items = 3)]
    pub std: [f32; 3],
    #[schema(default = "embedding")]
    pub embedding_output: String,
}

impl From<CoreMlAssist> for MlAssist {
    fn from(settings: CoreMlAssist) -> Self {
        Self {
            enabled: settings.enabled,
            target_precision: settings.target_precision,
            min_labels: settings.min_labels,
            backbone: settings.backbone.map(|own| OwnBackbone {
                model: own.model,
                input_size: own.input_size,
                crop: own.crop,
                mean: own.mean,
                std: own.std,
                embedding_output: own.embedding_output,
            }),
        }
    }
}

/// ML assist in a request: `true` or `false` switches it (settings keep their values, or the
/// defaults 0.95 and 100), an object changes the fields it names.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum MlAssistChange {
    Switch(bool),
    Settings(MlAssistSettings),
}

/// The ML-assist fields a request changes; those left out keep their value.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MlAssistSettings {
    enabled: Option<bool>,
    #[schema(minimum = 0.5, maximum = 0.999)]
    target_precision: Option<f64>,
    #[schema(minimum = 10, maximum = 500000)]
    min_labels: Option<u32>,
    /// The project's own backbone (fields left out take their defaults); null: back to
    /// EfficientNet-Lite0.
    backbone: Option<OwnBackbone>,
}

/// What `GET /projects/{id}/ml` answers: the settings, what ML assist waits for, the runs and,
/// per class, the held-out curve and the threshold chosen from it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlStatus {
    pub project_id: String,
    pub settings: MlAssist,
    /// `off`, `waiting` (for labels), `running` (a run is under way), `ready` (a model
    /// prelabels).
    #[schema(examples("waiting"))]
    pub status: String,
    /// What ML assist waits for, in a sentence.
    #[schema(required = true)]
    pub waiting_for: Option<String>,
    /// Labeled items of the current round.
    pub labeled: u64,
    /// The labeled count at which the next training runs (when ML assist is on).
    #[schema(required = true)]
    pub next_training_at: Option<u64>,
    /// The backbone this server runs and where (`efficientnet-lite0 on cpu`); on AWS the GPU
    /// worker runs it, so see the featurization step's metrics instead.
    #[schema(required = true)]
    pub backbone: Option<String>,
    /// Why this server cannot embed images, when it cannot.
    #[schema(required = true)]
    pub backbone_unavailable: Option<String>,
    #[schema(required = true)]
    pub active_run: Option<String>,
    /// The run whose model prelabels now.
    #[schema(required = true)]
    pub model_run: Option<String>,
    /// The latest runs, newest first (at most 20).
    pub runs: Vec<MlRun>,
    /// Per class of the model in use.
    pub classes: Vec<MlClass>,
}

/// One ML run: featurization, then for classification training, validation, inference and
/// clustering.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlRun {
    pub id: String,
    /// `train` (new labels), `refill` (the prelabeled and clustered queues ran low), or
    /// `featurize` (detection and segmentation).
    pub purpose: String,
    /// What started it: `labels`, `refill`, `new_items`, `admin`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    /// Labeled items when it started.
    pub labels: u64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub finished_at: Option<String>,
    pub steps: Vec<MlStep>,
    #[schema(required = true)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlStep {
    /// `featurization`, `training`, `validation`, `inference` or `clustering`.
    pub name: String,
    pub status: String,
    #[schema(format = DateTime, required = true)]
    pub started_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub finished_at: Option<String>,
    /// The step's figures (images embedded and refused, accuracy, items prelabeled...).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// A class as the model in use sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlClass {
    pub label: String,
    /// The lowest confidence at which held-out precision meets the target with enough
    /// support; absent when none does, and then the class is not prelabeled.
    #[schema(required = true)]
    pub threshold: Option<f32>,
    /// Why there is no threshold.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// Held-out items of this class.
    pub held_out: u64,
    #[schema(required = true)]
    pub precision: Option<f64>,
    /// For boxes, recall: the share of held-out true boxes found at the threshold.
    #[schema(required = true)]
    pub coverage: Option<f64>,
    /// Object detection only: COCO-style average precision at IoU 0.5 on held-out images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_precision: Option<f64>,
    /// Precision and coverage (for boxes, recall) against the confidence threshold.
    pub curve: Vec<MlCurvePoint>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlCurvePoint {
    pub threshold: f32,
    /// Of the held-out items predicted this class at this threshold, the share truly of it.
    pub precision: f32,
    /// Of the held-out items truly of this class, the share predicted it at this threshold.
    pub coverage: f32,
    /// Held-out items predicted this class at this threshold.
    pub support: u32,
}

fn lower<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<ml::MlRunView> for MlRun {
    fn from(run: ml::MlRunView) -> Self {
        Self {
            id: run.id,
            purpose: lower(&run.purpose),
            trigger: run.trigger,
            status: lower(&run.status),
            labels: run.labels,
            created_at: run.created_at,
            finished_at: run.finished_at,
            steps: run
                .steps
                .into_iter()
                .map(|step| MlStep {
                    name: step.name,
                    status: lower(&step.status),
                    started_at: step.started_at,
                    finished_at: step.finished_at,
                    metrics: step.metrics,
                    error: step.error,
                })
                .collect(),
            error: run.error,
        }
    }
}

impl From<ml::MlView> for MlStatus {
    fn from(view: ml::MlView) -> Self {
        Self {
            project_id: view.project_id,
            settings: view.settings.into(),
            status: view.status.to_owned(),
            waiting_for: view.waiting_for,
            labeled: view.labeled,
            next_training_at: view.next_training_at,
            backbone: view.backbone,
            backbone_unavailable: view.backbone_unavailable,
            active_run: view.active_run,
            model_run: view.model_run,
            runs: view.runs.into_iter().map(MlRun::from).collect(),
            classes: view
                .classes
                .into_iter()
                .map(|class| MlClass {
                    label: class.label,
                    threshold: class.threshold,
                    reason: class.reason,
                    held_out: class.held_out,
                    precision: class.precision,
                    coverage: class.coverage,
                    average_precision: class.average_precision,
                    curve: class
                        .curve
                        .into_iter()
                        .map(|point| MlCurvePoint {
                            threshold: point.threshold,
                            precision: point.precision,
                            coverage: point.coverage,
                            support: point.support,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
