//! Training and validation: the round's labeled items with their stored embeddings, a head
//! trained on every fold but one and scored on the one left out (see
//! `domain::ml::validation`), per class the precision/coverage curve and the lowest threshold
//! meeting the project's target, then the head trained on every label. The model (head and
//! report) is one object in the system bucket; the ML row points at it once it is written.
//!
//! Deterministic: the seed is the project's, so a retried training gives the same model.

use serde::{Deserialize, Serialize};

use super::stages::StageOutcome;
use super::view::MlClassView;
use super::{Ml, MlError, MlState, RunRecord};
use crate::domain::labeling::{ItemRecord, ItemState};
use crate::domain::ml::head::{Head, HeadError, HeadKind};
use crate::domain::ml::validation::{
    LabeledExample, ValidationOptions, ValidationReport, evaluate_and_train, predict,
};
use crate::domain::project::{ProjectRecord, TaskType};
use crate::keys;
use crate::ports::{Query, SkRange};
use crate::service::from_item;

/// A point of a class's curve as the runs page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePointView {
    pub threshold: f32,
    pub precision: f32,
    pub coverage: f32,
    pub support: u32,
}

/// What a training run stores: the head and its validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredModel {
    pub backbone: String,
    pub round: u32,
    pub head: Head,
    /// The heads whose average predicts (`Evaluation::ensemble`); empty, and absent from
    /// models stored before it existed: `head` predicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<Head>,
    pub report: ValidationReport,
}

impl StoredModel {
    /// The probabilities the report's thresholds apply to.
    pub fn probabilities(&self, embedding: &[f32]) -> Result<Vec<f32>, HeadError> {
        predict(&self.head, &self.ensemble, embedding)
    }
}

impl Ml<'_> {
    pub(super) async fn train(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<StageOutcome, MlError> {
        let backbone = run
            .backbone
            .clone()
            .ok_or_else(|| MlError::Unavailable("the run has no featurization".into()))?;
        let kind = match project.task_type {
            TaskType::ImageClassificationMulticlass => HeadKind::Softmax,
            TaskType::ImageClassificationMultilabel => HeadKind::Sigmoid,
            TaskType::ObjectDetection => return self.train_boxes(project, run).await,
            other => return Err(MlError::NotClassification(other.as_str())),
        };
        // Wall time for the figures (the service clock stands still in tests).
        let started = std::time::Instant::now();
        let labeled = self.labeled_records(project).await?;
        let items: Vec<u64> = labeled.iter().map(|(item, _)| *item).collect();
        let embeddings = self.load_embeddings(&project.id, &backbone, &items).await?;
        let examples: Vec<LabeledExample<'_>> = labeled
            .iter()
            .filter_map(|(item, classes)| {
                Some(LabeledExample {
                    item: *item,
                    embedding: embeddings.get(item)?,
                    classes,
                })
            })
            .collect();
        let classes: Vec<u32> = project.classes.iter().map(|class| class.id).collect();
        let options = ValidationOptions::new(project.ml_assist.target_precision, project.seed);
        let evaluation = evaluate_and_train(kind, &examples, &classes, &options)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let milliseconds = started.elapsed().as_millis() as u64;
        let model = StoredModel {
            backbone,
            round: project.round,
            head: evaluation.head,
            ensemble: evaluation.ensemble,
            report: evaluation.report,
        };
        let body =
            serde_json::to_vec(&model).map_err(|error| MlError::Unavailable(Box::new(error)))?;
        self.blobs
            .put(
                &self.config.system_bucket,
                &keys::ml_model(&project.id, &run.id),
                body,
                "application/json",
            )
            .await?;
        if let Some(step) = run.step_mut("training") {
            step.metrics
                .insert("labeled_items".to_owned(), (labeled.len() as u64).into());
            step.metrics
                .insert("with_embeddings".to_owned(), (examples.len() as u64).into());
            step.metrics
                .insert("classes".to_owned(), (classes.len() as u64).into());
            step.metrics.insert(
                "head".to_owned(),
                match kind {
                    HeadKind::Softmax => "softmax",
                    HeadKind::Sigmoid => "sigmoid per class",
                }
                .into(),
            );
            step.metrics
                .insert("milliseconds".to_owned(), milliseconds.into());
        }
        if let Some(step) = run.step_mut("validation") {
            let report = &model.report;
            step.metrics
                .insert("held_out".to_owned(), report.held_out.into());
            step.metrics.insert(
                "accuracy".to_owned(),
                ((report.accuracy * 1000.0).round() / 1000.0).into(),
            );
            step.metrics.insert(
                "classes_prelabeled".to_owned(),
                (report
                    .classes
                    .iter()
                    .filter(|c| c.threshold.is_some())
                    .count() as u64)
                    .into(),
            );
            step.metrics.insert(
                "split".to_owned(),
                serde_json::to_value(report.split).unwrap_or_default(),
            );
        }
        self.adopt_model(project, run).await?;
        Ok(StageOutcome::Done)
    }

    /// Makes the run's stored model the one in use (if the run still holds the ML row).
    pub(super) async fn adopt_model(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<(), MlError> {
        let state = self.state(&project.id).await?;
        if state.active_run.as_deref() == Some(run.id.as_str()) {
            let after = MlState {
                model_run: Some(run.id.clone()),
                model_round: project.round,
                labels_at_training: run.labels,
                version: state.version + 1,
                ..state.clone()
            };
            if !self.put_state(&project.id, &state, &after).await? {
                return Err(MlError::Unavailable("the ML row changed meanwhile".into()));
            }
        }
        run.model_run = Some(run.id.clone());
        Ok(())
    }

    /// The round's labeled items with their classes.
    async fn labeled_records(
        &self,
        project: &ProjectRecord,
    ) -> Result<Vec<(u64, Vec<u32>)>, MlError> {
        let mut labeled = Vec::new();
        self.each_labeled_item(project, |record| {
            let mut classes: Vec<u32> = record.labels.iter().map(|label| label.class_id).collect();
            classes.sort_unstable();
            classes.dedup();
            if !classes.is_empty() {
                labeled.push((record.item, classes));
            }
        })
        .await?;
        Ok(labeled)
    }

    /// Hands each of the round's labeled items to `each`, page by page.
    pub(super) async fn each_labeled_item(
        &self,
        project: &ProjectRecord,
        mut each: impl FnMut(ItemRecord),
    ) -> Result<(), MlError> {
        let mut query = Query::new(
            keys::project_pk(&project.id),
            SkRange::BeginsWith(keys::ITEM_SK_PREFIX.to_owned()),
            1000,
        );
        loop {
            let page = self.table.query(query.clone()).await?;
            for item in &page.items {
                let record: ItemRecord = from_item(item).map_err(MlError::Unavailable)?;
                if record.round == project.round && record.state == ItemState::Labeled {
                    each(record);
                }
            }
            match page.last_evaluated {
                Some(last) => query.start_after = Some(last),
                None => return Ok(()),
            }
        }
    }

    pub(super) async fn load_model(
        &self,
        project_id: &str,
        run_id: &str,
    ) -> Result<StoredModel, MlError> {
        self.stored_model(project_id, run_id).await
    }

    /// A run's stored model (a classification head or a detector) read from its JSON.
    pub(super) async fn stored_model<T: serde::de::DeserializeOwned>(
        &self,
        project_id: &str,
        run_id: &str,
    ) -> Result<T, MlError> {
        let bytes = self
            .blobs
            .get(
                &self.config.system_bucket,
                &keys::ml_model(project_id, run_id),
                None,
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|error| MlError::Unavailable(Box::new(error)))
    }

    /// Per class of the model in use: its curve and threshold.
    pub(super) async fn class_views(
        &self,
        project: &ProjectRecord,
        model_run: &str,
    ) -> Result<Vec<MlClassView>, MlError> {
        let model = self.load_model(&project.id, model_run).await?;
        Ok(model
            .report
            .classes
            .iter()
            .map(|class| MlClassView {
                label: project.class_name(class.class).unwrap_or("?").to_owned(),
                threshold: class.threshold,
                reason: class.reason.clone(),
                held_out: u64::from(class.held_out),
                precision: class.precision.map(f64::from),
                coverage: class.coverage.map(f64::from),
                average_precision: None,
                curve: class
                    .curve
                    .iter()
                    .map(|point| CurvePointView {
                        threshold: point.threshold,
                        precision: point.precision,
                        coverage: point.coverage,
                        support: point.support,
                    })
                    .collect(),
            })
            .collect())
    }
}
