//! S3 notifications reach the refresh function through the uploads queue: the SQS runner
//! parses them at this edge and hands the decoded object keys to the refresh use case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use labeling_core::Actor;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::keys;
use labeling_core::ports::Table;
use labeling_local::{Local, Options};

#[tokio::test]
async fn an_object_created_notification_in_a_batch_records_the_decoded_key_for_its_project() {
    let dir = std::env::temp_dir().join(format!("labeling-s3-event-{}", std::process::id()));
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
                name: "events".to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["a".to_owned()],
                source: "s3://photos/set/**".to_owned(),
                incremental_refresh: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    local.service.jobs().ingest_now(&project.id).await.unwrap();

    // As S3 sends it: the key URL-encoded, a space as `+`.
    let mut message = SqsMessage::default();
    message.message_id = Some("m-upload".to_owned());
    message.body = Some(
        r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"photos"},"object":{"key":"set%2Farrived+one.png","size":10}}}]}"#
            .to_owned(),
    );
    let mut event = SqsEvent::default();
    event.records = vec![message];
    let work = std::sync::Arc::new(labeling_lambda::jobs::QueuedWork(local.service.clone()));
    let runner = labeling_lambda::jobs::lambda_runner(work, local.queue.clone());
    let response = labeling_lambda::jobs::handle_batch(&runner, None, event).await;

    assert!(response.batch_item_failures.is_empty());
    let recorded = local
        .table
        .get(&keys::event_key(&project.id, "set/arrived one.png"))
        .await
        .unwrap();
    assert!(
        recorded.is_some(),
        "the decoded key waits for the event job"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records the bodies it runs; fails them all when told to.
struct Recording {
    bodies: std::sync::Mutex<Vec<String>>,
    fail: bool,
}

#[async_trait::async_trait]
impl labeling_host::JobHandler for Recording {
    async fn run(&self, body: &str) -> Result<(), labeling_core::usecases::ingest::JobError> {
        self.bodies.lock().unwrap().push(body.to_owned());
        if self.fail {
            return Err(labeling_core::usecases::ingest::JobError::Unavailable(
                "staged failure".into(),
            ));
        }
        Ok(())
    }
}

fn created(id: &str, key: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = Some(format!(
        r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"photos"}},"object":{{"key":"{key}","size":10}}}}}}]}}"#
    ));
    message
}

fn plain(id: &str, body: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = Some(body.to_owned());
    message
}

async fn run_batch(fail: bool, records: Vec<SqsMessage>) -> (Vec<String>, Vec<String>) {
    let handler = std::sync::Arc::new(Recording {
        bodies: std::sync::Mutex::new(Vec::new()),
        fail,
    });
    let queue = std::sync::Arc::new(labeling_embedded::SqliteQueue::new(
        labeling_embedded::Database::in_memory().unwrap(),
        std::sync::Arc::new(labeling_testkit::FakeClock::default()),
        5,
    ));
    let runner = labeling_lambda::jobs::lambda_runner(handler.clone(), queue);
    let mut event = SqsEvent::default();
    event.records = records;
    let response = labeling_lambda::jobs::handle_batch(&runner, None, event).await;
    let failed = response
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect();
    let bodies = handler.bodies.lock().unwrap().clone();
    (bodies, failed)
}

#[tokio::test]
async fn a_batch_of_object_created_records_is_one_refresh_call_with_every_key() {
    let records = (0..100)
        .map(|i| created(&format!("m{i}"), &format!("set%2F{i:03}.png")))
        .collect();

    let (bodies, failed) = run_batch(false, records).await;

    assert!(failed.is_empty());
    assert_eq!(bodies.len(), 1, "one job for the whole batch");
    let keys = labeling_lambda::s3_events::parse_object_created(&bodies[0]).unwrap();
    assert_eq!(keys.len(), 100);
    assert_eq!(keys[0], ("photos".to_owned(), "set/000.png".to_owned()));
    assert_eq!(keys[99], ("photos".to_owned(), "set/099.png".to_owned()));
}

#[tokio::test]
async fn a_failed_merged_refresh_retries_every_record_it_covers() {
    let records = vec![
        created("m1", "set%2Fa.png"),
        plain(
            "m-test",
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"photos"}"#,
        ),
        created("m2", "set%2Fb.png"),
    ];

    let (bodies, failed) = run_batch(true, records).await;

    assert_eq!(bodies.len(), 1);
    assert_eq!(failed, ["m1", "m-test", "m2"]);
}

#[tokio::test]
async fn an_s3_test_event_never_reaches_the_runner_as_a_job() {
    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T10:00:00.000Z","Bucket":"photos","RequestId":"R","HostId":"H"}"#;

    let (bodies, failed) = run_batch(false, vec![plain("m-test", test_event)]).await;

    assert!(failed.is_empty(), "it leaves the queue");
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        labeling_lambda::s3_events::parse_object_created(&bodies[0]),
        Some(Vec::new()),
        "run as a notification of nothing, not as a malformed job: {}",
        bodies[0]
    );
    assert!(!bodies[0].contains("TestEvent"));
}
