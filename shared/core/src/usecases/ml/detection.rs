//! Box prelabels for object detection projects: the training, validation and inference stages
//! of a run when the project's labels are boxes. The detection backbone's feature maps (the
//! [`FeatureExtractor`] port) are recomputed by each stage that needs them and never stored; a
//! small head (`domain::ml::detect`) trains on the maps of the labeled images.
//!
//! Validation holds out a seeded fifth of the labeled images (a tenth from
//! [`CROSS_VALIDATION_BELOW`] on): an image's bucket is a hash of its id, so adding labels
//! never moves an image between the sides and a retried run splits as the first did. The
//! detector that prelabels is the one validated, trained on the other images only: the
//! thresholds were measured on its own scores, so the precision they promise holds for it (a
//! detector retrained on every image would be more confident than the one measured). Per class,
//! the held-out boxes give the precision/recall curve at IoU >= 0.5 and COCO-style AP, and the
//! threshold is the lowest score whose precision meets the project's target (its 80% Wilson
//! lower bound does, as for classification) with at least [`MIN_TRUE_POSITIVES`] matches.
//!
//! Inference takes a window of the round's order as classification does. An image with at least
//! one box above its class's threshold becomes part of a prelabeled task with every such box;
//! the others are clustered by their embeddings like unsure classification items.
//!
//! Deterministic: the split, the sample of at most [`MAX_TRAINING_IMAGES`] and the training are
//! seeded by the project, so a retried training stores the same detector.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::featurize::split_fetched;
use super::infer::WindowPredictions;
use super::stages::StageOutcome;
use super::train::CurvePointView;
use super::view::MlClassView;
use super::{Ml, MlError, RunRecord};
use crate::domain::labeling::StoredAnnotation;
use crate::domain::ml::detect::{
    DetectionExample, DetectionReport, Detector, DetectorOptions, EvaluatedImage, FeatureMap,
    LabeledBox, Letterbox, PrecisionRecallPoint, choose_threshold, evaluate_detections,
    train_detector,
};
use crate::domain::ml::validation::{
    CROSS_VALIDATION_BELOW, HOLDOUT_ONE_IN, bucket_of, precision_lower_bound,
};
use crate::domain::project::ProjectRecord;
use crate::keys;
use crate::ports::{ExtractedMap, FeatureExtractor};

/// Below [`CROSS_VALIDATION_BELOW`] labeled images, one in this many is held out.
pub const HOLDOUT_ONE_IN_SMALL: u32 = 5;
/// Labeled images a training reads at most (a seeded sample beyond): their maps are held in
/// memory (258 KB each, 774 MB at this count) and each costs a backbone pass per run.
pub const MAX_TRAINING_IMAGES: usize = 3_000;
/// Matched held-out boxes a class's threshold needs at least: a precision measured on a few
/// boxes says nothing.
pub const MIN_TRUE_POSITIVES: u32 = 8;
/// IoU at which a predicted box counts as finding a true one.
pub const MATCH_IOU: f32 = 0.5;
/// Detections kept per image before thresholds (a labeler corrects a page, not a crowd).
pub const MAX_DETECTIONS: usize = 100;
/// Prelabeled boxes an image gets at most.
pub const MAX_PRELABELS: usize = 50;
/// Images whose maps are extracted at once while the next ones are fetched.
const EXTRACT_BATCH: usize = 16;
/// Curve points a class shows on the runs page.
const CURVE_POINTS_SHOWN: usize = 50;

/// A class's threshold as validation chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BoxThreshold {
    pub class_id: u32,
    /// The lowest score meeting the target; `None`: the class is not prelabeled.
    pub threshold: Option<f32>,
    pub reason: Option<String>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// What a detection run stores (`ml/<pid>/models/<run>.json`, the classification model's key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredDetector {
    /// The backbone whose maps the detector reads.
    pub features: String,
    pub round: u32,
    /// The project's class id of each of the detector's class indices.
    pub classes: Vec<u32>,
    pub detector: Detector,
    /// Held-out validation, in the detector's class indices.
    pub report: DetectionReport,
    pub thresholds: Vec<BoxThreshold>,
    pub trained_images: u64,
    pub held_out_images: u64,
}

/// A labeled image: its id, its object's key and its boxes as (class id, `[x, y, w, h]`).
type LabeledImage = (u64, String, Vec<(u32, [f64; 4])>);

/// The holdout's buckets for a project of `labeled` labeled images.
fn holdout_one_in(labeled: usize) -> u32 {
    if labeled < CROSS_VALIDATION_BELOW {
        HOLDOUT_ONE_IN_SMALL
    } else {
        HOLDOUT_ONE_IN
    }
}

/// Per class of the detector: its threshold, or why it has none.
fn thresholds(
    report: &DetectionReport,
    classes: &[u32],
    target_precision: f64,
) -> Vec<BoxThreshold> {
    report
        .classes
        .iter()
        .filter_map(|class| {
            let class_id = *classes.get(class.class as usize)?;
            Some(
                match choose_threshold(&class.curve, target_precision, MIN_TRUE_POSITIVES) {
                    Some(point) => BoxThreshold {
                        class_id,
                        threshold: Some(point.threshold),
                        reason: None,
                        precision: Some(f64::from(point.precision)),
                        recall: Some(f64::from(point.recall)),
                    },
                    None => {
                        let best = class
                            .curve
                            .iter()
                            .filter(|p| p.true_positives >= MIN_TRUE_POSITIVES)
                            .map(|p| precision_lower_bound(p.true_positives, p.detections))
                            .max_by(f64::total_cmp);
                        let reason = match best {
                            None => format!(
                                "fewer than {MIN_TRUE_POSITIVES} held-out boxes found ({} held out)",
                                class.truths
                            ),
                            Some(best) => format!(
                                "precision {best:.2} (80% lower bound) < {target_precision} at \
                                 every threshold with >= {MIN_TRUE_POSITIVES} boxes found"
                            ),
                        };
                        BoxThreshold {
                            class_id,
                            threshold: None,
                            reason: Some(reason),
                            precision: None,
                            recall: None,
                        }
                    }
                },
            )
        })
        .collect()
}

/// At most `max` points spread along `curve`, its ends and the chosen threshold kept.
fn thin(
    curve: &[PrecisionRecallPoint],
    max: usize,
    keep: Option<f32>,
) -> Vec<PrecisionRecallPoint> {
    if curve.len() <= max || max < 2 {
        return curve.to_vec();
    }
    let step = (curve.len() - 1) as f64 / (max - 1) as f64;
    let mut picked: Vec<usize> = (0..max)
        .map(|i| ((i as f64 * step).round() as usize).min(curve.len() - 1))
        .collect();
    if let Some(kept) = keep.and_then(|t| curve.iter().position(|p| p.threshold == t)) {
        picked.push(kept);
    }
    picked.sort_unstable();
    picked.dedup();
    picked.into_iter().map(|i| curve[i]).collect()
}

impl Ml<'_> {
    fn feature_extractor(&self) -> Result<std::sync::Arc<dyn FeatureExtractor>, MlError> {
        self.embedder.features().map_err(|reason| {
            MlError::Unavailable(format!("box prelabels are unavailable: {reason}").into())
        })
    }

    /// Training and validation of a detection run.
    pub(super) async fn train_boxes(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<StageOutcome, MlError> {
        let extractor = self.feature_extractor()?;
        // Wall time for the figures (the service clock stands still in tests).
        let started = std::time::Instant::now();
        let mut labeled = self.labeled_images(project).await?;
        let labeled_total = labeled.len();
        let one_in = holdout_one_in(labeled_total);
        if labeled.len() > MAX_TRAINING_IMAGES {
            // A seeded sample: the same images on a retry, a fair draw of the project.
            labeled.sort_by_key(|(item, _, _)| bucket_of(*item, project.seed ^ 0x5a4d, u32::MAX));
            labeled.truncate(MAX_TRAINING_IMAGES);
            labeled.sort_by_key(|(item, _, _)| *item);
        }
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let item_keys: Vec<(u64, String)> = labeled
            .iter()
            .map(|(item, key, _)| (*item, key.clone()))
            .collect();
        let mut maps: HashMap<u64, ExtractedMap> = HashMap::with_capacity(labeled.len());
        let mut refused = 0u64;
        let extracting = std::time::Instant::now();
        self.extract_each(
            extractor.as_ref(),
            source.bucket(),
            &item_keys,
            |item, outcome| {
                match outcome {
                    Ok(map) => {
                        maps.insert(item, map);
                    }
                    Err(_) => refused += 1,
                }
                Ok(())
            },
        )
        .await?;
        let seconds_extracting = extracting.elapsed().as_secs_f64();
        let classes: Vec<u32> = project.classes.iter().map(|class| class.id).collect();
        let index_of: HashMap<u32, u32> = classes
            .iter()
            .enumerate()
            .map(|(index, id)| (*id, index as u32))
            .collect();
        // (item, map, letterbox, boxes in image pixels, boxes in input pixels)
        let mut training: Vec<(&FeatureMap, Vec<LabeledBox>)> = Vec::new();
        let mut held_out: Vec<(&FeatureMap, &Letterbox, Vec<LabeledBox>)> = Vec::new();
        let mut boxes = 0u64;
        for (item, _, labels) in &labeled {
            let Some((map, letterbox)) = maps.get(item) else {
                continue;
            };
            let image_boxes: Vec<LabeledBox> = labels
                .iter()
                .filter_map(|(class_id, bbox)| {
                    Some((*index_of.get(class_id)?, bbox.map(|v| v as f32)))
                })
                .collect();
            boxes += image_boxes.len() as u64;
            if bucket_of(*item, project.seed, one_in) == 0 {
                held_out.push((map, letterbox, image_boxes));
            } else {
                let input_boxes = image_boxes
                    .iter()
                    .map(|(class, bbox)| (*class, letterbox.to_input(*bbox)))
                    .collect();
                training.push((map, input_boxes));
            }
        }
        let examples: Vec<DetectionExample<'_>> = training
            .iter()
            .map(|(features, boxes)| DetectionExample { features, boxes })
            .collect();
        let options = DetectorOptions {
            stride: extractor.stride(),
            seed: project.seed,
            ..DetectorOptions::default()
        };
        let training_started = std::time::Instant::now();
        let detector = train_detector(&examples, classes.len(), &options)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let seconds_training = training_started.elapsed().as_secs_f64();
        let mut predictions = Vec::with_capacity(held_out.len());
        for (map, letterbox, _) in &held_out {
            predictions.push(
                detector
                    .detect(map, letterbox, MAX_DETECTIONS)
                    .map_err(|error| MlError::Unavailable(Box::new(error)))?,
            );
        }
        let evaluated: Vec<EvaluatedImage<'_>> = predictions
            .iter()
            .zip(&held_out)
            .map(|(predictions, (_, _, truths))| EvaluatedImage {
                predictions,
                truths,
            })
            .collect();
        let report = evaluate_detections(&evaluated, classes.len(), MATCH_IOU);
        let thresholds = thresholds(&report, &classes, project.ml_assist.target_precision);
        let model = StoredDetector {
            features: extractor.id().to_owned(),
            round: project.round,
            classes,
            detector,
            report,
            thresholds,
            trained_images: examples.len() as u64,
            held_out_images: held_out.len() as u64,
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
        let round2 = |value: f64| (value * 1000.0).round() / 1000.0;
        if let Some(step) = run.step_mut("training") {
            let metrics = &mut step.metrics;
            metrics.insert("labeled_items".to_owned(), (labeled_total as u64).into());
            metrics.insert("images".to_owned(), (examples.len() as u64).into());
            metrics.insert("boxes".to_owned(), boxes.into());
            metrics.insert("refused".to_owned(), refused.into());
            metrics.insert("backbone".to_owned(), model.features.clone().into());
            metrics.insert(
                "execution_provider".to_owned(),
                extractor.execution_provider().into(),
            );
            metrics.insert(
                "head".to_owned(),
                "CenterNet-style heatmap, size and offset on the stride-16 map".into(),
            );
            metrics.insert(
                "seconds_extracting".to_owned(),
                round2(seconds_extracting).into(),
            );
            metrics.insert(
                "seconds_training".to_owned(),
                round2(seconds_training).into(),
            );
            metrics.insert(
                "milliseconds".to_owned(),
                (started.elapsed().as_millis() as u64).into(),
            );
        }
        if let Some(step) = run.step_mut("validation") {
            let metrics = &mut step.metrics;
            metrics.insert("held_out".to_owned(), model.held_out_images.into());
            metrics.insert(
                "held_out_boxes".to_owned(),
                model
                    .report
                    .classes
                    .iter()
                    .map(|c| u64::from(c.truths))
                    .sum::<u64>()
                    .into(),
            );
            metrics.insert("iou".to_owned(), f64::from(MATCH_IOU).into());
            if let Some(map) = model.report.mean_average_precision {
                metrics.insert("mean_average_precision".to_owned(), round2(map).into());
            }
            let per_class: serde_json::Map<String, serde_json::Value> = model
                .report
                .classes
                .iter()
                .filter_map(|class| {
                    let id = *model.classes.get(class.class as usize)?;
                    Some((
                        project.class_name(id).unwrap_or("?").to_owned(),
                        class
                            .average_precision
                            .map(|ap| round2(ap).into())
                            .unwrap_or(serde_json::Value::Null),
                    ))
                })
                .collect();
            metrics.insert(
                "average_precision".to_owned(),
                serde_json::Value::Object(per_class),
            );
            metrics.insert(
                "classes_prelabeled".to_owned(),
                (model
                    .thresholds
                    .iter()
                    .filter(|t| t.threshold.is_some())
                    .count() as u64)
                    .into(),
            );
            metrics.insert(
                "split".to_owned(),
                serde_json::json!({ "kind": "holdout", "one_in": one_in }),
            );
        }
        self.adopt_model(project, run).await?;
        Ok(StageOutcome::Done)
    }

    /// Inference of a detection run over its window.
    pub(super) async fn infer_boxes(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
        model_run: &str,
    ) -> Result<StageOutcome, MlError> {
        let model = self.load_detector(&project.id, model_run).await?;
        let extractor = self.feature_extractor()?;
        if extractor.id() != model.features {
            return Err(MlError::Unavailable(
                format!(
                    "the detector reads {} maps; this process has {}",
                    model.features,
                    extractor.id()
                )
                .into(),
            ));
        }
        let (from, to) = match run.window {
            Some(window) => window,
            None => self.take_window(project, run).await?,
        };
        let (manifest, items) = self.window_items(project, from, to).await?;
        let mut item_keys = Vec::with_capacity(items.len());
        for item in &items {
            item_keys.push((
                *item,
                self.item_keys()
                    .item_key(&project.id, &manifest, *item)
                    .await?,
            ));
        }
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let threshold_of: HashMap<u32, f32> = model
            .thresholds
            .iter()
            .filter_map(|t| Some((t.class_id, t.threshold?)))
            .collect();
        let mut predictions = WindowPredictions::default();
        let mut boxes = 0u64;
        let started = std::time::Instant::now();
        self.extract_each(
            extractor.as_ref(),
            source.bucket(),
            &item_keys,
            |item, outcome| {
                let Ok((map, letterbox)) = outcome else {
                    predictions.without.push(item);
                    return Ok(());
                };
                let detections = model
                    .detector
                    .detect(&map, &letterbox, MAX_DETECTIONS)
                    .map_err(|error| MlError::Unavailable(Box::new(error)))?;
                let prelabels: Vec<StoredAnnotation> = detections
                    .iter()
                    .filter_map(|detection| {
                        let class_id = *model.classes.get(detection.class as usize)?;
                        let threshold = threshold_of.get(&class_id)?;
                        (detection.score >= *threshold).then(|| StoredAnnotation {
                            class_id,
                            bbox: Some(
                                detection
                                    .bbox
                                    .map(|v| (f64::from(v) * 100.0).round() / 100.0),
                            ),
                            polygon: None,
                            confidence: Some(detection.score),
                        })
                    })
                    .take(MAX_PRELABELS)
                    .collect();
                boxes += prelabels.len() as u64;
                predictions.add(project, item, prelabels);
                Ok(())
            },
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        // Unsure images are clustered by the embeddings this run's featurization stored.
        let embeddings = match &run.backbone {
            Some(backbone) => self.load_embeddings(&project.id, backbone, &items).await?,
            None => HashMap::new(),
        };
        if let Some(step) = run.step_mut("inference") {
            step.metrics.insert("boxes".to_owned(), boxes.into());
            if seconds > 0.0 {
                step.metrics.insert(
                    "images_per_second".to_owned(),
                    ((items.len() as f64 / seconds * 10.0).round() / 10.0).into(),
                );
            }
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

    /// The round's labeled images with their boxes (an image labeled with no box is a
    /// background example).
    async fn labeled_images(&self, project: &ProjectRecord) -> Result<Vec<LabeledImage>, MlError> {
        let mut labeled = Vec::new();
        self.each_labeled_item(project, |record| {
            let boxes = record
                .labels
                .iter()
                .filter_map(|label| Some((label.class_id, label.bbox?)))
                .collect();
            labeled.push((record.item, record.key, boxes));
        })
        .await?;
        Ok(labeled)
    }

    /// Fetches and extracts `items` (id, key) in batches, fetching the next batch while the
    /// backbone runs, and hands each outcome to `each` in order.
    async fn extract_each(
        &self,
        extractor: &dyn FeatureExtractor,
        bucket: &str,
        items: &[(u64, String)],
        mut each: impl FnMut(u64, Result<ExtractedMap, String>) -> Result<(), MlError>,
    ) -> Result<(), MlError> {
        let mut batches = items.chunks(EXTRACT_BATCH);
        let mut fetched = match batches.next() {
            Some(batch) => self.fetch(bucket, batch).await?,
            None => return Ok(()),
        };
        loop {
            let next = batches.next();
            let (extracted, prefetched) = futures::join!(
                extract_fetched(extractor, std::mem::take(&mut fetched)),
                async {
                    match next {
                        Some(batch) => self.fetch(bucket, batch).await.map(Some),
                        None => Ok(None),
                    }
                }
            );
            for (item, outcome) in extracted? {
                each(item, outcome)?;
            }
            match prefetched? {
                Some(batch) => fetched = batch,
                None => return Ok(()),
            }
        }
    }

    pub(super) async fn load_detector(
        &self,
        project_id: &str,
        run_id: &str,
    ) -> Result<StoredDetector, MlError> {
        let model: StoredDetector = self.stored_model(project_id, run_id).await?;
        // The blob may be corrupt or forged: the detector checks its own shapes.
        Detector::from_json(&model.detector.to_json())
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        if model.classes.len() != model.detector.classes {
            return Err(MlError::Unavailable(
                "the stored detector's classes do not match it".into(),
            ));
        }
        Ok(model)
    }

    /// Per class of the detector in use: its precision/recall curve, AP and threshold.
    pub(super) async fn box_class_views(
        &self,
        project: &ProjectRecord,
        model_run: &str,
    ) -> Result<Vec<MlClassView>, MlError> {
        let model = self.load_detector(&project.id, model_run).await?;
        Ok(model
            .report
            .classes
            .iter()
            .filter_map(|class| {
                let class_id = *model.classes.get(class.class as usize)?;
                let chosen = model.thresholds.iter().find(|t| t.class_id == class_id);
                let threshold = chosen.and_then(|t| t.threshold);
                Some(MlClassView {
                    label: project.class_name(class_id).unwrap_or("?").to_owned(),
                    threshold,
                    reason: chosen.and_then(|t| t.reason.clone()),
                    held_out: u64::from(class.truths),
                    precision: chosen.and_then(|t| t.precision),
                    coverage: chosen.and_then(|t| t.recall),
                    average_precision: class.average_precision,
                    curve: thin(&class.curve, CURVE_POINTS_SHOWN, threshold)
                        .iter()
                        .map(|point| CurvePointView {
                            threshold: point.threshold,
                            precision: point.precision,
                            coverage: point.recall,
                            support: point.detections,
                        })
                        .collect(),
                })
            })
            .collect())
    }
}

/// The maps of the fetched images (a fetch's refusal passes through).
async fn extract_fetched(
    extractor: &dyn FeatureExtractor,
    fetched: Vec<(u64, Result<Vec<u8>, String>)>,
) -> Result<Vec<(u64, Result<ExtractedMap, String>)>, MlError> {
    let (mut out, image_items, images) = split_fetched(fetched);
    if images.is_empty() {
        return Ok(out);
    }
    let extracted = extractor
        .extract(images)
        .await
        .map_err(|error| MlError::Unavailable(Box::new(error)))?;
    if extracted.len() != image_items.len() {
        return Err(MlError::Unavailable(
            "the detection backbone answered for another number of images".into(),
        ));
    }
    for (item, outcome) in image_items.into_iter().zip(extracted) {
        out.push((item, outcome.map_err(|rejected| rejected.0)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(threshold: f32, detections: u32, true_positives: u32) -> PrecisionRecallPoint {
        PrecisionRecallPoint {
            threshold,
            precision: true_positives as f32 / detections as f32,
            recall: true_positives as f32 / 40.0,
            detections,
            true_positives,
        }
    }

    #[test]
    fn a_thinned_curve_keeps_its_ends_and_the_chosen_threshold() {
        let curve: Vec<_> = (0..200)
            .map(|i| point(i as f32 / 200.0, 200 - i, (200 - i) / 2))
            .collect();
        let kept = thin(&curve, 10, Some(curve[37].threshold));
        assert!(kept.len() <= 11);
        assert_eq!(kept.first(), curve.first());
        assert_eq!(kept.last(), curve.last());
        assert!(kept.contains(&curve[37]));
        assert_eq!(thin(&curve[..5], 10, None), curve[..5].to_vec());
    }

    #[test]
    fn a_class_gets_the_lowest_threshold_whose_precision_bound_meets_the_target() {
        let report = DetectionReport {
            iou_threshold: 0.5,
            images: 20,
            mean_average_precision: Some(0.8),
            classes: vec![
                crate::domain::ml::detect::ClassDetectionReport {
                    class: 0,
                    truths: 40,
                    detections: 40,
                    average_precision: Some(0.8),
                    // Ascending thresholds: 40 boxes at 35 right, 30 at 30 right.
                    curve: vec![point(0.1, 40, 35), point(0.5, 30, 30), point(0.9, 5, 5)],
                },
                crate::domain::ml::detect::ClassDetectionReport {
                    class: 1,
                    truths: 3,
                    detections: 3,
                    average_precision: Some(1.0),
                    curve: vec![point(0.5, 3, 3)],
                },
            ],
        };
        let chosen = thresholds(&report, &[7, 9], 0.95);
        assert_eq!(chosen[0].class_id, 7);
        assert_eq!(chosen[0].threshold, Some(0.5));
        assert_eq!(chosen[0].recall, Some(0.75));
        assert_eq!(chosen[1].class_id, 9);
        assert_eq!(chosen[1].threshold, None);
        assert!(
            chosen[1]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("fewer than 8")),
            "{chosen:?}"
        );
    }

    #[test]
    fn the_holdout_is_a_fifth_below_5000_images_and_a_tenth_from_there() {
        assert_eq!(holdout_one_in(100), 5);
        assert_eq!(holdout_one_in(CROSS_VALIDATION_BELOW), HOLDOUT_ONE_IN);
    }
}
