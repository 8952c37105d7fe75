//! The embedded adapters pass the port contract suites, one test per case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use labeling_core::ports::{Blobs, Queue, Table};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};
use labeling_testkit::FakeClock;

labeling_testkit::table_contract_tests!(fresh_table());
labeling_testkit::blobs_contract_tests!(fresh_bucket());
labeling_testkit::queue_contract_tests!(fresh_queue());

fn fresh_table() -> Arc<dyn Table> {
    let dir = tempdir();
    Arc::new(SqliteTable::new(
        Database::open(&dir.join("db.sqlite")).unwrap(),
    ))
}

fn fresh_bucket() -> labeling_testkit::blobs_contract::Fixture {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("buckets/contract")).unwrap();
    let blobs: Arc<dyn Blobs> = Arc::new(FolderBlobs::new(
        &dir,
        Arc::new(FakeClock::default()),
        b"secret".to_vec(),
    ));
    labeling_testkit::blobs_contract::Fixture {
        blobs,
        bucket: "contract".to_owned(),
    }
}

/// The queue reads a fake clock, which the contract moves past timeouts without waiting.
fn fresh_queue() -> labeling_testkit::queue_contract::Fixture {
    let dir = tempdir();
    let clock = Arc::new(FakeClock::default());
    let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::new(
        Database::open(&dir.join("db.sqlite")).unwrap(),
        clock.clone(),
        3,
    ));
    labeling_testkit::queue_contract::Fixture {
        queue,
        name: "jobs".to_owned(),
        max_receives: 3,
        advance: Box::new(move |by| {
            clock.advance(by);
            Box::pin(async {})
        }),
    }
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
