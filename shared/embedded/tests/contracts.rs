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
    use labeling_embedded::folder_blobs::{SignedHeaders, SignedMethod};
    let none = SignedHeaders::default();
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
    assert!(blobs.verify(
        SignedMethod::Get,
        "photos",
        "a/b.jpg",
        expires,
        none,
        &signature
    ));
    assert!(
        !blobs.verify(
            SignedMethod::Get,
            "photos",
            "a/c.jpg",
            expires,
            none,
            &signature
        ),
        "another key"
    );
    assert!(
        !blobs.verify(
            SignedMethod::Put,
            "photos",
            "a/b.jpg",
            expires,
            none,
            &signature
        ),
        "another method"
    );
    assert!(
        !blobs.verify(
            SignedMethod::Get,
            "photos",
            "a/b.jpg",
            expires + 1,
            none,
            &signature
        ),
        "a changed expiry"
    );
    clock.advance(std::time::Duration::from_secs(61));
    assert!(
        !blobs.verify(
            SignedMethod::Get,
            "photos",
            "a/b.jpg",
            expires,
            none,
            &signature
        ),
        "expired"
    );

    // A PUT is signed for its content type and checksum: a query claiming others is forged.
    let put = blobs
        .presign_put(
            "photos",
            "a/d.jpg",
            "image/jpeg",
            Some([1; 32]),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let query = put.url.split_once('?').unwrap().1;
    let (mut expires, mut signature) = (0, String::new());
    for pair in query.split('&') {
        match pair.split_once('=').unwrap() {
            ("expires", v) => expires = v.parse().unwrap(),
            ("signature", v) => signature = v.to_owned(),
            _ => {}
        }
    }
    let signed = SignedHeaders {
        content_type: Some(&put.headers["content-type"]),
        sha256: Some(&put.headers["x-amz-checksum-sha256"]),
    };
    assert!(blobs.verify(
        SignedMethod::Put,
        "photos",
        "a/d.jpg",
        expires,
        signed,
        &signature
    ));
    for (forged, why) in [
        (
            SignedHeaders {
                content_type: Some("image/png"),
                ..signed
            },
            "another content type",
        ),
        (
            SignedHeaders {
                sha256: None,
                ..signed
            },
            "the checksum left out",
        ),
    ] {
        assert!(
            !blobs.verify(
                SignedMethod::Put,
                "photos",
                "a/d.jpg",
                expires,
                forged,
                &signature
            ),
            "{why}"
        );
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(labeling_testkit::unique("embedded-contract"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
