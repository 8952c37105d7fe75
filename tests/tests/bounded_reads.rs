//! Reads that must finish inside API Gateway's 30 seconds however large the project or dataset:
//! listing items by state reads a bounded number of item records a request and hands back a
//! cursor, so a rare state is found over several requests instead of by one that scans the
//! whole project; reading a dataset shows its kept counts and never lists its folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use std::time::Duration;

use labeling_core::domain::labeling::SubmittedItemInput;
use labeling_core::jobs::Job;
use labeling_core::ports::counting::CountingTable;
use labeling_core::ports::{Blobs, Queue};
use labeling_core::usecases::datasets::{COUNT_DELAY, NewDatasetInput};
use labeling_core::usecases::review::MAX_RECORDS_SCANNED;
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

#[tokio::test]
async fn a_rare_state_in_a_large_project_is_found_over_bounded_requests() {
    let fixture = Direct::new("review-paging", |inner| CountingTable::new(Arc::new(inner)));
    let items = MAX_RECORDS_SCANNED + 300;
    fixture.add_images("p", items).await;
    let project = fixture
        .project("paging", "image_classification_multiclass", &["cat", "dog"])
        .await;
    // Every item labeled but the one with the highest id ("set/p-999.png" sorts last), skipped.
    let handed_out = fixture
        .drain_with(&project, |key| {
            if key == "set/p-999.png" {
                SubmittedItemInput {
                    skip: Some(true),
                    ..Default::default()
                }
            } else {
                SubmittedItemInput {
                    labels: Some(vec!["cat".to_owned()]),
                    ..Default::default()
                }
            }
        })
        .await;
    assert_eq!(handed_out.len(), items);

    let review = fixture.service.review();
    let (mut found, mut requests, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let before = fixture.table.counts();
        let page = review
            .list_items(
                &fixture.admin,
                &project,
                Some("skipped"),
                cursor.as_deref(),
                Some(50),
            )
            .await
            .unwrap();
        let spent = fixture.table.counts().since(before);
        requests += 1;
        // The project read (cached or not) and at most four queries of 500 records.
        assert!(
            spent.round_trips <= 6,
            "one listing request made {} table round trips",
            spent.round_trips
        );
        found.extend(page.items.into_iter().map(|item| item.key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(requests < 10, "the cursor does not move on");
    }
    assert_eq!(found, ["set/p-999.png"]);
    assert!(
        requests >= 2,
        "{items} records were read by one request: the scan is not bounded"
    );

    // The labeled ones page through completely, none twice.
    let (mut labeled, mut cursor) = (0, None::<String>);
    loop {
        let page = review
            .list_items(&fixture.admin, &project, None, cursor.as_deref(), Some(500))
            .await
            .unwrap();
        labeled += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(labeled, items - 1);
}

/// The jobs on the jobs queue once their delay has passed (taken off it).
async fn queued_jobs(fixture: &Direct<SqliteTable>) -> Vec<Job> {
    fixture.clock.advance(COUNT_DELAY);
    let queue = &fixture.config.jobs_queue;
    let mut jobs = Vec::new();
    loop {
        let messages = fixture
            .queue
            .receive(queue, 10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        if messages.is_empty() {
            return jobs;
        }
        for message in messages {
            jobs.push(Job::from_body(&message.body).unwrap());
            fixture.queue.delete(queue, &message.receipt).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_dataset_is_read_from_its_kept_counts_which_one_count_a_burst_of_uploads_renews() {
    let fixture = Direct::new("dataset-counts", |inner| inner);
    let datasets = fixture.service.datasets();
    let created = datasets
        .create_dataset(
            &fixture.admin,
            NewDatasetInput {
                name: "shots".to_owned(),
                description: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((created.files, created.bytes), (0, 0));
    assert!(
        created.counted_at.is_some(),
        "a new dataset is counted: empty"
    );

    // A burst of 100 uploads, each reported by its own object-created event.
    let bucket = fixture.config.system_bucket.clone();
    for index in 0..100 {
        let key = format!("datasets/shots/burst/{index:03}.png");
        fixture
            .blobs
            .put(&bucket, &key, vec![7; 10], "image/png")
            .await
            .unwrap();
        fixture
            .service
            .refreshes()
            .objects_created(&[(bucket.clone(), key)])
            .await
            .unwrap();
    }
    let jobs = queued_jobs(&fixture).await;
    assert_eq!(
        jobs,
        [Job::CountDataset {
            dataset: "shots".to_owned()
        }],
        "one count for the whole burst"
    );
    for job in &jobs {
        fixture
            .service
            .jobs()
            .run_job(&job.to_body().unwrap())
            .await
            .unwrap();
    }
    let counted = datasets.get_dataset(&fixture.admin, "shots").await.unwrap();
    assert_eq!((counted.files, counted.bytes), (100, 1000));

    // A file put by hand, without an event: reads show the kept count (they list nothing)...
    fixture
        .blobs
        .put(
            &bucket,
            "datasets/shots/by-hand.png",
            vec![7; 10],
            "image/png",
        )
        .await
        .unwrap();
    let listed = datasets.list_datasets(&fixture.admin).await.unwrap();
    assert_eq!(listed[0].files, 100, "a read listed the folder");
    assert!(queued_jobs(&fixture).await.is_empty());
    // ...until the count is a minute old: then a read queues a count.
    fixture.clock.advance(Duration::from_secs(61));
    let stale = datasets.get_dataset(&fixture.admin, "shots").await.unwrap();
    assert_eq!(stale.files, 100);
    let jobs = queued_jobs(&fixture).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    fixture
        .service
        .jobs()
        .run_job(&jobs[0].to_body().unwrap())
        .await
        .unwrap();
    assert_eq!(
        datasets
            .get_dataset(&fixture.admin, "shots")
            .await
            .unwrap()
            .files,
        101
    );

    // Events for a folder no dataset owns, or another bucket, queue nothing.
    fixture
        .service
        .refreshes()
        .objects_created(&[
            (bucket.clone(), "datasets/nobody/a.png".to_owned()),
            ("photos".to_owned(), "datasets/shots/a.png".to_owned()),
        ])
        .await
        .unwrap();
    assert!(queued_jobs(&fixture).await.is_empty());
}
