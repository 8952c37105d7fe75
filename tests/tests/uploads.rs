//! Uploads through signed URLs: each slot names the headers its PUT must carry, the local
//! server refuses any other content type, or a body that is not the signed SHA-256, and stores
//! nothing, and a resumed upload compares stored checksums instead of reading the files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use labeling_core::ports::counting::CountingBlobs;
use labeling_core::usecases::datasets::{UploadFileInput, UploadsInput};
use labeling_core::{Actor, Service};
use labeling_tests::{TestApp, on_aws, png, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn sha256_base64(body: &[u8]) -> String {
    labeling_embedded::folder_blobs::sha256_header_value(&Sha256::digest(body).into())
}

/// A fresh dataset and the upload slots for `files`.
async fn slots(app: &TestApp, dataset: &str, files: Value) -> Vec<Value> {
    let created = app
        .post("/datasets", &app.admin, json!({ "name": dataset }))
        .await;
    assert!(
        created.status == StatusCode::CREATED || created.status == StatusCode::CONFLICT,
        "{created:?}"
    );
    let reply = app
        .post(
            &format!("/datasets/{dataset}/uploads"),
            &app.admin,
            json!({ "files": files }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["uploads"].as_array().unwrap().clone()
}

/// PUTs `body` to a slot's URL with exactly the headers the slot names.
async fn put_as_told(app: &TestApp, slot: &Value, body: Vec<u8>) -> reqwest::Response {
    let mut put = app.client.put(slot["url"].as_str().unwrap());
    for (name, value) in slot["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    put.body(body).send().await.unwrap()
}

/// What the folder holding a dataset's files contains (temporary files included).
fn dataset_folder(app: &TestApp, dataset: &str) -> Vec<String> {
    let folder = app
        .data_dir
        .join("buckets")
        .join(&app.service.config().system_bucket)
        .join("datasets")
        .join(dataset);
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn each_upload_slot_names_the_headers_its_put_must_carry() {
    let app = spawn_app().await;
    let photo = png(10, 7, 3);
    let scan = png(12, 9, 4);
    let slots = slots(
        &app,
        "shots",
        json!([
            "cats/photo.jfif",
            { "name": "cats/scan.png", "size": scan.len(), "sha256": sha256_hex(&scan) },
        ]),
    )
    .await;

    assert_eq!(
        slots[0]["headers"],
        json!({ "content-type": "image/jpeg" }),
        "a .jfif is signed as image/jpeg, which no browser sends on its own"
    );
    let headers = &slots[1]["headers"];
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(
        headers["x-amz-checksum-sha256"],
        sha256_base64(&scan),
        "a file given with its sha256 is signed with it: {headers}"
    );

    for (slot, body) in slots.iter().zip([photo, scan]) {
        let reply = put_as_told(&app, slot, body.clone()).await;
        assert!(reply.status().is_success(), "{:?}", reply.text().await);
        let key = slot["key"].as_str().unwrap();
        let system = &app.service.config().system_bucket;
        assert_eq!(app.blobs.get(system, key, None).await.unwrap(), body);
    }
}

#[tokio::test]
async fn a_put_with_another_content_type_or_none_is_refused_and_stores_nothing() {
    if on_aws() {
        // moto checks no signature; S3 answers 403 SignatureDoesNotMatch.
        return;
    }
    let app = spawn_app().await;
    let slots = slots(&app, "jpegs", json!(["photo.jfif"])).await;
    let url = slots[0]["url"].as_str().unwrap();
    for (content_type, why) in [
        (Some("application/octet-stream"), "a generic type"),
        (None, "no content type"),
        (Some("image/pjpeg"), "what old browsers send for .jfif"),
    ] {
        let mut put = app.client.put(url);
        if let Some(content_type) = content_type {
            put = put.header("content-type", content_type);
        }
        let reply = put.body(png(4, 4, 1)).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::FORBIDDEN, "{why}");
        assert_eq!(
            reply.headers()["content-type"],
            "application/problem+json",
            "{why}"
        );
        let problem: Value = reply.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("content-type: image/jpeg"),
            "{why}: the refusal names the header and its value: {detail}"
        );
        assert_eq!(dataset_folder(&app, "jpegs"), Vec::<String>::new(), "{why}");
    }
    let reply = put_as_told(&app, &slots[0], png(4, 4, 1)).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(dataset_folder(&app, "jpegs"), ["photo.jfif"]);
}

#[tokio::test]
async fn a_put_without_the_signed_checksum_or_with_another_body_is_refused_and_stores_nothing() {
    if on_aws() {
        // moto checks no digest; S3 answers 403 for a missing signed header, 400 BadDigest
        // for another body.
        return;
    }
    let app = spawn_app().await;
    let body = png(6, 6, 1);
    let other = png(6, 6, 2);
    assert_eq!(body.len(), other.len(), "same size, other bytes");
    let slots = slots(
        &app,
        "checked",
        json!([{ "name": "a.png", "size": body.len(), "sha256": sha256_hex(&body) }]),
    )
    .await;
    let slot = &slots[0];

    let unsummed = app
        .client
        .put(slot["url"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsummed.status(), StatusCode::FORBIDDEN);
    let problem: Value = unsummed.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("x-amz-checksum-sha256"),
        "{problem}"
    );
    assert_eq!(dataset_folder(&app, "checked"), Vec::<String>::new());

    let corrupted = put_as_told(&app, slot, other).await;
    assert_eq!(corrupted.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        corrupted.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = corrupted.json().await.unwrap();
    assert_eq!(problem["type"], "https://labeling.dev/problems/bad-digest");
    assert_eq!(
        dataset_folder(&app, "checked"),
        Vec::<String>::new(),
        "a body that is not the signed one leaves nothing, not even a temporary file"
    );

    let reply = put_as_told(&app, slot, body.clone()).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(dataset_folder(&app, "checked"), ["a.png"]);
}

#[tokio::test]
async fn a_resumed_upload_skips_files_by_their_stored_checksum_without_reading_them() {
    let app = spawn_app().await;
    let files: Vec<(String, Vec<u8>)> = (0..3u8)
        .map(|n| (format!("day1/{n}.png"), png(8, 8, n)))
        .collect();
    let described = |files: &[(String, Vec<u8>)]| {
        files
            .iter()
            .map(|(name, body)| {
                json!({ "name": name, "size": body.len(), "sha256": sha256_hex(body) })
            })
            .collect::<Vec<_>>()
    };
    let first = slots(&app, "resume", json!(described(&files))).await;
    for (slot, (_, body)) in first.iter().zip(&files) {
        assert_eq!(put_as_told(&app, slot, body.clone()).await.status(), 200);
    }
    // One more file put some other way (no checksum stored with it on S3).
    let system = app.service.config().system_bucket.clone();
    let plain = png(8, 8, 9);
    app.blobs
        .put(
            &system,
            "datasets/resume/day1/plain.png",
            plain.clone(),
            "image/png",
        )
        .await
        .unwrap();

    // The same request again through a service whose blob reads are counted.
    let reads = Arc::new(CountingBlobs::new(app.blobs.clone()));
    let queue_dir = app.data_dir.join("counted-queue");
    std::fs::create_dir_all(&queue_dir).unwrap();
    let queue = labeling_embedded::SqliteQueue::new(
        labeling_embedded::Database::open(&queue_dir.join("queue.db")).unwrap(),
        app.clock.clone(),
        5,
    );
    let service = Service::new(
        app.table.clone(),
        reads.clone(),
        Arc::new(queue),
        app.clock.clone(),
        app.service.config().clone(),
    );
    let input = |name: &str, body: &[u8]| UploadFileInput::Described {
        name: name.to_owned(),
        size: Some(body.len() as u64),
        sha256: Some(sha256_hex(body)),
    };
    let mut again: Vec<UploadFileInput> =
        files.iter().map(|(name, body)| input(name, body)).collect();
    // Same size, other content: a changed file is sent again.
    let mut changed = files[2].1.clone();
    changed[40] ^= 0xff;
    again[2] = input(&files[2].0, &changed);
    again.push(input("day1/plain.png", &plain));
    let resumed = service
        .datasets()
        .request_uploads(
            &Actor::admin("admin"),
            "resume",
            UploadsInput { files: again },
        )
        .await
        .unwrap();

    let skipped: Vec<bool> = resumed.iter().map(|slot| slot.skip).collect();
    let plain_skipped = !on_aws();
    assert_eq!(
        skipped,
        [true, true, false, plain_skipped],
        "unchanged files are skipped, a changed one is not; a file stored without a checksum \
         is sent again on S3 (the folder store hashes it: a local disk has no 30 s limit)"
    );
    assert!(resumed[0].url.is_none() && resumed[0].headers.is_empty());
    assert_eq!(
        resumed[2].headers["x-amz-checksum-sha256"],
        sha256_base64(&changed)
    );
    assert_eq!(
        reads.counts().gets,
        0,
        "a resume reads no object: it compares the stored checksums"
    );
}
