//! SQS batches: each message runs on its own; a failed job is reported by its message id so
//! only it is retried, and a malformed one is dropped rather than retried forever. The runner
//! reaches each record's queue (from its ARN) for heartbeats and the retry backoff, as it does
//! for the local server and the worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use labeling_core::Actor;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::jobs::Job;
use labeling_core::ports::Queue;
use labeling_core::usecases::export::ExportInput;
use labeling_core::usecases::ingest::JobError;
use labeling_embedded::{Database, SqliteQueue};
use labeling_local::{Local, Options};
use labeling_testkit::FakeClock;

fn message(id: &str, body: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = Some(body.to_owned());
    message
}

#[tokio::test]
async fn a_batch_reports_only_its_failed_jobs_for_retry() {
    let dir = std::env::temp_dir().join(format!("labeling-sqs-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Local::open(Options::new(&dir)).await.unwrap();
    let admin = Actor::admin("admin");
    std::fs::create_dir_all(dir.join("buckets/photos/set")).unwrap();
    let project = local
        .service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: "batch".to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["a".to_owned()],
                source: "s3://photos/set/**".to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    local.service.jobs().ingest_now(&project.id).await.unwrap();
    let coco = ExportInput {
        format: Some("coco".to_owned()),
        ..Default::default()
    };
    let failing = local
        .service
        .exports()
        .start_export(&admin, &project.id, coco.clone())
        .await
        .unwrap();
    // A file where the export folder must go: this export's job fails.
    std::fs::write(dir.join("buckets/photos/export"), b"in the way").unwrap();
    let refresh = Job::Refresh {
        project_id: project.id.clone(),
        trigger: "on_demand".to_owned(),
        request_id: "r_batch".to_owned(),
    };
    let export = Job::Export {
        project_id: project.id.clone(),
        export_id: failing.id.clone(),
        generation: 0,
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        message("m-refresh", &refresh.to_body().unwrap()),
        message("m-export", &export.to_body().unwrap()),
        message("m-garbage", "{not a job"),
    ];

    let runner = labeling_lambda::jobs::lambda_runner(
        Arc::new(labeling_lambda::jobs::QueuedWork(local.service.clone())),
        local.queue.clone(),
    );
    let response = labeling_lambda::jobs::handle_batch(&runner, None, event).await;
    let retried: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect();
    assert_eq!(retried, ["m-export"]);
    let view = local
        .service
        .exports()
        .get_export(&admin, &project.id, &failing.id)
        .await
        .unwrap();
    assert!(
        view.error
            .as_deref()
            .unwrap_or_default()
            .contains("retrying"),
        "{view:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embedded queue under the name an ARN's queue URL has, with a message received from it
/// as the event source would have: the record that Lambda would pass.
struct Received {
    queue: Arc<dyn Queue>,
    clock: Arc<FakeClock>,
    url: String,
    record: SqsMessage,
}

const ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:stack-jobs";

async fn received(clock: Arc<FakeClock>, body: &str) -> Received {
    let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::new(
        Database::in_memory().unwrap(),
        clock.clone(),
        5,
    ));
    let url = labeling_lambda::jobs::queue_url(ARN, None).unwrap();
    queue.send(&url, body, Duration::ZERO).await.unwrap();
    let taken = queue
        .receive(&url, 1, Duration::from_secs(5400), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    let mut record = message(&taken.id, body);
    record.receipt_handle = Some(taken.receipt);
    record.event_source_arn = Some(ARN.to_owned());
    record.attributes.insert(
        "ApproximateReceiveCount".to_owned(),
        taken.receive_count.to_string(),
    );
    Received {
        queue,
        clock,
        url,
        record,
    }
}

/// Jobs that fail, or compute for the milliseconds their body says without awaiting.
struct Staged;

#[async_trait::async_trait]
impl labeling_host::JobHandler for Staged {
    async fn run(&self, body: &str) -> Result<(), JobError> {
        match body.parse::<u64>() {
            Ok(ms) => {
                let until = std::time::Instant::now() + Duration::from_millis(ms);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                Ok(())
            }
            Err(_) => Err(JobError::Unavailable("staged failure".into())),
        }
    }
}

#[tokio::test]
async fn a_failed_record_comes_back_after_the_same_backoff_as_on_the_other_hosts() {
    let fixture = received(Arc::new(FakeClock::default()), "fail").await;
    let runner = labeling_lambda::jobs::lambda_runner(Arc::new(Staged), fixture.queue.clone());
    let mut event = SqsEvent::default();
    event.records = vec![fixture.record.clone()];

    let response = labeling_lambda::jobs::handle_batch(&runner, None, event).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    let backoff = runner.policy().retry_after(1);
    assert_eq!(backoff, Duration::from_secs(5));
    fixture.clock.advance(backoff - Duration::from_millis(1));
    let look = || {
        fixture
            .queue
            .receive(&fixture.url, 1, Duration::ZERO, Duration::ZERO)
    };
    assert!(look().await.unwrap().is_empty(), "back too early");
    fixture.clock.advance(Duration::from_millis(1));
    let back = look().await.unwrap();
    assert_eq!(
        back.len(),
        1,
        "back after 5 s, not after the queue's 90 minutes"
    );
    assert_eq!(back[0].receive_count, 2);
}

#[tokio::test]
async fn a_long_record_is_kept_hidden_by_heartbeats_on_the_queue_its_arn_names() {
    let fixture = received(Arc::new(FakeClock::default()), "400").await;
    let policy = labeling_host::Policy {
        visibility: Duration::from_secs(60),
        heartbeat: Duration::from_millis(50),
        ..labeling_host::Policy::default()
    };
    let runner = labeling_host::Runner::new(
        Arc::new(Staged),
        fixture.queue.clone(),
        policy,
        labeling_host::Deletion::ByEventSource,
    );
    let mut event = SqsEvent::default();
    event.records = vec![fixture.record.clone()];
    // The message was received with the queue's 5,400 s: only a heartbeat on the queue the
    // ARN names brings it down to the runner's 60 s.
    let response = labeling_lambda::jobs::handle_batch(&runner, None, event).await;

    assert!(response.batch_item_failures.is_empty());
    fixture.clock.advance(Duration::from_secs(60));
    let back = fixture
        .queue
        .receive(&fixture.url, 1, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(back.len(), 1, "the heartbeat reached the record's queue");
}
