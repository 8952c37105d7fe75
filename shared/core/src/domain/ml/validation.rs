//! Held-out evaluation of a head and the per-class confidence thresholds that decide which
//! unlabeled items are prelabeled.
//!
//! Split: below [`CROSS_VALIDATION_BELOW`] labeled items, 5-fold cross-validation, so every
//! labeled item gets one out-of-fold prediction and a small project (100 labels) still has
//! statistics worth reading; from there on one 10% holdout, which is plenty and costs one
//! training instead of five. An item's fold is a seeded hash of its id, so adding labels never
//! moves an item between folds and a retried run splits exactly as the first one did.
//!
//! Per class the held-out predictions give a precision/coverage curve against the confidence
//! threshold; the threshold is the lowest one meeting the project's target precision with a
//! minimum support.
//!
//! Under cross-validation the thresholds are applied to the fold heads themselves, averaged
//! ([`Evaluation::ensemble`]), not to a head trained on every label: with 100-200 labels the
//! head trained on all of them is more confident than the fold heads were, so a threshold
//! measured on the folds let through items it would not have (on the digits, 0.927 precision
//! on fresh items for a 0.95 target with the full head, 0.940 with the fold average; 0.908 and
//! 0.957 at 100 labels). The average of heads that each saw 80% of the labels is, if anything,
//! less confident than one of them, so the measured precision holds. From
//! [`CROSS_VALIDATION_BELOW`] labels on, the final head predicts: one tenth more data barely
//! moves its confidence.

use serde::{Deserialize, Serialize};

use super::head::{Example, Head, HeadError, HeadKind, TrainOptions, train};
use super::numeric::mix;

/// Below this many labeled items the split is 5-fold cross-validation, from it on a holdout.
pub const CROSS_VALIDATION_BELOW: usize = 5_000;
pub const FOLDS: u32 = 5;
/// One in this many items is held out at and above [`CROSS_VALIDATION_BELOW`].
pub const HOLDOUT_ONE_IN: u32 = 10;
/// A class's threshold needs at least this many held-out predictions by default: a precision
/// measured on two items says nothing. Measured on 100-label projects of 10 classes against
/// 5,000 fresh items each (`ml::bench`): with 5, weak models (held-out accuracy 0.5-0.65)
/// still prelabeled 7-30% of items at 0.84-0.93 precision under a 0.95 target; with 8 they
/// prelabel nothing, and a good model (0.98) still prelabels 96.6% at 0.9997.
pub const DEFAULT_MIN_SUPPORT: u32 = 8;
/// Curve points kept per class in a report: enough to draw, small enough to store in a run.
pub const MAX_CURVE_POINTS: usize = 50;

/// A labeled item: its id (for the fold), its embedding and its classes.
#[derive(Debug, Clone, Copy)]
pub struct LabeledExample<'a> {
    pub item: u64,
    pub embedding: &'a [f32],
    pub classes: &'a [u32],
}

/// How the labeled items were split for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Split {
    /// Every item is held out once, by the head trained on the other folds.
    CrossValidation { folds: u32 },
    /// One item in `one_in` is held out, by one head trained on the rest.
    Holdout { one_in: u32 },
}

impl Split {
    /// The split the project's size calls for.
    pub fn for_labeled(labeled: usize) -> Self {
        if labeled < CROSS_VALIDATION_BELOW {
            Split::CrossValidation { folds: FOLDS }
        } else {
            Split::Holdout {
                one_in: HOLDOUT_ONE_IN,
            }
        }
    }

    fn buckets(self) -> u32 {
        match self {
            Split::CrossValidation { folds } => folds.max(2),
            Split::Holdout { one_in } => one_in.max(2),
        }
    }

    /// The evaluation rounds: cross-validation holds out each bucket in turn, a holdout only
    /// bucket 0.
    fn rounds(self) -> u32 {
        match self {
            Split::CrossValidation { .. } => self.buckets(),
            Split::Holdout { .. } => 1,
        }
    }
}

/// The bucket of `item` among `buckets`: a hash of the id and the seed, so it does not depend on
/// which other items are labeled.
pub fn bucket_of(item: u64, seed: u64, buckets: u32) -> u32 {
    (mix(item ^ mix(seed ^ 0x666f_6c64)) % u64::from(buckets.max(1))) as u32
}

/// A held-out prediction: the item, its true classes, and the probabilities that the head
/// trained without it gave (in the order of the head's classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    pub item: u64,
    pub classes: Vec<u32>,
    pub probabilities: Vec<f32>,
}

/// One point of a class's curve: predicting the class at confidence >= `threshold` would have
/// predicted it `support` times, `correct` of them rightly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f32,
    /// correct / support.
    pub precision: f32,
    /// correct / held-out items truly of the class.
    pub coverage: f32,
    pub support: u32,
    pub correct: u32,
}

/// Why a class gets no threshold (and so is not prelabeled).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoThreshold {
    #[error("no labeled examples of this class")]
    NotTrained,
    #[error("fewer than {min_support} held-out predictions")]
    TooFewPredictions { min_support: u32 },
    #[error(
        "precision {best:.2} (80% lower bound) < {target} at every threshold with support >= {min_support}",
        best = floor2(*best)
    )]
    PrecisionBelowTarget {
        best: f64,
        target: f64,
        min_support: u32,
    },
}

/// Rounded down, so a best precision of 0.949 reads 0.94 and never "0.95 < 0.95".
fn floor2(value: f64) -> f64 {
    (value * 100.0).floor() / 100.0
}

/// The predictions of one class among `held_out`: for a softmax head the items whose top class
/// it is, scored by its probability; for a sigmoid head every item, scored by its probability.
/// A score of 0 (an untrained class) is no prediction. Returns (score, correct) pairs.
fn predictions(kind: HeadKind, held_out: &[HeldOut], index: usize, class: u32) -> Vec<(f32, bool)> {
    held_out
        .iter()
        .filter_map(|h| {
            let score = *h.probabilities.get(index)?;
            let predicted = match kind {
                HeadKind::Softmax => top_class(&h.probabilities) == Some(index),
                HeadKind::Sigmoid => true,
            };
            (predicted && score > 0.0).then(|| (score, h.classes.contains(&class)))
        })
        .collect()
}

/// The index of the highest positive probability (lowest index on ties), if any.
fn top_class(probabilities: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (index, p) in probabilities.iter().enumerate() {
        if *p > 0.0 && best.is_none_or(|(_, b)| *p > b) {
            best = Some((index, *p));
        }
    }
    best.map(|(index, _)| index)
}

/// The full curve of class `classes[index]`, thresholds ascending, one point per distinct score.
pub fn class_curve(
    kind: HeadKind,
    held_out: &[HeldOut],
    classes: &[u32],
    index: usize,
) -> Vec<CurvePoint> {
    let Some(class) = classes.get(index).copied() else {
        return Vec::new();
    };
    let truly = held_out
        .iter()
        .filter(|h| h.classes.contains(&class))
        .count() as u32;
    let mut scored = predictions(kind, held_out, index, class);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = Vec::new();
    let (mut support, mut correct) = (0u32, 0u32);
    for (position, (score, right)) in scored.iter().enumerate() {
        support += 1;
        correct += u32::from(*right);
        let last_of_its_score = scored.get(position + 1).is_none_or(|next| next.0 != *score);
        if last_of_its_score {
            points.push(CurvePoint {
                threshold: *score,
                precision: correct as f32 / support as f32,
                coverage: if truly == 0 {
                    0.0
                } else {
                    correct as f32 / truly as f32
                },
                support,
                correct,
            });
        }
    }
    points.reverse();
    points
}

/// How sure "held-out precision meets the target" must be: the one-sided 80% lower confidence
/// bound (Wilson) of the measured precision must reach it. A precision measured on 20 items is
/// uncertain by several points, and the lowest threshold at which a noisy estimate first
/// touches the target is chosen exactly where it was lucky: without the bound, fresh items
/// came out under the target about half the time (0.942 for a 0.95 target on the digits).
/// With it, 19 of 20 does not meet 0.95 (bound 0.89) but 30 of 30 does (0.98).
pub const CONFIDENCE_Z: f64 = 0.8416;

/// The one-sided lower confidence bound of `correct / support` at [`CONFIDENCE_Z`] (Wilson).
pub fn precision_lower_bound(correct: u32, support: u32) -> f64 {
    if support == 0 {
        return 0.0;
    }
    let n = f64::from(support);
    let p = f64::from(correct) / n;
    let z2 = CONFIDENCE_Z * CONFIDENCE_Z;
    let centre = p + z2 / (2.0 * n);
    let margin = CONFIDENCE_Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// The lowest threshold at which held-out precision meets `target_precision` (its lower
/// bound does, see [`CONFIDENCE_Z`]) with support >= `min_support`: the most coverage the
/// target allows.
pub fn choose_threshold(
    curve: &[CurvePoint],
    target_precision: f64,
    min_support: u32,
) -> Result<CurvePoint, NoThreshold> {
    let supported = || curve.iter().filter(|p| p.support >= min_support.max(1));
    // Counts, not the stored f32 precision, decide.
    let meets =
        |p: &&CurvePoint| precision_lower_bound(p.correct, p.support) >= target_precision - 1e-9;
    if let Some(point) = supported().find(meets) {
        return Ok(*point);
    }
    match supported()
        .map(|p| precision_lower_bound(p.correct, p.support))
        .max_by(f64::total_cmp)
    {
        None => Err(NoThreshold::TooFewPredictions { min_support }),
        Some(best) => Err(NoThreshold::PrecisionBelowTarget {
            best,
            target: target_precision,
            min_support,
        }),
    }
}

/// At most `max` points of `curve` spread along it, always its first and last and the point at
/// `keep` (the chosen threshold), so the stored curve shows the choice exactly.
fn thin(curve: &[CurvePoint], max: usize, keep: Option<usize>) -> Vec<CurvePoint> {
    if curve.len() <= max || max < 3 {
        return curve.to_vec();
    }
    let spread = max - 1 - usize::from(keep.is_some());
    let last = curve.len() - 1;
    let mut indices: Vec<usize> = (0..=spread).map(|i| i * last / spread).collect();
    indices.extend(keep);
    indices.sort_unstable();
    indices.dedup();
    indices.into_iter().map(|i| curve[i]).collect()
}

/// Knobs of [`evaluate_and_train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationOptions {
    /// The project's target precision, e.g. 0.95.
    pub target_precision: f64,
    pub min_support: u32,
    /// Seeds the folds and the training runs.
    pub seed: u64,
    /// `None` splits by size ([`Split::for_labeled`]).
    pub split: Option<Split>,
    pub train: TrainOptions,
}

impl ValidationOptions {
    pub fn new(target_precision: f64, seed: u64) -> Self {
        Self {
            target_precision,
            min_support: DEFAULT_MIN_SUPPORT,
            seed,
            split: None,
            train: TrainOptions::default(),
        }
    }
}

/// What validation found for one class: stored with the run and shown to the admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub class: u32,
    /// Held-out items truly of this class.
    pub held_out: u32,
    /// Up to [`MAX_CURVE_POINTS`] points, thresholds ascending.
    pub curve: Vec<CurvePoint>,
    /// Prelabel this class at confidence >= threshold; `None`: never prelabel it.
    pub threshold: Option<f32>,
    pub precision: Option<f32>,
    pub coverage: Option<f32>,
    /// Why there is no threshold.
    pub reason: Option<String>,
}

/// The validation of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub kind: HeadKind,
    pub split: Split,
    pub target_precision: f64,
    pub min_support: u32,
    /// Labeled items the final head was trained on.
    pub labeled: u32,
    /// Items with a held-out prediction.
    pub held_out: u32,
    /// Held-out items predicted exactly right: the top class for a softmax head, the set of
    /// classes at 0.5 for a sigmoid head.
    pub accuracy: f64,
    pub classes: Vec<ClassReport>,
}

impl ValidationReport {
    /// Thins every class's curve to at most `max` points (keeping its ends and the chosen
    /// threshold's point), for a store with a size limit: at 50 points a class takes about 5 KB
    /// of JSON, so a project with 80 classes would pass DynamoDB's 400 KB item limit.
    pub fn thin_curves(&mut self, max: usize) {
        for class in &mut self.classes {
            let keep = class
                .threshold
                .and_then(|t| class.curve.iter().position(|p| p.threshold == t));
            class.curve = thin(&class.curve, max, keep);
        }
    }

    /// The prelabels for an item with these `probabilities` (in the order of `classes`), with
    /// their confidences, by the same rule the curves measured: a softmax head's top class when
    /// it reaches its threshold; each class of a sigmoid head that reaches its own.
    pub fn prelabels(&self, probabilities: &[f32]) -> Vec<(u32, f32)> {
        let passes = |index: usize| {
            let report = self.classes.get(index)?;
            let p = *probabilities.get(index)?;
            let threshold = report.threshold?;
            (p > 0.0 && p >= threshold).then_some((report.class, p))
        };
        match self.kind {
            HeadKind::Softmax => top_class(probabilities)
                .and_then(passes)
                .into_iter()
                .collect(),
            HeadKind::Sigmoid => (0..self.classes.len()).filter_map(passes).collect(),
        }
    }
}

/// A validated head: the head trained on every labeled item, its validation, and the held-out
/// predictions behind it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub head: Head,
    /// Under cross-validation, the fold heads whose average predicts (see the module's notes);
    /// empty: `head` predicts.
    pub ensemble: Vec<Head>,
    pub report: ValidationReport,
    pub held_out: Vec<HeldOut>,
}

impl Evaluation {
    /// The probabilities the report's thresholds apply to.
    pub fn probabilities(&self, embedding: &[f32]) -> Result<Vec<f32>, HeadError> {
        predict(&self.head, &self.ensemble, embedding)
    }
}

/// The average of `ensemble`'s probabilities for `embedding`, or `head`'s when `ensemble` is
/// empty.
pub fn predict(head: &Head, ensemble: &[Head], embedding: &[f32]) -> Result<Vec<f32>, HeadError> {
    let Some((first, rest)) = ensemble.split_first() else {
        return head.probabilities(embedding);
    };
    let mut sum = first.probabilities(embedding)?;
    for other in rest {
        for (total, p) in sum.iter_mut().zip(other.probabilities(embedding)?) {
            *total += p;
        }
    }
    let count = ensemble.len() as f32;
    sum.iter_mut().for_each(|total| *total /= count);
    Ok(sum)
}

/// Splits, trains a head per evaluation round, predicts the held-out items, draws every class's
/// curve and chooses its threshold, then trains the final head on all of `examples`.
pub fn evaluate_and_train(
    kind: HeadKind,
    examples: &[LabeledExample<'_>],
    classes: &[u32],
    options: &ValidationOptions,
) -> Result<Evaluation, HeadError> {
    let all: Vec<Example<'_>> = examples
        .iter()
        .map(|e| Example {
            embedding: e.embedding,
            classes: e.classes,
        })
        .collect();
    // Trained first: it checks the input, so a bad example fails before five fold trainings.
    let final_options = TrainOptions {
        seed: options.seed,
        ..options.train.clone()
    };
    let head = train(kind, &all, classes, &final_options)?;

    let split = options.split.unwrap_or(Split::for_labeled(examples.len()));
    let buckets: Vec<u32> = examples
        .iter()
        .map(|e| bucket_of(e.item, options.seed, split.buckets()))
        .collect();
    let mut held_out_of: Vec<Option<Vec<f32>>> = vec![None; examples.len()];
    let mut fold_heads = Vec::new();
    for round in 0..split.rounds() {
        let training: Vec<Example<'_>> = all
            .iter()
            .zip(&buckets)
            .filter(|(_, b)| **b != round)
            .map(|(e, _)| *e)
            .collect();
        let round_options = TrainOptions {
            seed: mix(options.seed.wrapping_add(u64::from(round) + 1)),
            ..options.train.clone()
        };
        // A round with nothing to train on (a tiny project) predicts nothing for its items.
        let round_head = match train(kind, &training, classes, &round_options) {
            Ok(head) => Some(head),
            Err(HeadError::NoExamples) => None,
            Err(other) => return Err(other),
        };
        for (index, example) in examples.iter().enumerate() {
            if buckets[index] != round {
                continue;
            }
            held_out_of[index] = Some(match &round_head {
                Some(h) => h.probabilities(example.embedding)?,
                None => vec![0.0; classes.len()],
            });
        }
        fold_heads.extend(round_head);
    }
    let ensemble = match split {
        Split::CrossValidation { .. } => fold_heads,
        Split::Holdout { .. } => Vec::new(),
    };
    let held_out: Vec<HeldOut> = examples
        .iter()
        .zip(held_out_of)
        .filter_map(|(example, probabilities)| {
            Some(HeldOut {
                item: example.item,
                classes: example.classes.to_vec(),
                probabilities: probabilities?,
            })
        })
        .collect();

    let class_reports = classes
        .iter()
        .enumerate()
        .map(|(index, class)| {
            let curve = class_curve(kind, &held_out, classes, index);
            let choice = if head.trained[index] {
                choose_threshold(&curve, options.target_precision, options.min_support)
            } else {
                Err(NoThreshold::NotTrained)
            };
            let keep = choice
                .as_ref()
                .ok()
                .and_then(|chosen| curve.iter().position(|p| p == chosen));
            ClassReport {
                class: *class,
                held_out: held_out
                    .iter()
                    .filter(|h| h.classes.contains(class))
                    .count() as u32,
                curve: thin(&curve, MAX_CURVE_POINTS, keep),
                threshold: choice.as_ref().ok().map(|p| p.threshold),
                precision: choice.as_ref().ok().map(|p| p.precision),
                coverage: choice.as_ref().ok().map(|p| p.coverage),
                reason: choice.err().map(|reason| reason.to_string()),
            }
        })
        .collect();

    let right = held_out
        .iter()
        .filter(|h| exactly_right(kind, classes, h))
        .count();
    let report = ValidationReport {
        kind,
        split,
        target_precision: options.target_precision,
        min_support: options.min_support,
        labeled: examples.len() as u32,
        held_out: held_out.len() as u32,
        accuracy: if held_out.is_empty() {
            0.0
        } else {
            right as f64 / held_out.len() as f64
        },
        classes: class_reports,
    };
    Ok(Evaluation {
        head,
        ensemble,
        report,
        held_out,
    })
}

fn exactly_right(kind: HeadKind, classes: &[u32], held_out: &HeldOut) -> bool {
    match kind {
        HeadKind::Softmax => top_class(&held_out.probabilities)
            .is_some_and(|index| held_out.classes == [classes[index]]),
        HeadKind::Sigmoid => {
            let mut predicted: Vec<u32> = classes
                .iter()
                .zip(&held_out.probabilities)
                .filter(|(_, p)| **p >= 0.5)
                .map(|(c, _)| *c)
                .collect();
            let mut truth = held_out.classes.clone();
            predicted.sort_unstable();
            truth.sort_unstable();
            truth.dedup();
            predicted == truth
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::ml::head::tests::blobs;
    use proptest::prelude::*;

    fn held(item: u64, class: u32, probabilities: &[f32]) -> HeldOut {
        HeldOut {
            item,
            classes: vec![class],
            probabilities: probabilities.to_vec(),
        }
    }

    fn point(threshold: f32, support: u32, correct: u32) -> CurvePoint {
        CurvePoint {
            threshold,
            precision: correct as f32 / support as f32,
            coverage: 0.0,
            support,
            correct,
        }
    }

    #[test]
    fn a_multi_class_curve_counts_only_items_whose_top_class_it_is() {
        let held_out = [
            held(1, 0, &[0.9, 0.1]),
            held(2, 0, &[0.8, 0.2]),
            held(3, 1, &[0.7, 0.3]),
            held(4, 0, &[0.4, 0.6]),
            held(5, 1, &[0.8, 0.2]),
        ];
        let curve = class_curve(HeadKind::Softmax, &held_out, &[0, 1], 0);
        let summary: Vec<(f32, u32, u32)> = curve
            .iter()
            .map(|p| (p.threshold, p.support, p.correct))
            .collect();
        assert_eq!(summary, vec![(0.7, 4, 2), (0.8, 3, 2), (0.9, 1, 1)]);
        assert_eq!(curve[0].coverage, 2.0 / 3.0);
        let other = class_curve(HeadKind::Softmax, &held_out, &[0, 1], 1);
        assert_eq!(other.len(), 1);
        assert_eq!((other[0].support, other[0].correct), (1, 0));
    }

    #[test]
    fn a_multi_label_curve_scores_every_item_by_its_own_probability() {
        let held_out = [
            HeldOut {
                item: 1,
                classes: vec![0, 1],
                probabilities: vec![0.9, 0.6],
            },
            HeldOut {
                item: 2,
                classes: vec![1],
                probabilities: vec![0.2, 0.9],
            },
            HeldOut {
                item: 3,
                classes: vec![],
                probabilities: vec![0.1, 0.3],
            },
        ];
        let curve = class_curve(HeadKind::Sigmoid, &held_out, &[0, 1], 1);
        let summary: Vec<(f32, u32, u32)> = curve
            .iter()
            .map(|p| (p.threshold, p.support, p.correct))
            .collect();
        assert_eq!(summary, vec![(0.3, 3, 2), (0.6, 2, 2), (0.9, 1, 1)]);
        assert_eq!(curve[0].coverage, 1.0);
    }

    #[test]
    fn the_threshold_is_the_lowest_whose_precision_surely_meets_the_target_with_enough_support() {
        let curve = [
            point(0.5, 40, 30),
            point(0.7, 20, 19),
            point(0.8, 30, 30),
            point(0.9, 12, 12),
            point(0.95, 3, 3),
        ];
        // 19 of 20 is 0.95 measured, but its lower bound is 0.89; 30 of 30 is surely above.
        assert!((precision_lower_bound(19, 20) - 0.891).abs() < 0.001);
        assert!((precision_lower_bound(30, 30) - 0.977).abs() < 0.001);
        assert_eq!(choose_threshold(&curve, 0.95, 5).unwrap().threshold, 0.8);
        assert_eq!(choose_threshold(&curve, 0.9, 5).unwrap().threshold, 0.8);
        assert_eq!(choose_threshold(&curve, 0.7, 5).unwrap().threshold, 0.7);
        assert_eq!(choose_threshold(&curve, 0.6, 5).unwrap().threshold, 0.5);
        assert_eq!(
            choose_threshold(&curve, 0.99, 5).unwrap_err().to_string(),
            "precision 0.97 (80% lower bound) < 0.99 at every threshold with support >= 5"
        );
        assert_eq!(
            choose_threshold(&curve, 0.95, 31).unwrap_err().to_string(),
            "precision 0.68 (80% lower bound) < 0.95 at every threshold with support >= 31"
        );
    }

    #[test]
    fn a_class_that_cannot_meet_the_target_gets_a_reason_instead() {
        let curve = [point(0.5, 100, 91), point(0.9, 20, 18), point(0.99, 4, 4)];
        assert_eq!(
            choose_threshold(&curve, 0.95, 5).unwrap_err().to_string(),
            "precision 0.88 (80% lower bound) < 0.95 at every threshold with support >= 5"
        );
        assert_eq!(
            choose_threshold(&[point(0.9, 4, 4)], 0.95, 5)
                .unwrap_err()
                .to_string(),
            "fewer than 5 held-out predictions"
        );
        assert_eq!(
            choose_threshold(&[], 0.95, 5).unwrap_err(),
            NoThreshold::TooFewPredictions { min_support: 5 }
        );
    }

    #[test]
    fn a_thinned_curve_keeps_its_ends_and_the_chosen_point() {
        let curve: Vec<CurvePoint> = (0..500)
            .map(|i| point(i as f32 / 500.0, 500 - i, 400))
            .collect();
        let thinned = thin(&curve, MAX_CURVE_POINTS, Some(123));
        assert!(thinned.len() <= MAX_CURVE_POINTS);
        assert_eq!(thinned.first(), curve.first());
        assert_eq!(thinned.last(), curve.last());
        assert!(thinned.contains(&curve[123]));
        assert!(thinned.windows(2).all(|w| w[0].threshold < w[1].threshold));
    }

    #[test]
    fn a_reports_curves_can_be_thinned_further_to_fit_a_store() {
        let curve: Vec<CurvePoint> = (0..50)
            .map(|i| point(i as f32 / 50.0, 50 - i, 40))
            .collect();
        let mut report = ValidationReport {
            kind: HeadKind::Softmax,
            split: Split::CrossValidation { folds: 5 },
            target_precision: 0.95,
            min_support: 5,
            labeled: 100,
            held_out: 100,
            accuracy: 0.9,
            classes: vec![ClassReport {
                class: 1,
                held_out: 50,
                curve: curve.clone(),
                threshold: Some(curve[37].threshold),
                precision: None,
                coverage: None,
                reason: None,
            }],
        };
        report.thin_curves(10);
        let thinned = &report.classes[0].curve;
        assert!(thinned.len() <= 10);
        assert!(thinned.contains(&curve[37]) && thinned.contains(&curve[0]));
    }

    #[test]
    fn small_projects_cross_validate_and_large_ones_hold_out_a_tenth() {
        assert_eq!(Split::for_labeled(100), Split::CrossValidation { folds: 5 });
        assert_eq!(
            Split::for_labeled(4_999),
            Split::CrossValidation { folds: 5 }
        );
        assert_eq!(Split::for_labeled(5_000), Split::Holdout { one_in: 10 });
        let held: usize = (0..20_000u64).filter(|i| bucket_of(*i, 3, 10) == 0).count();
        assert!((1_800..2_200).contains(&held), "{held} of 20,000 held out");
        let per_fold: Vec<usize> = (0..5)
            .map(|f| (0..10_000u64).filter(|i| bucket_of(*i, 3, 5) == f).count())
            .collect();
        assert!(
            per_fold.iter().all(|n| (1_850..2_150).contains(n)),
            "{per_fold:?}"
        );
    }

    proptest! {
        #[test]
        fn a_curve_is_consistent_and_the_chosen_threshold_is_the_lowest_that_qualifies(
            rows in proptest::collection::vec((0u32..3, 0u8..=20, 0u8..=20, 0u8..=20), 0..80),
            target in 0.5f64..1.0,
            min_support in 1u32..8,
        ) {
            // Scores on a coarse grid, so distinct items share thresholds.
            let held_out: Vec<HeldOut> = rows
                .iter()
                .enumerate()
                .map(|(i, (class, a, b, c))| {
                    let raw = [f32::from(*a), f32::from(*b), f32::from(*c)];
                    let sum: f32 = raw.iter().sum::<f32>().max(1.0);
                    held(i as u64, *class, &raw.map(|v| v / sum))
                })
                .collect();
            for kind in [HeadKind::Softmax, HeadKind::Sigmoid] {
                for index in 0..3 {
                    let curve = class_curve(kind, &held_out, &[0, 1, 2], index);
                    let truly = held_out.iter().filter(|h| h.classes[0] == index as u32).count();
                    for pair in curve.windows(2) {
                        prop_assert!(pair[0].threshold < pair[1].threshold);
                        prop_assert!(pair[0].support > pair[1].support);
                        prop_assert!(pair[0].correct >= pair[1].correct);
                    }
                    for p in &curve {
                        prop_assert!(p.correct <= p.support && p.correct as usize <= truly);
                        prop_assert!((0.0..=1.0).contains(&p.precision));
                        prop_assert!((0.0..=1.0).contains(&p.coverage));
                    }
                    let qualifies = |p: &CurvePoint| {
                        p.support >= min_support
                            && precision_lower_bound(p.correct, p.support) >= target - 1e-9
                    };
                    match choose_threshold(&curve, target, min_support) {
                        Ok(chosen) => {
                            prop_assert!(qualifies(&chosen));
                            prop_assert!(curve
                                .iter()
                                .filter(|p| p.threshold < chosen.threshold)
                                .all(|p| !qualifies(p)));
                        }
                        Err(_) => prop_assert!(curve.iter().all(|p| !qualifies(p))),
                    }
                }
            }
        }

        #[test]
        fn an_items_fold_depends_on_its_id_and_the_seed_only(item in any::<u64>(), seed in any::<u64>()) {
            prop_assert_eq!(bucket_of(item, seed, 5), bucket_of(item, seed, 5));
            prop_assert!(bucket_of(item, seed, 5) < 5);
        }
    }

    struct Labeled {
        points: Vec<Vec<f32>>,
        classes: Vec<Vec<u32>>,
    }

    impl Labeled {
        fn blobs(classes: usize, per_class: usize, dims: usize, spread: f32, seed: u64) -> Self {
            let (points, labels) = blobs(classes, per_class, dims, spread, seed);
            Self {
                points,
                classes: labels.iter().map(|l| vec![*l]).collect(),
            }
        }

        fn examples(&self) -> Vec<LabeledExample<'_>> {
            self.points
                .iter()
                .zip(&self.classes)
                .enumerate()
                .map(|(i, (p, c))| LabeledExample {
                    item: 1_000 + i as u64,
                    embedding: p,
                    classes: c,
                })
                .collect()
        }
    }

    #[test]
    fn a_hundred_labels_get_an_out_of_fold_prediction_each_and_thresholds_per_class() {
        let data = Labeled::blobs(4, 25, 32, 0.5, 8);
        let evaluation = evaluate_and_train(
            HeadKind::Softmax,
            &data.examples(),
            &[0, 1, 2, 3, 9],
            &ValidationOptions::new(0.95, 1),
        )
        .unwrap();
        let report = &evaluation.report;
        assert_eq!(report.split, Split::CrossValidation { folds: 5 });
        assert_eq!((report.labeled, report.held_out), (100, 100));
        let mut items: Vec<u64> = evaluation.held_out.iter().map(|h| h.item).collect();
        items.dedup();
        assert_eq!(items.len(), 100);
        assert!(report.accuracy > 0.95, "accuracy {}", report.accuracy);
        for class in &report.classes[..4] {
            assert_eq!(class.held_out, 25);
            assert!(class.threshold.is_some(), "{class:?}");
            assert!(class.precision.unwrap() >= 0.95);
            assert!(class.curve.len() <= MAX_CURVE_POINTS);
        }
        let unlabeled = &report.classes[4];
        assert_eq!((unlabeled.class, unlabeled.threshold), (9, None));
        assert_eq!(
            unlabeled.reason.as_deref(),
            Some("no labeled examples of this class")
        );
        // The fold heads, averaged, prelabel a fresh item of class 2 as class 2.
        assert_eq!(evaluation.ensemble.len(), 5);
        let fresh = Labeled::blobs(4, 1, 32, 0.5, 8);
        let probabilities = evaluation.probabilities(&fresh.points[2]).unwrap();
        let prelabels = report.prelabels(&probabilities);
        assert_eq!(prelabels.len(), 1);
        assert_eq!(prelabels[0].0, 2);
    }

    #[test]
    fn overlapping_classes_are_not_prelabeled_and_say_why() {
        // Two classes drawn around the same centre cannot be told apart.
        let (points, _) = blobs(1, 200, 16, 1.0, 9);
        let classes: Vec<Vec<u32>> = (0..200).map(|i| vec![i % 2]).collect();
        let data = Labeled { points, classes };
        let evaluation = evaluate_and_train(
            HeadKind::Softmax,
            &data.examples(),
            &[0, 1],
            &ValidationOptions::new(0.95, 2),
        )
        .unwrap();
        for class in &evaluation.report.classes {
            assert_eq!(class.threshold, None);
            let reason = class.reason.as_deref().unwrap();
            assert!(reason.starts_with("precision 0."), "{reason}");
            assert!(
                reason.ends_with("< 0.95 at every threshold with support >= 8"),
                "{reason}"
            );
        }
        assert!(evaluation.report.prelabels(&[0.99, 0.01]).is_empty());
    }

    #[test]
    fn a_multi_label_project_is_validated_per_class() {
        let data = Labeled::blobs(3, 40, 16, 0.4, 10);
        let classes: Vec<Vec<u32>> = data
            .classes
            .iter()
            .map(|c| if c[0] < 2 { vec![c[0], 3] } else { c.clone() })
            .collect();
        let data = Labeled {
            points: data.points,
            classes,
        };
        let evaluation = evaluate_and_train(
            HeadKind::Sigmoid,
            &data.examples(),
            &[0, 1, 2, 3],
            &ValidationOptions::new(0.9, 3),
        )
        .unwrap();
        let report = &evaluation.report;
        assert!(report.accuracy > 0.9, "accuracy {}", report.accuracy);
        assert!(
            report.classes.iter().all(|c| c.threshold.is_some()),
            "{report:?}"
        );
        let vehicle = evaluation.head.probabilities(&data.points[0]).unwrap();
        let labels: Vec<u32> = report.prelabels(&vehicle).iter().map(|(c, _)| *c).collect();
        assert_eq!(labels, data.classes[0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_evaluation_and_its_report_survives_json() {
        let data = Labeled::blobs(3, 20, 8, 0.5, 11);
        let options = ValidationOptions::new(0.95, 4);
        let first =
            evaluate_and_train(HeadKind::Softmax, &data.examples(), &[0, 1, 2], &options).unwrap();
        let second =
            evaluate_and_train(HeadKind::Softmax, &data.examples(), &[0, 1, 2], &options).unwrap();
        assert_eq!(first.report, second.report);
        assert_eq!(first.head, second.head);
        let json = serde_json::to_string(&first.report).unwrap();
        assert_eq!(
            serde_json::from_str::<ValidationReport>(&json).unwrap(),
            first.report
        );
    }

    #[test]
    fn a_single_labeled_item_is_validated_without_failing() {
        let data = Labeled::blobs(1, 1, 4, 0.5, 12);
        let evaluation = evaluate_and_train(
            HeadKind::Softmax,
            &data.examples(),
            &[0, 1],
            &ValidationOptions::new(0.95, 5),
        )
        .unwrap();
        assert_eq!(evaluation.report.held_out, 1);
        assert_eq!(evaluation.report.accuracy, 0.0);
        assert_eq!(
            evaluation.report.classes[0].reason.as_deref(),
            Some("fewer than 8 held-out predictions")
        );
    }
}
