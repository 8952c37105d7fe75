//! Box prelabels end to end, through the HTTP API, on scenes whose truth is known: objects cut
//! from scikit-image's photos (the coffee cup, the cat's face, the rocket) pasted at random
//! places and scales onto other real photos (tests/python/scenes.py), the real detection
//! backbone (EfficientNet-Lite0's stride-16 map in ONNX Runtime) and the real jobs. A labeler
//! draws the true boxes of about 100 scenes through tasks; the server's own check starts the
//! run; then every remaining task is checked out and its prelabeled boxes compared with the
//! truth at IoU >= 0.5.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use labeling_tests::ml::{
    TrueBox, backbone, first_run_succeeded, scenes, step, wilson_upper_bound,
};
use labeling_tests::{on_aws, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCENES: usize = 300;
const MIN_LABELS: u64 = 100;
const TARGET: f64 = 0.9;

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let x = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let y = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if x <= 0.0 || y <= 0.0 {
        return 0.0;
    }
    let inter = x * y;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

fn annotations(boxes: &[TrueBox]) -> Value {
    Value::Array(
        boxes
            .iter()
            .map(|(label, bbox)| json!({ "label": label, "bbox": bbox }))
            .collect(),
    )
}

/// Greedy matching of prelabels to true boxes of the same class at IoU >= 0.5, most confident
/// first (as COCO matches): how many prelabels found a true box.
fn matched(prelabels: &[(String, [f64; 4], f64)], truths: &[TrueBox]) -> usize {
    let mut order: Vec<usize> = (0..prelabels.len()).collect();
    order.sort_by(|a, b| prelabels[*b].2.total_cmp(&prelabels[*a].2));
    let mut taken = vec![false; truths.len()];
    let mut found = 0;
    for index in order {
        let (label, bbox, _) = &prelabels[index];
        let best = truths
            .iter()
            .enumerate()
            .filter(|(t, (class, _))| !taken[*t] && class == label)
            .map(|(t, (_, truth))| (t, iou(*bbox, *truth)))
            .filter(|(_, overlap)| *overlap >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, _)) = best {
            taken[t] = true;
            found += 1;
        }
    }
    found
}

#[tokio::test]
async fn box_prelabels_after_100_labeled_scenes_meet_the_target_and_find_most_objects() {
    if on_aws() {
        // One run of the real models is enough; the jobs' storage is covered on moto elsewhere.
        return;
    }
    let app = spawn_app_with(|options| {
        options.ml_backbone = backbone();
        options.ml_check_interval = Duration::from_millis(500);
    })
    .await;
    let (dir, listed) = scenes(SCENES, 0);
    for (name, _) in &listed {
        app.put_object(
            "scenes",
            &format!("s/{name}"),
            std::fs::read(dir.join(name)).unwrap(),
        )
        .await;
    }
    let truth: HashMap<String, Vec<TrueBox>> = listed.into_iter().collect();
    let truth_of = |key: &str| truth.get(key.rsplit('/').next().unwrap()).unwrap();
    let project = app
        .project(json!({
            "name": "scenes", "task_type": "object_detection",
            "labels": ["cup", "cat", "rocket"], "source": "s3://scenes/s/**",
            "ml_assist": { "enabled": true, "target_precision": TARGET, "min_labels": MIN_LABELS },
        }))
        .await;

    // The true boxes of the first MIN_LABELS scenes, through tasks.
    let mut labeled = 0u64;
    while labeled < MIN_LABELS {
        let task = app.checkout(&project, &app.admin).await;
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        assert_eq!(task.body["kind"], "manual");
        let items: Vec<Value> = task.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let boxes = truth_of(item["key"].as_str().unwrap());
                json!({ "item_id": item["item_id"], "annotations": annotations(boxes) })
            })
            .collect();
        labeled += items.len() as u64;
        let task_id = task.body["task_id"].as_str().unwrap().to_owned();
        let submitted = app
            .submit(&project, &task_id, &app.admin, json!({ "items": items }))
            .await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    }

    let started = Instant::now();
    let ml = first_run_succeeded(&app, &project).await;
    let run = &ml["runs"][0];
    let step = |name: &str| step(run, name);
    for name in ["training", "validation", "inference"] {
        assert_eq!(step(name)["status"], "succeeded", "{name}: {run}");
    }
    let validation = step("validation")["metrics"].clone();
    assert!(
        validation["mean_average_precision"].as_f64().unwrap() > 0.0,
        "{validation}"
    );
    for class in ml["classes"].as_array().unwrap() {
        assert!(class["average_precision"].is_number(), "{class}");
        assert!(!class["curve"].as_array().unwrap().is_empty(), "{class}");
        assert!(
            class["threshold"].is_number() || class["reason"].is_string(),
            "{class}"
        );
    }
    println!(
        "run of {labeled} labeled scenes in {:.1} s: training {} | validation {} | inference {}",
        started.elapsed().as_secs_f64(),
        step("training")["metrics"],
        validation,
        step("inference")["metrics"],
    );
    for class in ml["classes"].as_array().unwrap() {
        println!(
            "  {}: AP {:.3}, threshold {}, precision {}, recall {} ({} held-out boxes){}",
            class["label"],
            class["average_precision"].as_f64().unwrap_or(0.0),
            class["threshold"],
            class["precision"],
            class["coverage"],
            class["held_out"],
            class["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }

    // Every remaining task; prelabeled boxes against the truth, then the true boxes submitted.
    let (mut prelabel_boxes, mut correct_boxes, mut true_boxes) = (0u64, 0u64, 0u64);
    // True boxes of the items handed out with prelabels: each is accepted, edited or added.
    let mut true_in_prelabeled = 0u64;
    let mut per_class: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let task = app.checkout(&project, &app.admin).await;
        if task.status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        let kind = task.body["kind"].as_str().unwrap().to_owned();
        let mut answers = Vec::new();
        for item in task.body["items"].as_array().unwrap() {
            *kinds.entry(kind.clone()).or_default() += 1;
            let truths = truth_of(item["key"].as_str().unwrap());
            true_boxes += truths.len() as u64;
            let prelabels: Vec<(String, [f64; 4], f64)> = item["prelabels"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|p| {
                            let b: Vec<f64> = p["bbox"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|v| v.as_f64().unwrap())
                                .collect();
                            let confidence = p["confidence"].as_f64().unwrap();
                            assert!((0.0..=1.0).contains(&confidence), "{p}");
                            (
                                p["label"].as_str().unwrap().to_owned(),
                                [b[0], b[1], b[2], b[3]],
                                confidence,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                kind == "prelabeled",
                !prelabels.is_empty(),
                "a prelabeled item has boxes, others none: {item}"
            );
            for (label, _, _) in &prelabels {
                per_class.entry(label.clone()).or_default().0 += 1;
            }
            let found = matched(&prelabels, truths);
            for (label, bbox, _) in &prelabels {
                if truths
                    .iter()
                    .any(|(class, truth)| class == label && iou(*bbox, *truth) >= 0.5)
                {
                    per_class.entry(label.clone()).or_default().1 += 1;
                }
            }
            prelabel_boxes += prelabels.len() as u64;
            if !prelabels.is_empty() {
                true_in_prelabeled += truths.len() as u64;
            }
            correct_boxes += found as u64;
            answers.push(json!({ "item_id": item["item_id"], "annotations": annotations(truths) }));
        }
        let task_id = task.body["task_id"].as_str().unwrap().to_owned();
        let submitted = app
            .submit(&project, &task_id, &app.admin, json!({ "items": answers }))
            .await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    }
    let precision = correct_boxes as f64 / prelabel_boxes.max(1) as f64;
    let recall = correct_boxes as f64 / true_boxes.max(1) as f64;
    println!(
        "remaining scenes {:?}: {prelabel_boxes} prelabeled boxes, {correct_boxes} right at IoU 0.5 \
         (precision {precision:.3}); {true_boxes} true boxes, {:.1}% of them prelabeled; per class \
         (prelabeled, right): {per_class:?}",
        kinds,
        100.0 * recall
    );
    let upper = wilson_upper_bound(correct_boxes, prelabel_boxes, 1.645);
    assert!(
        prelabel_boxes >= 50,
        "too few prelabeled boxes to judge: {prelabel_boxes}"
    );
    assert!(
        upper >= TARGET,
        "box precision {precision:.3} ({correct_boxes} of {prelabel_boxes}, 95% upper bound {upper:.3}) is under the {TARGET} target"
    );
    assert!(
        recall >= 0.5,
        "only {:.1}% of the remaining true boxes were prelabeled",
        100.0 * recall
    );

    // Per-box provenance: every prelabeled box was accepted, edited or deleted, every submitted
    // box of those items accepted, edited or added.
    let dashboard = app.dashboard(&project).await;
    let boxes = dashboard["box_acceptance"].as_object().unwrap();
    let sum = |field: &str| -> u64 {
        boxes
            .values()
            .map(|class| class[field].as_u64().unwrap())
            .sum()
    };
    println!("box provenance per class: {}", dashboard["box_acceptance"]);
    assert_eq!(
        sum("accepted") + sum("edited") + sum("deleted"),
        prelabel_boxes,
        "{dashboard}"
    );
    assert_eq!(
        sum("accepted") + sum("edited") + sum("added"),
        true_in_prelabeled,
        "{dashboard}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
