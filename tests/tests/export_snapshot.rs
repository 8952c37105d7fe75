//! An export is a snapshot of the labels as they were when it was requested: labels rejected,
//! replaced by a start-over or relabeled while it waits or runs are written as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use labeling_core::domain::labeling::SubmittedItemInput;
use labeling_core::ports::Blobs;
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

/// Runs the next queued job (an export) and returns its COCO's class name by file name.
async fn classes_by_file(
    fixture: &Direct<SqliteTable>,
    project: &str,
    export_id: &str,
) -> BTreeMap<String, String> {
    fixture.run_next_job().await.unwrap();
    let view = fixture
        .service
        .get_export(&fixture.admin, project, export_id)
        .await
        .unwrap();
    let (bucket, key) = view
        .location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap();
    let coco: Value =
        serde_json::from_slice(&fixture.blobs.get(bucket, key, None).await.unwrap()).unwrap();
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
    let before = fixture
        .service
        .start_export(
            &fixture.admin,
            &project,
            ExportInput {
                format: Some("coco".to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // While the export waits on the queue: reject one item and relabel it, then start over
    // and relabel everything.
    fixture.clock.advance(Duration::from_secs(1));
    let rejected = fixture
        .service
        .list_items(&fixture.admin, &project, Some("labeled"), None, None)
        .await
        .unwrap()
        .items[0]
        .item_id;
    fixture
        .service
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

    let after = fixture
        .service
        .start_export(
            &fixture.admin,
            &project,
            ExportInput {
                format: Some("coco".to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let new = classes_by_file(&fixture, &project, &after.id).await;
    assert_eq!(new.len(), 6, "{new:?}");
    assert!(new.values().all(|class| class == "bird"), "{new:?}");
}
