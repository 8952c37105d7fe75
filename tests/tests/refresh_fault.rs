//! Refreshes under faults and races that black-box tests cannot time: a refresh that crashes
//! between writing its manifest chunks and committing them, and a refresh that lands while a
//! checkout that ran past the end has not yet given its overshoot back. Each ends with every
//! item handed out exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::jobs::Job;
use labeling_core::ports::{
    Condition, Item, Key, Page, Query, Queue, Table, TableError, Update, Write,
};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

/// The embedded table, yielding before every call, with faults that can be switched on.
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
    /// Refresh lease claims refused because another refresh held the lease.
    refused_lease_claims: AtomicUsize,
    /// Fails the condition on the project's record in the next refresh commit, as when the
    /// project started another round while the refresh ran.
    round_moved_at_commit: AtomicBool,
}

#[async_trait]
impl Table for Faulty {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
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
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        let claims_lease = item.key.sk == "REFRESH";
        let outcome = self.inner.put(item, condition).await;
        if claims_lease && matches!(outcome, Err(TableError::ConditionFailed { .. })) {
            self.refused_lease_claims.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        let gives_back =
            key.sk.starts_with("CURSOR") && matches!(condition, Some(Condition::And(_)));
        if gives_back && self.lose_cursor_give_back.load(Ordering::SeqCst) {
            return Err(TableError::ConditionFailed { index: 0 });
        }
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        let commits_manifest = writes.iter().any(|w| w.key().sk == "MANIFEST");
        if commits_manifest
            && writes.len() > 1
            && self.crash_manifest_commit.swap(false, Ordering::SeqCst)
        {
            return Err(TableError::Unavailable(
                "injected crash before the refresh commits".into(),
            ));
        }
        if commits_manifest
            && let Some(index) = writes.iter().position(|w| w.key().sk == "META")
            && self.round_moved_at_commit.swap(false, Ordering::SeqCst)
        {
            // The table reports only the failed write's position, as DynamoDB does.
            return Err(TableError::ConditionFailed { index });
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        // Let concurrent jobs interleave at every table call, as they do on DynamoDB.
        tokio::task::yield_now().await;
        self.inner.query(query).await
    }
}

type Fixture = Direct<Faulty>;

/// Five images in a running project on a faulty table with no fault switched on.
async fn fixture(name: &str) -> (Fixture, String) {
    let fixture = Direct::new(name, |inner| Faulty {
        inner,
        crash_manifest_commit: AtomicBool::new(false),
        lose_cursor_give_back: AtomicBool::new(false),
        stale_manifest_read: AtomicBool::new(false),
        refused_lease_claims: AtomicUsize::new(0),
        round_moved_at_commit: AtomicBool::new(false),
    });
    fixture.add_images("old", 5).await;
    let project = fixture
        .project(name, "image_classification_multiclass", &["a"])
        .await;
    (fixture, project)
}

/// An on-demand refresh job's message.
fn refresh_job(project_id: &str, request_id: &str) -> String {
    Job::Refresh {
        project_id: project_id.to_owned(),
        trigger: "on_demand".to_owned(),
        request_id: request_id.to_owned(),
    }
    .to_body()
    .unwrap()
}

async fn queue_refresh(fixture: &Fixture, project_id: &str, request_id: &str) {
    fixture
        .queue
        .send(
            &fixture.config.jobs_queue,
            &refresh_job(project_id, request_id),
            Duration::ZERO,
        )
        .await
        .unwrap();
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
    let (fixture, project) = fixture("refresh-crash").await;
    fixture.add_images("new", 4).await;
    queue_refresh(&fixture, &project, "r_crash").await;
    fixture
        .table
        .crash_manifest_commit
        .store(true, Ordering::SeqCst);
    assert!(
        fixture.run_next_job().await.is_err(),
        "the injected crash fails the first run"
    );
    assert_eq!(
        fixture.total_items(&project).await,
        5,
        "nothing was committed"
    );

    fixture.clock.advance(Duration::from_secs(31));
    let jobs = &fixture.config.jobs_queue;
    let depth = fixture.queue.depth(jobs).await.unwrap();
    assert_eq!(depth, 1, "the queue keeps the job for another try");
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 9);

    assert_each_once(&fixture.drain(&project).await, 9);
}

#[tokio::test]
async fn a_refresh_landing_before_a_checkout_gives_back_its_overshoot_skips_nothing() {
    let (fixture, project) = fixture("refresh-overshoot").await;
    let mut keys = fixture.drain(&project).await;
    assert_each_once(&keys, 5);

    // One more checkout runs past the end; its give-back loses the race.
    fixture
        .table
        .lose_cursor_give_back
        .store(true, Ordering::SeqCst);
    assert!(
        fixture
            .service
            .labeling()
            .checkout(&fixture.admin, &project)
            .await
            .unwrap()
            .is_none()
    );
    fixture
        .table
        .lose_cursor_give_back
        .store(false, Ordering::SeqCst);

    fixture.add_images("new", 4).await;
    queue_refresh(&fixture, &project, "r_overshoot").await;
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 9);

    keys.extend(fixture.drain(&project).await);
    assert_each_once(&keys, 9);
}

#[tokio::test]
async fn starting_over_on_a_manifest_read_before_a_refresh_committed_still_covers_every_item() {
    let (fixture, project) = fixture("refresh-start-over").await;
    fixture.add_images("new", 4).await;
    queue_refresh(&fixture, &project, "r_before_start_over").await;
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 9);

    fixture
        .table
        .stale_manifest_read
        .store(true, Ordering::SeqCst);
    fixture
        .service
        .projects()
        .add_labels(
            &fixture.admin,
            &project,
            vec!["b".to_owned()],
            Some("start_over_remove".to_owned()),
        )
        .await
        .unwrap();
    assert!(
        !fixture.table.stale_manifest_read.load(Ordering::SeqCst),
        "the start-over read the manifest"
    );
    assert_eq!(fixture.total_items(&project).await, 9);
    assert_each_once(&fixture.drain(&project).await, 9);
}

#[tokio::test]
async fn a_refresh_whose_project_moved_to_another_round_says_so_and_is_retried() {
    let (fixture, project) = fixture("refresh-round-moved").await;
    fixture.add_images("new", 4).await;
    fixture
        .table
        .round_moved_at_commit
        .store(true, Ordering::SeqCst);
    queue_refresh(&fixture, &project, "r_round_moved").await;
    let error = fixture.run_next_job().await.unwrap_err();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        cause.contains("the project started another round"),
        "the failed condition reads as what changed: {cause}"
    );
    assert_eq!(fixture.total_items(&project).await, 5);

    queue_refresh(&fixture, &project, "r_round_moved_again").await;
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 9);
}

#[tokio::test]
async fn two_refreshes_running_at_once_add_each_new_item_once() {
    let (fixture, project) = fixture("refresh-two-at-once").await;
    fixture.add_images("new", 4).await;
    let job = |request_id: &str| refresh_job(&project, request_id);
    let (a, b) = (job("r_a"), job("r_b"));
    let jobs = fixture.service.jobs();
    let (first, second) = tokio::join!(jobs.run_job(&a), jobs.run_job(&b));
    first.unwrap();
    second.unwrap();
    assert_eq!(
        fixture.table.refused_lease_claims.load(Ordering::SeqCst),
        1,
        "the two met at the lease"
    );
    assert_eq!(fixture.total_items(&project).await, 9);
    let lease = fixture
        .table
        .get(&Key::new(format!("P#{project}"), "REFRESH".to_owned()))
        .await
        .unwrap();
    assert!(lease.is_none(), "the winner gave its lease back: {lease:?}");
    assert_each_once(&fixture.drain(&project).await, 9);
}

#[tokio::test]
async fn a_refresh_that_died_holding_its_lease_takes_it_back_when_retried() {
    let (fixture, project) = fixture("refresh-died").await;
    fixture.add_images("new", 4).await;
    // What a process that died mid-refresh leaves: its lease, for another 15 minutes.
    let lease = serde_json::json!({
        "entity": "refresh_lease",
        "holder": "r_died",
        "expires_at": fixture.service.now() + 15 * 60 * 1000,
    });
    fixture
        .table
        .put(
            Item::new(
                Key::new(format!("P#{project}"), "REFRESH".to_owned()),
                lease.as_object().cloned().unwrap(),
            ),
            None,
        )
        .await
        .unwrap();
    let job = |request_id: &str| refresh_job(&project, request_id);
    fixture
        .service
        .jobs()
        .run_job(&job("r_other"))
        .await
        .unwrap();
    assert_eq!(fixture.table.refused_lease_claims.load(Ordering::SeqCst), 1);
    assert_eq!(
        fixture.total_items(&project).await,
        5,
        "another refresh leaves the work to the lease holder"
    );
    fixture
        .service
        .jobs()
        .run_job(&job("r_died"))
        .await
        .unwrap();
    assert_eq!(
        fixture.total_items(&project).await,
        9,
        "the retry takes its lease back"
    );
    assert_each_once(&fixture.drain(&project).await, 9);
}

#[tokio::test]
async fn new_objects_from_events_are_added_once_in_one_batch_and_wait_for_a_running_refresh() {
    let (fixture, project) = fixture("refresh-events").await;
    fixture
        .service
        .projects()
        .update_project(
            &fixture.admin,
            &project,
            labeling_core::domain::presented::ProjectChanges {
                incremental_refresh: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fixture.add_images("new", 6).await;
    let event = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ("photos".to_owned(), format!("set/{n}.png")))
            .collect()
    };
    let first = event(&["new-0", "new-1", "new-2", "old-1"]);
    let second = event(&["new-2", "new-3", "new-4", "new-4"]);
    let refreshes = fixture.service.refreshes();
    let (a, b) = tokio::join!(
        refreshes.objects_created(&first),
        refreshes.objects_created(&second)
    );
    a.unwrap();
    b.unwrap();
    let jobs = &fixture.config.jobs_queue;
    assert_eq!(
        fixture.queue.depth(jobs).await.unwrap(),
        1,
        "events close together share one job"
    );
    fixture.clock.advance(Duration::from_secs(3));
    fixture.run_next_job().await.unwrap();
    let dashboard = fixture
        .service
        .dashboard()
        .dashboard(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(dashboard.total_items, 10);
    assert_eq!(
        dashboard.refresh.items_added, 5,
        "one batch of the five new keys"
    );
    assert_eq!(
        dashboard.refresh.last_refresh_trigger.as_deref(),
        Some("object_created")
    );

    // A redelivered event adds nothing.
    fixture
        .service
        .refreshes()
        .objects_created(&first)
        .await
        .unwrap();
    fixture.clock.advance(Duration::from_secs(3));
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 10);

    // While a listing refresh holds the lease, the event job comes back later.
    let lease = serde_json::json!({
        "entity": "refresh_lease",
        "holder": "r_listing",
        "expires_at": fixture.service.now() + 15 * 60 * 1000,
    });
    let lease_key = Key::new(format!("P#{project}"), "REFRESH".to_owned());
    fixture
        .table
        .put(
            Item::new(lease_key.clone(), lease.as_object().cloned().unwrap()),
            None,
        )
        .await
        .unwrap();
    fixture
        .service
        .refreshes()
        .objects_created(&event(&["new-5"]))
        .await
        .unwrap();
    fixture.clock.advance(Duration::from_secs(3));
    fixture.run_next_job().await.unwrap();
    assert_eq!(
        fixture.total_items(&project).await,
        10,
        "not while the lease is held"
    );
    fixture.table.delete(&lease_key, None).await.unwrap();
    fixture.clock.advance(Duration::from_secs(31));
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 11);
    assert_each_once(&fixture.drain(&project).await, 11);
}
