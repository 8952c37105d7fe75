//! The manual labeling loop through HTTP, for every task type, with leases, pause, label
//! modes and review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use labeling_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn task_id(reply: &Value) -> String {
    reply["task_id"].as_str().unwrap().to_owned()
}

fn item_ids(task: &Value) -> Vec<u64> {
    task["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_u64().unwrap())
        .collect()
}

/// Labels for every item of a task, in the project's task type.
fn labels_for(task_type: &str, task: &Value, class: &str) -> Value {
    let items: Vec<Value> = item_ids(task)
        .into_iter()
        .map(|id| match task_type {
            "image_classification_multiclass" => json!({ "item_id": id, "labels": [class] }),
            "image_classification_multilabel" => {
                let other = if class == "dog" { "cat" } else { "dog" };
                json!({ "item_id": id, "labels": [class, other] })
            }
            "object_detection" => json!({ "item_id": id, "annotations": [{ "label": class, "bbox": [1.5, 2.0, 20.0, 10.0] }] }),
            _ => json!({ "item_id": id, "annotations": [{ "label": class, "polygon": [[1.0, 1.0], [30.0, 1.0], [15.0, 20.0]] }] }),
        })
        .collect();
    json!({ "items": items })
}

async fn whole_loop(task_type: &str, page_size: u32) {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(task_type, &["cat", "dog"], 10, page_size, "ann")
        .await;

    let task = app.checkout(&project, &ann).await;
    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    assert_eq!(task.body["kind"], "manual");
    assert_eq!(
        task.body["items"].as_array().unwrap().len(),
        page_size as usize
    );
    assert_eq!(task.body["labels"], json!(["cat", "dog"]));
    assert_eq!(task.body["instructions"]["text"], "label it");
    for item in task.body["items"].as_array().unwrap() {
        assert_eq!(item["width"], 64, "the real width is read from the image");
        assert_eq!(item["height"], 48);
        assert!(item["key"].as_str().unwrap().starts_with("set/img-"));
        let image = app
            .client
            .get(item["image_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            image.status(),
            StatusCode::OK,
            "the signed image URL serves the image"
        );
        assert_eq!(image.headers()["content-type"], "image/png");
    }

    let submitted = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for(task_type, &task.body, "cat"),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    assert_eq!(submitted.body["labeled"], page_size);

    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["total_items"], 10);
    assert_eq!(dashboard["labeled"], page_size);
    assert_eq!(dashboard["pending"]["in_task"], 0);
    assert_eq!(dashboard["pending"]["not_in_task"], 10 - page_size);
    assert_eq!(dashboard["label_distribution"]["cat"], page_size);
    let dogs = if task_type == "image_classification_multilabel" {
        page_size
    } else {
        0
    };
    assert_eq!(
        dashboard["label_distribution"]["dog"], dogs,
        "multi-label counts every class"
    );

    let labeled = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    let items = labeled.body["items"].as_array().unwrap();
    assert_eq!(items.len(), page_size as usize);
    let mut expected = item_ids(&task.body);
    let mut got: Vec<u64> = items
        .iter()
        .map(|i| i["item_id"].as_u64().unwrap())
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the labeled items are the ones submitted");
    assert_eq!(items[0]["labeled_by"], "ann");
    match task_type {
        "object_detection" => {
            assert_eq!(items[0]["labels"][0]["bbox"], json!([1.5, 2.0, 20.0, 10.0]))
        }
        "instance_segmentation" => {
            assert_eq!(
                items[0]["labels"][0]["polygon"],
                json!([[1.0, 1.0], [30.0, 1.0], [15.0, 20.0]])
            );
            assert_eq!(items[0]["labels"][0]["bbox"], json!([1.0, 1.0, 29.0, 19.0]));
        }
        _ => assert_eq!(items[0]["labels"][0], "cat"),
    }

    // Drain the rest; then there is nothing left.
    let mut rounds = 0;
    loop {
        let task = app.checkout(&project, &ann).await;
        if task.status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        let reply = app
            .submit(
                &project,
                &task_id(&task.body),
                &ann,
                labels_for(task_type, &task.body, "dog"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        rounds += 1;
        assert!(rounds < 20, "checkout never ran dry");
    }
    let dashboard = app.dashboard(&project).await;
    assert_eq!(
        dashboard["labeled"], 10,
        "every item labeled once: {dashboard}"
    );
    assert_eq!(
        dashboard["pending"],
        json!({ "not_in_task": 0, "in_task": 0, "queued": 0 })
    );
    let unlabeled = app
        .get(
            &format!("/projects/{project}/items?state=unlabeled"),
            &app.admin,
        )
        .await;
    assert_eq!(unlabeled.body["items"], json!([]));
}

#[tokio::test]
async fn multiclass_classification_loop_works_end_to_end() {
    whole_loop("image_classification_multiclass", 4).await;
}

#[tokio::test]
async fn multilabel_classification_loop_works_end_to_end() {
    whole_loop("image_classification_multilabel", 9).await;
}

#[tokio::test]
async fn object_detection_loop_works_end_to_end() {
    whole_loop("object_detection", 1).await;
}

#[tokio::test]
async fn instance_segmentation_loop_works_end_to_end() {
    whole_loop("instance_segmentation", 1).await;
}

#[tokio::test]
async fn checkout_on_a_paused_project_answers_409_until_resumed() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 3, 1, "ann")
        .await;
    let paused = app
        .post(&format!("/projects/{project}/pause"), &app.admin, json!({}))
        .await;
    assert_eq!(paused.body["status"], "paused");
    let refused = app.checkout(&project, &ann).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.content_type, "application/problem+json");
    assert!(
        refused.body["detail"].as_str().unwrap().contains("paused"),
        "{refused:?}"
    );
    let again = app
        .post(&format!("/projects/{project}/pause"), &app.admin, json!({}))
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "pausing a paused project is a no-op"
    );
    let resumed = app
        .post(
            &format!("/projects/{project}/resume"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(resumed.body["status"], "running");
    assert_eq!(app.checkout(&project, &ann).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_lease_returns_its_items_to_the_next_labeler() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let bob = app.user("bob", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multiclass",
            &["cat", "dog"],
            1,
            1,
            "ann",
        )
        .await;
    app.post(
        &format!("/projects/{project}/members"),
        &app.admin,
        json!({ "user": "bob" }),
    )
    .await;
    app.patch(
        &format!("/projects/{project}"),
        &app.admin,
        json!({ "lease_seconds": 60 }),
    )
    .await;

    let anns = app.checkout(&project, &ann).await;
    assert_eq!(anns.status, StatusCode::OK);
    assert_eq!(
        app.checkout(&project, &bob).await.status,
        StatusCode::NO_CONTENT,
        "the only item is leased"
    );
    let at_once = app
        .post(
            &format!("/projects/{project}/tasks/{}/renew", task_id(&anns.body)),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(
        at_once.status,
        StatusCode::OK,
        "a renew in the checkout's millisecond: {at_once:?}"
    );

    app.clock.advance(Duration::from_secs(30));
    let renewed = app
        .post(
            &format!("/projects/{project}/tasks/{}/renew", task_id(&anns.body)),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
    app.clock.advance(Duration::from_secs(45));
    assert_eq!(
        app.checkout(&project, &bob).await.status,
        StatusCode::NO_CONTENT,
        "renewal extended the lease"
    );

    app.clock.advance(Duration::from_secs(16));
    let bobs = app.checkout(&project, &bob).await;
    assert_eq!(
        bobs.status,
        StatusCode::OK,
        "the expired lease is handed out again"
    );
    assert_eq!(item_ids(&bobs.body), item_ids(&anns.body));
    assert_eq!(bobs.body["kind"], "requeued");

    let late = app
        .submit(
            &project,
            &task_id(&anns.body),
            &ann,
            labels_for("image_classification_multiclass", &anns.body, "cat"),
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::CONFLICT,
        "the old lease is gone: {late:?}"
    );
    assert_eq!(
        late.body["type"], "https://labeling.dev/problems/lease-taken-over",
        "{late:?}"
    );
    assert!(
        late.body["detail"]
            .as_str()
            .unwrap()
            .contains("took the task over"),
        "the answer says what happened: {late:?}"
    );
    let ok = app
        .submit(
            &project,
            &task_id(&bobs.body),
            &bob,
            labels_for("image_classification_multiclass", &bobs.body, "dog"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], 1);
    assert_eq!(
        dashboard["label_distribution"],
        json!({ "cat": 0, "dog": 1 })
    );
}

#[tokio::test]
async fn a_lease_that_expired_but_was_not_reassigned_can_still_be_submitted() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await;
    app.clock.advance(Duration::from_secs(7200));
    let late = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for("image_classification_multiclass", &task.body, "cat"),
        )
        .await;
    assert_eq!(late.status, StatusCode::OK, "no work is lost: {late:?}");
}

#[tokio::test]
async fn released_tasks_go_to_the_front_of_the_queue() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 12, 4, "ann")
        .await;
    let first = app.checkout(&project, &ann).await;
    let released = app
        .post(
            &format!("/projects/{project}/tasks/{}/release", task_id(&first.body)),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["pending"]["queued"], 4);
    assert_eq!(dashboard["queues"]["requeued"], 4);
    let next = app.checkout(&project, &ann).await;
    assert_eq!(next.body["kind"], "requeued");
    assert_eq!(item_ids(&next.body), item_ids(&first.body));
    let released_again = app
        .post(
            &format!("/projects/{project}/tasks/{}/release", task_id(&first.body)),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(
        released_again.status,
        StatusCode::CONFLICT,
        "a released task is gone: {released_again:?}"
    );
    assert_eq!(
        released_again.body["type"],
        "https://labeling.dev/problems/task-released"
    );
}

#[tokio::test]
async fn a_second_submit_of_a_submitted_task_answers_409_saying_so() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multiclass",
            &["cat", "dog"],
            2,
            1,
            "ann",
        )
        .await;
    let task = app.checkout(&project, &ann).await;
    let body = labels_for("image_classification_multiclass", &task.body, "cat");
    let first = app
        .submit(&project, &task_id(&task.body), &ann, body.clone())
        .await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let second = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for("image_classification_multiclass", &task.body, "dog"),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{second:?}");
    assert_eq!(second.content_type, "application/problem+json");
    assert_eq!(
        second.body["type"],
        "https://labeling.dev/problems/task-already-submitted"
    );
    assert!(
        second.body["detail"]
            .as_str()
            .unwrap()
            .contains("submitted already"),
        "{second:?}"
    );
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], 1);
    assert_eq!(
        dashboard["label_distribution"],
        json!({ "cat": 1, "dog": 0 }),
        "the first submit's labels stand"
    );
}

#[tokio::test]
async fn removing_a_member_gives_their_tasks_back_at_once() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let bob = app.user("bob", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 8, 4, "ann")
        .await;
    app.post(
        &format!("/projects/{project}/members"),
        &app.admin,
        json!({ "user": "bob" }),
    )
    .await;
    let anns = app.checkout(&project, &ann).await;
    assert_eq!(anns.status, StatusCode::OK);
    let bobs = app.checkout(&project, &bob).await;
    assert_eq!(bobs.status, StatusCode::OK);
    assert_eq!(
        app.checkout(&project, &bob).await.status,
        StatusCode::NO_CONTENT,
        "every item is leased"
    );
    let removed = app
        .delete(&format!("/projects/{project}/members/ANN"), &app.admin)
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    let dashboard = app.dashboard(&project).await;
    assert_eq!(
        dashboard["pending"]["in_task"], 4,
        "only bob's task is leased"
    );
    assert_eq!(dashboard["pending"]["queued"], 4);
    let next = app.checkout(&project, &bob).await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "no waiting for ann's lease to expire"
    );
    assert_eq!(next.body["kind"], "requeued");
    assert_eq!(item_ids(&next.body), item_ids(&anns.body));
    let late = app
        .submit(
            &project,
            &task_id(&anns.body),
            &app.admin,
            labels_for("image_classification_multiclass", &anns.body, "cat"),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(
        late.body["type"],
        "https://labeling.dev/problems/task-revoked"
    );
}

#[tokio::test]
async fn skipped_items_are_counted_and_not_handed_out_again() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await;
    let id = item_ids(&task.body)[0];
    let reply = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            json!({ "items": [{ "item_id": id, "skip": true }] }),
        )
        .await;
    assert_eq!(reply.body["skipped"], 1);
    let next = app.checkout(&project, &ann).await;
    assert_ne!(item_ids(&next.body), vec![id]);
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["skipped"], 1);
    let skipped = app
        .get(
            &format!("/projects/{project}/items?state=skipped"),
            &app.admin,
        )
        .await;
    assert_eq!(skipped.body["items"][0]["item_id"], id);
}

async fn label_everything(
    app: &labeling_tests::TestApp,
    project: &str,
    token: &str,
    class: &str,
) -> usize {
    let mut labeled = 0;
    loop {
        let task = app.checkout(project, token).await;
        if task.status == StatusCode::NO_CONTENT {
            return labeled;
        }
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        labeled += item_ids(&task.body).len();
        let reply = app
            .submit(
                project,
                &task_id(&task.body),
                token,
                labels_for("object_detection", &task.body, class),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
}

#[tokio::test]
async fn adding_classes_with_continue_keeps_labels() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 4, 1, "ann")
        .await;
    label_everything(&app, &project, &ann, "cat").await;
    let reply = app
        .post(
            &format!("/projects/{project}/labels"),
            &app.admin,
            json!({ "labels": ["bird"], "mode": "continue" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.body["labels"],
        json!([{ "id": 1, "name": "cat" }, { "id": 2, "name": "dog" }, { "id": 3, "name": "bird" }])
    );
    let dashboard = app.dashboard(&project).await;
    assert_eq!(
        dashboard["labeled"], 4,
        "continue keeps labeled items as they are"
    );
    assert_eq!(dashboard["label_distribution"]["bird"], 0);
    assert_eq!(
        app.checkout(&project, &ann).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn starting_over_and_removing_labels_hands_every_item_out_again_without_prelabels() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 4, 1, "ann")
        .await;
    label_everything(&app, &project, &ann, "cat").await;
    let reply = app
        .post(
            &format!("/projects/{project}/labels"),
            &app.admin,
            json!({ "labels": ["bird"], "mode": "start_over_remove" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], 0, "all items are back to unlabeled");
    assert_eq!(dashboard["pending"]["not_in_task"], 4);
    assert_eq!(
        dashboard["label_distribution"]["cat"], 0,
        "the labels are removed"
    );
    let listed = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]));
    let task = app.checkout(&project, &ann).await;
    assert_eq!(task.body["items"][0]["prelabels"], json!([]));
    assert_eq!(task.body["labels"], json!(["cat", "dog", "bird"]));
    let submitted = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for("object_detection", &task.body, "bird"),
        )
        .await;
    assert_eq!(
        submitted.status,
        StatusCode::OK,
        "new classes can be used: {submitted:?}"
    );
    assert_eq!(
        label_everything(&app, &project, &ann, "dog").await,
        3,
        "every item comes back once"
    );
}

#[tokio::test]
async fn starting_over_and_keeping_labels_shows_them_as_prelabels() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 3, 1, "ann")
        .await;
    label_everything(&app, &project, &ann, "cat").await;
    app.post(
        &format!("/projects/{project}/labels"),
        &app.admin,
        json!({ "labels": ["bird"], "mode": "start_over_keep" }),
    )
    .await;
    assert_eq!(app.dashboard(&project).await["labeled"], 0);
    for _ in 0..3 {
        let task = app.checkout(&project, &ann).await;
        assert_eq!(task.status, StatusCode::OK);
        assert_eq!(
            task.body["items"][0]["prelabels"],
            json!([{ "label": "cat", "bbox": [1.5, 2.0, 20.0, 10.0] }]),
            "the previous labels come back as prelabels"
        );
        app.submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for("object_detection", &task.body, "bird"),
        )
        .await;
    }
    assert_eq!(
        app.dashboard(&project).await["label_distribution"],
        json!({ "cat": 0, "dog": 0, "bird": 3 })
    );
}

#[tokio::test]
async fn a_task_from_before_a_start_over_cannot_be_submitted() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await;
    app.post(
        &format!("/projects/{project}/labels"),
        &app.admin,
        json!({ "labels": ["dog"], "mode": "start_over_remove" }),
    )
    .await;
    let reply = app
        .submit(
            &project,
            &task_id(&task.body),
            &ann,
            labels_for("object_detection", &task.body, "cat"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    assert_eq!(app.dashboard(&project).await["labeled"], 0);
}

#[tokio::test]
async fn label_modes_are_validated() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    for (body, pointer) in [
        (json!({ "labels": ["dog"] }), "/mode"),
        (json!({ "labels": ["dog"], "mode": "sometimes" }), "/mode"),
        (
            json!({ "labels": ["cat"], "mode": "continue" }),
            "/labels/0",
        ),
        (json!({ "labels": [], "mode": "continue" }), "/labels"),
    ] {
        let reply = app
            .post(
                &format!("/projects/{project}/labels"),
                &app.admin,
                body.clone(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.body["errors"][0]["pointer"], pointer, "{body}");
    }
    let project_now = app.get(&format!("/projects/{project}"), &app.admin).await;
    assert_eq!(
        project_now.body["labels"],
        json!([{ "id": 1, "name": "cat" }]),
        "a rejected request changes nothing"
    );
}

#[tokio::test]
async fn rejecting_an_item_removes_its_labels_and_requeues_it() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    label_everything(&app, &project, &ann, "cat").await;
    let labeled = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    let item = labeled.body["items"][0]["item_id"].as_u64().unwrap();
    let reply = app
        .post(
            &format!("/projects/{project}/items/{item}/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["labeled"], 1);
    assert_eq!(dashboard["label_distribution"]["cat"], 1);
    assert_eq!(dashboard["queues"]["requeued"], 1);
    let again = app
        .post(
            &format!("/projects/{project}/items/{item}/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "an unlabeled item cannot be rejected"
    );
    let task = app.checkout(&project, &ann).await;
    assert_eq!(
        item_ids(&task.body),
        vec![item],
        "the rejected item comes back"
    );
    assert_eq!(task.body["kind"], "requeued");
    let missing = app
        .post(
            &format!("/projects/{project}/items/999/reject"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn items_list_pages_with_a_cursor() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("object_detection", &["cat"], 7, 1, "ann")
        .await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/projects/{project}/items?state=unlabeled&limit=3&cursor={cursor}"),
                &app.admin,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|i| i["item_id"].as_u64().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
    let bad = app
        .get(
            &format!("/projects/{project}/items?state=sideways"),
            &app.admin,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}
