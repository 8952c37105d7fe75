//! What the server logs at ERROR level: incidents (5xx, failed jobs), never a client's bad
//! request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use labeling_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::json;

/// Every line the ERROR-level subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_not_logged_as_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The server runs on this process's runtime threads: only a global subscriber sees them.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::ERROR)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let app = spawn_app().await;

    let missing = app.get("/projects/no-such-project", &app.admin).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let invalid = app
        .post("/projects", &app.admin, json!({ "name": "", "labels": [] }))
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{invalid:?}"
    );
    let export = app
        .post(
            "/projects/no-such-project/exports",
            &app.admin,
            json!({ "format": "coco" }),
        )
        .await;
    assert_eq!(export.status, StatusCode::NOT_FOUND, "{export:?}");

    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logged.is_empty(), "logged at ERROR: {logged}");
}
