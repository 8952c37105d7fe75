//! What `GET /projects/{id}/ml` shows: the settings, what ML assist waits for, the runs with
//! their steps, and per class the held-out precision/coverage curve with the threshold chosen
//! from it, so an admin sees why a class is or is not prelabeled.

use serde::Serialize;
use tracing::instrument;

use super::due::{Due, LabelCounts, decide, next_training_at};
use super::{Ml, MlError, RUNS_SHOWN, RunRecord};
use crate::access::Actor;
use crate::domain::ml_settings::MlAssist;
use crate::keys;
use crate::ports::{Query, SkRange};
use crate::service::from_item;
use crate::time::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct MlView {
    pub project_id: String,
    pub settings: MlAssist,
    /// `off`, `waiting` (for labels), `running`, `ready` (a model prelabels).
    pub status: &'static str,
    /// What ML assist waits for, in a sentence.
    pub waiting_for: Option<String>,
    pub labeled: u64,
    /// The labeled count at which the next training runs.
    pub next_training_at: Option<u64>,
    /// This process's backbone, or why it has none (on AWS the worker, not the API, runs it:
    /// see the runs' featurization metrics).
    pub backbone: Option<String>,
    pub backbone_unavailable: Option<String>,
    pub active_run: Option<String>,
    pub model_run: Option<String>,
    pub runs: Vec<MlRunView>,
    /// From the model in use: per class, the curve and the threshold.
    pub classes: Vec<MlClassView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MlRunView {
    pub id: String,
    pub purpose: super::RunPurpose,
    pub trigger: String,
    pub status: super::RunStatus,
    pub labels: u64,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub steps: Vec<MlStageView>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MlStageView {
    pub name: String,
    pub status: super::RunStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MlClassView {
    pub label: String,
    /// The lowest confidence at which held-out precision meets the target; none when it
    /// cannot, and then the class is not prelabeled.
    pub threshold: Option<f32>,
    pub reason: Option<String>,
    pub held_out: u64,
    pub precision: Option<f64>,
    /// For boxes, recall: the share of held-out true boxes found at the threshold.
    pub coverage: Option<f64>,
    /// Boxes only: COCO-style AP at IoU 0.5 on the held-out images.
    pub average_precision: Option<f64>,
    /// For boxes, coverage is recall and support the boxes predicted at the threshold.
    pub curve: Vec<super::train::CurvePointView>,
}

impl From<&RunRecord> for MlRunView {
    fn from(run: &RunRecord) -> Self {
        Self {
            id: run.id.clone(),
            purpose: run.purpose,
            trigger: run.trigger.clone(),
            status: run.status,
            labels: run.labels,
            created_at: rfc3339(run.created_at),
            finished_at: run.finished_at.map(rfc3339),
            steps: run
                .steps
                .iter()
                .map(|step| MlStageView {
                    name: step.name.clone(),
                    status: step.status,
                    started_at: step.started_at.map(rfc3339),
                    finished_at: step.finished_at.map(rfc3339),
                    metrics: step.metrics.clone(),
                    error: step.error.clone(),
                })
                .collect(),
            error: run.error.clone(),
        }
    }
}

impl Ml<'_> {
    #[instrument(skip(self), err)]
    pub async fn ml_view(&self, actor: &Actor, project_id: &str) -> Result<MlView, MlError> {
        crate::usecases::projects::require_admin(actor)?;
        let project = self.reader().load_project(actor, project_id).await?;
        let (state, counts, unhanded, total): (_, LabelCounts, _, _) =
            self.situation(&project).await?;
        let mut runs = Vec::new();
        let mut query = Query::new(
            keys::project_pk(project_id),
            SkRange::BeginsWith(keys::ML_RUN_SK_PREFIX.to_owned()),
            100,
        );
        loop {
            let page = self.table.query(query.clone()).await?;
            for item in &page.items {
                let run: RunRecord = from_item(item).map_err(MlError::Unavailable)?;
                runs.push(run);
            }
            match page.last_evaluated {
                Some(last) => query.start_after = Some(last),
                None => break,
            }
        }
        runs.reverse();
        runs.truncate(RUNS_SHOWN);
        let classes = match &state.model_run {
            Some(model_run) if state.model_round == project.round => {
                if project.task_type == crate::domain::project::TaskType::ObjectDetection {
                    self.box_class_views(&project, model_run).await?
                } else {
                    self.class_views(&project, model_run).await?
                }
            }
            _ => Vec::new(),
        };
        let (status, waiting_for) = if !project.ml_assist.enabled {
            ("off", None)
        } else if state.active_run.is_some() {
            ("running", None)
        } else {
            let due = decide(&project, &state, &counts, unhanded, total);
            let waiting = match due {
                Due::Waiting(reason) => Some(reason),
                Due::Run(..) => Some("a run is due at the next check".to_owned()),
            };
            if classes.is_empty() {
                ("waiting", waiting)
            } else {
                ("ready", waiting)
            }
        };
        let (backbone, backbone_unavailable) = match self.embedder.get() {
            Ok(embedder) => (
                Some(format!(
                    "{} on {}",
                    embedder.backbone().id,
                    embedder.backbone().execution_provider
                )),
                None,
            ),
            Err(reason) => (None, Some(reason)),
        };
        Ok(MlView {
            project_id: project.id.clone(),
            settings: project.ml_assist.clone(),
            status,
            waiting_for,
            labeled: counts.labeled,
            next_training_at: project
                .ml_assist
                .enabled
                .then(|| next_training_at(&project, &state)),
            backbone,
            backbone_unavailable,
            active_run: state.active_run.clone(),
            model_run: state.model_run.clone(),
            runs: runs.iter().map(MlRunView::from).collect(),
            classes,
        })
    }
}
