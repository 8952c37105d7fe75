//! The OpenAPI document and the router agree, asked of the router itself: every documented
//! operation is answered by a handler, every method the document leaves out of a path is a
//! 405, and every path the shared router registers is documented.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A concrete path for a template: every parameter replaced by a value that names nothing.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{item_id}" => "1".to_owned(),
            s if s.starts_with('{') => format!("no-such-{}", s.trim_matches(['{', '}'])),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_other_method_is_refused() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json", &app.admin).await.body;
    let paths = document["paths"].as_object().unwrap();
    let mut asked = 0;
    for (template, operations) in paths {
        // Blob URLs are this server's only where the embedded store signs them.
        if labeling_tests::on_aws() && template.starts_with("/blobs/") {
            continue;
        }
        let path = concrete(template);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let documented = operations.get(method.as_str().to_lowercase()).is_some();
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let reply = app
                .request(method.clone(), &path, Some(&app.admin), body)
                .await;
            let unrouted = reply.status == StatusCode::METHOD_NOT_ALLOWED
                || (reply.status == StatusCode::NOT_FOUND
                    && reply.body["detail"] == "no such route");
            if documented {
                assert!(
                    !unrouted,
                    "{method} {template} is documented but not routed: {reply:?}"
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is routed but not documented: {reply:?}"
                );
            }
            asked += 1;
        }
    }
    assert!(asked >= 5 * 24, "only {asked} requests asked");
}

#[tokio::test]
async fn every_path_of_the_shared_router_is_documented() {
    let app = spawn_app().await;
    let document: Value = app.get("/openapi.json", &app.admin).await.body;
    let paths = document["paths"].as_object().unwrap();
    let routed = labeling_api::routes::paths();
    assert!(routed.len() >= 20, "{routed:?}");
    for path in routed {
        assert!(
            paths.contains_key(path),
            "{path} is routed but not documented"
        );
    }
}

#[test]
fn a_response_off_the_document_is_named_with_its_route_status_and_schema_error() {
    let wrong_shape = labeling_tests::openapi::check(
        "GET",
        "/projects/p_1",
        200,
        &json!({ "id": 5, "name": "cats" }),
    )
    .unwrap_err();
    assert!(
        wrong_shape.contains("GET /projects/{project_id}") && wrong_shape.contains("200"),
        "{wrong_shape}"
    );
    assert!(
        wrong_shape.contains("/id"),
        "names the field: {wrong_shape}"
    );

    let undocumented =
        labeling_tests::openapi::check("GET", "/projects/p_1", 418, &json!({})).unwrap_err();
    assert!(undocumented.contains("does not document"), "{undocumented}");

    let no_such_method =
        labeling_tests::openapi::check("PUT", "/projects/p_1", 200, &json!({})).unwrap_err();
    assert!(
        no_such_method.contains("not documented"),
        "{no_such_method}"
    );
}
