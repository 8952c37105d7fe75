//! Hand measurements of the ML math at the scale, run in release:
//! `cargo test --release -p labeling-core --lib ml::bench -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use super::cluster::pack_pages;
use super::head::tests::blobs;
use super::head::{HeadKind, TrainOptions};
use super::validation::{LabeledExample, Split, ValidationOptions, evaluate_and_train};

/// 10,000 labeled 1,280-dim embeddings of 10 classes (noisy blobs: separable, not trivially),
/// validated by 5-fold cross-validation (the most work any project size asks for) and by the
/// 10% holdout this size actually gets, then 10,000 unlabeled ones predicted and prelabeled.
#[test]
#[ignore = "a hand measurement; run in release"]
fn train_validate_and_predict_ten_thousand_embeddings() {
    // One draw of 20,000 (the blobs' centres depend on the seed): the first 10,000 are labeled,
    // the other 10,000 of the same classes are to be prelabeled.
    // Knobs for exploring by hand without rebuilding: ML_BENCH_SPREAD (noise), ML_BENCH_L2,
    // ML_BENCH_STEPS (TrainOptions::min_steps).
    let knob = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let spread = knob("ML_BENCH_SPREAD", 2.0) as f32;
    let mut train = TrainOptions::default();
    train.l2 = knob("ML_BENCH_L2", f64::from(train.l2)) as f32;
    train.min_steps = knob("ML_BENCH_STEPS", train.min_steps as f64) as usize;
    let (mut points, mut labels) = blobs(10, 2_000, 1_280, spread, 1);
    let unlabeled = points.split_off(10_000);
    let truth = labels.split_off(10_000);
    let classes: Vec<Vec<u32>> = labels.iter().map(|l| vec![*l]).collect();
    let examples: Vec<LabeledExample<'_>> = points
        .iter()
        .zip(&classes)
        .enumerate()
        .map(|(i, (p, c))| LabeledExample {
            item: i as u64,
            embedding: p,
            classes: c,
        })
        .collect();
    let class_ids: Vec<u32> = (0..10).collect();

    for split in [
        Split::CrossValidation { folds: 5 },
        Split::Holdout { one_in: 10 },
    ] {
        let options = ValidationOptions {
            split: Some(split),
            train: train.clone(),
            ..ValidationOptions::new(0.95, 7)
        };
        let started = Instant::now();
        let evaluation =
            evaluate_and_train(HeadKind::Softmax, &examples, &class_ids, &options).unwrap();
        let trained = started.elapsed();
        let started = Instant::now();
        let mut prelabeled = 0;
        let mut right = 0;
        for (point, label) in unlabeled.iter().zip(&truth) {
            let probabilities = evaluation.probabilities(point).unwrap();
            if let [(class, _)] = evaluation.report.prelabels(&probabilities)[..] {
                prelabeled += 1;
                right += usize::from(class == *label);
            }
        }
        let predicted = started.elapsed();
        for class in &evaluation.report.classes {
            eprintln!(
                "  class {}: threshold {:?} precision {:?} coverage {:?} {}",
                class.class,
                class.threshold,
                class.precision,
                class.coverage,
                class.reason.as_deref().unwrap_or("")
            );
        }
        eprintln!(
            "spread {spread}, l2 {}, min_steps {}",
            train.l2, train.min_steps
        );
        eprintln!(
            "{split:?}: train + validate {:.2} s, predict 10,000 {:.2} s, total {:.2} s; \
             held-out accuracy {:.4}, prelabeled {prelabeled} of 10,000 at precision {:.4}",
            trained.as_secs_f64(),
            predicted.as_secs_f64(),
            (trained + predicted).as_secs_f64(),
            evaluation.report.accuracy,
            right as f64 / prelabeled.max(1) as f64,
        );
    }
}

/// Packing windows of upcoming items into pages of 9, at two window sizes.
#[test]
#[ignore = "a hand measurement; run in release"]
fn pack_windows_of_unlabeled_embeddings() {
    for window in [2_000, 10_000] {
        let (points, _) = blobs(50, window / 50, 1_280, 2.0, 3);
        let slices: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        let pages = pack_pages(&slices, 9, 1).unwrap();
        eprintln!(
            "pack {window} items into {} pages of 9: {:.2} s",
            pages.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// A small project (100 labels, 10 classes, 5-fold cross-validation) over many seeds: how
/// precise the prelabels of 5,000 fresh items of the same classes are against the target, and
/// how many are prelabeled. ML_BENCH_SPREAD sets the noise, ML_BENCH_MIN_SUPPORT the support.
#[test]
#[ignore = "a hand measurement; run in release"]
fn prelabel_precision_of_a_hundred_label_project() {
    let spread = std::env::var("ML_BENCH_SPREAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14.0f32);
    let min_support = std::env::var("ML_BENCH_MIN_SUPPORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(super::validation::DEFAULT_MIN_SUPPORT);
    let class_ids: Vec<u32> = (0..10).collect();
    let (mut total, mut right, mut accuracy) = (0usize, 0usize, 0.0);
    let seeds = 10;
    for seed in 0..seeds {
        let (mut points, mut labels) = blobs(10, 510, 1_280, spread, 100 + seed);
        let fresh = points.split_off(100);
        let truth = labels.split_off(100);
        let classes: Vec<Vec<u32>> = labels.iter().map(|l| vec![*l]).collect();
        let examples: Vec<LabeledExample<'_>> = points
            .iter()
            .zip(&classes)
            .enumerate()
            .map(|(i, (p, c))| LabeledExample {
                item: i as u64,
                embedding: p,
                classes: c,
            })
            .collect();
        let evaluation = evaluate_and_train(
            HeadKind::Softmax,
            &examples,
            &class_ids,
            &ValidationOptions {
                min_support,
                ..ValidationOptions::new(0.95, seed)
            },
        )
        .unwrap();
        accuracy += evaluation.report.accuracy / seeds as f64;
        for (point, label) in fresh.iter().zip(&truth) {
            let probabilities = evaluation.probabilities(point).unwrap();
            if let [(class, _)] = evaluation.report.prelabels(&probabilities)[..] {
                total += 1;
                right += usize::from(class == *label);
            }
        }
    }
    eprintln!(
        "spread {spread}, min support {min_support}: held-out accuracy {accuracy:.3}; prelabeled {:.1}% of fresh items at \
         precision {:.4} (target 0.95)",
        100.0 * total as f64 / (seeds as f64 * 5_000.0),
        right as f64 / total.max(1) as f64
    );
}
