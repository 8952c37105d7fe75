//! Refreshes under faults and races that black-box tests cannot time: a refresh that crashes
//! between writing its manifest chunks and committing them, and a refresh that lands while a
//! checkout that ran past the end has not yet given its overshoot back. Each ends with every
//! item handed out exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
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

/// The embedded table with two faults that can be switched on.
struct Faulty {
    inner: SqliteTable,
    /// Fails the next transaction that commits a manifest, as a process dying there would.
    crash_manifest_commit: AtomicBool,
    /// Refuses conditional updates of a cursor's `next`, as when another writer moved the
    /// cursor between a checkout's reservation and its give-back.
    lose_cursor_give_back: AtomicBool,
    /// Serves the next read of a manifest as it was before the last four items were added, as
    /// a reader that ran just before a refresh committed saw it.
    stale_manifest_read: AtomicBool,
}

#[async_trait]
impl Table for Faulty {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let mut item = self.inner.get(key).await?;
        if key.sk == "MANIFEST"
            && self.stale_manifest_read.swap(false, Ordering::SeqCst)
            && let Some(item) = item.as_mut()
        {
            let total = item.attrs["total"].as_u64().unwrap();
            item.attrs.insert("total".to_owned(), (total - 4).into());
        }
        Ok(item)
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
        let gives_back =
            key.sk.starts_with("CURSOR") && matches!(condition, Some(Condition::And(_)));
        if gives_back && self.lose_cursor_give_back.load(Ordering::SeqCst) {
            return Err(TableError::ConditionFailed { index: 0 });
        }
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        let commits_manifest = writes.iter().any(|w| w.key().sk == "MANIFEST");
        if commits_manifest
            && writes.len() > 1
            && self.crash_manifest_commit.swap(false, Ordering::SeqCst)
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

/// A service on a faulty embedded table over five images, ingested, with its ingest job
/// already taken off the queue.
struct Fixture {
    dir: PathBuf,
    clock: Arc<FakeClock>,
    table: Arc<Faulty>,
    blobs: Arc<FolderBlobs>,
    queue: Arc<SqliteQueue>,
    config: ServiceConfig,
    service: Service,
    admin: Actor,
    project_id: String,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(labeling_testkit::unique(name));
        std::fs::create_dir_all(dir.join("buckets/photos/set")).unwrap();
        let clock = Arc::new(FakeClock::default());
        let database = Database::open(&dir.join("db.sqlite")).unwrap();
        let table = Arc::new(Faulty {
            inner: SqliteTable::new(database.clone()),
            crash_manifest_commit: AtomicBool::new(false),
            lose_cursor_give_back: AtomicBool::new(false),
            stale_manifest_read: AtomicBool::new(false),
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
        let mut fixture = Self {
            dir,
            clock,
            table,
            blobs,
            queue,
            config,
            service,
            admin,
            project_id: String::new(),
        };
        fixture.add_images("old", 5).await;
        let project = fixture
            .service
            .create_project(
                &fixture.admin,
                NewProjectInput {
                    name: name.to_owned(),
                    task_type: "image_classification_multiclass".to_owned(),
                    labels: vec!["a".to_owned()],
                    source: "s3://photos/set/**".to_owned(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        fixture.service.ingest_now(&project.id).await.unwrap();
        let jobs = &fixture.config.jobs_queue;
        for message in fixture
            .queue
            .receive(jobs, 10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
        {
            fixture.queue.delete(jobs, &message.receipt).await.unwrap();
        }
        fixture.project_id = project.id;
        fixture
    }

    async fn add_images(&self, prefix: &str, count: usize) {
        let png = labeling_tests::png(8, 8, 1);
        for index in 0..count {
            self.blobs
                .put(
                    "photos",
                    &format!("set/{prefix}-{index}.png"),
                    png.clone(),
                    "image/png",
                )
                .await
                .unwrap();
        }
    }

    async fn queue_refresh(&self, request_id: &str) {
        let job = Job::Refresh {
            project_id: self.project_id.clone(),
            trigger: "on_demand".to_owned(),
            request_id: request_id.to_owned(),
        };
        self.queue
            .send(&self.config.jobs_queue, &job.to_body(), Duration::ZERO)
            .await
            .unwrap();
    }

    async fn run_refresh(&self, request_id: &str) {
        self.queue_refresh(request_id).await;
        let jobs = &self.config.jobs_queue;
        let refresh = self
            .queue
            .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        self.service.run_job(&refresh[0].body).await.unwrap();
        self.queue.delete(jobs, &refresh[0].receipt).await.unwrap();
    }

    async fn total_items(&self) -> u64 {
        self.service
            .dashboard(&self.admin, &self.project_id)
            .await
            .unwrap()
            .total_items
    }

    /// Checks out and skips until nothing is left; the keys handed out, in order.
    async fn drain(&self) -> Vec<String> {
        let mut keys = Vec::new();
        while let Some(task) = self
            .service
            .checkout(&self.admin, &self.project_id)
            .await
            .unwrap()
        {
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
            self.service
                .submit(&self.admin, &self.project_id, &task.task_id, submission)
                .await
                .unwrap();
        }
        keys
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_each_once(keys: &[String], expected: usize) {
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), expected, "{keys:?}");
    assert_eq!(
        unique.len(),
        expected,
        "an item was handed out twice: {keys:?}"
    );
}

#[tokio::test]
async fn a_crashed_refresh_retried_by_the_queue_adds_each_item_once() {
    let fixture = Fixture::new("refresh-crash").await;
    fixture.add_images("new", 4).await;
    fixture.queue_refresh("r_crash").await;
    fixture
        .table
        .crash_manifest_commit
        .store(true, Ordering::SeqCst);

    let jobs = &fixture.config.jobs_queue;
    let first = fixture
        .queue
        .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        fixture.service.run_job(&first[0].body).await.is_err(),
        "the injected crash fails the first run"
    );
    assert_eq!(fixture.total_items().await, 5, "nothing was committed");

    fixture.clock.advance(Duration::from_secs(31));
    let retry = fixture
        .queue
        .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1, "the queue redelivers the job");
    assert_eq!(retry[0].receive_count, 2);
    fixture.service.run_job(&retry[0].body).await.unwrap();
    fixture.queue.delete(jobs, &retry[0].receipt).await.unwrap();
    assert_eq!(fixture.total_items().await, 9);

    assert_each_once(&fixture.drain().await, 9);
}

#[tokio::test]
async fn a_refresh_landing_before_a_checkout_gives_back_its_overshoot_skips_nothing() {
    let fixture = Fixture::new("refresh-overshoot").await;
    let mut keys = fixture.drain().await;
    assert_each_once(&keys, 5);

    // One more checkout runs past the end; its give-back loses the race.
    fixture
        .table
        .lose_cursor_give_back
        .store(true, Ordering::SeqCst);
    assert!(
        fixture
            .service
            .checkout(&fixture.admin, &fixture.project_id)
            .await
            .unwrap()
            .is_none()
    );
    fixture
        .table
        .lose_cursor_give_back
        .store(false, Ordering::SeqCst);

    fixture.add_images("new", 4).await;
    fixture.run_refresh("r_overshoot").await;
    assert_eq!(fixture.total_items().await, 9);

    keys.extend(fixture.drain().await);
    assert_each_once(&keys, 9);
}

#[tokio::test]
async fn starting_over_on_a_manifest_read_before_a_refresh_committed_still_covers_every_item() {
    let fixture = Fixture::new("refresh-start-over").await;
    fixture.add_images("new", 4).await;
    fixture.run_refresh("r_before_start_over").await;
    assert_eq!(fixture.total_items().await, 9);

    fixture
        .table
        .stale_manifest_read
        .store(true, Ordering::SeqCst);
    fixture
        .service
        .add_labels(
            &fixture.admin,
            &fixture.project_id,
            vec!["b".to_owned()],
            Some("start_over_remove".to_owned()),
        )
        .await
        .unwrap();
    assert!(
        !fixture.table.stale_manifest_read.load(Ordering::SeqCst),
        "the start-over read the manifest"
    );
    assert_eq!(fixture.total_items().await, 9);
    assert_each_once(&fixture.drain().await, 9);
}
