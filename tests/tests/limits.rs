//! Documented limits that fit the table's 400 KB item: a request within them is stored (on
//! the AWS store too, where the emulator enforces the item limit), one above them answers 422
//! pointing at the field, never a 503 that a client would retry for ever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A box with coordinates that print long (18 characters and more once clamped).
fn long_box(index: usize) -> Value {
    let offset = (index % 40) as f64;
    json!({
        "label": "cat",
        "bbox": [offset + 0.123_456_789_012_345_67, 1.234_567_890_123_456_7, 10.987_654_321_098_765, 20.876_543_210_987_654]
    })
}

fn boxes(count: usize) -> Value {
    Value::from((0..count).map(long_box).collect::<Vec<_>>())
}

/// A triangle-fan polygon of `points` points inside a 64 x 48 image.
fn polygon(points: usize) -> Value {
    let points: Vec<Value> = (0..points)
        .map(|i| {
            let angle = i as f64 / points as f64 * std::f64::consts::TAU;
            json!([
                32.123_456_789_012_34 + 20.0 * angle.cos(),
                24.123_456_789_012_34 + 20.0 * angle.sin()
            ])
        })
        .collect();
    json!({ "label": "cat", "polygon": points })
}

/// The same with one decimal, so 60,000 points stay well under the 2 MiB body limit.
fn compact_polygon(points: usize) -> Value {
    let mut shape = polygon(points);
    for point in shape["polygon"].as_array_mut().unwrap() {
        for value in point.as_array_mut().unwrap() {
            *value = json!((value.as_f64().unwrap() * 10.0).round() / 10.0);
        }
    }
    shape
}

fn pointers(reply: &labeling_tests::Reply) -> Vec<String> {
    reply.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["pointer"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn submit_annotations(
    app: &TestApp,
    project: &str,
    token: &str,
    annotations: Value,
) -> (labeling_tests::Reply, Value) {
    let task = app.checkout(project, token).await;
    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    let item = task.body["items"][0]["item_id"].clone();
    let reply = app
        .submit(
            project,
            task.body["task_id"].as_str().unwrap(),
            token,
            json!({ "items": [{ "item_id": item, "annotations": annotations }] }),
        )
        .await;
    (reply, task.body)
}

#[tokio::test]
async fn too_many_boxes_or_points_answer_422_pointing_at_them_not_503() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let detection = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    let segmentation = app
        .labeled_project("instance_segmentation", &["cat"], 1, 1, "ann")
        .await;
    for (case, project, annotations, pointer) in [
        (
            "20,000 boxes",
            &detection,
            boxes(20_000),
            "/items/0/annotations",
        ),
        (
            "1,001 boxes",
            &detection,
            boxes(1001),
            "/items/0/annotations",
        ),
        (
            "a polygon of 60,000 points",
            &segmentation,
            json!([compact_polygon(60_000)]),
            "/items/0/annotations/0/polygon",
        ),
        (
            "a polygon of 1,001 points",
            &segmentation,
            json!([polygon(1001)]),
            "/items/0/annotations/0/polygon",
        ),
        (
            "1,200 points in 400 polygons",
            &segmentation,
            Value::from(vec![polygon(3); 400]),
            "/items/0/annotations",
        ),
    ] {
        let (reply, task) = submit_annotations(&app, project, &ann, annotations).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {reply:?}"
        );
        assert!(
            pointers(&reply).iter().any(|p| p == pointer),
            "{case}: expected {pointer} in {:?}",
            pointers(&reply)
        );
        // Give the task back, so the next case checks the same image out.
        let released = app
            .post(
                &format!(
                    "/projects/{project}/tasks/{}/release",
                    task["task_id"].as_str().unwrap()
                ),
                &ann,
                json!({}),
            )
            .await;
        assert_eq!(released.status, StatusCode::NO_CONTENT, "{case}");
    }
    assert_eq!(app.dashboard(&detection).await["labeled"], 0);
    assert_eq!(app.dashboard(&segmentation).await["labeled"], 0);
}

/// An item at its largest: the most boxes allowed as its labels, the same as its prelabels
/// after a start-over that keeps them, and replaced versions in its history.
#[tokio::test]
async fn the_most_boxes_allowed_are_stored_through_start_overs_rejects_and_relabels() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    let (first, _) = submit_annotations(&app, &project, &ann, boxes(1000)).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let started_over = app
        .post(
            &format!("/projects/{project}/labels"),
            &app.admin,
            json!({ "labels": ["dog"], "mode": "start_over_keep" }),
        )
        .await;
    assert_eq!(started_over.status, StatusCode::OK, "{started_over:?}");
    for round in 0..3 {
        let (reply, task) = submit_annotations(&app, &project, &ann, boxes(1000)).await;
        assert_eq!(reply.status, StatusCode::OK, "relabel {round}: {reply:?}");
        if round == 0 {
            assert_eq!(
                task["items"][0]["prelabels"].as_array().map(Vec::len),
                Some(1000),
                "the previous round's boxes come as prelabels (and stay on the item)"
            );
        }
        let item = task["items"][0]["item_id"].as_u64().unwrap();
        let rejected = app
            .post(
                &format!("/projects/{project}/items/{item}/reject"),
                &app.admin,
                json!({}),
            )
            .await;
        assert_eq!(
            rejected.status.as_u16() / 100,
            2,
            "reject {round}: {rejected:?}"
        );
    }
    let (last, _) = submit_annotations(&app, &project, &ann, boxes(1000)).await;
    assert_eq!(last.status, StatusCode::OK, "{last:?}");
    let listed = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    assert_eq!(
        listed.body["items"][0]["labels"].as_array().map(Vec::len),
        Some(1000)
    );
}

#[tokio::test]
async fn class_names_and_instructions_are_limited_in_bytes_and_fit_at_their_limits() {
    let app = spawn_app().await;
    let bucket = app.bucket("limits");
    app.images(&bucket, "set", 1, 64, 48).await;
    let body = |labels: Vec<String>, text: String| {
        json!({
            "name": labeling_testkit::unique("limits"),
            "task_type": "image_classification_multiclass",
            "labels": labels,
            "instructions": { "text": text, "url": format!("https://{}", "u".repeat(2040)) },
            "source": format!("s3://{bucket}/set/**"),
            "page_size": 1,
        })
    };
    // 500 classes of 256 four-byte characters: each allowed alone, 512 KB together.
    let wide_classes: Vec<String> = (0..500)
        .map(|i| format!("{i:03}{}", "𝄞".repeat(253)))
        .collect();
    let refused = app
        .post("/projects", &app.admin, body(wide_classes, "x".into()))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(pointers(&refused), ["/labels"]);
    let long_text = "𝄞".repeat(25_001);
    let refused = app
        .post("/projects", &app.admin, body(vec!["cat".into()], long_text))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(pointers(&refused), ["/instructions/text"]);
    // At the limits: 64 KB of class names and 100,000 bytes of instructions.
    let classes: Vec<String> = (0..500)
        .map(|i| format!("{i:03}{}", "𝄞".repeat(32)))
        .collect();
    assert!(classes.iter().map(String::len).sum::<usize>() <= 64 * 1024);
    let project = app.project(body(classes, "𝄞".repeat(25_000))).await;
    let patched = app
        .patch(
            &format!("/projects/{project}"),
            &app.admin,
            json!({ "instructions": { "text": "𝄞".repeat(25_000), "url": null } }),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(
        app.get("/projects", &app.admin).await.body["projects"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_dataset_description_is_limited_in_bytes_and_fits_at_its_limit() {
    let app = spawn_app().await;
    // 2,501 four-byte characters: 10,004 bytes, over the 10,000 allowed.
    let too_long = "𝄞".repeat(2_501);
    let refused = app
        .post(
            "/datasets",
            &app.admin,
            json!({ "name": "long", "description": too_long }),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(pointers(&refused), vec!["/description".to_owned()]);
    let missing = app.get("/datasets/long", &app.admin).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "nothing was written");

    let at_limit = "𝄞".repeat(2_500);
    let created = app
        .post(
            "/datasets",
            &app.admin,
            json!({ "name": "long", "description": at_limit }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let stored = app.get("/datasets/long", &app.admin).await;
    assert_eq!(stored.body["description"], at_limit);
}
