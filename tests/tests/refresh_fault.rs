//! A refresh that crashes between writing its manifest chunks and committing them, then runs
//! again when the queue redelivers the job, ends with every item exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::domain::project::NewProjectInput;
use labeling_core::jobs::Job;
use labeling_core::ports::{
    Blobs, Condition, Item, Key, Page, Query, Queue, Table, TableError, Update, Write,
};
use labeling_core::{Actor, Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};
use labeling_testkit::FakeClock;

/// Fails the first transaction that commits a manifest, as a process dying there would.
struct CrashOnce {
    inner: SqliteTable,
    armed: AtomicBool,
}

#[async_trait]
impl Table for CrashOnce {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        let commits_manifest = writes.iter().any(|w| w.key().sk == "MANIFEST");
        if commits_manifest
            && self.armed.load(Ordering::SeqCst)
            && writes.len() > 1
            && self.armed.swap(false, Ordering::SeqCst)
        {
            return Err(TableError::Unavailable(
                "injected crash before the refresh commits".into(),
            ));
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

#[tokio::test]
async fn a_crashed_refresh_retried_by_the_queue_adds_each_item_once() {
    let dir = std::env::temp_dir().join(labeling_testkit::unique("refresh-crash"));
    std::fs::create_dir_all(dir.join("buckets/photos/set")).unwrap();
    let clock = Arc::new(FakeClock::default());
    let database = Database::open(&dir.join("db.sqlite")).unwrap();
    let table = Arc::new(CrashOnce {
        inner: SqliteTable::new(database.clone()),
        armed: AtomicBool::new(false),
    });
    let blobs = Arc::new(FolderBlobs::new(&dir, clock.clone(), b"secret".to_vec()));
    let queue = Arc::new(SqliteQueue::new(database, clock.clone(), 5));
    let config = ServiceConfig::default();
    std::fs::create_dir_all(dir.join("buckets").join(&config.system_bucket)).unwrap();
    let service = Service::new(
        table.clone(),
        blobs.clone(),
        queue.clone(),
        clock.clone(),
        config.clone(),
    );
    let admin = Actor::admin("admin");
    let png = labeling_tests::png(8, 8, 1);
    for index in 0..5 {
        blobs
            .put(
                "photos",
                &format!("set/old-{index}.png"),
                png.clone(),
                "image/png",
            )
            .await
            .unwrap();
    }
    let project = service
        .create_project(
            &admin,
            NewProjectInput {
                name: "crash".to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["a".to_owned()],
                source: "s3://photos/set/**".to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    service.ingest_now(&project.id).await.unwrap();
    for index in 0..4 {
        blobs
            .put(
                "photos",
                &format!("set/new-{index}.png"),
                png.clone(),
                "image/png",
            )
            .await
            .unwrap();
    }

    // Drop the ingest job still waiting on the queue, then queue the refresh.
    let jobs = &config.jobs_queue;
    for message in queue
        .receive(jobs, 10, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap()
    {
        queue.delete(jobs, &message.receipt).await.unwrap();
    }
    let job = Job::Refresh {
        project_id: project.id.clone(),
        trigger: "on_demand".to_owned(),
        request_id: "r_crash".to_owned(),
    };
    queue
        .send(jobs, &job.to_body(), Duration::ZERO)
        .await
        .unwrap();
    table.armed.store(true, Ordering::SeqCst);

    let first = queue
        .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        service.run_job(&first[0].body).await.is_err(),
        "the injected crash fails the first run"
    );
    assert_eq!(
        service
            .dashboard(&admin, &project.id)
            .await
            .unwrap()
            .total_items,
        5,
        "nothing was committed"
    );

    clock.advance(Duration::from_secs(31));
    let retry = queue
        .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1, "the queue redelivers the job");
    assert_eq!(retry[0].receive_count, 2);
    service.run_job(&retry[0].body).await.unwrap();
    queue.delete(jobs, &retry[0].receipt).await.unwrap();
    assert_eq!(
        service
            .dashboard(&admin, &project.id)
            .await
            .unwrap()
            .total_items,
        9
    );

    let mut keys = Vec::new();
    while let Some(task) = service.checkout(&admin, &project.id).await.unwrap() {
        keys.extend(task.items.iter().map(|i| i.key.clone()));
        let submission = SubmissionInput {
            items: task
                .items
                .iter()
                .map(|i| SubmittedItemInput {
                    item_id: Some(i.item_id),
                    skip: Some(true),
                    ..Default::default()
                })
                .collect(),
        };
        service
            .submit(&admin, &project.id, &task.task_id, submission)
            .await
            .unwrap();
    }
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    assert_eq!(unique.len(), 9, "an item was handed out twice: {keys:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
