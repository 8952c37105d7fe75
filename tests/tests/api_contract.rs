//! Requests the OpenAPI document calls invalid are refused, and the typed shapes between the
//! HTTP layer and the use cases answer as the untyped ones did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn pointers(reply: &labeling_tests::Reply) -> Vec<String> {
    reply.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn project_settings(app: &TestApp, project: &str) -> Value {
    let reply = app.get(&format!("/projects/{project}"), &app.admin).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

#[tokio::test]
async fn a_patch_without_a_body_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;
    let before = project_settings(&app, &project).await;

    let reply = app
        .request(
            reqwest::Method::PATCH,
            &format!("/projects/{project}"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(project_settings(&app, &project).await, before);
}

#[tokio::test]
async fn a_labeler_patching_without_a_body_is_forbidden_before_anything_else() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;

    let reply = app
        .request(
            reqwest::Method::PATCH,
            &format!("/projects/{project}"),
            Some(&ann),
            None,
        )
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
}

#[tokio::test]
async fn a_patch_names_every_wrong_field_and_applies_the_right_ones_only_when_all_are_right() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;
    let before = project_settings(&app, &project).await;

    let wrong = app
        .patch(
            &format!("/projects/{project}"),
            &app.admin,
            json!({
                "lease_seconds": "long",
                "ml_assist": 1,
                "name": "other",
                "colour": "red",
                "incremental_refresh": true,
                "instructions": null,
            }),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{wrong:?}");
    let mut named = pointers(&wrong);
    named.sort();
    assert_eq!(
        named,
        [
            "/colour",
            "/instructions",
            "/lease_seconds",
            "/ml_assist",
            "/name"
        ]
    );
    assert_eq!(project_settings(&app, &project).await, before);

    let right = app
        .patch(
            &format!("/projects/{project}"),
            &app.admin,
            json!({ "lease_seconds": 600, "ml_assist": false, "incremental_refresh": true }),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK, "{right:?}");
    assert_eq!(right.body["lease_seconds"], 600);
    assert_eq!(right.body["incremental_refresh"], true);
}

#[tokio::test]
async fn an_instructions_url_of_a_scheme_alone_is_refused() {
    let app = spawn_app().await;
    for url in [
        "http://",
        "https://",
        "http:///path",
        "https:// example.com",
    ] {
        let reply = app
            .post(
                "/projects",
                &app.admin,
                json!({
                    "name": "url-check",
                    "task_type": "image_classification_multiclass",
                    "labels": ["cat"],
                    "instructions": { "text": "label it", "url": url },
                    "source": "s3://bucket/set/**",
                }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {reply:?}"
        );
        assert_eq!(pointers(&reply), ["/instructions/url"], "{url}");
    }
    let listed = app.get("/projects", &app.admin).await;
    assert_eq!(listed.body["projects"], json!([]), "nothing was created");
}

#[tokio::test]
async fn an_export_since_beyond_the_year_9999_is_refused() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;
    for since in [
        json!("400902-01-01T00:00:00Z"),
        json!(12_589_000_000_000_000_i64),
    ] {
        let reply = app
            .post(
                &format!("/projects/{project}/exports"),
                &app.admin,
                json!({ "format": "coco", "since": since }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{since}: {reply:?}"
        );
        assert_eq!(pointers(&reply), ["/since"], "{since}");
    }
    let exports = app
        .get(&format!("/projects/{project}/exports"), &app.admin)
        .await;
    assert_eq!(exports.body["exports"], json!([]), "no export was started");
}

#[tokio::test]
async fn a_checked_out_task_names_its_queue_and_lists_prelabels_by_class_name() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat", "dog"], 2, 1, "ann")
        .await;

    let task = app.checkout(&project, &ann).await;

    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    assert_eq!(task.body["kind"], "manual");
    for item in task.body["items"].as_array().unwrap() {
        assert_eq!(
            item["prelabels"],
            json!([]),
            "fresh items have no prelabels"
        );
    }
}

#[tokio::test]
async fn malformed_json_is_a_documented_400_on_every_route_that_reads_a_body() {
    let app = spawn_app().await;
    let project = app
        .labeled_project("image_classification_multiclass", &["cat"], 2, 1, "ann")
        .await;
    let routes = [
        ("POST", "/datasets".to_owned()),
        ("POST", "/datasets/photos/uploads".to_owned()),
        ("POST", format!("/projects/{project}/exports")),
        ("PATCH", format!("/projects/{project}")),
        ("POST", format!("/projects/{project}/labels")),
    ];
    for (method, path) in routes {
        let response = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .bearer_auth(&app.admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{method} {path}: {body}");
        labeling_tests::openapi::check(method, &path, status, &body)
            .unwrap_or_else(|mismatch| panic!("{mismatch}"));
    }
}
