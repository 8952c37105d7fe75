//! A process whose copy of the project predates a start-over made by another process (copies
//! live up to two seconds): no labeling transaction checks the project's row, so its requests
//! commit as if they came just before the start-over, and no acknowledged label is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use labeling_core::domain::errors::{DomainError, ErrorKind};
use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::ports::Table;
use labeling_core::usecases::labeling::CheckedOutTask;
use labeling_core::{Actor, Service};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

/// The fixture's service (process A) and a second process B on the same table.
fn two_processes(name: &str) -> (Direct<SqliteTable>, Service) {
    let fixture = Direct::new(name, |inner| inner);
    let table: Arc<dyn Table> = fixture.table.clone();
    let other = Service::new(
        table,
        fixture.blobs.clone(),
        fixture.queue.clone(),
        fixture.clock.clone(),
        fixture.config.clone(),
    );
    (fixture, other)
}

fn labeled(task: &CheckedOutTask, class: &str) -> SubmissionInput {
    SubmissionInput {
        items: task
            .items
            .iter()
            .map(|item| SubmittedItemInput {
                item_id: Some(item.item_id),
                labels: Some(vec![class.to_owned()]),
                ..Default::default()
            })
            .collect(),
    }
}

async fn start_over_keeping_labels(other: &Service, admin: &Actor, project: &str) {
    other
        .projects()
        .add_labels(
            admin,
            project,
            vec!["bird".to_owned()],
            Some("start_over_keep".to_owned()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_submit_racing_another_processs_start_over_is_kept_and_shows_as_a_prelabel_in_the_new_round()
 {
    let (a, b) = two_processes("stale-submit-kept");
    a.add_images("img", 1).await;
    let project = a
        .project(
            "stale-kept",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    let task = a
        .service
        .labeling()
        .checkout(&a.admin, &project)
        .await
        .unwrap()
        .unwrap();
    start_over_keeping_labels(&b, &a.admin, &project).await;

    let receipt = a
        .service
        .labeling()
        .submit(&a.admin, &project, &task.task_id, labeled(&task, "cat"))
        .await
        .expect("the submit commits as if it came just before the start-over");
    assert_eq!(receipt.labeled, 1);

    let again = b
        .labeling()
        .checkout(&a.admin, &project)
        .await
        .unwrap()
        .expect("the item is handed out again in the new round");
    assert_eq!(again.items[0].item_id, task.items[0].item_id);
    assert_eq!(
        serde_json::to_value(&again.items[0].prelabels).unwrap(),
        serde_json::json!([{ "label": "cat" }]),
        "the acknowledged label shows as a prelabel"
    );
}

#[tokio::test]
async fn a_stale_submit_of_an_item_the_new_round_already_handed_out_answers_round_changed_and_changes_nothing()
 {
    let (a, b) = two_processes("stale-submit-refused");
    a.add_images("img", 1).await;
    let project = a
        .project(
            "stale-refused",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    let task = a
        .service
        .labeling()
        .checkout(&a.admin, &project)
        .await
        .unwrap()
        .unwrap();
    start_over_keeping_labels(&b, &a.admin, &project).await;
    let newer = b
        .labeling()
        .checkout(&a.admin, &project)
        .await
        .unwrap()
        .unwrap();

    let refused = a
        .service
        .labeling()
        .submit(&a.admin, &project, &task.task_id, labeled(&task, "cat"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    assert!(refused.to_string().contains("started over"), "{refused}");

    let receipt = b
        .labeling()
        .submit(&a.admin, &project, &newer.task_id, labeled(&newer, "dog"))
        .await
        .expect("the new round's task is untouched");
    assert_eq!(receipt.labeled, 1);
}
