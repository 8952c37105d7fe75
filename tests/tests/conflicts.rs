//! The conflicts (409) a client acts on differently have their own problem types, so the web
//! app can tell a lost lease (fetch a fresh task) from a paused project (say so and wait), a
//! round started over (drop the page, fetch a fresh one) or a name in use (ask for another).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::{Reply, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

fn assert_problem(reply: &Reply, kind: &str) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    assert_eq!(
        reply.body["type"],
        format!("https://labeling.dev/problems/{kind}"),
        "{reply:?}"
    );
    assert!(
        !reply.body["detail"].as_str().unwrap().is_empty(),
        "{reply:?}"
    );
}

#[tokio::test]
async fn each_conflict_a_client_acts_on_has_its_own_problem_type() {
    let app = spawn_app().await;
    let bucket = app.bucket("conflicts");
    app.images(&bucket, "img", 4, 16, 16).await;
    let body = json!({
        "name": "conflicts", "task_type": "image_classification_multiclass",
        "labels": ["cat", "dog"], "source": format!("s3://{bucket}/img/**"), "page_size": 4,
    });
    let project = app.project(body.clone()).await;

    // A name in use.
    let again = app.post("/projects", &app.admin, body).await;
    assert_problem(&again, "name-taken");

    // Nothing labeled yet: nothing to reject.
    let reject = app
        .post(
            &format!("/projects/{project}/items/0/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_problem(&reject, "item-not-labeled");

    // A paused project.
    let task = app.checkout(&project, &app.admin).await;
    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    let pause = app
        .post(&format!("/projects/{project}/pause"), &app.admin, json!({}))
        .await;
    assert!(pause.status.is_success(), "{pause:?}");
    assert_problem(&app.checkout(&project, &app.admin).await, "project-paused");
    let resume = app
        .post(
            &format!("/projects/{project}/resume"),
            &app.admin,
            json!({}),
        )
        .await;
    assert!(resume.status.is_success(), "{resume:?}");

    // The round started over under a checked-out task.
    let task_id = task.body["task_id"].as_str().unwrap().to_owned();
    let items: Vec<_> = task.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| json!({ "item_id": item["item_id"], "labels": ["cat"] }))
        .collect();
    let added = app
        .post(
            &format!("/projects/{project}/labels"),
            &app.admin,
            json!({ "labels": ["bird"], "mode": "start_over_remove" }),
        )
        .await;
    assert!(added.status.is_success(), "{added:?}");
    let submitted = app
        .submit(&project, &task_id, &app.admin, json!({ "items": items }))
        .await;
    assert_problem(&submitted, "round-started-over");
}
