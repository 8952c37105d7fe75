//! The service on a table that behaves like DynamoDB under concurrency (`DynamoLike`: overlapping
//! transactions cancelled, plain writes to held items refused, each item throttled above its
//! write units a second), behind the retrying table every composition root uses: many labelers
//! at once never see a valid lease answer "lost" (409), every acknowledged label is stored, the
//! counters are exact, and a repeated cursor increment (an SDK retry) skips nothing. No
//! labeling transaction touches a per-project row (the project's `META`, the round's base
//! `STATS`): `Watching` counts the transactions that do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::Actor;
use labeling_core::domain::errors::{DomainError, ErrorKind};
use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::jobs::Job;
use labeling_core::ports::{
    Condition, Item, Key, Page, Query, Queue, SkRange, Table, TableError, Update, Write,
};
use labeling_embedded::SqliteTable;
use labeling_host::Retrying;
use labeling_testkit::DynamoLike;
use labeling_tests::direct::Direct;
use serde_json::json;

type Contended = Retrying<Watching<DynamoLike<SqliteTable>>>;

fn contended(name: &str) -> Direct<Contended> {
    Direct::new(name, |inner| {
        Retrying::new(Watching {
            inner: DynamoLike::new(inner),
            hot_rows: Mutex::new(BTreeMap::new()),
        })
    })
}

/// A table that counts, per sort key, the transactions (each try, as sent) that write or
/// condition-check a row every labeler of a project would share: the project's `META` row or
/// a round's base `STATS#<round>` row.
struct Watching<T> {
    inner: T,
    hot_rows: Mutex<BTreeMap<String, usize>>,
}

impl<T> Watching<T> {
    fn hot_rows(&self) -> BTreeMap<String, usize> {
        self.hot_rows.lock().unwrap().clone()
    }
}

fn is_per_project_row(sk: &str) -> bool {
    sk == "META"
        || sk
            .strip_prefix("STATS#")
            .is_some_and(|round| round.bytes().all(|b| b.is_ascii_digit()))
}

#[async_trait]
impl<T: Table> Table for Watching<T> {
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
        {
            let mut hot = self.hot_rows.lock().unwrap();
            for write in &writes {
                let key = match write {
                    Write::Put { item, .. } => &item.key,
                    Write::Update { key, .. }
                    | Write::Delete { key, .. }
                    | Write::Check { key, .. } => key,
                };
                if is_per_project_row(&key.sk) {
                    *hot.entry(key.sk.clone()).or_default() += 1;
                }
            }
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

/// What the labelers of a run did.
#[derive(Default)]
struct Run {
    /// Each acknowledged item, with who labeled it and the class.
    labeled: HashMap<u64, (String, String)>,
    /// Requests answered "busy, retry" (503) and sent again.
    busy: usize,
}

/// `labelers` labelers check out and submit until nothing is left; a 503 is retried as a
/// client would, any other refusal of a held lease fails the test.
async fn label_concurrently<T: Table + 'static>(
    fixture: &Arc<Direct<T>>,
    project: &str,
    labelers: usize,
) -> Run {
    let mut workers = Vec::new();
    for index in 0..labelers {
        let fixture = fixture.clone();
        let project = project.to_owned();
        workers.push(tokio::spawn(async move {
            let actor = Actor::admin(format!("labeler{index}"));
            let class = if index.is_multiple_of(2) {
                "cat"
            } else {
                "dog"
            };
            let labeling = fixture.service.labeling();
            let mut run = Run::default();
            loop {
                let task = match labeling.checkout(&actor, &project).await {
                    Ok(Some(task)) => task,
                    Ok(None) => return run,
                    Err(error) => {
                        assert_eq!(error.kind(), ErrorKind::Unavailable, "checkout: {error}");
                        run.busy += 1;
                        assert!(run.busy < 10_000, "busy for ever: {error}");
                        tokio::task::yield_now().await;
                        continue;
                    }
                };
                let items: Vec<SubmittedItemInput> = task
                    .items
                    .iter()
                    .map(|item| SubmittedItemInput {
                        item_id: Some(item.item_id),
                        labels: Some(vec![class.to_owned()]),
                        ..Default::default()
                    })
                    .collect();
                loop {
                    let submission = SubmissionInput {
                        items: items.clone(),
                    };
                    match labeling
                        .submit(&actor, &project, &task.task_id, submission)
                        .await
                    {
                        Ok(_) => break,
                        Err(error) => {
                            assert_eq!(
                                error.kind(),
                                ErrorKind::Unavailable,
                                "a valid lease was refused: {error}"
                            );
                            run.busy += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                for item in &task.items {
                    let earlier = run
                        .labeled
                        .insert(item.item_id, (actor.user.clone(), class.to_owned()));
                    assert!(earlier.is_none(), "item {} handed out twice", item.item_id);
                }
            }
        }));
    }
    let mut all = Run::default();
    for worker in workers {
        let run = worker.await.unwrap();
        all.busy += run.busy;
        for (item, who) in run.labeled {
            assert!(
                all.labeled.insert(item, who).is_none(),
                "item {item} was labeled twice"
            );
        }
    }
    all
}

/// Every acknowledged label is stored as submitted, and the dashboard counts exactly them.
async fn assert_stored_and_counted<T: Table + 'static>(
    fixture: &Direct<T>,
    project: &str,
    run: &Run,
) {
    let mut stored = 0;
    let mut query = Query::new(
        labeling_core::keys::project_pk(project),
        SkRange::BeginsWith("ITEM#".to_owned()),
        500,
    );
    loop {
        let page = fixture.table.query(query.clone()).await.unwrap();
        for item in &page.items {
            let id = item.attrs["item"].as_u64().unwrap();
            let (user, _) = &run.labeled[&id];
            assert_eq!(item.attrs["state"], "labeled", "item {id}");
            assert_eq!(item.attrs["labeled_by"], json!(user), "item {id}");
            stored += 1;
        }
        match page.last_evaluated {
            Some(last) => query.start_after = Some(last),
            None => break,
        }
    }
    assert_eq!(
        stored,
        run.labeled.len(),
        "every acknowledged label is stored"
    );
    let dashboard = fixture
        .service
        .dashboard()
        .dashboard(&fixture.admin, project)
        .await
        .unwrap();
    assert_eq!(dashboard.labeled, run.labeled.len() as u64);
    assert_eq!(
        (
            dashboard.pending.not_in_task,
            dashboard.pending.in_task,
            dashboard.pending.queued
        ),
        (0, 0, 0)
    );
    let mut per_class: BTreeMap<String, u64> = BTreeMap::new();
    for (_, class) in run.labeled.values() {
        *per_class.entry(class.clone()).or_default() += 1;
    }
    assert_eq!(dashboard.label_distribution, per_class);
}

async fn labelers_drain_on_a_dynamodb_like_table(labelers: usize, items: usize) {
    let fixture = Arc::new(contended(&format!("contended-{labelers}")));
    fixture.add_images("img", items).await;
    let project = fixture
        .project(
            "contended",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    let watched = fixture.table.inner();
    let (hot_before, refused_before) = (watched.hot_rows(), watched.inner.refusals());
    let run = label_concurrently(&fixture, &project, labelers).await;
    assert_eq!(
        run.labeled.keys().copied().collect::<HashSet<_>>(),
        (0..items as u64).collect::<HashSet<_>>(),
        "every item was labeled"
    );
    assert_eq!(
        watched.hot_rows(),
        hot_before,
        "no labeling transaction wrote or checked the project's META or the round's base STATS row"
    );
    assert_stored_and_counted(&fixture, &project, &run).await;
    let shards = fixture
        .table
        .query(Query::new(
            labeling_core::keys::project_pk(&project),
            labeling_core::keys::stats_range(0),
            100,
        ))
        .await
        .unwrap()
        .items
        .len();
    assert!(
        shards > 2,
        "the counters are spread over shard rows, {shards} rows"
    );
    let refusals = watched.inner.refusals();
    let conflicts = refusals.conflicts - refused_before.conflicts;
    eprintln!(
        "{labelers} labelers, {items} items: {refusals:?}, {:.2} conflicts/label, {} retries, {} given up, {} busy answers",
        conflicts as f64 / items as f64,
        fixture.table.retries(),
        fixture.table.given_up(),
        run.busy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_labelers_drain_a_dynamodb_like_table_and_no_valid_lease_is_refused() {
    labelers_drain_on_a_dynamodb_like_table(32, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_and_twenty_eight_labelers_drain_a_dynamodb_like_table_and_no_valid_lease_is_refused()
 {
    labelers_drain_on_a_dynamodb_like_table(128, 512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refreshes_racing_labelers_on_a_dynamodb_like_table_hand_out_each_item_once() {
    let fixture = Arc::new(contended("contended-refresh"));
    fixture.add_images("old", 120).await;
    let project = fixture
        .project(
            "refresh-race",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    fixture.add_images("new", 60).await;
    for request in ["r_one", "r_two"] {
        let body = Job::Refresh {
            project_id: project.clone(),
            trigger: "on_demand".to_owned(),
            request_id: request.to_owned(),
        }
        .to_body()
        .unwrap();
        fixture
            .queue
            .send(&fixture.config.jobs_queue, &body, Duration::ZERO)
            .await
            .unwrap();
    }
    let refreshes = {
        let fixture = fixture.clone();
        tokio::spawn(async move {
            let (a, b) = tokio::join!(fixture.run_next_job(), fixture.run_next_job());
            (a.is_ok(), b.is_ok())
        })
    };
    let mut run = label_concurrently(&fixture, &project, 16).await;
    refreshes.await.unwrap();
    // A refresh refused meanwhile (the other held the refresh lease) runs again later; then the
    // labelers come back for what it added.
    while fixture
        .queue
        .depth(&fixture.config.jobs_queue)
        .await
        .unwrap()
        > 0
    {
        fixture.clock.advance(Duration::from_secs(31));
        let _ = fixture.run_next_job().await;
    }
    let after = label_concurrently(&fixture, &project, 16).await;
    run.busy += after.busy;
    for (item, who) in after.labeled {
        assert!(run.labeled.insert(item, who).is_none(), "item {item} twice");
    }
    assert_eq!(fixture.total_items(&project).await, 180);
    assert_eq!(
        run.labeled.keys().copied().collect::<HashSet<_>>(),
        (0..180u64).collect::<HashSet<_>>(),
        "every item, old and new, was labeled once"
    );
    assert_stored_and_counted(&fixture, &project, &run).await;
}

/// The embedded table, with every cursor update sent twice (the second is an SDK's retry of a
/// request whose answer was lost) and transactions refused as conflicting on demand.
struct Repeating {
    inner: SqliteTable,
    repeat_cursor_updates: bool,
    conflicts_left: AtomicUsize,
}

#[async_trait]
impl Table for Repeating {
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
        if self.repeat_cursor_updates && key.sk.starts_with("CURSOR#") {
            let _ = self
                .inner
                .update(key, update.clone(), condition.clone())
                .await;
        }
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        if self
            .conflicts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(TableError::TransactionConflict);
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

fn repeating(name: &str, repeat_cursor_updates: bool) -> Direct<Repeating> {
    Direct::new(name, |inner| Repeating {
        inner,
        repeat_cursor_updates,
        conflicts_left: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn a_repeated_cursor_increment_skips_no_item() {
    let fixture = repeating("cursor-repeat", true);
    fixture.add_images("img", 30).await;
    let project = fixture
        .project("cursor-repeat", "image_classification_multiclass", &["cat"])
        .await;
    let keys = fixture.drain(&project).await;
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), 30, "every item handed out: {keys:?}");
    assert_eq!(keys.len(), 30, "none twice: {keys:?}");
}

#[tokio::test]
async fn a_submit_that_keeps_conflicting_answers_busy_and_the_lease_stays_valid() {
    let fixture = repeating("submit-conflict", false);
    fixture.add_images("img", 3).await;
    let project = fixture
        .project(
            "submit-conflict",
            "image_classification_multiclass",
            &["cat"],
        )
        .await;
    let labeling = fixture.service.labeling();
    let task = labeling
        .checkout(&fixture.admin, &project)
        .await
        .unwrap()
        .unwrap();
    let submission = || SubmissionInput {
        items: task
            .items
            .iter()
            .map(|item| SubmittedItemInput {
                item_id: Some(item.item_id),
                labels: Some(vec!["cat".to_owned()]),
                ..Default::default()
            })
            .collect(),
    };

    fixture.table.conflicts_left.store(1, Ordering::SeqCst);
    let refused = labeling
        .renew(&fixture.admin, &project, &task.task_id)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "renew: {refused}");
    fixture.table.conflicts_left.store(1, Ordering::SeqCst);
    let refused = labeling
        .submit(&fixture.admin, &project, &task.task_id, submission())
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::Unavailable,
        "a conflict is 'busy, retry' (503), not a lost lease (409): {refused}"
    );

    let receipt = labeling
        .submit(&fixture.admin, &project, &task.task_id, submission())
        .await
        .unwrap();
    assert_eq!(receipt.labeled, task.items.len());
}
