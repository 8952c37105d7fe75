//! The embedded adapters pass the port contract suites.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};
use labeling_testkit::{FakeClock, blobs_contract, queue_contract, table_contract};

#[tokio::test]
async fn sqlite_table_passes_the_table_contract() {
    let dir = tempdir();
    let table = SqliteTable::new(Database::open(&dir.join("db.sqlite")).unwrap());
    table_contract::run(&table, "contract").await;
}

#[tokio::test]
async fn folder_blobs_pass_the_blobs_contract() {
    let dir = tempdir();
    let blobs = FolderBlobs::new(&dir, Arc::new(FakeClock::default()), b"secret".to_vec());
    std::fs::create_dir_all(dir.join("buckets/contract")).unwrap();
    blobs_contract::run(&blobs, "contract").await;
}

#[tokio::test]
async fn sqlite_queue_passes_the_queue_contract() {
    let dir = tempdir();
    let clock = Arc::new(FakeClock::default());
    let queue = SqliteQueue::new(
        Database::open(&dir.join("db.sqlite")).unwrap(),
        clock.clone(),
        3,
    );
    queue_contract::run(&queue, "jobs", 3, |by| {
        clock.advance(by);
        async {}
    })
    .await;
}

#[tokio::test]
async fn signed_urls_verify_until_they_expire_and_only_for_their_object() {
    use labeling_core::ports::Blobs;
    use labeling_embedded::folder_blobs::SignedMethod;
    let dir = tempdir();
    let clock = Arc::new(FakeClock::default());
    let blobs = FolderBlobs::new(&dir, clock.clone(), b"secret".to_vec());
    let url = blobs
        .presign_get("photos", "a/b.jpg", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let query = url.split_once('?').unwrap().1;
    let mut expires = 0;
    let mut signature = String::new();
    for pair in query.split('&') {
        match pair.split_once('=').unwrap() {
            ("expires", v) => expires = v.parse().unwrap(),
            ("signature", v) => signature = v.to_owned(),
            _ => {}
        }
    }
    assert!(blobs.verify(SignedMethod::Get, "photos", "a/b.jpg", expires, &signature));
    assert!(
        !blobs.verify(SignedMethod::Get, "photos", "a/c.jpg", expires, &signature),
        "another key"
    );
    assert!(
        !blobs.verify(SignedMethod::Put, "photos", "a/b.jpg", expires, &signature),
        "another method"
    );
    assert!(
        !blobs.verify(
            SignedMethod::Get,
            "photos",
            "a/b.jpg",
            expires + 1,
            &signature
        ),
        "a changed expiry"
    );
    clock.advance(std::time::Duration::from_secs(61));
    assert!(
        !blobs.verify(SignedMethod::Get, "photos", "a/b.jpg", expires, &signature),
        "expired"
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(labeling_testkit::unique("embedded-contract"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
