//! Requests each use case sends to AWS (counted by the SDK clients, against the emulator):
//! checkout at most 3 table round trips and submit at most 2 in the common case, whatever the
//! project size; ingest of N keys ceil(N/1000) list calls plus a constant number of writes; and
//! new objects reported by events added without a single list call, in a constant number of
//! table round trips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_core::Actor;
use labeling_core::domain::labeling::{AnnotationInput, SubmissionInput, SubmittedItemInput};
use labeling_core::domain::project::NewProjectInput;
use labeling_local::{Local, Options, Store};

async fn aws_local(moto: &labeling_tests::MotoServer) -> (Local, String) {
    let endpoint = moto.endpoint.clone();
    let suffix = labeling_testkit::unique("b")
        .to_lowercase()
        .replace('_', "-");
    let suffix = suffix[suffix.len().saturating_sub(24)..]
        .trim_start_matches('-')
        .to_owned();
    let dir = std::env::temp_dir().join(format!("labeling-budget-{suffix}"));
    let mut options = Options::new(&dir);
    // The clock stands still: the warm project copy cannot age out between the counted calls
    // however slow the emulator is.
    options.clock = std::sync::Arc::new(labeling_testkit::FakeClock::default());
    options.store = Store::Aws {
        settings: labeling_aws::AwsSettings {
            table: format!("budget-{suffix}"),
            bucket: format!("budget-{suffix}"),
            jobs_queue: format!("budget-{suffix}"),
            region: "us-east-1".to_owned(),
            endpoint: Some(endpoint),
        },
        create_resources: true,
    };
    let local = Local::open(options).await.unwrap();
    (local, format!("budget-{suffix}"))
}

fn submission(item: u64) -> SubmissionInput {
    SubmissionInput {
        items: vec![SubmittedItemInput {
            item_id: Some(item),
            annotations: Some(vec![AnnotationInput {
                label: "cat".to_owned(),
                bbox: Some(vec![1.0, 1.0, 4.0, 4.0]),
                polygon: None,
            }]),
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn ingest_checkout_and_submit_stay_within_their_request_budgets() {
    let moto = labeling_tests::MotoServer::start();
    let (local, bucket) = aws_local(&moto).await;
    let aws = local.aws.as_ref().unwrap();
    let keys = 2_345u64;
    let body = labeling_tests::png(16, 12, 3);
    let puts = (0..keys).map(|i| {
        let blobs = local.blobs.clone();
        let body = body.clone();
        let bucket = bucket.clone();
        async move {
            blobs
                .put(&bucket, &format!("imgs/{i:05}.png"), body, "image/png")
                .await
        }
    });
    let results: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
        futures::stream::iter(puts),
        16,
    ))
    .await;
    results.into_iter().for_each(|r| r.unwrap());
    let admin = Actor::admin("admin");
    let project = local
        .service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: "budget".to_owned(),
                task_type: "object_detection".to_owned(),
                labels: vec!["cat".to_owned()],
                source: format!("s3://{bucket}/imgs/**"),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    aws.requests.reset();
    local.service.jobs().ingest_now(&project.id).await.unwrap();
    let list_calls = keys.div_ceil(1000);
    let chunk_puts = keys.div_ceil(10_000);
    assert_eq!(
        aws.requests.s3(),
        list_calls + chunk_puts,
        "ingest: one list call per 1,000 keys and one put per manifest chunk"
    );
    assert!(
        aws.requests.dynamodb() <= 3,
        "ingest: a constant number of table round trips, got {}",
        aws.requests.dynamodb()
    );

    // Warm the process (project copy, manifest index and chunk), as a running function is.
    let first = local
        .service
        .labeling()
        .checkout(&admin, &project.id)
        .await
        .unwrap()
        .unwrap();
    local
        .service
        .labeling()
        .submit(
            &admin,
            &project.id,
            &first.task_id,
            submission(first.items[0].item_id),
        )
        .await
        .unwrap();

    for _ in 0..3 {
        aws.requests.reset();
        let task = local
            .service
            .labeling()
            .checkout(&admin, &project.id)
            .await
            .unwrap()
            .unwrap();
        let checkout_table = aws.requests.dynamodb();
        let checkout_s3 = aws.requests.s3();
        assert!(
            checkout_table <= 3,
            "checkout used {checkout_table} table round trips"
        );
        assert!(
            checkout_s3 <= 1,
            "checkout read {checkout_s3} image headers for one image"
        );
        aws.requests.reset();
        local
            .service
            .labeling()
            .submit(
                &admin,
                &project.id,
                &task.task_id,
                submission(task.items[0].item_id),
            )
            .await
            .unwrap();
        assert!(
            aws.requests.dynamodb() <= 2,
            "submit used {} table round trips",
            aws.requests.dynamodb()
        );
        assert_eq!(
            aws.requests.s3() + aws.requests.sqs(),
            0,
            "submit touches neither S3 nor SQS"
        );
    }

    // Two new objects reported by an event (one twice, one already in the project).
    local
        .service
        .projects()
        .update_project(
            &admin,
            &project.id,
            labeling_core::domain::presented::ProjectChanges {
                incremental_refresh: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for name in ["imgs/new-a.png", "imgs/new-b.png"] {
        local
            .blobs
            .put(&bucket, name, body.clone(), "image/png")
            .await
            .unwrap();
    }
    let event = |key: &str| (bucket.clone(), key.to_owned());
    local
        .service
        .refreshes()
        .objects_created(&[
            event("imgs/new-a.png"),
            event("imgs/new-b.png"),
            event("imgs/new-a.png"),
            event("imgs/00007.png"),
        ])
        .await
        .unwrap();
    let jobs = local.service.config().jobs_queue.clone();
    // The job is delayed (events close together share it): let it come due.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let queued = local
        .queue
        .receive(
            &jobs,
            10,
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let add_keys: Vec<_> = queued
        .iter()
        .filter(|message| message.body.contains("add_event_keys"))
        .collect();
    assert_eq!(add_keys.len(), 1, "one job for the project: {queued:?}");
    aws.requests.reset();
    local
        .service
        .jobs()
        .run_job(&add_keys[0].body)
        .await
        .unwrap();
    let s3 = aws.requests.s3();
    let table = aws.requests.dynamodb();
    assert_eq!(
        local
            .service
            .dashboard()
            .dashboard(&admin, &project.id)
            .await
            .unwrap()
            .total_items,
        keys + 2,
        "exactly the two new keys"
    );
    assert!(
        s3 <= 4,
        "adding two keys from an event: {s3} S3 requests (no listing: manifest chunks, the new batch, the status)"
    );
    assert!(
        table <= 8,
        "adding two keys from an event: {table} table round trips (a constant number: marker, project, event rows, manifest, lease, cursor, commit, clean-up)"
    );
}
