//! The `Blobs` contract: one public async function per case, each in a fresh, empty bucket;
//! [`crate::blobs_contract_tests`] makes each case a test of its own.

use std::sync::Arc;
use std::time::Duration;

use labeling_core::ports::blobs::{CHECKSUM_SHA256_HEADER, MIN_PART_BYTES};
use labeling_core::ports::{BlobError, Blobs, ByteRange, CompletedPart};
use sha2::{Digest as _, Sha256};

/// What every case runs on: the store and a bucket in it that exists and is empty.
pub struct Fixture {
    pub blobs: Arc<dyn Blobs>,
    pub bucket: String,
}

pub async fn put_get_head_delete(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    blobs
        .put(bucket, "a/b.txt", b"hello world".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(
        blobs.get(bucket, "a/b.txt", None).await.unwrap(),
        b"hello world"
    );
    assert_eq!(
        blobs
            .get(bucket, "a/b.txt", Some(ByteRange { start: 6, end: 11 }))
            .await
            .unwrap(),
        b"world",
        "a range returns exactly those bytes"
    );
    assert_eq!(
        blobs
            .get(
                bucket,
                "a/b.txt",
                Some(ByteRange {
                    start: 6,
                    end: 1000
                })
            )
            .await
            .unwrap(),
        b"world",
        "a range is clipped at the end"
    );
    let head = blobs
        .head(bucket, "a/b.txt")
        .await
        .unwrap()
        .expect("head finds the object");
    assert_eq!(head.size, 11);
    assert!(
        matches!(
            blobs.get(bucket, "a/missing.txt", None).await,
            Err(BlobError::NotFound { .. })
        ),
        "a missing key is NotFound"
    );
    assert_eq!(blobs.head(bucket, "a/missing.txt").await.unwrap(), None);
    blobs.delete(bucket, "a/b.txt").await.unwrap();
    assert_eq!(
        blobs.head(bucket, "a/b.txt").await.unwrap(),
        None,
        "delete removes"
    );
    blobs.delete(bucket, "a/b.txt").await.unwrap();
}

pub async fn listing_is_lexicographic_and_pages(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    // '-' (0x2d) sorts before '/' (0x2f): "l/a-c" comes before "l/a/b" in S3.
    let keys = [
        "l/a/b.jpg",
        "l/a-c.jpg",
        "l/a/a.jpg",
        "l/b.jpg",
        "l/a0.jpg",
        "m/x.jpg",
    ];
    for key in keys {
        blobs.put(bucket, key, vec![1], "image/jpeg").await.unwrap();
    }
    let mut listed = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = blobs
            .list(bucket, "l/", start_after.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        assert!(page.objects.len() <= 2, "a page holds at most max_keys");
        assert_eq!(page.unreadable, 0, "objects are all readable");
        listed.extend(page.objects.iter().map(|o| o.key.clone()));
        if !page.truncated {
            break;
        }
        start_after = page.objects.last().map(|o| o.key.clone());
    }
    assert_eq!(
        listed,
        ["l/a-c.jpg", "l/a/a.jpg", "l/a/b.jpg", "l/a0.jpg", "l/b.jpg"],
        "S3 key order, prefix respected"
    );
    assert_eq!(pages, 3, "five keys in pages of two");
    let after = blobs
        .list(bucket, "", Some("l/a/a.jpg"), 1000)
        .await
        .unwrap();
    assert_eq!(
        after.objects.first().map(|o| o.key.as_str()),
        Some("l/a/b.jpg"),
        "start-after is exclusive"
    );
    assert!(matches!(
        blobs
            .list("no-such-bucket-for-contract", "", None, 10)
            .await,
        Err(BlobError::NoSuchBucket(_))
    ));
}

pub async fn multipart_appears_whole_on_completion(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    let key = "export/big.json";
    let upload = blobs
        .start_multipart(bucket, key, "application/json")
        .await
        .unwrap();
    let first = vec![b'a'; MIN_PART_BYTES];
    let second = b"tail".to_vec();
    let etag1 = blobs
        .upload_part(bucket, key, &upload, 1, first.clone())
        .await
        .unwrap();
    assert_eq!(
        blobs.head(bucket, key).await.unwrap(),
        None,
        "an unfinished upload is invisible"
    );
    let etag2 = blobs
        .upload_part(bucket, key, &upload, 2, second.clone())
        .await
        .unwrap();
    blobs
        .complete_multipart(
            bucket,
            key,
            &upload,
            vec![
                CompletedPart {
                    part_number: 1,
                    etag: etag1,
                },
                CompletedPart {
                    part_number: 2,
                    etag: etag2,
                },
            ],
        )
        .await
        .unwrap();
    let body = blobs.get(bucket, key, None).await.unwrap();
    assert_eq!(body.len(), MIN_PART_BYTES + 4, "parts are joined in order");
    assert_eq!(&body[MIN_PART_BYTES..], b"tail");
}

/// A part under 5 MiB that is not the last is refused at completion, as on S3, and an aborted
/// upload leaves nothing.
pub async fn a_small_part_that_is_not_the_last_is_refused(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    let small = blobs
        .start_multipart(bucket, "export/small.json", "application/json")
        .await
        .unwrap();
    let e1 = blobs
        .upload_part(bucket, "export/small.json", &small, 1, vec![1; 10])
        .await
        .unwrap();
    let e2 = blobs
        .upload_part(bucket, "export/small.json", &small, 2, vec![2; 10])
        .await
        .unwrap();
    let refused = blobs
        .complete_multipart(
            bucket,
            "export/small.json",
            &small,
            vec![
                CompletedPart {
                    part_number: 1,
                    etag: e1,
                },
                CompletedPart {
                    part_number: 2,
                    etag: e2,
                },
            ],
        )
        .await;
    assert!(
        refused.is_err(),
        "a part under 5 MiB that is not the last is refused, as on S3"
    );
    blobs
        .abort_multipart(bucket, "export/small.json", &small)
        .await
        .unwrap();
    assert_eq!(blobs.head(bucket, "export/small.json").await.unwrap(), None);
}

pub async fn presigned_urls_are_made(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    blobs
        .put(bucket, "p/img 1.jpg", vec![1, 2, 3], "image/jpeg")
        .await
        .unwrap();
    let get = blobs
        .presign_get(bucket, "p/img 1.jpg", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(get.starts_with("http"), "a presigned GET is a URL: {get}");
    assert!(!get.contains(' '), "the key is encoded: {get}");
    let put = blobs
        .presign_put(
            bucket,
            "p/new.jpg",
            "image/jpeg",
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_ne!(get, put.url);
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("image/jpeg"),
        "a signed PUT names the content type it was signed for: {:?}",
        put.headers
    );
    assert!(
        !put.headers.contains_key(CHECKSUM_SHA256_HEADER),
        "no checksum was asked for: {:?}",
        put.headers
    );
    let digest: [u8; 32] = Sha256::digest(b"new").into();
    let checked = blobs
        .presign_put(
            bucket,
            "p/new.jpg",
            "image/jpeg",
            Some(digest),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        checked
            .headers
            .get(CHECKSUM_SHA256_HEADER)
            .map(String::as_str),
        Some("EVB6Di9eadXfpApiob17buV+a82FxnybhDGzb/8hxDc="),
        "the checksum header is the digest in base64: {:?}",
        checked.headers
    );
}

/// `head_checksum` answers the object's size and, where the store keeps one, its true SHA-256;
/// a missing object is `None`.
pub async fn head_checksum_answers_the_size_and_a_true_digest(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    blobs
        .put(bucket, "c/one.png", b"one".to_vec(), "image/png")
        .await
        .unwrap();
    let stored = blobs
        .head_checksum(bucket, "c/one.png")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.meta.size, 3);
    if let Some(sha256) = stored.sha256 {
        assert_eq!(sha256, <[u8; 32]>::from(Sha256::digest(b"one")));
    }
    assert_eq!(
        blobs.head_checksum(bucket, "c/none.png").await.unwrap(),
        None
    );
}

/// A range reads exactly its bytes: one past the end reads empty, as does an empty range, and
/// a range of a missing object is NotFound.
pub async fn ranges_past_the_end_or_empty_read_empty(fixture: &Fixture) {
    let (blobs, bucket) = (fixture.blobs.as_ref(), fixture.bucket.as_str());
    blobs
        .put(bucket, "r.txt", b"0123456789".to_vec(), "text/plain")
        .await
        .unwrap();
    let read = |start, end| blobs.get(bucket, "r.txt", Some(ByteRange { start, end }));
    assert_eq!(read(0, 1).await.unwrap(), b"0", "the first byte");
    assert_eq!(read(8, 20).await.unwrap(), b"89", "clipped at the end");
    assert_eq!(
        read(10, 20).await.unwrap(),
        b"",
        "a range past the end reads empty"
    );
    assert_eq!(read(3, 3).await.unwrap(), b"", "an empty range reads empty");
    assert!(matches!(
        blobs
            .get(bucket, "nope.txt", Some(ByteRange { start: 0, end: 1 }))
            .await,
        Err(BlobError::NotFound { .. })
    ));
}
