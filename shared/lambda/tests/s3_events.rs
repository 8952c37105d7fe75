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
