//! The service without HTTP or a background worker, on the embedded adapters: jobs wait on the
//! queue until the test runs them, so races with background work can be staged exactly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::domain::project::NewProjectInput;
use labeling_core::keys;
use labeling_core::ports::{Blobs, Query, Queue, SkRange, Table, Update};
use labeling_core::{Actor, Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};
use labeling_testkit::FakeClock;
use serde_json::Value;

pub struct Direct<T> {
    pub dir: PathBuf,
    pub clock: Arc<FakeClock>,
    pub table: Arc<T>,
    pub blobs: Arc<FolderBlobs>,
    pub queue: Arc<SqliteQueue>,
    pub config: ServiceConfig,
    pub service: Service,
    pub admin: Actor,
}

impl<T: Table + 'static> Direct<T> {
    /// A fresh data directory; `wrap` may put a faulty table around the embedded one.
    pub fn new(name: &str, wrap: impl FnOnce(SqliteTable) -> T) -> Self {
        let dir = std::env::temp_dir().join(labeling_testkit::unique(name));
        std::fs::create_dir_all(dir.join("buckets/photos")).unwrap();
        let clock = Arc::new(FakeClock::default());
        let database = Database::open(&dir.join("db.sqlite")).unwrap();
        let table = Arc::new(wrap(SqliteTable::new(database.clone())));
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
        Self {
            dir,
            clock,
            table,
            blobs,
            queue,
            config,
            service,
            admin: Actor::admin("admin"),
        }
    }

    /// Puts `count` 8x8 PNGs named `set/<prefix>-<n>.png` into the bucket `photos`.
    pub async fn add_images(&self, prefix: &str, count: usize) {
        let png = crate::png(8, 8, 1);
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

    /// A running project over `s3://photos/set/**`; the queue is left empty.
    pub async fn project(&self, name: &str, task_type: &str, labels: &[&str]) -> String {
        let project = self
            .service
            .projects()
            .create_project(
                &self.admin,
                NewProjectInput {
                    name: name.to_owned(),
                    task_type: task_type.to_owned(),
                    labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                    source: "s3://photos/set/**".to_owned(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.service.jobs().ingest_now(&project.id).await.unwrap();
        self.drop_queued_jobs().await;
        project.id
    }

    pub async fn drop_queued_jobs(&self) {
        let jobs = &self.config.jobs_queue;
        for message in self
            .queue
            .receive(jobs, 10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap()
        {
            self.queue.delete(jobs, &message.receipt).await.unwrap();
        }
    }

    /// Takes the next queued job and runs it; its outcome.
    pub async fn run_next_job(&self) -> Result<(), labeling_core::usecases::ingest::JobError> {
        let jobs = &self.config.jobs_queue;
        let received = self
            .queue
            .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let message = received.first().expect("a queued job");
        let outcome = self.service.jobs().run_job(&message.body).await;
        if outcome.is_ok() {
            self.queue.delete(jobs, &message.receipt).await.unwrap();
        }
        outcome
    }

    /// Runs queued jobs until none is left, a failed one again once its visibility ends
    /// (the fake clock is moved past it); `before` sees each job's body before it runs. How
    /// many runs failed.
    pub async fn run_jobs_with(&self, mut before: impl FnMut(&str)) -> usize {
        let jobs = &self.config.jobs_queue;
        let mut failed = 0;
        for _ in 0..200 {
            let mut received = self
                .queue
                .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
                .await
                .unwrap();
            if received.is_empty() {
                self.clock.advance(Duration::from_secs(31));
                received = self
                    .queue
                    .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
                    .await
                    .unwrap();
            }
            let Some(message) = received.first() else {
                return failed;
            };
            before(&message.body);
            if self.service.jobs().run_job(&message.body).await.is_ok() {
                self.queue.delete(jobs, &message.receipt).await.unwrap();
            } else {
                failed += 1;
            }
        }
        panic!("the jobs never ran out");
    }

    pub async fn run_jobs(&self) -> usize {
        self.run_jobs_with(|_| {}).await
    }

    /// Gives `twin` the seed of `project`, so both shuffle alike: they hand out (and window)
    /// the same items.
    pub async fn copy_seed(&self, project: &str, twin: &str) {
        let seed = self
            .table
            .get(&keys::project(project))
            .await
            .unwrap()
            .unwrap()
            .attrs["seed"]
            .clone();
        self.table
            .update(
                &keys::project(twin),
                Update::default().set("seed", seed),
                None,
            )
            .await
            .unwrap();
    }

    /// The project's waiting tasks of round 0 (kind and items with their prelabels), without
    /// their run-specific ids, in a stable order.
    pub async fn queued_work(&self, project: &str) -> Vec<Value> {
        let page = self
            .table
            .query(Query::new(
                keys::work_pk(project, 0),
                SkRange::BeginsWith("A#".to_owned()),
                1000,
            ))
            .await
            .unwrap();
        let mut work: Vec<Value> = page
            .items
            .iter()
            .map(|entry| serde_json::json!([entry.attrs["kind"], entry.attrs["items"]]))
            .collect();
        work.sort_by_key(|entry| entry.to_string());
        work
    }

    pub async fn total_items(&self, project_id: &str) -> u64 {
        self.service
            .dashboard()
            .dashboard(&self.admin, project_id)
            .await
            .unwrap()
            .total_items
    }

    /// Checks out and submits until nothing is left, `submission` giving each item's answer
    /// from its key; the keys handed out, in order.
    pub async fn drain_with(
        &self,
        project_id: &str,
        mut submission: impl FnMut(&str) -> SubmittedItemInput,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        while let Some(task) = self
            .service
            .labeling()
            .checkout(&self.admin, project_id)
            .await
            .unwrap()
        {
            keys.extend(task.items.iter().map(|i| i.key.clone()));
            let items = task
                .items
                .iter()
                .map(|i| SubmittedItemInput {
                    item_id: Some(i.item_id),
                    ..submission(&i.key)
                })
                .collect();
            self.service
                .labeling()
                .submit(
                    &self.admin,
                    project_id,
                    &task.task_id,
                    SubmissionInput { items },
                )
                .await
                .unwrap();
        }
        keys
    }

    /// Drains the project skipping every item.
    pub async fn drain(&self, project_id: &str) -> Vec<String> {
        self.drain_with(project_id, |_| SubmittedItemInput {
            skip: Some(true),
            ..Default::default()
        })
        .await
    }
}

impl<T> Drop for Direct<T> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
