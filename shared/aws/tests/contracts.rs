//! The AWS adapters pass the port contract suites against moto, the AWS emulator, and count
//! their requests; every contract case is a test of its own. Each test makes its own table, bucket and queues, so tests share one server.
//!
//! Start one with `./infra/test.sh`, or by hand:
//! `eval "$(./infra/python-env.sh)"; eval "$(./infra/moto.sh start)"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use labeling_aws::{Aws, AwsSettings};
use labeling_core::ports::{Blobs, Item, Key, Queue, Table};
use labeling_testkit::unique;

const MAX_RECEIVES: u32 = 3;

/// Settings naming fresh resources on the emulator; fails the test when none is running.
fn settings() -> AwsSettings {
    let endpoint = std::env::var("LABELING_MOTO_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "LABELING_MOTO_ENDPOINT is not set: the AWS adapter tests need the moto emulator. \
                 Run ./infra/test.sh, or start one with \
                 `eval \"$(./infra/python-env.sh)\"; eval \"$(./infra/moto.sh start)\"`"
            )
        });
    // A bucket name is at most 63 lowercase characters; `unique` gives about 40.
    let name = unique("lbl").to_lowercase();
    assert!(name.len() + 4 <= 63, "{name} is too long for a bucket");
    AwsSettings {
        table: format!("{name}-table"),
        bucket: name.clone(),
        jobs_queue: format!("{name}-jobs"),
        region: "us-east-1".to_owned(),
        endpoint: Some(endpoint),
    }
}

async fn connect() -> (Aws, AwsSettings) {
    let settings = settings();
    let aws = Aws::connect(&settings).await.unwrap();
    aws.create_resources(&settings, MAX_RECEIVES).await.unwrap();
    (aws, settings)
}

labeling_testkit::table_contract_tests!(fresh_table().await);
labeling_testkit::blobs_contract_tests!(fresh_bucket().await);
labeling_testkit::queue_contract_tests!(fresh_queue().await);

async fn fresh_table() -> Arc<dyn Table> {
    connect().await.0.table
}

async fn fresh_bucket() -> labeling_testkit::blobs_contract::Fixture {
    let (aws, settings) = connect().await;
    labeling_testkit::blobs_contract::Fixture {
        blobs: aws.blobs,
        bucket: settings.bucket,
    }
}

/// The emulator's queue keeps real time: the contract waits out timeouts with short sleeps.
async fn fresh_queue() -> labeling_testkit::queue_contract::Fixture {
    let (aws, settings) = connect().await;
    labeling_testkit::queue_contract::Fixture {
        queue: aws.queue,
        name: settings.jobs_queue,
        max_receives: MAX_RECEIVES,
        advance: Box::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}

#[tokio::test]
async fn creating_resources_again_is_harmless() {
    let (aws, settings) = connect().await;
    aws.create_resources(&settings, MAX_RECEIVES).await.unwrap();
    aws.queue
        .send(&settings.jobs_queue, "still there", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(aws.queue.depth(&settings.jobs_queue).await.unwrap(), 1);
}

#[tokio::test]
async fn the_request_counter_counts_each_request_once() {
    let (aws, settings) = connect().await;
    aws.requests.reset();
    assert_eq!(aws.requests.total(), 0);

    let key = Key::new("counted", "A");
    assert_eq!(aws.table.get(&key).await.unwrap(), None);
    assert_eq!(aws.requests.dynamodb(), 1, "one get_item is one request");
    aws.table
        .put(Item::new(key.clone(), Default::default()), None)
        .await
        .unwrap();
    assert_eq!(aws.requests.dynamodb(), 2);

    aws.blobs
        .put(&settings.bucket, "counted.txt", b"x".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(aws.requests.s3(), 1, "one put_object is one request");
    aws.blobs
        .presign_get(&settings.bucket, "counted.txt", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(aws.requests.s3(), 1, "presigning sends nothing");

    aws.queue
        .send(&settings.jobs_queue, "one", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        aws.requests.sqs(),
        2,
        "the first send also resolves the queue URL"
    );
    aws.queue
        .send(&settings.jobs_queue, "two", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(aws.requests.sqs(), 3, "the queue URL is cached");

    assert_eq!(aws.requests.total(), 6);
    aws.requests.reset();
    assert_eq!(aws.requests.total(), 0);
}

#[tokio::test]
async fn a_missing_queue_is_reported_by_name() {
    let (aws, _) = connect().await;
    let outcome = aws
        .queue
        .send("no-such-queue-here", "x", Duration::ZERO)
        .await;
    assert!(
        matches!(&outcome, Err(labeling_core::ports::QueueError::NoSuchQueue(name)) if name == "no-such-queue-here"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn presigned_urls_work_without_credentials() {
    let (aws, settings) = connect().await;
    let bucket = &settings.bucket;
    let put = aws
        .blobs
        .presign_put(
            bucket,
            "up/photo 1.jpg",
            "image/jpeg",
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let mut request = client.put(&put.url);
    for (name, value) in &put.headers {
        request = request.header(name, value);
    }
    let response = request.body(vec![1u8, 2, 3]).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let get = aws
        .blobs
        .presign_get(bucket, "up/photo 1.jpg", Duration::from_secs(60))
        .await
        .unwrap();
    let body = client
        .get(&get)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), [1, 2, 3]);
}

#[tokio::test]
async fn numbers_and_empty_updates_round_trip() {
    let (aws, _) = connect().await;
    let key = Key::new("numbers", "A");
    let attrs = serde_json::json!({"int": 7, "neg": -3, "float": 0.5, "big": 1_000_000_000_000i64, "empty": ""});
    aws.table
        .put(
            Item::new(key.clone(), attrs.as_object().cloned().unwrap()),
            None,
        )
        .await
        .unwrap();
    let read = aws.table.get(&key).await.unwrap().unwrap();
    assert_eq!(serde_json::Value::Object(read.attrs), attrs);
    let created = aws
        .table
        .update(
            &Key::new("numbers", "EMPTY-UPDATE"),
            labeling_core::ports::Update::default(),
            None,
        )
        .await
        .unwrap();
    assert!(created.attrs.is_empty(), "{:?}", created.attrs);
    assert!(
        aws.table
            .get(&Key::new("numbers", "EMPTY-UPDATE"))
            .await
            .unwrap()
            .is_some(),
        "an update that changes nothing still creates the item"
    );
}

#[tokio::test]
async fn ranges_are_clipped_and_missing_buckets_named() {
    use labeling_core::ports::{BlobError, ByteRange};
    let (aws, settings) = connect().await;
    let bucket = &settings.bucket;
    aws.blobs
        .put(bucket, "r.txt", b"0123456789".to_vec(), "text/plain")
        .await
        .unwrap();
    let read = |start, end| {
        let blobs = aws.blobs.clone();
        let bucket = bucket.clone();
        async move {
            blobs
                .get(&bucket, "r.txt", Some(ByteRange { start, end }))
                .await
        }
    };
    assert_eq!(read(8, 20).await.unwrap(), b"89");
    assert_eq!(
        read(10, 20).await.unwrap(),
        b"",
        "a range past the end reads empty"
    );
    assert_eq!(read(3, 3).await.unwrap(), b"", "an empty range reads empty");
    assert!(matches!(
        aws.blobs
            .get(bucket, "nope.txt", Some(ByteRange { start: 0, end: 0 }))
            .await,
        Err(BlobError::NotFound { .. })
    ));
    assert!(matches!(
        aws.blobs.get("no-such-bucket-lbl", "x", None).await,
        Err(BlobError::NoSuchBucket(_))
    ));
    assert!(matches!(
        aws.blobs
            .put("no-such-bucket-lbl", "x", vec![1], "text/plain")
            .await,
        Err(BlobError::NoSuchBucket(_))
    ));
}

#[tokio::test]
async fn a_queue_given_by_its_url_needs_no_lookup() {
    let (aws, settings) = connect().await;
    let url = aws.queue.url(&settings.jobs_queue).await.unwrap();
    assert!(url.starts_with("http"), "{url}");
    aws.requests.reset();
    aws.queue
        .send(&url, "by url", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(aws.requests.sqs(), 1, "no GetQueueUrl");
    let received = aws
        .queue
        .receive(&url, 10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "by url");
    aws.queue.delete(&url, &received[0].receipt).await.unwrap();
}

#[tokio::test]
async fn a_key_with_a_control_character_lists_with_its_neighbours() {
    let (aws, settings) = connect().await;
    let bucket = &settings.bucket;
    let odd = "set/b\u{1}c d+e.jpg";
    for key in ["set/a.jpg", odd, "set/z.jpg"] {
        aws.blobs
            .put(bucket, key, b"x".to_vec(), "image/jpeg")
            .await
            .unwrap();
    }
    let page = aws.blobs.list(bucket, "set/", None, 1000).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["set/a.jpg", odd, "set/z.jpg"]);
    // A page that resumes just before it decodes it too. (moto echoes `StartAfter` without
    // encoding it, so resuming after the odd key itself fails there; S3 encodes it.)
    let resumed = aws
        .blobs
        .list(bucket, "set/", Some("set/a.jpg"), 1)
        .await
        .unwrap();
    assert_eq!(resumed.objects.len(), 1);
    assert_eq!(resumed.objects[0].key, odd);
    assert!(resumed.truncated);
}

#[tokio::test]
async fn uploads_carry_no_checksum_s3_did_not_ask_for() {
    let (aws, settings) = connect().await;
    // moto completes multipart uploads whatever their checksums: the client's setting is what
    // keeps S3 from refusing the completion.
    assert_eq!(
        aws.blobs.client().config().request_checksum_calculation(),
        Some(&aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
    );
    let url = aws
        .blobs
        .presign_put(
            &settings.bucket,
            "datasets/d/a.jpg",
            "image/jpeg",
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .url
        .to_lowercase();
    assert!(!url.contains("x-amz-checksum"), "{url}");
    assert!(!url.contains("x-amz-sdk-checksum-algorithm"), "{url}");
}

/// A PUT signed with a SHA-256 carries it as a signed header, and the stored object answers it
/// to `head_checksum` (S3's `HeadObject` with `ChecksumMode=ENABLED`): a resumed upload
/// compares checksums without reading a byte. moto checks no signature and no digest (AWS
/// does; the embedded store's tests show the refusals), but it stores the checksum.
#[tokio::test]
async fn a_put_signed_with_a_sha256_stores_it_for_head_checksum() {
    use sha2::Digest as _;
    let (aws, settings) = connect().await;
    let bucket = &settings.bucket;
    let body = b"a photo".to_vec();
    let digest: [u8; 32] = sha2::Sha256::digest(&body).into();
    let put = aws
        .blobs
        .presign_put(
            bucket,
            "datasets/d/photo.jpg",
            "image/jpeg",
            Some(digest),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut request = reqwest::Client::new().put(&put.url);
    for (name, value) in &put.headers {
        request = request.header(name, value);
    }
    let response = request.body(body.clone()).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let stored = aws
        .blobs
        .head_checksum(bucket, "datasets/d/photo.jpg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.meta.size, body.len() as u64);
    assert_eq!(stored.sha256, Some(digest));

    // Put without a checksum: none is stored, so a resumed upload sends it again.
    aws.blobs
        .put(bucket, "datasets/d/plain.jpg", body, "image/jpeg")
        .await
        .unwrap();
    let plain = aws
        .blobs
        .head_checksum(bucket, "datasets/d/plain.jpg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plain.sha256, None);
}
