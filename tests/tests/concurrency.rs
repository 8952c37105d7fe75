//! 32 labelers drain a 2,000-item project at once: every item is labeled exactly once, none is
//! lost, and the dashboard's counters equal the stored labels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use labeling_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::json;

const LABELERS: usize = 32;

/// 2,000 items on the embedded store; on the emulator, which serializes every table request
/// (see `DynamoTable::for_emulator`), 256 keep the run short.
fn items() -> usize {
    if labeling_tests::on_aws() { 256 } else { 2000 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_labelers_drain_a_project_and_every_item_is_labeled_exactly_once() {
    let app = Arc::new(spawn_app().await);
    let mut tokens = Vec::new();
    for index in 0..LABELERS {
        tokens.push(app.user(&format!("labeler{index}"), "labeler").await);
    }
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], items(), 1, "labeler0")
        .await;
    for index in 1..LABELERS {
        app.post(
            &format!("/projects/{project}/members"),
            &app.admin,
            json!({ "user": format!("labeler{index}") }),
        )
        .await;
    }

    let mut workers = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let app = app.clone();
        let project = project.clone();
        workers.push(tokio::spawn(async move {
            let class = if index % 2 == 0 { "cat" } else { "dog" };
            let mut submitted = Vec::new();
            let mut cycles = 0usize;
            loop {
                let task = app.checkout(&project, &token).await;
                if task.status == StatusCode::NO_CONTENT {
                    return (index, submitted);
                }
                assert_eq!(task.status, StatusCode::OK, "{task:?}");
                let task_id = task.body["task_id"].as_str().unwrap().to_owned();
                let item = task.body["items"][0]["item_id"].as_u64().unwrap();
                cycles += 1;
                // Now and then give a task back, so requeued work is contended too.
                if cycles.is_multiple_of(10) {
                    let reply = app.post(&format!("/projects/{project}/tasks/{task_id}/release"), &token, json!({})).await;
                    assert_eq!(reply.status, StatusCode::NO_CONTENT);
                    continue;
                }
                let reply = app
                    .submit(&project, &task_id, &token, json!({ "items": [{ "item_id": item, "annotations": [{ "label": class, "bbox": [1, 1, 10, 10] }] }] }))
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
                submitted.push(item);
            }
        }));
    }
    let mut labeled_by: HashMap<u64, String> = HashMap::new();
    let mut per_class: BTreeMap<&str, u64> = BTreeMap::new();
    for worker in workers {
        let (index, submitted) = worker.await.unwrap();
        for item in submitted {
            let previous = labeled_by.insert(item, format!("labeler{index}"));
            assert!(previous.is_none(), "item {item} was labeled twice");
            *per_class
                .entry(if index % 2 == 0 { "cat" } else { "dog" })
                .or_default() += 1;
        }
    }
    assert_eq!(labeled_by.len(), items(), "every item was labeled");
    assert_eq!(
        labeled_by.keys().copied().collect::<HashSet<_>>(),
        (0..items() as u64).collect::<HashSet<_>>()
    );

    let mut stored = 0;
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/projects/{project}/items?state=labeled&limit=500&cursor={cursor}"),
                &app.admin,
            )
            .await;
        for item in page.body["items"].as_array().unwrap() {
            let id = item["item_id"].as_u64().unwrap();
            assert_eq!(
                item["labeled_by"].as_str(),
                labeled_by.get(&id).map(String::as_str),
                "item {id} is stored as its labeler submitted it"
            );
            stored += 1;
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(stored, items(), "the stored labels are all there");

    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], items() as u64, "{dashboard}");
    assert_eq!(
        dashboard["pending"],
        json!({ "not_in_task": 0, "in_task": 0, "queued": 0 }),
        "{dashboard}"
    );
    assert_eq!(dashboard["queues"]["requeued"], 0);
    assert_eq!(dashboard["label_distribution"]["cat"], per_class["cat"]);
    assert_eq!(dashboard["label_distribution"]["dog"], per_class["dog"]);
}
