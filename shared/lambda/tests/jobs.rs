//! SQS batches: each message runs on its own; a failed job is reported by its message id so
//! only it is retried, and a malformed one is dropped rather than retried forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use labeling_core::Actor;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::jobs::Job;
use labeling_core::usecases::export::ExportInput;
use labeling_local::{Local, Options};

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
    local.service.ingest_now(&project.id).await.unwrap();
    let coco = ExportInput {
        format: Some("coco".to_owned()),
        ..Default::default()
    };
    let failing = local
        .service
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
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        message("m-refresh", &refresh.to_body().unwrap()),
        message("m-export", &export.to_body().unwrap()),
        message("m-garbage", "{not a job"),
    ];

    let response = labeling_lambda::jobs::handle_batch(&local.service, event).await;
    let retried: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect();
    assert_eq!(retried, ["m-export"]);
    let view = local
        .service
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
