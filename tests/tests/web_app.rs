//! The web app is served by the same router as the API: `/` and its two files, embedded in the
//! binary, with a content security policy, no referrer (signed image URLs must not leak) and
//! entity tags so a browser revalidates instead of keeping a stale app. What the app does in a
//! browser is tested in `web/e2e/` (headless Chromium, started by infra/test.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_tests::spawn_app;
use reqwest::StatusCode;

#[tokio::test]
async fn the_app_is_served_at_the_root_with_its_files_and_safe_headers() {
    let app = spawn_app().await;
    let index = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = index.text().await.unwrap();
    assert!(
        html.contains("/app/app.js") && html.contains("/app/app.css"),
        "{html}"
    );

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let url = format!("{}/app/{file}", app.base);
        let first = app.client.get(&url).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK, "{file}");
        assert_eq!(first.headers()["content-type"], content_type);
        assert_eq!(first.headers()["cache-control"], "no-cache");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        let body = first.bytes().await.unwrap();
        let on_disk = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../web/dist/{file}")),
        )
        .unwrap();
        assert_eq!(body.as_ref(), on_disk.as_slice(), "{file} is the built one");
        let again = app
            .client
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
    }

    // The local default signs in with the users file's tokens.
    let config = app
        .client
        .get(format!("{}/app/config.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
    assert_eq!(
        config.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"sign_in": "token"})
    );

    let missing = app
        .client
        .get(format!("{}/app/../../etc/passwd", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unknown = app
        .client
        .get(format!("{}/app/secret.env", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn listed_items_carry_a_signed_url_of_their_image_for_the_data_page() {
    let app = spawn_app().await;
    let bucket = app.bucket("thumbs");
    app.images(&bucket, "img", 2, 24, 16).await;
    let project = app
        .project(serde_json::json!({
            "name": "thumbs", "task_type": "image_classification_multiclass",
            "labels": ["a"], "source": format!("s3://{bucket}/img/**"), "page_size": 1,
        }))
        .await;
    let listed = app
        .get(
            &format!("/projects/{project}/items?state=unlabeled"),
            &app.admin,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let url = item["image_url"].as_str().unwrap();
        let image = app.client.get(url).send().await.unwrap();
        assert_eq!(image.status(), StatusCode::OK, "{url}");
        let bytes = image.bytes().await.unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{url}");
    }
}
