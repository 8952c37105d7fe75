//! Prelabels from checkout on: a prelabeled task shows its kind and the model's confidences,
//! each submitted item records whether its prelabels were accepted, edited or replaced, the
//! dashboard counts that per class, and exports carry it per annotation. The ML job that
//! writes such tasks is stood in for by `Labeling::queue_prelabeled`, which it calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use labeling_core::domain::errors::{DomainError, ErrorKind};
use labeling_core::domain::labeling::{StoredAnnotation, TaskKind};
use labeling_core::keys;
use labeling_core::ports::Table;
use labeling_core::usecases::labeling::QueuedWork;
use labeling_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Items and the prelabels proposed for each, as an ML job hands them over.
type Batch = Vec<(u64, Vec<StoredAnnotation>)>;

/// The project's class ids by name.
async fn class_ids(app: &TestApp, project: &str) -> BTreeMap<String, u32> {
    let reply = app.get(&format!("/projects/{project}"), &app.admin).await;
    reply.body["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|class| {
            (
                class["name"].as_str().unwrap().to_owned(),
                class["id"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

fn scored(class_id: u32, confidence: f32) -> StoredAnnotation {
    StoredAnnotation {
        class_id,
        bbox: None,
        polygon: None,
        confidence: Some(confidence),
    }
}

fn boxed(class_id: u32, bbox: [f64; 4], confidence: f32) -> StoredAnnotation {
    StoredAnnotation {
        bbox: Some(bbox),
        ..scored(class_id, confidence)
    }
}

async fn queue(
    app: &TestApp,
    project: &str,
    batch: &str,
    items: &[(u64, Vec<StoredAnnotation>)],
) -> QueuedWork {
    app.service
        .labeling()
        .queue_prelabeled(project, batch, TaskKind::Prelabeled, items)
        .await
        .expect("the batch is queued")
}

/// The stored item record's attributes.
async fn record(app: &TestApp, project: &str, item: u64) -> Value {
    let stored = app
        .table
        .get(&keys::item(project, item))
        .await
        .unwrap()
        .expect("the item has a record");
    Value::Object(stored.attrs)
}

fn by_item(task: &Value) -> BTreeMap<u64, Value> {
    task["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["item_id"].as_u64().unwrap(), item.clone()))
        .collect()
}

/// A multi-label project of cat, dog and bird with three prelabeled items waiting:
/// item 0 cat (0.97), item 1 cat (0.9) and dog (0.6), item 2 dog (0.8).
async fn multilabel_with_prelabels(app: &TestApp) -> (String, String) {
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multilabel",
            &["cat", "dog", "bird"],
            6,
            4,
            "ann",
        )
        .await;
    let class = class_ids(app, &project).await;
    let queued = queue(
        app,
        &project,
        "run1-page0",
        &[
            (0, vec![scored(class["cat"], 0.97)]),
            (
                1,
                vec![scored(class["cat"], 0.9), scored(class["dog"], 0.6)],
            ),
            (2, vec![scored(class["dog"], 0.8)]),
        ],
    )
    .await;
    assert_eq!(queued.queued, vec![0, 1, 2]);
    assert_eq!(queued.task_id, "t_run1-page0");
    (project, ann)
}

#[tokio::test]
async fn a_prelabeled_task_is_handed_out_first_with_its_kind_and_the_models_confidences() {
    let app = spawn_app().await;
    let (project, ann) = multilabel_with_prelabels(&app).await;
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["queues"]["prelabeled"], 3);
    assert_eq!(
        dashboard["queues"]["manual"], 3,
        "queued items are not counted again as fresh ones"
    );
    assert_eq!(dashboard["pending"]["queued"], 3);

    let task = app.checkout(&project, &ann).await;

    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    assert_eq!(task.body["kind"], "prelabeled");
    let items = by_item(&task.body);
    assert_eq!(
        items[&0]["prelabels"],
        json!([{ "label": "cat", "confidence": 0.97 }])
    );
    assert_eq!(
        items[&1]["prelabels"],
        json!([{ "label": "cat", "confidence": 0.9 }, { "label": "dog", "confidence": 0.6 }])
    );
    assert_eq!(
        items[&2]["prelabels"],
        json!([{ "label": "dog", "confidence": 0.8 }])
    );
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["queues"]["prelabeled"], 0);
    assert_eq!(dashboard["pending"]["in_task"], 3);
}

#[tokio::test]
async fn each_submitted_item_records_whether_its_prelabels_were_accepted_edited_or_replaced() {
    let app = spawn_app().await;
    let (project, ann) = multilabel_with_prelabels(&app).await;
    let task = app.checkout(&project, &ann).await;
    let task_id = task.body["task_id"].as_str().unwrap();

    let reply = app
        .submit(
            &project,
            task_id,
            &ann,
            json!({ "items": [
                { "item_id": 0, "labels": ["cat"] },
                { "item_id": 1, "labels": ["cat"] },
                { "item_id": 2, "labels": ["bird"] },
            ] }),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    for (item, outcome) in [(0, "accepted"), (1, "edited"), (2, "replaced")] {
        let stored = record(&app, &project, item).await;
        assert_eq!(stored["prelabel"], outcome, "item {item}: {stored}");
        assert!(
            !stored["prelabels"].as_array().unwrap().is_empty(),
            "the model's prelabels stay on the record: {stored}"
        );
    }
    let acceptance = &app.dashboard(&project).await["prelabel_acceptance"];
    assert_eq!(
        acceptance["cat"],
        json!({ "accepted": 1, "edited": 1, "replaced": 0, "acceptance_rate": 0.5 })
    );
    assert_eq!(
        acceptance["dog"],
        json!({ "accepted": 0, "edited": 1, "replaced": 1, "acceptance_rate": 0.0 })
    );
    assert_eq!(
        acceptance["bird"],
        json!({ "accepted": 0, "edited": 0, "replaced": 0, "acceptance_rate": null }),
        "no prelabel proposed bird"
    );

    // A rejected item's labels are gone, and so is what its submit counted.
    let rejected = app
        .post(
            &format!("/projects/{project}/items/0/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT, "{rejected:?}");
    assert_eq!(record(&app, &project, 0).await.get("prelabel"), None);
    let acceptance = &app.dashboard(&project).await["prelabel_acceptance"];
    assert_eq!(
        acceptance["cat"],
        json!({ "accepted": 0, "edited": 1, "replaced": 0, "acceptance_rate": 0.0 })
    );
    assert_eq!(acceptance["dog"]["edited"], 1);
}

#[tokio::test]
async fn a_skipped_or_unprelabeled_item_records_no_provenance_and_counts_nowhere() {
    let app = spawn_app().await;
    let (project, ann) = multilabel_with_prelabels(&app).await;
    let task = app.checkout(&project, &ann).await;
    let reply = app
        .submit(
            &project,
            task.body["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [
                { "item_id": 0, "skip": true },
                { "item_id": 1, "labels": ["cat", "dog"] },
                { "item_id": 2, "skip": true },
            ] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let fresh = app.checkout(&project, &ann).await;
    assert_eq!(fresh.body["kind"], "manual");
    let fresh_items: Vec<Value> = fresh.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| json!({ "item_id": item["item_id"], "labels": ["cat"] }))
        .collect();
    app.submit(
        &project,
        fresh.body["task_id"].as_str().unwrap(),
        &ann,
        json!({ "items": fresh_items }),
    )
    .await;

    assert_eq!(record(&app, &project, 0).await.get("prelabel"), None);
    assert_eq!(record(&app, &project, 1).await["prelabel"], "accepted");
    for item in fresh_items {
        let id = item["item_id"].as_u64().unwrap();
        assert_eq!(record(&app, &project, id).await.get("prelabel"), None);
    }
    let acceptance = &app.dashboard(&project).await["prelabel_acceptance"];
    assert_eq!(acceptance["cat"]["accepted"], 1);
    assert_eq!(acceptance["dog"]["accepted"], 1);
    assert_eq!(acceptance["cat"]["replaced"], 0);
    assert_eq!(acceptance["dog"]["replaced"], 0);
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

/// pycocotools (every configured version) loads the file and evaluates its boxes to AP 1.
fn assert_pycocotools_evaluates(path: &std::path::Path) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/coco_check.py");
    for python in coco_judges() {
        let output = std::process::Command::new(&python)
            .arg(&script)
            .arg(path)
            .arg("bbox")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{python} judged {} as failing: {stdout}{}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["bbox_ap"], 1.0, "{report}");
    }
}

#[tokio::test]
async fn coco_and_json_lines_exports_carry_provenance_per_annotation_and_pycocotools_loads_them() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 5, 1, "ann")
        .await;
    let class = class_ids(&app, &project).await;
    let (cat, dog) = (class["cat"], class["dog"]);
    let cat_box = [1.5, 2.0, 20.0, 10.0];
    let dog_box = [30.0, 20.0, 12.5, 20.0];
    // Detection hands out one image a task: a batch an image.
    let proposals = [
        (
            0,
            vec![boxed(cat, cat_box, 0.97), boxed(dog, dog_box, 0.75)],
        ),
        (1, vec![boxed(cat, cat_box, 0.6)]),
        (2, vec![boxed(dog, dog_box, 0.55)]),
    ];
    for (item, prelabels) in &proposals {
        queue(
            &app,
            &project,
            &format!("boxes-{item}"),
            &[(*item, prelabels.clone())],
        )
        .await;
    }
    let submitted = BTreeMap::from([
        // As proposed, in another order.
        (
            0,
            json!([{ "label": "dog", "bbox": dog_box }, { "label": "cat", "bbox": cat_box }]),
        ),
        // The cat moved, and a dog added.
        (
            1,
            json!([
                { "label": "cat", "bbox": [3.0, 2.0, 20.0, 10.0] },
                { "label": "dog", "bbox": dog_box },
            ]),
        ),
        (2, json!([{ "label": "cat", "bbox": cat_box }])),
    ]);
    for _ in 0..3 {
        let task = app.checkout(&project, &ann).await;
        assert_eq!(task.body["kind"], "prelabeled", "{task:?}");
        let item = task.body["items"][0]["item_id"].as_u64().unwrap();
        if item == 0 {
            assert_eq!(
                task.body["items"][0]["prelabels"],
                json!([
                    { "label": "cat", "bbox": cat_box, "confidence": 0.97 },
                    { "label": "dog", "bbox": dog_box, "confidence": 0.75 },
                ])
            );
        }
        let reply = app
            .submit(
                &project,
                task.body["task_id"].as_str().unwrap(),
                &ann,
                json!({ "items": [{ "item_id": item, "annotations": submitted[&item] }] }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let fresh = app
        .label_all(
            &project,
            &ann,
            |_| json!({ "annotations": [{ "label": "cat", "bbox": cat_box }] }),
        )
        .await;
    assert_eq!(fresh.len(), 2, "the two items no model saw");

    let (_, bytes) = app.export(&project, json!({ "format": "coco" })).await;
    let coco: Value = serde_json::from_slice(&bytes).unwrap();
    let mut seen: BTreeMap<u64, Vec<(Value, Value, Value)>> = BTreeMap::new();
    for annotation in coco["annotations"].as_array().unwrap() {
        seen.entry(annotation["image_id"].as_u64().unwrap() - 1)
            .or_default()
            .push((
                annotation["category_id"].clone(),
                annotation.get("prelabel").cloned().unwrap_or(Value::Null),
                annotation
                    .get("prelabel_confidence")
                    .cloned()
                    .unwrap_or(Value::Null),
            ));
    }
    let sorted = |mut v: Vec<(Value, Value, Value)>| {
        v.sort_by_key(|entry| entry.0.as_u64());
        v
    };
    assert_eq!(
        sorted(seen[&0].clone()),
        vec![
            (json!(cat), json!("accepted"), json!(0.97)),
            (json!(dog), json!("accepted"), json!(0.75)),
        ]
    );
    assert_eq!(
        sorted(seen[&1].clone()),
        vec![
            (json!(cat), json!("edited"), json!(0.6)),
            (json!(dog), json!("edited"), Value::Null),
        ],
        "a moved box still came from the cat prelabel; the added dog from none"
    );
    assert_eq!(seen[&2], vec![(json!(cat), json!("replaced"), Value::Null)]);
    for item in [3, 4] {
        assert_eq!(
            seen[&item],
            vec![(json!(cat), Value::Null, Value::Null)],
            "items labeled without prelabels carry nothing extra"
        );
    }
    let path = app.data_dir.join("provenance.json");
    std::fs::write(&path, &bytes).unwrap();
    assert_pycocotools_evaluates(&path);

    let (_, bytes) = app.export(&project, json!({ "format": "jsonl" })).await;
    let lines = jsonl_lines(bytes);
    assert_eq!(lines.len(), 5);
    let line = |n: usize| line_of_image(&lines, n);
    assert_eq!(
        line(0)["prelabel"],
        json!({ "outcome": "accepted", "prelabels": [
            { "label": "cat", "confidence": 0.97 }, { "label": "dog", "confidence": 0.75 },
        ] })
    );
    assert_eq!(line(1)["prelabel"]["outcome"], "edited");
    assert_eq!(
        line(1)["label"][0]["prelabel_confidence"],
        0.6,
        "each box says where it came from: {}",
        line(1)
    );
    assert_eq!(
        line(2)["prelabel"],
        json!({ "outcome": "replaced", "prelabels": [{ "label": "dog", "confidence": 0.55 }] })
    );
    for n in [3, 4] {
        assert_eq!(line(n).get("prelabel"), None, "{}", line(n));
        assert_eq!(line(n)["label"][0].get("prelabel"), None, "{}", line(n));
    }
}

#[tokio::test]
async fn a_retried_or_twice_delivered_batch_adds_nothing_twice() {
    let app = spawn_app().await;
    let (project, ann) = multilabel_with_prelabels(&app).await;
    let class = class_ids(&app, &project).await;
    let same = [
        (0, vec![scored(class["cat"], 0.97)]),
        (
            1,
            vec![scored(class["cat"], 0.9), scored(class["dog"], 0.6)],
        ),
        (2, vec![scored(class["dog"], 0.8)]),
    ];

    let before = app.table.counts();
    let retried = queue(&app, &project, "run1-page0", &same).await;
    let retry_cost = app.table.counts().since(before);
    let labeling = app.service.labeling();
    let (a, b) = tokio::join!(
        labeling.queue_prelabeled(&project, "run1-page1", TaskKind::Clustered, &same[..2]),
        labeling.queue_prelabeled(&project, "run1-page1", TaskKind::Clustered, &same[..2]),
    );

    assert_eq!(retried.queued, Vec::<u64>::new());
    assert_eq!(retried.left_out, vec![0, 1, 2]);
    assert_eq!(
        retry_cost.writes, 0,
        "a retry finds its work done and writes nothing"
    );
    assert!(
        a.unwrap().queued.is_empty() && b.unwrap().queued.is_empty(),
        "items queued already are not queued again under another batch"
    );
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["queues"]["prelabeled"], 3);
    assert_eq!(dashboard["queues"]["clustered"], 0);
    assert_eq!(dashboard["pending"]["queued"], 3);
    let first = app.checkout(&project, &ann).await;
    assert_eq!(first.body["kind"], "prelabeled");
    let second = app.checkout(&project, &ann).await;
    assert_eq!(second.body["kind"], "manual", "one waiting task, not two");
}

#[tokio::test]
async fn two_deliveries_of_a_new_batch_at_once_queue_it_once() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 4, 4, "ann")
        .await;
    let cat = class_ids(&app, &project).await["cat"];
    let items = [(1, vec![scored(cat, 0.5)]), (3, vec![scored(cat, 0.7)])];
    let labeling = app.service.labeling();

    let (a, b) = tokio::join!(
        labeling.queue_prelabeled(&project, "page-1", TaskKind::Prelabeled, &items),
        labeling.queue_prelabeled(&project, "page-1", TaskKind::Prelabeled, &items),
    );

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.queued.len() + b.queued.len(),
        2,
        "each item queued by one delivery: {a:?} {b:?}"
    );
    assert_eq!(app.dashboard(&project).await["queues"]["prelabeled"], 2);
    let labeled = app
        .label_all(&project, &ann, |_| json!({ "labels": ["cat"] }))
        .await;
    assert_eq!(labeled.len(), 4);
}

#[tokio::test]
async fn fresh_checkouts_skip_the_items_queued_ahead_and_every_item_is_labeled_once() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multiclass",
            &["cat", "dog"],
            8,
            4,
            "ann",
        )
        .await;
    let class = class_ids(&app, &project).await;
    queue(
        &app,
        &project,
        "scattered",
        &[
            (1, vec![scored(class["dog"], 0.9)]),
            (6, vec![scored(class["dog"], 0.8)]),
        ],
    )
    .await;
    queue(
        &app,
        &project,
        "alone",
        &[(4, vec![scored(class["cat"], 0.7)])],
    )
    .await;

    let mut kinds = Vec::new();
    let mut handed_out: Vec<u64> = Vec::new();
    loop {
        let task = app.checkout(&project, &ann).await;
        if task.status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        kinds.push(task.body["kind"].as_str().unwrap().to_owned());
        let items: Vec<Value> = task.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                handed_out.push(item["item_id"].as_u64().unwrap());
                json!({ "item_id": item["item_id"], "labels": ["dog"] })
            })
            .collect();
        let reply = app
            .submit(
                &project,
                task.body["task_id"].as_str().unwrap(),
                &ann,
                json!({ "items": items }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }

    assert_eq!(&kinds[..2], ["prelabeled", "prelabeled"], "{kinds:?}");
    assert!(kinds[2..].iter().all(|kind| kind == "manual"), "{kinds:?}");
    handed_out.sort_unstable();
    assert_eq!(handed_out, (0..8).collect::<Vec<u64>>(), "each item once");
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], 8);
    assert_eq!(
        dashboard["pending"],
        json!({ "not_in_task": 0, "in_task": 0, "queued": 0 })
    );
    assert_eq!(
        dashboard["queues"],
        json!({ "manual": 0, "requeued": 0, "clustered": 0, "prelabeled": 0 })
    );
    assert_eq!(
        dashboard["prelabel_acceptance"]["dog"],
        json!({ "accepted": 2, "edited": 0, "replaced": 0, "acceptance_rate": 1.0 })
    );
    assert_eq!(
        dashboard["prelabel_acceptance"]["cat"],
        json!({ "accepted": 0, "edited": 0, "replaced": 1, "acceptance_rate": 0.0 })
    );
}

#[tokio::test]
async fn a_batch_that_could_never_be_a_task_is_refused_with_every_reason_and_writes_nothing() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 4, 4, "ann")
        .await;
    let cat = class_ids(&app, &project).await["cat"];
    let labeling = app.service.labeling();
    let cases: Vec<(&str, &str, TaskKind, Batch, &str)> = vec![
        (
            "a bad batch id",
            "no spaces",
            TaskKind::Prelabeled,
            vec![(0, vec![])],
            "/batch_id",
        ),
        (
            "a manual kind",
            "b",
            TaskKind::Manual,
            vec![(0, vec![])],
            "/kind",
        ),
        ("no items", "b", TaskKind::Prelabeled, vec![], "/items"),
        (
            "more than a page",
            "b",
            TaskKind::Prelabeled,
            vec![
                (0, vec![]),
                (1, vec![]),
                (2, vec![]),
                (3, vec![]),
                (5, vec![]),
            ],
            "/items",
        ),
        (
            "an item past the manifest",
            "b",
            TaskKind::Prelabeled,
            vec![(4, vec![])],
            "/items/0",
        ),
        (
            "an item twice",
            "b",
            TaskKind::Prelabeled,
            vec![(0, vec![]), (0, vec![])],
            "/items/1",
        ),
        (
            "an unknown class",
            "b",
            TaskKind::Prelabeled,
            vec![(0, vec![scored(cat + 7, 0.5)])],
            "/items/0/prelabels/0",
        ),
        (
            "a confidence above 1",
            "b",
            TaskKind::Prelabeled,
            vec![(0, vec![scored(cat, 1.5)])],
            "/items/0/prelabels/0/confidence",
        ),
    ];
    for (case, batch, kind, items, pointer) in cases {
        let error = labeling
            .queue_prelabeled(&project, batch, kind, &items)
            .await
            .expect_err(case);
        assert_eq!(error.kind(), ErrorKind::Invalid, "{case}: {error}");
        assert!(
            error.field_errors().iter().any(|e| e.pointer == pointer),
            "{case}: {:?}",
            error.field_errors()
        );
    }
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["pending"]["queued"], 0);
    assert_eq!(dashboard["queues"]["manual"], 4);
}

#[tokio::test]
async fn a_fresh_page_of_items_queued_ahead_costs_one_refused_transaction_not_one_an_item() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 9, 9, "ann")
        .await;
    let cat = class_ids(&app, &project).await["cat"];
    let ahead: Batch = (0..8).map(|item| (item, vec![scored(cat, 0.9)])).collect();
    queue(&app, &project, "window", &ahead).await;
    let prelabeled = app.checkout(&project, &ann).await;
    assert_eq!(prelabeled.body["kind"], "prelabeled");

    let before = app.table.counts();
    let fresh = app.checkout(&project, &ann).await;
    let cost = app.table.counts().since(before);

    assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
    assert_eq!(fresh.body["kind"], "manual");
    assert_eq!(
        by_item(&fresh.body).keys().copied().collect::<Vec<_>>(),
        vec![8],
        "the one item no job queued"
    );
    eprintln!("a fresh page with 8 of 9 items queued ahead: {cost:?}");
    // The work query, the cursor (read, then moved), the manifest, one refused transaction,
    // one read of the page's records, the claim.
    assert!(
        cost.round_trips <= 7,
        "{} round trips: a refused transaction per held item?",
        cost.round_trips
    );
}

#[tokio::test]
async fn a_checkout_walks_past_a_long_run_of_items_queued_ahead_and_leased() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 20, 1, "ann")
        .await;
    let cat = class_ids(&app, &project).await["cat"];
    for item in 0..20 {
        queue(
            &app,
            &project,
            &format!("p{item}"),
            &[(item, vec![scored(cat, 0.9)])],
        )
        .await;
    }
    for _ in 0..20 {
        let task = app.checkout(&project, &ann).await;
        assert_eq!(task.body["kind"], "prelabeled", "{task:?}");
    }

    let next = app.checkout(&project, &ann).await;

    assert_eq!(
        next.status,
        StatusCode::NO_CONTENT,
        "every item is leased: nothing to hand out, and no 503 for walking 20 held pages: {next:?}"
    );
}

/// Detection: each box is judged on its own. Five boxes on one image: a cat proposal nudged
/// half a pixel (accepted), a dog proposal moved (edited), a cat proposal relabeled bird
/// (edited, counted under cat), a dog proposal deleted, and a bird drawn where the model saw
/// nothing (added). The dashboard counts them per class, both exports carry them per box and
/// list the deleted proposal on the image, and a reject takes the counts back.
#[tokio::test]
async fn each_prelabel_box_is_judged_accepted_edited_deleted_or_added_and_a_reject_takes_it_back() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "object_detection",
            &["cat", "dog", "bird", "fish"],
            2,
            1,
            "ann",
        )
        .await;
    let class = class_ids(&app, &project).await;
    let (cat, dog, bird) = (class["cat"], class["dog"], class["bird"]);
    // Images are 64 x 48.
    let deleted_box = [40.0, 30.0, 10.0, 10.0];
    queue(
        &app,
        &project,
        "boxes",
        &[(
            0,
            vec![
                boxed(cat, [1.0, 1.0, 30.0, 20.0], 0.9),
                boxed(dog, [33.0, 1.0, 30.0, 20.0], 0.8),
                boxed(cat, [1.0, 26.0, 30.0, 20.0], 0.7),
                boxed(dog, deleted_box, 0.6),
            ],
        )],
    )
    .await;
    let task = app.checkout(&project, &ann).await;
    assert_eq!(task.body["kind"], "prelabeled", "{task:?}");
    assert_eq!(task.body["items"][0]["item_id"], 0);
    let reply = app
        .submit(
            &project,
            task.body["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [{ "item_id": 0, "annotations": [
                { "label": "cat", "bbox": [1.5, 1.0, 30.0, 20.0] },
                { "label": "dog", "bbox": [33.0, 6.0, 30.0, 20.0] },
                { "label": "bird", "bbox": [1.0, 26.0, 30.0, 20.0] },
                { "label": "bird", "bbox": [52.0, 26.0, 10.0, 20.0] },
            ] }] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let fresh = app
        .label_all(
            &project,
            &ann,
            |_| json!({ "annotations": [{ "label": "cat", "bbox": [1.0, 1.0, 30.0, 20.0] }] }),
        )
        .await;
    assert_eq!(fresh.len(), 1, "the item no model saw");

    let dashboard = app.dashboard(&project).await;
    assert_eq!(
        dashboard["box_acceptance"],
        json!({
            "cat": { "accepted": 1, "edited": 1, "deleted": 0, "added": 0, "acceptance_rate": 0.5 },
            "dog": { "accepted": 0, "edited": 1, "deleted": 1, "added": 0, "acceptance_rate": 0.0 },
            "bird": { "accepted": 0, "edited": 0, "deleted": 0, "added": 1, "acceptance_rate": null },
        }),
        "fish, never proposed nor drawn, is left out"
    );
    assert_eq!(
        dashboard["prelabel_acceptance"]["cat"]["edited"], 1,
        "the item's outcome is counted as before"
    );
    assert_eq!(dashboard["prelabel_acceptance"]["dog"]["edited"], 1);

    // COCO, with and without the unlabeled images (two ways of writing the images).
    let deleted = json!([{ "category_id": dog, "bbox": deleted_box, "confidence": 0.6 }]);
    for body in [
        json!({ "format": "coco" }),
        json!({ "format": "coco", "include_unlabeled": true }),
    ] {
        let (_, bytes) = app.export(&project, body.clone()).await;
        let coco: Value = serde_json::from_slice(&bytes).unwrap();
        let image = |id: u64| {
            coco["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|image| image["id"] == id + 1)
                .unwrap()
                .clone()
        };
        assert_eq!(image(0)["deleted_prelabels"], deleted, "{body}");
        assert_eq!(image(1).get("deleted_prelabels"), None, "{body}");
        let mut boxes: Vec<(Value, Value, Value, Value)> = coco["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|annotation| annotation["image_id"] == 1)
            .map(|annotation| {
                let field = |name: &str| annotation.get(name).cloned().unwrap_or(Value::Null);
                (
                    field("bbox"),
                    field("category_id"),
                    field("prelabel_box"),
                    field("prelabel_confidence"),
                )
            })
            .collect();
        boxes.sort_by_key(|entry| entry.0.to_string());
        assert_eq!(
            boxes,
            vec![
                (
                    json!([1.0, 26.0, 30.0, 20.0]),
                    json!(bird),
                    json!("edited"),
                    json!(0.7)
                ),
                (
                    json!([1.5, 1.0, 30.0, 20.0]),
                    json!(cat),
                    json!("accepted"),
                    json!(0.9)
                ),
                (
                    json!([33.0, 6.0, 30.0, 20.0]),
                    json!(dog),
                    json!("edited"),
                    json!(0.8)
                ),
                (
                    json!([52.0, 26.0, 10.0, 20.0]),
                    json!(bird),
                    json!("added"),
                    Value::Null
                ),
            ],
            "{body}"
        );
        let unprelabeled = coco["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|annotation| annotation["image_id"] == 2)
            .unwrap();
        assert_eq!(unprelabeled.get("prelabel_box"), None);
        let path = app.data_dir.join("box-provenance.json");
        std::fs::write(&path, &bytes).unwrap();
        assert_pycocotools_evaluates(&path);
    }

    let (_, bytes) = app.export(&project, json!({ "format": "jsonl" })).await;
    let lines = jsonl_lines(bytes);
    let line = |n: usize| line_of_image(&lines, n);
    assert_eq!(
        line(0)["deleted_prelabels"],
        json!([{
            "label": "dog", "topX": 0.625, "topY": 0.625, "bottomX": 0.78125,
            "bottomY": 0.833333, "confidence": 0.6,
        }])
    );
    let judged: Vec<(Value, Value, Value)> = line(0)["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|label| {
            (
                label["label"].clone(),
                label["prelabel_box"].clone(),
                label
                    .get("prelabel_confidence")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        judged,
        vec![
            (json!("cat"), json!("accepted"), json!(0.9)),
            (json!("dog"), json!("edited"), json!(0.8)),
            (json!("bird"), json!("edited"), json!(0.7)),
            (json!("bird"), json!("added"), Value::Null),
        ]
    );
    assert_eq!(line(1).get("deleted_prelabels"), None);

    let rejected = app
        .post(
            &format!("/projects/{project}/items/0/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT, "{rejected:?}");
    assert_eq!(
        app.dashboard(&project).await["box_acceptance"],
        json!({}),
        "the rejected boxes' counts are gone with them"
    );
}

/// A JSON Lines export's lines.
fn jsonl_lines(bytes: Vec<u8>) -> Vec<Value> {
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The line of the image `img-<n>.png`.
fn line_of_image(lines: &[Value], n: usize) -> &Value {
    lines
        .iter()
        .find(|line| {
            line["image_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("img-{n:05}.png"))
        })
        .unwrap()
}
