//! The HTTP functions behave as the local server does: the same requests, once as API Gateway
//! HTTP API (payload v2) events with JWT claims through the Lambda router, once as plain HTTP
//! with bearer tokens through the local router, give the same answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::StatusCode;
use labeling_core::Role;
use labeling_local::{Local, Options};
use serde_json::{Value, json};
use tower::ServiceExt;

const FIXTURE: &str = include_str!("fixtures/apigw-v2-request.json");

/// An API Gateway v2 event for `method path` with `body`, as `user` in `groups` (no
/// authorizer context when `user` is None, as on the public routes).
fn event(method: &str, path: &str, body: Option<&Value>, user: Option<(&str, &str)>) -> String {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    event["routeKey"] = json!(format!("{method} {raw_path}"));
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["requestContext"]["routeKey"] = json!(format!("{method} {raw_path}"));
    event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    match user {
        Some((name, groups)) => {
            event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:username"] =
                json!(name);
            event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] =
                json!(groups);
        }
        None => {
            event["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }
    }
    event.to_string()
}

async fn call(app: &axum::Router, request: axum::http::Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn via_lambda(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<&Value>,
    user: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(&event(method, path, body, user)).unwrap();
    let (parts, body) = request.into_parts();
    let bytes = body.to_vec();
    call(
        app,
        axum::http::Request::from_parts(parts, Body::from(bytes)),
    )
    .await
}

async fn via_local(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: &str,
) -> (StatusCode, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    call(app, request).await
}

#[tokio::test]
async fn api_gateway_events_get_the_same_answers_as_the_local_server() {
    let dir = std::env::temp_dir().join(format!("labeling-apigw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::new(&dir);
    options.admin_token = Some("admin-token".to_owned());
    let local = Local::open(options).await.unwrap();
    let ann_token = local.users.create_user("ann", Role::Labeler).unwrap();
    for index in 0..3 {
        local
            .blobs
            .put("photos", &format!("pets/{index}.png"), png(), "image/png")
            .await
            .unwrap();
    }
    let local_app = local.router();
    let config = labeling_lambda::Config::from_lookup(|name| {
        ["LABELING_TABLE", "LABELING_BUCKET", "LABELING_JOBS_QUEUE"]
            .contains(&name)
            .then(|| "unused".to_owned())
    })
    .unwrap();
    let lambda_app = labeling_lambda::http_app(local.service.clone(), &config).unwrap();
    let admin = Some(("admin", "[labeling-admins]"));
    let ann = Some(("ann", "[labelers]"));

    let new = json!({ "name": "pets", "task_type": "object_detection", "labels": ["cat", "dog"], "source": "s3://photos/pets/**" });
    let (status, created) = via_lambda(&lambda_app, "POST", "/projects", Some(&new), admin).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(
        created["created_by"], "admin",
        "the JWT's user is the actor"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    local.service.jobs().ingest_now(&id).await.unwrap();
    let (status, _) = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/members"),
        Some(&json!({ "user": "ann" })),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for path in [
        format!("/projects/{id}"),
        format!("/projects/{id}/dashboard"),
        "/projects".to_owned(),
        format!("/projects/{id}/items?state=unlabeled"),
    ] {
        let mut from_lambda = via_lambda(&lambda_app, "GET", &path, None, admin).await;
        let mut from_local = via_local(&local_app, "GET", &path, None, "admin-token").await;
        // Signed image URLs expire a moment apart: compare what they point at.
        for value in [&mut from_lambda.1, &mut from_local.1] {
            unsign_image_urls(value);
        }
        assert_eq!(from_lambda, from_local, "GET {path}");
        assert_eq!(from_lambda.0, StatusCode::OK, "GET {path}");
    }

    let (status, task) = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/tasks/checkout"),
        None,
        ann,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    let task_id = task["task_id"].as_str().unwrap();
    let item = task["items"][0]["item_id"].clone();
    let (status, renewed) = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/tasks/{task_id}/renew"),
        None,
        ann,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert!(renewed["lease_expires_at"].is_string(), "{renewed}");
    let someone_elses = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/tasks/{task_id}/release"),
        None,
        Some(("bob", "[labelers]")),
    )
    .await;
    assert_eq!(
        someone_elses.0,
        StatusCode::NOT_FOUND,
        "bob is not a member: {someone_elses:?}"
    );
    let submit = format!("/projects/{id}/tasks/{task_id}/submit");
    let bad = json!({ "items": [{ "item_id": item, "annotations": [{ "label": "cat", "bbox": [0, 0, 0, 3] }] }] });
    let from_lambda = via_lambda(&lambda_app, "POST", &submit, Some(&bad), ann).await;
    let from_local = via_local(&local_app, "POST", &submit, Some(&bad), &ann_token).await;
    assert_eq!(from_lambda.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        from_lambda, from_local,
        "the same problem+json for the same refusal"
    );
    let good = json!({ "items": [{ "item_id": item, "annotations": [{ "label": "cat", "bbox": [1, 1, 3, 3] }] }] });
    let (status, receipt) = via_lambda(&lambda_app, "POST", &submit, Some(&good), ann).await;
    assert_eq!(
        (status, receipt["labeled"].clone()),
        (StatusCode::OK, json!(1))
    );
    let labeled = via_lambda(
        &lambda_app,
        "GET",
        &format!("/projects/{id}/items?state=labeled"),
        None,
        admin,
    )
    .await;
    assert_eq!(labeled.1["items"][0]["labeled_by"], "ann");

    // A second task, released back to the queue.
    let (status, second) = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/tasks/checkout"),
        None,
        ann,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let release = format!(
        "/projects/{id}/tasks/{}/release",
        second["task_id"].as_str().unwrap()
    );
    let (status, released) = via_lambda(&lambda_app, "POST", &release, None, ann).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{released}");
    let from_lambda = via_lambda(
        &lambda_app,
        "GET",
        &format!("/projects/{id}/dashboard"),
        None,
        admin,
    )
    .await;
    let from_local = via_local(
        &local_app,
        "GET",
        &format!("/projects/{id}/dashboard"),
        None,
        "admin-token",
    )
    .await;
    assert_eq!(from_lambda, from_local);
    assert_eq!(from_lambda.1["pending"]["queued"], 1, "{from_lambda:?}");

    // An export, started through API Gateway and run as its job would.
    let (status, export) = via_lambda(
        &lambda_app,
        "POST",
        &format!("/projects/{id}/exports"),
        Some(&json!({ "format": "coco" })),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{export}");
    let export_id = export["id"].as_str().unwrap();
    local
        .service
        .exports()
        .run_export_now(&id, export_id)
        .await
        .unwrap();
    let path = format!("/projects/{id}/exports/{export_id}");
    let from_lambda = via_lambda(&lambda_app, "GET", &path, None, admin).await;
    let from_local = via_local(&local_app, "GET", &path, None, "admin-token").await;
    assert_eq!(from_lambda.0, StatusCode::OK);
    assert_eq!(from_lambda.1["status"], "succeeded", "{from_lambda:?}");
    assert_eq!(from_lambda.1["progress"], from_local.1["progress"]);
    assert_eq!(from_lambda.1["progress"]["items_written"], 1);
    let listed = via_lambda(
        &lambda_app,
        "GET",
        &format!("/projects/{id}/exports"),
        None,
        admin,
    )
    .await;
    assert_eq!(listed.0, StatusCode::OK);
    assert_eq!(
        via_lambda(&lambda_app, "GET", &path, None, ann).await.0,
        StatusCode::FORBIDDEN
    );

    let forbidden = via_lambda(
        &lambda_app,
        "GET",
        &format!("/projects/{id}/dashboard"),
        None,
        ann,
    )
    .await;
    assert_eq!(
        forbidden.0,
        via_local(
            &local_app,
            "GET",
            &format!("/projects/{id}/dashboard"),
            None,
            &ann_token
        )
        .await
        .0
    );
    assert_eq!(forbidden.0, StatusCode::FORBIDDEN);
    assert_eq!(
        via_lambda(&lambda_app, "GET", "/projects", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "no claims"
    );
    assert_eq!(
        via_lambda(
            &lambda_app,
            "GET",
            "/projects",
            None,
            Some(("eve", "[guests]"))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED,
        "no known group"
    );
    assert_eq!(
        via_lambda(&lambda_app, "GET", "/healthz", None, None)
            .await
            .0,
        StatusCode::OK
    );
    let users = via_lambda(
        &lambda_app,
        "POST",
        "/users",
        Some(&json!({ "name": "bob", "role": "labeler" })),
        admin,
    )
    .await;
    assert_eq!(
        users.0,
        StatusCode::NOT_FOUND,
        "users come from the identity provider on AWS"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// On AWS the web app is told to sign in with the stack's app client, on the region's Cognito
/// endpoint; a malformed client id stops the function at start instead.
#[tokio::test]
async fn the_web_app_on_aws_signs_in_with_the_stacks_app_client() {
    let dir = std::env::temp_dir().join(format!("labeling-sign-in-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Local::open(Options::new(&dir)).await.unwrap();
    let config_with = |client: &'static str| {
        labeling_lambda::Config::from_lookup(move |name| match name {
            "LABELING_TABLE" | "LABELING_BUCKET" | "LABELING_JOBS_QUEUE" => {
                Some("unused".to_owned())
            }
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "LABELING_COGNITO_CLIENT_ID" => Some(client.to_owned()),
            _ => None,
        })
        .unwrap()
    };
    let app = labeling_lambda::http_app(local.service.clone(), &config_with("4abc123def")).unwrap();
    let (status, config) = via_lambda(&app, "GET", "/app/config.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config,
        json!({"sign_in": "cognito", "endpoint": "https://cognito-idp.eu-west-1.amazonaws.com/",
               "client_id": "4abc123def"})
    );
    let refused = labeling_lambda::http_app(local.service.clone(), &config_with("a\"; b"));
    assert!(refused.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn png() -> Vec<u8> {
    let picture = image::RgbImage::from_pixel(20, 10, image::Rgb([1, 2, 3]));
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// Drops the query (expiry and signature) of every `image_url` in `value`.
fn unsign_image_urls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match field {
                    serde_json::Value::String(url) if name == "image_url" => {
                        if let Some(at) = url.find('?') {
                            url.truncate(at);
                        }
                    }
                    other => unsign_image_urls(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unsign_image_urls),
        _ => {}
    }
}
