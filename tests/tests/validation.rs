//! Every validation rule has its own case; a rejected request answers 422 problem+json that
//! points at the offending field, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn assert_submission_refused(
    app: &TestApp,
    project: &str,
    token: &str,
    task: &Value,
    body: Value,
    pointer: &str,
    case: &str,
) {
    let task_id = task["task_id"].as_str().unwrap();
    let reply = app.submit(project, task_id, token, body).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{case}: {reply:?}"
    );
    assert_eq!(reply.content_type, "application/problem+json", "{case}");
    let pointers: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&pointer),
        "{case}: expected {pointer} in {pointers:?}"
    );
    assert!(
        reply.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{case}: errors explain themselves"
    );
    let dashboard = app.dashboard(project).await;
    assert_eq!(
        dashboard["labeled"], 0,
        "{case}: a rejected submission writes nothing"
    );
    assert_eq!(
        dashboard["pending"]["in_task"],
        task["items"].as_array().unwrap().len(),
        "{case}: the task stays leased"
    );
}

#[tokio::test]
async fn multiclass_submissions_need_exactly_one_known_class() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multiclass",
            &["cat", "dog"],
            4,
            1,
            "ann",
        )
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let id = task["items"][0]["item_id"].as_u64().unwrap();
    let cases = [
        (
            "no class",
            json!({ "items": [{ "item_id": id, "labels": [] }] }),
            "/items/0/labels",
        ),
        (
            "two classes",
            json!({ "items": [{ "item_id": id, "labels": ["cat", "dog"] }] }),
            "/items/0/labels",
        ),
        (
            "unknown class",
            json!({ "items": [{ "item_id": id, "labels": ["horse"] }] }),
            "/items/0/labels/0",
        ),
        ("missing item", json!({ "items": [] }), "/items"),
        (
            "item not in task",
            json!({ "items": [{ "item_id": id, "labels": ["cat"] }, { "item_id": 9999, "labels": ["cat"] }] }),
            "/items/1/item_id",
        ),
        (
            "item twice",
            json!({ "items": [{ "item_id": id, "labels": ["cat"] }, { "item_id": id, "labels": ["dog"] }] }),
            "/items/1/item_id",
        ),
        (
            "no item id",
            json!({ "items": [{ "labels": ["cat"] }] }),
            "/items/0/item_id",
        ),
        (
            "annotations on classification",
            json!({ "items": [{ "item_id": id, "labels": ["cat"], "annotations": [] }] }),
            "/items/0/annotations",
        ),
        (
            "skip with labels",
            json!({ "items": [{ "item_id": id, "labels": ["cat"], "skip": true }] }),
            "/items/0",
        ),
        ("wrong JSON shape", json!({ "items": "everything" }), ""),
    ];
    for (case, body, pointer) in cases {
        assert_submission_refused(&app, &project, &ann, &task, body, pointer, case).await;
    }
    let ok = app
        .submit(
            &project,
            task["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [{ "item_id": id, "labels": ["dog"] }] }),
        )
        .await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "the task is still good after all those refusals"
    );
}

#[tokio::test]
async fn multilabel_submissions_need_one_or_more_distinct_known_classes() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project(
            "image_classification_multilabel",
            &["cat", "dog"],
            4,
            1,
            "ann",
        )
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let id = task["items"][0]["item_id"].as_u64().unwrap();
    for (case, body, pointer) in [
        (
            "no class",
            json!({ "items": [{ "item_id": id, "labels": [] }] }),
            "/items/0/labels",
        ),
        (
            "a class twice",
            json!({ "items": [{ "item_id": id, "labels": ["cat", "cat"] }] }),
            "/items/0/labels/1",
        ),
        (
            "unknown class",
            json!({ "items": [{ "item_id": id, "labels": ["cat", "emu"] }] }),
            "/items/0/labels/1",
        ),
    ] {
        assert_submission_refused(&app, &project, &ann, &task, body, pointer, case).await;
    }
}

#[tokio::test]
async fn boxes_must_be_finite_non_empty_and_inside_the_image() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    // Images are 64 x 48.
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let id = task["items"][0]["item_id"].as_u64().unwrap();
    let with_box = |bbox: Value| json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "bbox": bbox }] }] });
    for (case, body, pointer) in [
        (
            "zero width",
            with_box(json!([1, 1, 0, 5])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "zero height",
            with_box(json!([1, 1, 5, 0])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "negative width",
            with_box(json!([10, 1, -5, 5])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "three numbers",
            with_box(json!([1, 1, 5])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "left of the image",
            with_box(json!([-2, 1, 5, 5])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "past the right edge",
            with_box(json!([60, 1, 6, 5])),
            "/items/0/annotations/0/bbox",
        ),
        (
            "past the bottom edge",
            with_box(json!([1, 40, 5, 9.5])),
            "/items/0/annotations/0/bbox",
        ),
        ("a string", with_box(json!(["NaN", 1, 5, 5])), ""),
        (
            "no box",
            json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat" }] }] }),
            "/items/0/annotations/0/bbox",
        ),
        (
            "a polygon",
            json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "polygon": [[1, 1], [5, 1], [3, 4]] }] }] }),
            "/items/0/annotations/0/polygon",
        ),
        (
            "unknown class",
            json!({ "items": [{ "item_id": id, "annotations": [{ "label": "dog", "bbox": [1, 1, 5, 5] }] }] }),
            "/items/0/annotations/0/label",
        ),
        (
            "labels instead of annotations",
            json!({ "items": [{ "item_id": id, "labels": ["cat"] }] }),
            "/items/0/labels",
        ),
        (
            "second of two is bad",
            json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "bbox": [1, 1, 5, 5] }, { "label": "cat", "bbox": [1, 1, 0, 0] }] }] }),
            "/items/0/annotations/1/bbox",
        ),
    ] {
        assert_submission_refused(&app, &project, &ann, &task, body, pointer, case).await;
    }
    let overflowing = format!(
        r#"{{"items":[{{"item_id":{id},"annotations":[{{"label":"cat","bbox":[1,1,1e400,5]}}]}}]}}"#
    );
    let reply = app
        .client
        .post(format!(
            "{}/projects/{project}/tasks/{}/submit",
            app.base,
            task["task_id"].as_str().unwrap()
        ))
        .bearer_auth(&ann)
        .body(overflowing)
        .send()
        .await
        .unwrap();
    assert!(
        reply.status().is_client_error(),
        "a number too large to be finite is refused: {}",
        reply.status()
    );
    assert_eq!(app.dashboard(&project).await["labeled"], 0);
    // Within one pixel of the edge is clamped, not refused.
    let reply = app
        .submit(
            &project,
            task["task_id"].as_str().unwrap(),
            &ann,
            with_box(json!([-0.5, 0.0, 65.0, 48.9])),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let labeled = app
        .get(
            &format!("/projects/{project}/items?state=labeled"),
            &app.admin,
        )
        .await;
    assert_eq!(
        labeled.body["items"][0]["labels"][0]["bbox"],
        json!([0.0, 0.0, 64.0, 48.0]),
        "clamped to the image"
    );
}

#[tokio::test]
async fn polygons_need_three_points_an_area_and_to_stay_inside_the_image() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("instance_segmentation", &["cat"], 2, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let id = task["items"][0]["item_id"].as_u64().unwrap();
    let with_polygon = |polygon: Value| json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "polygon": polygon }] }] });
    let at = "/items/0/annotations/0/polygon";
    for (case, body, pointer) in [
        ("two points", with_polygon(json!([[1, 1], [5, 5]])), at),
        (
            "collinear",
            with_polygon(json!([[1, 1], [2, 2], [3, 3]])),
            at,
        ),
        (
            "all the same point",
            with_polygon(json!([[4, 4], [4, 4], [4, 4], [4, 4]])),
            at,
        ),
        (
            "outside",
            with_polygon(json!([[1, 1], [70, 1], [5, 5]])),
            at,
        ),
        (
            "a point of three numbers",
            with_polygon(json!([[1, 1, 1], [5, 1], [3, 4]])),
            at,
        ),
        (
            "no polygon",
            json!({ "items": [{ "item_id": id, "annotations": [{ "label": "cat", "bbox": [1, 1, 2, 2] }] }] }),
            at,
        ),
    ] {
        assert_submission_refused(&app, &project, &ann, &task, body, pointer, case).await;
    }
}

#[tokio::test]
async fn project_creation_validates_every_field() {
    let app = spawn_app().await;
    let good = json!({
        "name": "pets",
        "task_type": "object_detection",
        "labels": ["cat", "dog"],
        "instructions": { "text": "Box every pet", "url": null },
        "source": "s3://photos/cats/**",
        "page_size": 1,
    });
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let too_many: Vec<String> = (0..501).map(|i| format!("c{i}")).collect();
    for (case, body, pointer) in [
        ("empty name", with("name", json!("  ")), "/name"),
        (
            "name too long",
            with("name", json!("n".repeat(129))),
            "/name",
        ),
        ("name '.'", with("name", json!(" . ")), "/name"),
        ("name '..'", with("name", json!("..")), "/name"),
        (
            "name with a backslash",
            with("name", json!("a\\b")),
            "/name",
        ),
        ("name with a slash", with("name", json!("a/b")), "/name"),
        (
            "name with a right-to-left override",
            with("name", json!("pets\u{202E}gpj")),
            "/name",
        ),
        (
            "class with a bidirectional isolate",
            with("labels", json!(["cat", "d\u{2067}og"])),
            "/labels/1",
        ),
        (
            "class with a zero-width space",
            with("labels", json!(["c\u{200B}at"])),
            "/labels/0",
        ),
        (
            "classes differing only in case",
            with("labels", json!(["Cat", "cat"])),
            "/labels/1",
        ),
        (
            "classes differing only in spaces around them",
            with("labels", json!(["cat", " cat "])),
            "/labels/1",
        ),
        (
            "unknown task type",
            with("task_type", json!("video_tracking")),
            "/task_type",
        ),
        ("no classes", with("labels", json!([])), "/labels"),
        (
            "duplicate class",
            with("labels", json!(["cat", "cat"])),
            "/labels/1",
        ),
        (
            "blank class",
            with("labels", json!(["cat", ""])),
            "/labels/1",
        ),
        (
            "class too long",
            with("labels", json!(["x".repeat(257)])),
            "/labels/0",
        ),
        ("501 classes", with("labels", json!(too_many)), "/labels"),
        (
            "page size for detection",
            with("page_size", json!(4)),
            "/page_size",
        ),
        (
            "bad source scheme",
            with("source", json!("http://photos/cats")),
            "/source",
        ),
        (
            "bad bucket",
            with("source", json!("s3://Photos/cats/**")),
            "/source",
        ),
        (
            "lease too short",
            with("lease_seconds", json!(5)),
            "/lease_seconds",
        ),
        (
            "instructions url",
            with("instructions", json!({ "text": "x", "url": "ftp://x" })),
            "/instructions/url",
        ),
    ] {
        let reply = app.post("/projects", &app.admin, body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {reply:?}"
        );
        let pointers: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(
            pointers.contains(&pointer),
            "{case}: expected {pointer} in {pointers:?}"
        );
    }
    let page_sizes = with("task_type", json!("image_classification_multiclass"));
    for size in [2, 5, 10] {
        let mut body = page_sizes.clone();
        body["page_size"] = json!(size);
        assert_eq!(
            app.post("/projects", &app.admin, body).await.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "page size {size}"
        );
    }
    let listed = app.get("/projects", &app.admin).await;
    assert_eq!(
        listed.body["projects"],
        json!([]),
        "no refused request created anything"
    );
    let malformed = app
        .client
        .post(format!("{}/projects", app.base))
        .bearer_auth(&app.admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // After all those, the good request still works and the name was not burnt.
    assert_eq!(
        app.post("/projects", &app.admin, good).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn immutable_fields_cannot_be_patched() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    for field in [
        "task_type",
        "source",
        "page_size",
        "name",
        "labels",
        "colour",
    ] {
        let reply = app
            .patch(
                &format!("/projects/{project}"),
                &app.admin,
                json!({ field: "x", "lease_seconds": 120 }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert_eq!(reply.body["errors"][0]["pointer"], format!("/{field}"));
    }
    let unchanged = app.get(&format!("/projects/{project}"), &app.admin).await;
    assert_eq!(
        unchanged.body["lease_seconds"], 3600,
        "a refused patch changes nothing, not even the valid fields"
    );
    let reply = app
        .patch(&format!("/projects/{project}"), &app.admin, json!({ "lease_seconds": 120, "instructions": { "text": "new", "url": "https://example.com/guide" }, "incremental_refresh": true, "ml_assist": true }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["lease_seconds"], 120);
    assert_eq!(
        reply.body["instructions"]["url"],
        "https://example.com/guide"
    );
    assert_eq!(reply.body["incremental_refresh"], true);
    assert_eq!(
        reply.body["ml_assist"],
        json!({ "enabled": true, "target_precision": 0.95, "min_labels": 100 })
    );
}

#[tokio::test]
async fn ml_assist_settings_are_given_as_a_switch_or_an_object_and_checked() {
    let app = spawn_app().await;
    let project = app
        .labeled_project(
            "image_classification_multiclass",
            &["cat", "dog"],
            1,
            1,
            "ann",
        )
        .await;
    let path = format!("/projects/{project}");
    let reply = app
        .patch(
            &path,
            &app.admin,
            json!({ "ml_assist": { "enabled": true, "target_precision": 0.9, "min_labels": 40 } }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.body["ml_assist"],
        json!({ "enabled": true, "target_precision": 0.9, "min_labels": 40 })
    );
    // A switch keeps the settings; an object changes only what it names.
    let off = app
        .patch(&path, &app.admin, json!({ "ml_assist": false }))
        .await;
    assert_eq!(
        off.body["ml_assist"],
        json!({ "enabled": false, "target_precision": 0.9, "min_labels": 40 })
    );
    let some = app
        .patch(
            &path,
            &app.admin,
            json!({ "ml_assist": { "min_labels": 60 } }),
        )
        .await;
    assert_eq!(
        some.body["ml_assist"],
        json!({ "enabled": false, "target_precision": 0.9, "min_labels": 60 })
    );
    for (bad, pointer) in [
        (
            json!({ "target_precision": 1.0 }),
            "/ml_assist/target_precision",
        ),
        (
            json!({ "target_precision": 0.2 }),
            "/ml_assist/target_precision",
        ),
        (json!({ "min_labels": 5 }), "/ml_assist/min_labels"),
        (json!({ "enable": true }), "/ml_assist"),
        (json!("yes"), "/ml_assist"),
    ] {
        let reply = app
            .patch(
                &path,
                &app.admin,
                json!({ "ml_assist": bad, "lease_seconds": 120 }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.body["errors"][0]["pointer"], pointer, "{bad}");
    }
    let unchanged = app.get(&path, &app.admin).await;
    assert_eq!(unchanged.body["lease_seconds"], 3600);
    assert_eq!(unchanged.body["ml_assist"]["min_labels"], 60);
    // On create too.
    let created = app
        .post(
            "/projects",
            &app.admin,
            json!({ "name": "ml settings", "task_type": "image_classification_multiclass",
                    "labels": ["a"], "source": "s3://nowhere-bucket/x/**",
                    "ml_assist": { "enabled": true, "min_labels": 1000 } }),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{created:?}");
    assert_eq!(
        created.body["ml_assist"],
        json!({ "enabled": true, "target_precision": 0.95, "min_labels": 1000 })
    );
    let refused = app
        .post(
            "/projects",
            &app.admin,
            json!({ "name": "ml settings 2", "task_type": "image_classification_multiclass",
                    "labels": ["a"], "source": "s3://nowhere-bucket/x/**",
                    "ml_assist": { "min_labels": 1 } }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.body["errors"][0]["pointer"],
        "/ml_assist/min_labels"
    );
}
