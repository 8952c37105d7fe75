//! Requests each use case sends to AWS (counted by the SDK clients, against the emulator):
//! checkout at most 3 table round trips and submit at most 2 in the common case, whatever the
//! project size, and ingest of N keys ceil(N/1000) list calls plus a constant number of writes.

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
    local.service.ingest_now(&project.id).await.unwrap();
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
        .checkout(&admin, &project.id)
        .await
        .unwrap()
        .unwrap();
    local
        .service
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
}
