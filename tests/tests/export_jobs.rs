//! Export jobs staged step by step: an export is a snapshot of the labels as they were when it
//! was requested (labels rejected, replaced by a start-over or relabeled while it waits or runs
//! are written as they were), and an export that keeps failing ends as failed, with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::domain::labeling::{AnnotationInput, SubmittedItemInput};
use labeling_core::ports::{
    Blobs, Condition, Item, Key, Page, Query, Queue, Table, TableError, Update, Write,
};
use labeling_core::usecases::export::ExportInput;
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;
use serde_json::Value;

fn labeled(class: &str) -> SubmittedItemInput {
    SubmittedItemInput {
        labels: Some(vec![class.to_owned()]),
        ..Default::default()
    }
}

/// Queues a COCO export (the job waits on the queue until the test runs it).
async fn start_coco(
    fixture: &Direct<SqliteTable>,
    project: &str,
    include_unlabeled: bool,
) -> labeling_core::usecases::export::ExportView {
    fixture
        .service
        .exports()
        .start_export(
            &fixture.admin,
            project,
            ExportInput {
                format: Some("coco".to_owned()),
                include_unlabeled: Some(include_unlabeled),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// The export's view, once it shows `failed` with `reason` in its error.
async fn assert_failed(
    fixture: &Direct<SqliteTable>,
    project: &str,
    export_id: &str,
    reason: &str,
) -> labeling_core::usecases::export::ExportView {
    let shown = fixture
        .service
        .exports()
        .get_export(&fixture.admin, project, export_id)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(shown.status).unwrap(),
        "failed",
        "{shown:?}"
    );
    assert!(
        shown.error.as_deref().unwrap_or_default().contains(reason),
        "{shown:?}"
    );
    shown
}

/// A finished export's view and its COCO document.
async fn read_export(
    fixture: &Direct<SqliteTable>,
    project: &str,
    export_id: &str,
) -> (labeling_core::usecases::export::ExportView, Value) {
    let view = fixture
        .service
        .exports()
        .get_export(&fixture.admin, project, export_id)
        .await
        .unwrap();
    let (bucket, key) = view
        .location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap();
    let coco =
        serde_json::from_slice(&fixture.blobs.get(bucket, key, None).await.unwrap()).unwrap();
    (view, coco)
}

/// Runs the next queued job (an export) and returns its COCO's class name by file name.
async fn classes_by_file(
    fixture: &Direct<SqliteTable>,
    project: &str,
    export_id: &str,
) -> BTreeMap<String, String> {
    fixture.run_next_job().await.unwrap();
    let (_, coco) = read_export(fixture, project, export_id).await;
    let category = |id: &Value| {
        coco["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["id"] == id)
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let file = |image_id: &Value| {
        coco["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| &i["id"] == image_id)
            .map(|i| i["file_name"].as_str().unwrap().to_owned())
            .unwrap()
    };
    coco["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (file(&a["image_id"]), category(&a["category_id"])))
        .collect()
}

#[tokio::test]
async fn an_export_writes_labels_as_they_were_when_it_was_requested() {
    let fixture = Direct::new("export-snapshot", |table| table);
    fixture.add_images("img", 6).await;
    let project = fixture
        .project(
            "snapshot",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    let keys = fixture.drain_with(&project, |_| labeled("cat")).await;
    assert_eq!(keys.len(), 6);

    fixture.clock.advance(Duration::from_secs(1));
    let before = start_coco(&fixture, &project, false).await;

    // While the export waits on the queue: reject one item and relabel it, then start over
    // and relabel everything.
    fixture.clock.advance(Duration::from_secs(1));
    let rejected = fixture
        .service
        .review()
        .list_items(&fixture.admin, &project, Some("labeled"), None, None)
        .await
        .unwrap()
        .items[0]
        .item_id;
    fixture
        .service
        .review()
        .reject_item(&fixture.admin, &project, rejected)
        .await
        .unwrap();
    assert_eq!(
        fixture.drain_with(&project, |_| labeled("dog")).await.len(),
        1,
        "the rejected item comes back"
    );
    fixture
        .service
        .projects()
        .add_labels(
            &fixture.admin,
            &project,
            vec!["bird".to_owned()],
            Some("start_over_remove".to_owned()),
        )
        .await
        .unwrap();
    fixture.clock.advance(Duration::from_secs(1));
    assert_eq!(
        fixture
            .drain_with(&project, |_| labeled("bird"))
            .await
            .len(),
        6
    );

    let old = classes_by_file(&fixture, &project, &before.id).await;
    assert_eq!(old.len(), 6, "{old:?}");
    assert!(
        old.values().all(|class| class == "cat"),
        "the export holds the labels of when it was requested: {old:?}"
    );

    let after = start_coco(&fixture, &project, false).await;
    let new = classes_by_file(&fixture, &project, &after.id).await;
    assert_eq!(new.len(), 6, "{new:?}");
    assert!(new.values().all(|class| class == "bird"), "{new:?}");
}

#[tokio::test]
async fn an_export_of_every_image_leaves_out_images_added_after_it_was_requested() {
    let fixture = Direct::new("export-snapshot-unlabeled", |table| table);
    fixture.add_images("img", 3).await;
    let project = fixture
        .project("unlabeled", "image_classification_multiclass", &["cat"])
        .await;
    let export = start_coco(&fixture, &project, true).await;
    fixture.add_images("later", 2).await;
    let refresh = labeling_core::jobs::Job::Refresh {
        project_id: project.clone(),
        trigger: "on_demand".to_owned(),
        request_id: "r_after_export".to_owned(),
    };
    fixture
        .service
        .jobs()
        .run_job(&refresh.to_body().unwrap())
        .await
        .unwrap();
    assert_eq!(fixture.total_items(&project).await, 5);

    fixture.run_next_job().await.unwrap();
    let (view, coco) = read_export(&fixture, &project, &export.id).await;
    let files: Vec<&str> = coco["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.contains("img-")), "{files:?}");
    assert_eq!(view.progress.items_total, 3);
}

#[tokio::test]
async fn an_export_that_keeps_failing_is_marked_failed_with_the_reason() {
    let fixture = Direct::new("export-failing", |table| table);
    fixture.add_images("img", 2).await;
    let project = fixture
        .project("failing", "image_classification_multiclass", &["cat"])
        .await;
    fixture.drain_with(&project, |_| labeled("cat")).await;
    // A file where the export folder must go: every try fails to write the export.
    std::fs::write(fixture.dir.join("buckets/photos/export"), b"in the way").unwrap();
    let export = start_coco(&fixture, &project, false).await;
    for attempt in 1..labeling_core::usecases::export::MAX_EXPORT_ATTEMPTS {
        assert!(fixture.run_next_job().await.is_err(), "try {attempt} fails");
        let shown = fixture
            .service
            .exports()
            .get_export(&fixture.admin, &project, &export.id)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(shown.status).unwrap(),
            "running",
            "{shown:?}"
        );
        let error = shown.error.unwrap_or_default();
        assert!(error.contains("retrying"), "{error}");
        fixture.clock.advance(Duration::from_secs(31));
    }
    fixture.run_next_job().await.unwrap();
    let shown = assert_failed(&fixture, &project, &export.id, "gave up after 4 tries").await;
    assert!(shown.download_url.is_none());
    assert_eq!(
        fixture
            .queue
            .depth(&fixture.config.jobs_queue)
            .await
            .unwrap(),
        0,
        "the job is done with"
    );
}

#[tokio::test]
async fn an_export_of_every_image_walks_sparse_records_in_item_order() {
    let fixture = Direct::new("export-every-image", |table| table);
    fixture.add_images("img", 2_345).await;
    let project = fixture
        .project("every", "image_classification_multiclass", &["cat"])
        .await;
    // Some items handed out (and so with a record), most never opened.
    for _ in 0..300 {
        let task = fixture
            .service
            .labeling()
            .checkout(&fixture.admin, &project)
            .await
            .unwrap()
            .unwrap();
        let items = task
            .items
            .iter()
            .map(|i| SubmittedItemInput {
                item_id: Some(i.item_id),
                ..labeled("cat")
            })
            .collect();
        fixture
            .service
            .labeling()
            .submit(
                &fixture.admin,
                &project,
                &task.task_id,
                labeling_core::domain::labeling::SubmissionInput { items },
            )
            .await
            .unwrap();
    }
    // Every image grows to 16x16: opened items keep the 8x8 their record holds, so each size
    // in the export tells whether it came from a record or from a header read.
    let bigger = labeling_tests::png(16, 16, 1);
    for index in 0..2_345 {
        fixture
            .blobs
            .put(
                "photos",
                &format!("set/img-{index}.png"),
                bigger.clone(),
                "image/png",
            )
            .await
            .unwrap();
    }
    let export = start_coco(&fixture, &project, true).await;
    fixture.run_next_job().await.unwrap();
    let (view, coco) = read_export(&fixture, &project, &export.id).await;
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), 2_345);
    let annotated: std::collections::HashSet<u64> = coco["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["image_id"].as_u64().unwrap())
        .collect();
    for (index, image) in images.iter().enumerate() {
        assert_eq!(image["id"], index as u64 + 1, "{image}");
        let side = if annotated.contains(&(index as u64 + 1)) {
            8
        } else {
            16
        };
        assert_eq!(
            (image["width"].clone(), image["height"].clone()),
            (side.into(), side.into()),
            "{image}"
        );
    }
    assert_eq!(coco["annotations"].as_array().unwrap().len(), 300);
    assert_eq!(view.progress.items_written, 2_345);
}

#[tokio::test]
async fn an_export_whose_runs_keep_dying_is_marked_failed_before_the_queue_gives_up() {
    let fixture = Direct::new("export-dying", |table| table);
    fixture.add_images("img", 2).await;
    let project = fixture
        .project("dying", "image_classification_multiclass", &["cat"])
        .await;
    let export = start_coco(&fixture, &project, false).await;
    // What four runs that died mid-way (a crash, a timeout) leave behind.
    fixture
        .table
        .update(
            &labeling_core::ports::Key::new(
                format!("P#{project}"),
                format!("RUN#EXPORT#{}", export.id),
            ),
            labeling_core::ports::Update::default()
                .set(
                    "attempts",
                    labeling_core::usecases::export::MAX_EXPORT_ATTEMPTS,
                )
                .set("status", "running"),
            None,
        )
        .await
        .unwrap();
    fixture.run_next_job().await.unwrap();
    assert_failed(
        &fixture,
        &project,
        &export.id,
        "stopped without finishing 4 times",
    )
    .await;
}

/// The embedded table, noting the progress each update of an export's record writes.
struct ProgressSpy {
    inner: SqliteTable,
    items_written: Mutex<Vec<u64>>,
}

#[async_trait]
impl Table for ProgressSpy {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        if key.sk.starts_with("RUN#EXPORT#")
            && let Some(written) = update.set.get("items_written").and_then(|v| v.as_u64())
        {
            self.items_written.lock().unwrap().push(written);
        }
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

#[tokio::test]
async fn an_export_of_several_parts_shows_its_progress_as_each_part_is_written() {
    let fixture = Direct::new("export-progress", |inner| ProgressSpy {
        inner,
        items_written: Mutex::new(Vec::new()),
    });
    const ITEMS: u64 = 200;
    fixture.add_images("img", ITEMS as usize).await;
    let project = fixture
        .project("progress", "object_detection", &["cell"])
        .await;
    // The most boxes an image may hold (1,000), at coordinates that print long, make a JSON
    // Lines record of about 100 KB: 200 of them take three parts of 8 MiB.
    let boxes: Vec<AnnotationInput> = (0..1_000)
        .map(|index| {
            let step = f64::from(index);
            AnnotationInput {
                label: "cell".to_owned(),
                bbox: Some(vec![
                    0.5 + (step * 0.003_141_592_653).rem_euclid(3.0),
                    0.5 + (step * 0.002_718_281_828).rem_euclid(3.0),
                    1.123_456_789_012_3,
                    2.718_281_9,
                ]),
                ..Default::default()
            }
        })
        .collect();
    fixture
        .drain_with(&project, |_| SubmittedItemInput {
            annotations: Some(boxes.clone()),
            ..Default::default()
        })
        .await;
    let export = fixture
        .service
        .exports()
        .start_export(
            &fixture.admin,
            &project,
            ExportInput {
                format: Some("jsonl".to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fixture.run_next_job().await.unwrap();
    let view = fixture
        .service
        .exports()
        .get_export(&fixture.admin, &project, &export.id)
        .await
        .unwrap();
    assert_eq!(view.progress.items_written, ITEMS);
    let (bucket, key) = view
        .location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap();
    let size = fixture.blobs.head(bucket, key).await.unwrap().unwrap().size;
    assert!(
        size > 16 * 1024 * 1024,
        "three parts at least: {size} bytes"
    );
    // Written while the parts were (the last value comes with the final record instead).
    let progress = fixture.table.items_written.lock().unwrap().clone();
    let midway: Vec<u64> = progress
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < ITEMS)
        .collect();
    assert!(
        midway.len() >= 2,
        "progress moved part by part: {progress:?}"
    );
    assert!(midway.is_sorted(), "{progress:?}");
}
