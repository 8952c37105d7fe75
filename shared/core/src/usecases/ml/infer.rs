//! Inference and clustering over a window: the next [`WINDOW_ITEMS`] positions of the round's
//! shuffled order are taken off the cursor in the same transaction that records the window on
//! the run (so a retried run takes the same window, and fresh checkouts never meet these items:
//! no failed claims). The model predicts each item of the window; an item whose prediction
//! reaches its class's threshold becomes part of a prelabeled task (pages grouped by predicted
//! class, most confident first); the rest are clustered by their embeddings into pages of
//! similar images (k-means++ on cosine geometry, see `domain::ml::cluster`). Items with no
//! embedding (unreadable images) go into plain pages at the end of the clustered queue.
//!
//! Each page is one idempotent transaction (`Labeling::queue_prelabeled`), named by the run and
//! the page's number, so a retry adds nothing twice. Clustering a window, not the project,
//! bounds the work and the rows written: no table row per image up front.

use std::collections::{BTreeMap, HashMap};

use super::stages::StageOutcome;
use super::{Ml, MlError, RunRecord, WINDOW_ITEMS};
use crate::domain::labeling::{StoredAnnotation, TaskKind};
use crate::domain::ml::cluster::pack_pages;
use crate::domain::project::{ProjectRecord, TaskType};
use crate::keys::{self, attr};
use crate::manifest::ManifestRecord;
use crate::ports::{Condition, Update, Write};
use crate::service::{number, to_item};

/// An item of a page to queue, with its prelabels.
type PageItem = (u64, Vec<StoredAnnotation>);

/// What a model made of a window's items.
#[derive(Debug, Default)]
pub(super) struct WindowPredictions {
    /// Items with prelabels: (top class, minus its confidence, item, prelabels), so that
    /// sorting puts one class together, most confident first.
    prelabeled: Vec<(u32, f32, u64, Vec<StoredAnnotation>)>,
    /// Items the model is not sure enough of.
    unsure: Vec<u64>,
    /// Items the model could not read (no embedding, a refused image).
    pub without: Vec<u64>,
    /// Prelabels per class name.
    per_class: BTreeMap<String, u64>,
}

impl WindowPredictions {
    /// Records an item's prelabels, most confident first; none makes it unsure.
    pub fn add(&mut self, project: &ProjectRecord, item: u64, prelabels: Vec<StoredAnnotation>) {
        let Some(top) = prelabels.first() else {
            self.unsure.push(item);
            return;
        };
        for prelabel in &prelabels {
            *self
                .per_class
                .entry(
                    project
                        .class_name(prelabel.class_id)
                        .unwrap_or("?")
                        .to_owned(),
                )
                .or_default() += 1;
        }
        let (class, confidence) = (top.class_id, top.confidence.unwrap_or(0.0));
        self.prelabeled.push((class, -confidence, item, prelabels));
    }
}

/// Tries to take a window off the cursor while labelers move it.
const WINDOW_ATTEMPTS: usize = 8;

impl Ml<'_> {
    pub(super) async fn infer(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<StageOutcome, MlError> {
        let model_run = match &run.model_run {
            Some(model_run) => model_run.clone(),
            None => {
                let state = self.state(&project.id).await?;
                match state.model_run {
                    Some(model_run) if state.model_round == project.round => model_run,
                    _ => return Err(MlError::Unavailable("no model to infer with".into())),
                }
            }
        };
        run.model_run = Some(model_run.clone());
        if project.task_type == TaskType::ObjectDetection {
            return self.infer_boxes(project, run, &model_run).await;
        }
        let model = self.load_model(&project.id, &model_run).await?;
        let (from, to) = match run.window {
            Some(window) => window,
            None => self.take_window(project, run).await?,
        };
        let (_, items) = self.window_items(project, from, to).await?;
        let embeddings = self
            .load_embeddings(&project.id, &model.backbone, &items)
            .await?;
        let mut predictions = WindowPredictions::default();
        for item in &items {
            let Some(embedding) = embeddings.get(item) else {
                predictions.without.push(*item);
                continue;
            };
            let probabilities = model
                .probabilities(embedding)
                .map_err(|error| MlError::Unavailable(Box::new(error)))?;
            let labels = model.report.prelabels(&probabilities);
            predictions.add(
                project,
                *item,
                labels
                    .iter()
                    .map(|(class, confidence)| StoredAnnotation {
                        class_id: *class,
                        bbox: None,
                        polygon: None,
                        confidence: Some(*confidence),
                    })
                    .collect(),
            );
        }
        self.queue_window(
            project,
            run,
            (from, to),
            items.len(),
            predictions,
            &embeddings,
        )
        .await
    }

    /// The manifest, and the items at positions `[from, to)` of the round's order.
    pub(super) async fn window_items(
        &self,
        project: &ProjectRecord,
        from: u64,
        to: u64,
    ) -> Result<(ManifestRecord, Vec<u64>), MlError> {
        let manifest = self
            .reader()
            .read_manifest(&project.id)
            .await?
            .ok_or_else(|| MlError::NotRunning("initializing"))?;
        let items = (from..to)
            .filter_map(|position| manifest.item_at(project.seed, project.round, position))
            .collect();
        Ok((manifest, items))
    }

    /// Turns a window's predictions into tasks: prelabeled pages by predicted class, the
    /// unsure items clustered by their embeddings, items without one in plain pages last.
    pub(super) async fn queue_window(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
        (from, to): (u64, u64),
        items: usize,
        predictions: WindowPredictions,
        embeddings: &HashMap<u64, Vec<f32>>,
    ) -> Result<StageOutcome, MlError> {
        let WindowPredictions {
            mut prelabeled,
            unsure,
            mut without,
            per_class,
        } = predictions;
        // Pages of one predicted class, most confident first: a labeler confirms a page of
        // alike suggestions at a glance.
        prelabeled.sort_by(|a, b| {
            (a.0, a.1, a.2)
                .partial_cmp(&(b.0, b.1, b.2))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let page_size = project.page_size.max(1) as usize;
        let mut pages: Vec<(TaskKind, Vec<PageItem>)> = Vec::new();
        let mut by_class: BTreeMap<u32, Vec<PageItem>> = BTreeMap::new();
        for (class, _, item, labels) in prelabeled {
            by_class.entry(class).or_default().push((item, labels));
        }
        for (_, class_items) in by_class {
            for page in class_items.chunks(page_size) {
                pages.push((TaskKind::Prelabeled, page.to_vec()));
            }
        }
        let prelabeled_items: u64 = pages.iter().map(|(_, page)| page.len() as u64).sum();
        // An unsure item without an embedding (the featurization refused its image) cannot be
        // clustered: it goes into the plain pages.
        let (unsure, unembedded): (Vec<u64>, Vec<u64>) = unsure
            .into_iter()
            .partition(|item| embeddings.contains_key(item));
        without.extend(unembedded);
        let vectors: Vec<&[f32]> = unsure
            .iter()
            .filter_map(|item| embeddings.get(item).map(Vec::as_slice))
            .collect();
        let clustered_pages = pack_pages(&vectors, page_size, project.seed)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let cluster_count = clustered_pages.len();
        for page in clustered_pages {
            pages.push((
                TaskKind::Clustered,
                page.into_iter()
                    .map(|index| (unsure[index], Vec::new()))
                    .collect(),
            ));
        }
        for page in without.chunks(page_size) {
            pages.push((
                TaskKind::Clustered,
                page.iter().map(|item| (*item, Vec::new())).collect(),
            ));
        }
        let run_tag = run.id.trim_start_matches("r_").to_owned();
        let (mut queued, mut left_out) = (0u64, 0u64);
        for (number, (kind, page)) in pages.iter().enumerate() {
            let outcome = self
                .labeling()
                .queue_prelabeled(&project.id, &format!("{run_tag}_{number:05}"), *kind, page)
                .await
                .map_err(|error| MlError::Unavailable(Box::new(error)))?;
            queued += outcome.queued.len() as u64;
            left_out += outcome.left_out.len() as u64;
        }
        if let Some(step) = run.step_mut("inference") {
            step.metrics
                .insert("window".to_owned(), serde_json::json!([from, to]));
            step.metrics
                .insert("items".to_owned(), (items as u64).into());
            step.metrics
                .insert("prelabeled".to_owned(), prelabeled_items.into());
            step.metrics.insert(
                "prelabeled_per_class".to_owned(),
                serde_json::to_value(&per_class).unwrap_or_default(),
            );
            step.metrics.insert(
                "without_embedding".to_owned(),
                (without.len() as u64).into(),
            );
            step.metrics.insert("queued".to_owned(), queued.into());
            step.metrics.insert("left_out".to_owned(), left_out.into());
        }
        if let Some(step) = run.step_mut("clustering") {
            step.metrics
                .insert("clustered".to_owned(), (unsure.len() as u64).into());
            step.metrics
                .insert("pages".to_owned(), (cluster_count as u64).into());
            step.metrics.insert(
                "algorithm".to_owned(),
                "k-means++ on L2-normalized embeddings, packed into pages".into(),
            );
        }
        Ok(StageOutcome::Done)
    }

    /// Moves the round's cursor past the next window and records the window on the run, in
    /// one transaction conditional on the cursor's value.
    pub(super) async fn take_window(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<(u64, u64), MlError> {
        let cursor_key = keys::cursor(&project.id, project.round);
        for _ in 0..WINDOW_ATTEMPTS {
            let cursor = self
                .table
                .get(&cursor_key)
                .await?
                .ok_or_else(|| MlError::NotRunning("initializing"))?;
            let next = number(&cursor.attrs, attr::NEXT).max(0) as u64;
            let total = number(&cursor.attrs, attr::TOTAL).max(0) as u64;
            let from = next.min(total);
            let to = (from + WINDOW_ITEMS).min(total);
            let mut recorded = run.clone();
            recorded.window = Some((from, to));
            let written = self
                .table
                .transact(vec![
                    Write::Update {
                        key: cursor_key.clone(),
                        update: Update::default().set(attr::NEXT, to.max(next)),
                        condition: Some(Condition::equals(attr::NEXT, next)),
                    },
                    Write::Put {
                        item: to_item(
                            keys::ml_run(&project.id, &run.id),
                            keys::entity::ML_RUN,
                            &recorded,
                        )?,
                        condition: None,
                    },
                ])
                .await;
            match written {
                Ok(()) => {
                    run.window = Some((from, to));
                    return Ok((from, to));
                }
                Err(error) if error.is_condition_failed() || error.is_transient() => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(MlError::Unavailable(
            "labelers kept moving the cursor; the window is taken on the retry".into(),
        ))
    }
}
