//! Exports: COCO that pycocotools loads and evaluates to AP 1.0, JSON Lines in Azure ML's
//! schema, round trips of every task type, and empty projects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use labeling_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Deterministic geometry per image key, inside a 64 x 48 image.
fn shapes_for(key: &str, task_type: &str) -> Value {
    let n: f64 = key
        .trim_end_matches(".png")
        .rsplit('-')
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    let classes = ["cat", "dog", "bird"];
    let class = classes[n as usize % 2];
    match task_type {
        "image_classification_multiclass" => json!({ "labels": [class] }),
        "image_classification_multilabel" => {
            json!({ "labels": if (n as usize).is_multiple_of(3) { json!(["cat", "dog"]) } else { json!([class]) } })
        }
        "object_detection" => json!({ "annotations": [
            { "label": class, "bbox": [1.25 + n, 2.5, 10.0 + n, 7.75] },
            { "label": "dog", "bbox": [30.0, 20.0, 12.5, 20.0] },
        ] }),
        _ => json!({ "annotations": [
            { "label": class, "polygon": [[2.0 + n, 2.0], [20.0 + n, 3.5], [11.0, 17.25]] },
            { "label": "dog", "polygon": [[30.0, 20.0], [50.0, 20.0], [50.0, 40.0], [30.0, 40.0]] },
        ] }),
    }
}

async fn labeled(
    app: &TestApp,
    task_type: &str,
    items: usize,
) -> (String, String, BTreeMap<String, Value>) {
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(task_type, &["cat", "dog"], items, 1, "ann")
        .await;
    let labels = app
        .label_all(&project, &ann, |key| shapes_for(key, task_type))
        .await;
    (project, ann, labels)
}

fn coco_judges() -> Vec<String> {
    let pythons = std::env::var("LABELING_COCO_PYTHONS").unwrap_or_default();
    let judges: Vec<String> = pythons
        .split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !judges.is_empty(),
        "LABELING_COCO_PYTHONS is not set: run ./infra/test.sh, or eval \"$(./infra/python-env.sh)\" first"
    );
    judges
}

/// Runs pycocotools (every configured version) over the file; returns each one's report.
fn judge(path: &std::path::Path, iou_types: &[&str]) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/coco_check.py");
    coco_judges()
        .iter()
        .map(|python| {
            let output = std::process::Command::new(python)
                .arg(&script)
                .arg(path)
                .args(iou_types)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{python} judged {} as failing: {stdout}{}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_str(stdout.trim()).unwrap()
        })
        .collect()
}

fn write_temp(app: &TestApp, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = app.data_dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x, y))
        }
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-3
        }
        _ => a == b,
    }
}

/// Checks a COCO export against what was submitted, key by key.
fn assert_coco_matches(coco: &Value, task_type: &str, submitted: &BTreeMap<String, Value>) {
    assert!(coco["info"]["date_created"].is_string());
    assert_eq!(coco["licenses"], json!([]));
    let categories: BTreeMap<u64, String> = coco["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        categories.keys().copied().collect::<Vec<_>>(),
        (1..=categories.len() as u64).collect::<Vec<_>>(),
        "category ids are 1..N"
    );
    let images: BTreeMap<u64, &Value> = coco["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_u64().unwrap(), i))
        .collect();
    assert_eq!(images.len(), submitted.len(), "one image per labeled item");
    let mut annotation_ids = std::collections::HashSet::new();
    let mut by_image: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for annotation in coco["annotations"].as_array().unwrap() {
        assert!(
            annotation_ids.insert(annotation["id"].as_u64().unwrap()),
            "annotation ids are unique"
        );
        assert_eq!(annotation["iscrowd"], 0);
        by_image
            .entry(annotation["image_id"].as_u64().unwrap())
            .or_default()
            .push(annotation);
    }
    for (id, image) in &images {
        assert_eq!(image["width"], 64, "the real width");
        assert_eq!(image["height"], 48);
        let file_name = image["file_name"].as_str().unwrap();
        assert!(
            !file_name.starts_with('/') && !file_name.starts_with("set/"),
            "file_name is relative to the dataset root: {file_name}"
        );
        let key = format!("set/{file_name}");
        assert!(image["s3_uri"].as_str().unwrap().ends_with(&key));
        let expected = &submitted[&key];
        let annotations = by_image.remove(id).unwrap_or_default();
        match task_type {
            "image_classification_multiclass" | "image_classification_multilabel" => {
                let names: Vec<&str> = annotations
                    .iter()
                    .map(|a| categories[&a["category_id"].as_u64().unwrap()].as_str())
                    .collect();
                let wanted: Vec<&str> = expected["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap())
                    .collect();
                assert_eq!(names, wanted, "{key}");
                assert!(
                    annotations.iter().all(|a| a.get("bbox").is_none()),
                    "classification has no geometry"
                );
            }
            _ => {
                let wanted = expected["annotations"].as_array().unwrap();
                assert_eq!(annotations.len(), wanted.len(), "{key}");
                for (annotation, wanted) in annotations.iter().zip(wanted) {
                    assert_eq!(
                        categories[&annotation["category_id"].as_u64().unwrap()],
                        wanted["label"].as_str().unwrap()
                    );
                    let bbox = annotation["bbox"].as_array().unwrap();
                    let area = annotation["area"].as_f64().unwrap();
                    if task_type == "object_detection" {
                        assert!(
                            close(&annotation["bbox"], &wanted["bbox"]),
                            "{key}: {} vs {}",
                            annotation["bbox"],
                            wanted["bbox"]
                        );
                        assert!(
                            (area - bbox[2].as_f64().unwrap() * bbox[3].as_f64().unwrap()).abs()
                                < 1e-3,
                            "area is w*h"
                        );
                        assert_eq!(annotation["segmentation"], json!([]));
                    } else {
                        let flat: Vec<Value> = wanted["polygon"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .flat_map(|p| p.as_array().unwrap().clone())
                            .collect();
                        assert!(close(&annotation["segmentation"], &json!([flat])), "{key}");
                        let points: Vec<(f64, f64)> = wanted["polygon"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                            .collect();
                        let shoelace = (0..points.len())
                            .map(|i| {
                                let (x1, y1) = points[i];
                                let (x2, y2) = points[(i + 1) % points.len()];
                                x1 * y2 - x2 * y1
                            })
                            .sum::<f64>()
                            .abs()
                            / 2.0;
                        assert!(
                            (area - shoelace).abs() < 1e-3,
                            "area is the polygon's shoelace area"
                        );
                    }
                }
            }
        }
    }
    assert!(
        by_image.is_empty(),
        "every annotation belongs to an exported image"
    );
}

async fn coco_round_trip(task_type: &str, iou_types: &[&str]) {
    let app = spawn_app().await;
    let (project, _, submitted) = labeled(&app, task_type, 6).await;
    let (view, bytes) = app.export(&project, json!({ "format": "coco" })).await;
    let name = app
        .get(&format!("/projects/{project}"), &app.admin)
        .await
        .body["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let location = view["location"].as_str().unwrap();
    assert!(
        location.starts_with("s3://")
            && location.contains(&format!(
                "/export/coco/{name}/{}.json",
                view["id"].as_str().unwrap()
            )),
        "{location}"
    );
    assert_eq!(view["progress"]["items_written"], 6);
    assert_eq!(view["progress"]["items_total"], 6);
    let coco: Value = serde_json::from_slice(&bytes).unwrap();
    assert_coco_matches(&coco, task_type, &submitted);
    let path = write_temp(&app, "export.json", &bytes);
    for report in judge(&path, iou_types) {
        assert_eq!(report["images"], 6, "{report}");
        for iou in iou_types {
            assert_eq!(report[format!("{iou}_ap")], 1.0, "{report}");
        }
    }
}

#[tokio::test]
async fn detection_exports_load_in_pycocotools_and_evaluate_to_ap_1() {
    coco_round_trip("object_detection", &["bbox"]).await;
}

#[tokio::test]
async fn segmentation_exports_load_in_pycocotools_and_evaluate_to_ap_1_for_boxes_and_masks() {
    coco_round_trip("instance_segmentation", &["bbox", "segm"]).await;
}

#[tokio::test]
async fn multiclass_exports_load_in_pycocotools_with_one_annotation_per_class() {
    coco_round_trip("image_classification_multiclass", &[]).await;
}

#[tokio::test]
async fn multilabel_exports_load_in_pycocotools_with_one_annotation_per_class() {
    coco_round_trip("image_classification_multilabel", &[]).await;
}

#[tokio::test]
async fn detection_exports_follow_added_classes_and_rejects() {
    added_classes_and_reject_round_trip("object_detection", &["bbox"]).await;
}

#[tokio::test]
async fn segmentation_exports_follow_added_classes_and_rejects() {
    added_classes_and_reject_round_trip("instance_segmentation", &["bbox", "segm"]).await;
}

#[tokio::test]
async fn multiclass_exports_follow_added_classes_and_rejects() {
    added_classes_and_reject_round_trip("image_classification_multiclass", &[]).await;
}

#[tokio::test]
async fn multilabel_exports_follow_added_classes_and_rejects() {
    added_classes_and_reject_round_trip("image_classification_multilabel", &[]).await;
}

/// Export, add a class, reject an item, export, relabel it with the new class, export: each
/// export matches what was submitted, and class and image ids never move.
async fn added_classes_and_reject_round_trip(task_type: &str, iou_types: &[&str]) {
    let app = spawn_app().await;
    let (project, ann, mut submitted) = labeled(&app, task_type, 4).await;
    let first = app.export(&project, json!({ "format": "coco" })).await.1;
    let first: Value = serde_json::from_slice(&first).unwrap();
    let added = app
        .post(
            &format!("/projects/{project}/labels"),
            &app.admin,
            json!({ "labels": ["bird"], "mode": "continue" }),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK);
    let labeled = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    let rejected = &labeled.body["items"][0];
    let rejected_key = rejected["key"].as_str().unwrap().to_owned();
    let reply = app
        .post(
            &format!("/projects/{project}/items/{}/reject", rejected["item_id"]),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let after_reject = app.export(&project, json!({ "format": "coco" })).await.1;
    let after_reject: Value = serde_json::from_slice(&after_reject).unwrap();
    submitted.remove(&rejected_key);
    assert_coco_matches(&after_reject, task_type, &submitted);
    let relabel = match task_type {
        "object_detection" => {
            json!({ "annotations": [{ "label": "bird", "bbox": [5.0, 5.0, 20.0, 20.0] }] })
        }
        "instance_segmentation" => {
            json!({ "annotations": [{ "label": "bird", "polygon": [[5.0, 5.0], [25.0, 5.0], [5.0, 25.0]] }] })
        }
        "image_classification_multilabel" => json!({ "labels": ["bird", "cat"] }),
        _ => json!({ "labels": ["bird"] }),
    };
    let again = app.label_all(&project, &ann, |_| relabel.clone()).await;
    assert_eq!(again.len(), 1, "only the rejected item comes back");
    submitted.extend(again);
    let (_, bytes) = app.export(&project, json!({ "format": "coco" })).await;
    let last: Value = serde_json::from_slice(&bytes).unwrap();
    assert_coco_matches(&last, task_type, &submitted);
    let supercategory = if task_type.starts_with("image_classification") {
        "class"
    } else {
        "object"
    };
    assert_eq!(
        last["categories"][2],
        json!({ "id": 3, "name": "bird", "supercategory": supercategory }),
        "new classes get the next id"
    );
    assert_eq!(
        first["categories"][0], last["categories"][0],
        "ids are stable across exports"
    );
    let image_ids = |coco: &Value| {
        coco["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["file_name"].as_str().unwrap().to_owned(),
                    i["id"].as_u64().unwrap(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let (first_ids, last_ids) = (image_ids(&first), image_ids(&last));
    for (file, id) in &first_ids {
        assert_eq!(
            last_ids.get(file),
            Some(id),
            "image ids are stable across exports"
        );
    }
    let path = write_temp(&app, "export.json", &bytes);
    for report in judge(&path, iou_types) {
        for iou in iou_types {
            assert_eq!(report[format!("{iou}_ap")], 1.0, "{report}");
        }
    }
}

#[tokio::test]
async fn json_lines_exports_parse_line_by_line_and_match_the_labels() {
    for task_type in [
        "image_classification_multiclass",
        "image_classification_multilabel",
        "object_detection",
        "instance_segmentation",
    ] {
        let app = spawn_app().await;
        let (project, _, submitted) = labeled(&app, task_type, 5).await;
        let (view, bytes) = app.export(&project, json!({ "format": "jsonl" })).await;
        assert!(
            view["location"]
                .as_str()
                .unwrap()
                .contains("/export/jsonl/")
        );
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 5, "{task_type}: one line per labeled image");
        for line in lines {
            let uri = line["image_url"].as_str().unwrap();
            assert!(uri.starts_with("s3://"), "{uri}");
            let key = uri.splitn(4, '/').nth(3).unwrap();
            assert_eq!(
                line["image_details"],
                json!({ "format": "png", "width": "64px", "height": "48px" })
            );
            let expected = &submitted[key];
            match task_type {
                "image_classification_multiclass" => {
                    assert_eq!(line["label"], expected["labels"][0])
                }
                "image_classification_multilabel" => assert_eq!(line["label"], expected["labels"]),
                "object_detection" => {
                    for (got, wanted) in line["label"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .zip(expected["annotations"].as_array().unwrap())
                    {
                        let b: Vec<f64> = wanted["bbox"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_f64().unwrap())
                            .collect();
                        assert_eq!(got["label"], wanted["label"]);
                        assert_eq!(got["isCrowd"], 0);
                        assert!(close(
                            &json!([got["topX"], got["topY"], got["bottomX"], got["bottomY"]]),
                            &json!([
                                b[0] / 64.0,
                                b[1] / 48.0,
                                (b[0] + b[2]) / 64.0,
                                (b[1] + b[3]) / 48.0
                            ])
                        ));
                    }
                }
                _ => {
                    for (got, wanted) in line["label"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .zip(expected["annotations"].as_array().unwrap())
                    {
                        let normalized: Vec<f64> = wanted["polygon"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .flat_map(|p| {
                                [p[0].as_f64().unwrap() / 64.0, p[1].as_f64().unwrap() / 48.0]
                            })
                            .collect();
                        assert_eq!(got["label"], wanted["label"]);
                        assert!(close(&got["polygon"], &json!([normalized])));
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn an_export_of_a_project_without_labels_is_valid_and_empty() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 3, 1, "ann")
        .await;
    let (view, bytes) = app.export(&project, json!({ "format": "coco" })).await;
    assert_eq!(view["progress"]["items_written"], 0);
    let coco: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(coco["images"], json!([]));
    assert_eq!(coco["annotations"], json!([]));
    assert_eq!(coco["categories"].as_array().unwrap().len(), 2);
    let path = write_temp(&app, "empty.json", &bytes);
    for report in judge(&path, &[]) {
        assert_eq!(report["images"], 0);
    }
    let (_, jsonl) = app.export(&project, json!({ "format": "jsonl" })).await;
    assert!(jsonl.is_empty());
}

#[tokio::test]
async fn unlabeled_images_can_be_included_and_since_limits_to_recent_labels() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 4, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let id = task["items"][0]["item_id"].clone();
    app.submit(&project, task["task_id"].as_str().unwrap(), &ann, json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "bbox": [1, 1, 5, 5] }] }] })).await;
    app.clock.advance(std::time::Duration::from_secs(60));
    let (_, bytes) = app
        .export(
            &project,
            json!({ "format": "coco", "include_unlabeled": true }),
        )
        .await;
    let coco: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        coco["images"].as_array().unwrap().len(),
        4,
        "every image, labeled or not"
    );
    assert!(
        coco["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["width"] == 64 && i["height"] == 48),
        "sizes of unopened images are read too"
    );
    assert_eq!(coco["annotations"].as_array().unwrap().len(), 1);

    let cutoff = app
        .get(&format!("/projects/{project}/exports"), &app.admin)
        .await
        .body["exports"][0]["snapshot_at"]
        .clone();
    app.clock.advance(std::time::Duration::from_secs(60));
    let task = app.checkout(&project, &ann).await.body;
    let second = task["items"][0]["item_id"].clone();
    app.submit(
        &project,
        task["task_id"].as_str().unwrap(),
        &ann,
        json!({ "items": [{ "item_id": second, "annotations": [] }] }),
    )
    .await;
    let (_, bytes) = app
        .export(&project, json!({ "format": "coco", "since": cutoff }))
        .await;
    let recent: Value = serde_json::from_slice(&bytes).unwrap();
    let ids: Vec<u64> = recent["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![second.as_u64().unwrap() + 1],
        "only labels made since the cutoff"
    );
}

#[tokio::test]
async fn a_wrong_format_and_a_wrong_since_are_told_in_one_answer_and_only_to_an_admin() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    let body = json!({ "format": "csv", "since": "last week" });
    let reply = app
        .post(&format!("/projects/{project}/exports"), &ann, body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let reply = app
        .post(&format!("/projects/{project}/exports"), &app.admin, body)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    let pointers: Vec<_> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].clone())
        .collect();
    assert_eq!(pointers, [json!("/format"), json!("/since")]);
}

#[tokio::test]
async fn export_requests_are_validated_and_admin_only() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    for (body, pointer) in [
        (json!({ "format": "csv" }), "/format"),
        (json!({}), "/format"),
        (json!({ "format": "coco", "since": "last week" }), "/since"),
    ] {
        let reply = app
            .post(&format!("/projects/{project}/exports"), &app.admin, body)
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["errors"][0]["pointer"], pointer);
    }
    assert_eq!(
        app.get(&format!("/projects/{project}/exports"), &app.admin)
            .await
            .body["exports"],
        json!([]),
        "nothing was started"
    );
    assert_eq!(
        app.post(
            &format!("/projects/{project}/exports"),
            &ann,
            json!({ "format": "coco" })
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/projects/{project}/exports/x_nope"), &app.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
