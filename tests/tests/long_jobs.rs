//! Long jobs that outgrow one run (a Lambda invocation ends at 15 minutes): ingest and listing
//! refresh save their progress and continue in a new message. With a zero time budget every
//! run makes one step (one listing page), so a source of a few tens of thousands of keys takes
//! tens of messages; each test drains the queue job by job, as the runners do, and compares
//! the outcome with the same job run in one go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use labeling_core::domain::project::NewProjectInput;
use labeling_core::jobs::Job;
use labeling_core::manifest::{CHUNK_KEYS, ManifestCache, ManifestRecord};
use labeling_core::ports::blobs::MAX_LIST_KEYS;
use labeling_core::ports::{Blobs, Clock, Key, Queue, Table};
use labeling_core::{Service, ServiceConfig};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

/// A fixture, and a service on the same stores that makes one step a run.
fn fixture(name: &str) -> (Direct<SqliteTable>, Service) {
    let fixture = Direct::new(name, |table| table);
    let stepwise = Service::new(
        fixture.table.clone(),
        fixture.blobs.clone(),
        fixture.queue.clone(),
        fixture.clock.clone(),
        ServiceConfig {
            job_time_budget: Duration::ZERO,
            ..fixture.config.clone()
        },
    );
    (fixture, stepwise)
}

/// Empty files are images as far as listing goes: ingest never opens them.
fn add_files(fixture: &Direct<SqliteTable>, names: impl IntoIterator<Item = String>) {
    let dir = fixture.dir.join("buckets/photos/set");
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::fs::write(dir.join(name), b"").unwrap();
    }
}

fn remove_files(fixture: &Direct<SqliteTable>, names: impl IntoIterator<Item = String>) {
    let dir = fixture.dir.join("buckets/photos/set");
    for name in names {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
}

/// Creates a project over `s3://photos/set/**`; its ingest waits on the queue.
async fn create(fixture: &Direct<SqliteTable>, name: &str) -> String {
    fixture
        .service
        .projects()
        .create_project(
            &fixture.admin,
            NewProjectInput {
                name: name.to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["cat".to_owned()],
                source: "s3://photos/set/**".to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

/// Takes the next job due (continuations wait a little before delivery).
async fn next_job(fixture: &Direct<SqliteTable>) -> Option<(String, String)> {
    fixture.clock.advance(Duration::from_secs(3));
    let received = fixture
        .queue
        .receive(
            &fixture.config.jobs_queue,
            1,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
        .unwrap();
    received
        .into_iter()
        .next()
        .map(|message| (message.body, message.receipt))
}

async fn done(fixture: &Direct<SqliteTable>, receipt: &str) {
    fixture
        .queue
        .delete(&fixture.config.jobs_queue, receipt)
        .await
        .unwrap();
}

/// Runs every queued job with `service` until none is left; the bodies run, in order.
async fn drain_jobs(fixture: &Direct<SqliteTable>, service: &Service) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some((body, receipt)) = next_job(fixture).await {
        service.jobs().run_job(&body).await.unwrap();
        done(fixture, &receipt).await;
        bodies.push(body);
        assert!(bodies.len() < 10_000, "the jobs never end");
    }
    bodies
}

async fn queued(fixture: &Direct<SqliteTable>) -> u64 {
    fixture
        .queue
        .depth(&fixture.config.jobs_queue)
        .await
        .unwrap()
}

async fn manifest(fixture: &Direct<SqliteTable>, project: &str) -> ManifestRecord {
    let item = fixture
        .table
        .get(&Key::new(format!("P#{project}"), "MANIFEST"))
        .await
        .unwrap()
        .expect("a manifest");
    serde_json::from_value(serde_json::Value::Object(item.attrs)).unwrap()
}

/// The keys of each batch of the project's manifest, in manifest order.
async fn batch_keys(fixture: &Direct<SqliteTable>, project: &str) -> Vec<Vec<String>> {
    let manifest = manifest(fixture, project).await;
    let reader = ManifestCache::default();
    let mut batches = Vec::new();
    for batch in &manifest.batches {
        batches.push(
            reader
                .batch_keys(
                    fixture.blobs.as_ref(),
                    &fixture.config.system_bucket,
                    project,
                    batch,
                )
                .await
                .unwrap(),
        );
    }
    batches
}

async fn checkpoint_row(fixture: &Direct<SqliteTable>, project: &str, kind: &str) -> bool {
    fixture
        .table
        .get(&labeling_core::keys::checkpoint::key(project, kind))
        .await
        .unwrap()
        .is_some()
}

async fn status(fixture: &Direct<SqliteTable>, project: &str) -> String {
    let item = fixture
        .table
        .get(&Key::new(format!("P#{project}"), "META"))
        .await
        .unwrap()
        .expect("a project");
    item.attrs["status"].as_str().unwrap().to_owned()
}

/// Runs every queued job with `service`, leaving a failed one to come back as the queue
/// redelivers it; the bodies that succeeded and the failures.
async fn drain_with_retries(
    fixture: &Direct<SqliteTable>,
    service: &Service,
) -> (Vec<String>, usize) {
    let (mut bodies, mut failures) = (Vec::new(), 0);
    loop {
        match next_job(fixture).await {
            Some((body, receipt)) => match service.jobs().run_job(&body).await {
                Ok(()) => {
                    done(fixture, &receipt).await;
                    bodies.push(body);
                }
                Err(_) => failures += 1,
            },
            None if queued(fixture).await == 0 => return (bodies, failures),
            None => fixture.clock.advance(Duration::from_secs(31)),
        }
        assert!(bodies.len() + failures < 1_000, "the jobs never end");
    }
}

/// The last refresh's status as the project page reads it, less its time.
async fn refresh_status(fixture: &Direct<SqliteTable>, project: &str) -> serde_json::Value {
    let body = fixture
        .blobs
        .get(
            &fixture.config.system_bucket,
            &format!("manifests/{project}/refresh-status.json"),
            None,
        )
        .await
        .unwrap();
    let mut status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    status.as_object_mut().unwrap().remove("at");
    status
}

fn continuations(bodies: &[String]) -> usize {
    bodies
        .iter()
        .filter(|body| {
            matches!(
                Job::from_body(body),
                Ok(Job::ContinueIngest { .. } | Job::ContinueRefresh { .. })
            )
        })
        .count()
}

fn image_names(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|i| format!("img-{i:05}.png"))
}

#[tokio::test]
async fn an_ingest_too_long_for_one_run_continues_in_new_messages_to_the_same_manifest() {
    let (fixture, stepwise) = fixture("long-ingest");
    add_files(&fixture, image_names(0..25_000));
    // Files the source's glob leaves out, between the images.
    add_files(&fixture, (0..300).map(|i| format!("img-{:05}.txt", i * 80)));

    let reference = create(&fixture, "in-one-go").await;
    let one_go = drain_jobs(&fixture, &fixture.service).await;
    assert_eq!(one_go.len(), 1, "the default budget lists it in one run");

    let project = create(&fixture, "step-by-step").await;
    let bodies = drain_jobs(&fixture, &stepwise).await;
    // 25,300 entries in pages of 1,000: a step a page, which is more than MAX_JOB_ATTEMPTS
    // runs: continuations are not counted as failures.
    assert_eq!(bodies.len(), 26, "one message a listing page");
    assert_eq!(continuations(&bodies), 25);
    assert!(bodies.len() as u32 > labeling_core::jobs::MAX_JOB_ATTEMPTS);

    assert_eq!(status(&fixture, &project).await, "running");
    assert_eq!(fixture.total_items(&project).await, 25_000);
    assert_eq!(
        fixture.total_items(&project).await,
        fixture.total_items(&reference).await
    );
    let (mut ours, mut theirs) = (
        manifest(&fixture, &project).await,
        manifest(&fixture, &reference).await,
    );
    // Only the time of the listing may differ.
    ours.last_refresh_at = None;
    theirs.last_refresh_at = None;
    assert_eq!(ours, theirs);
    let keys = batch_keys(&fixture, &project).await;
    assert_eq!(keys, batch_keys(&fixture, &reference).await);
    assert_eq!(
        keys[0],
        image_names(0..25_000)
            .map(|n| format!("set/{n}"))
            .collect::<Vec<_>>()
    );
    assert!(
        !checkpoint_row(&fixture, &project, "INGEST").await,
        "the checkpoint goes with the commit"
    );
}

#[tokio::test]
async fn a_duplicated_continuation_changes_nothing() {
    let (fixture, stepwise) = fixture("duplicate-continuation");
    add_files(&fixture, image_names(0..5_000));
    let project = create(&fixture, "duplicates").await;
    let mut steps = 0;
    while let Some((body, receipt)) = next_job(&fixture).await {
        stepwise.jobs().run_job(&body).await.unwrap();
        done(&fixture, &receipt).await;
        steps += 1;
        let row = fixture
            .table
            .get(&labeling_core::keys::checkpoint::key(&project, "INGEST"))
            .await
            .unwrap();
        let waiting = queued(&fixture).await;
        // The same message again, after the step it carried was committed.
        stepwise.jobs().run_job(&body).await.unwrap();
        if matches!(Job::from_body(&body), Ok(Job::ContinueIngest { .. })) {
            assert_eq!(queued(&fixture).await, waiting, "no second continuation");
            let again = fixture
                .table
                .get(&labeling_core::keys::checkpoint::key(&project, "INGEST"))
                .await
                .unwrap();
            assert_eq!(again, row, "the checkpoint is untouched");
        }
    }
    assert!(steps > 3, "the ingest took several messages: {steps}");
    assert_eq!(status(&fixture, &project).await, "running");
    assert_eq!(fixture.total_items(&project).await, 5_000);
    assert_eq!(
        batch_keys(&fixture, &project).await,
        vec![
            image_names(0..5_000)
                .map(|n| format!("set/{n}"))
                .collect::<Vec<_>>()
        ]
    );
}

#[tokio::test]
async fn a_run_killed_between_sending_its_continuation_and_committing_is_redone_by_its_redelivery()
{
    let (fixture, stepwise) = fixture("killed-step");
    add_files(&fixture, image_names(0..4_500));
    let project = create(&fixture, "killed").await;
    let checkpoint = labeling_core::keys::checkpoint::key(&project, "INGEST");
    // Step 0, then step 1, which is "killed": its continuation is sent, its commit undone.
    let (body, receipt) = next_job(&fixture).await.unwrap();
    stepwise.jobs().run_job(&body).await.unwrap();
    done(&fixture, &receipt).await;
    let (killed, _) = next_job(&fixture).await.unwrap();
    let before = fixture.table.get(&checkpoint).await.unwrap().unwrap();
    stepwise.jobs().run_job(&killed).await.unwrap();
    let mut left = before.clone();
    // What the dead run left: its claim on step 1, not yet expired.
    left.attrs.insert("claim".to_owned(), "dead-run".into());
    left.attrs.insert(
        "claim_until".to_owned(),
        (fixture.clock.now() + 15 * 60 * 1000).into(),
    );
    fixture.table.put(left, None).await.unwrap();

    // Its continuation comes early: it does not fail (failures lead to the dead-letter
    // queue) but comes back as a new message once the dead run's claim has expired.
    let (early, early_receipt) = next_job(&fixture).await.unwrap();
    stepwise.jobs().run_job(&early).await.unwrap();
    done(&fixture, &early_receipt).await;
    // The killed run's message comes back when the queue stops hiding it (minutes), before
    // its claim expires: it comes back later too, without failing.
    fixture.clock.advance(Duration::from_secs(5 * 60));
    let (again, again_receipt) = next_job(&fixture).await.unwrap();
    assert_eq!(again, killed);
    stepwise.jobs().run_job(&again).await.unwrap();
    done(&fixture, &again_receipt).await;
    assert_eq!(
        queued(&fixture).await,
        2,
        "both wait for the claim to expire"
    );
    fixture.clock.advance(Duration::from_secs(11 * 60));
    let (bodies, failures) = drain_with_retries(&fixture, &stepwise).await;
    assert_eq!(failures, 0, "nothing counts toward the dead-letter queue");
    assert!(bodies.contains(&killed), "the killed step ran again");
    assert_eq!(status(&fixture, &project).await, "running");
    assert_eq!(fixture.total_items(&project).await, 4_500);
    assert_eq!(
        batch_keys(&fixture, &project).await,
        vec![
            image_names(0..4_500)
                .map(|n| format!("set/{n}"))
                .collect::<Vec<_>>()
        ],
        "nothing written twice or skipped"
    );
}

#[tokio::test]
async fn a_refresh_too_long_for_one_run_continues_in_new_messages_to_the_same_batch() {
    let (fixture, stepwise) = fixture("long-refresh");
    add_files(&fixture, image_names(0..20_000));
    let reference = create(&fixture, "refresh-in-one-go").await;
    let project = create(&fixture, "refresh-step-by-step").await;
    drain_jobs(&fixture, &fixture.service).await;
    // New keys between the old ones, and old ones gone.
    add_files(
        &fixture,
        (0..20_000).step_by(3).map(|i| format!("img-{i:05}a.png")),
    );
    let removed: Vec<String> = image_names(0..20_000).step_by(29).collect();
    remove_files(&fixture, removed.clone());

    for id in [&reference, &project] {
        fixture
            .service
            .refreshes()
            .request_refresh(&fixture.admin, id)
            .await
            .unwrap();
        let service = if id == &reference {
            &fixture.service
        } else {
            &stepwise
        };
        let bodies = drain_jobs(&fixture, service).await;
        if id == &project {
            assert!(
                continuations(&bodies) >= 20,
                "one message a page: {}",
                bodies.len()
            );
        } else {
            assert_eq!(bodies.len(), 1);
        }
    }
    let (mut ours, mut theirs) = (
        manifest(&fixture, &project).await,
        manifest(&fixture, &reference).await,
    );
    assert_eq!(ours.removed, removed.len() as u64);
    assert_eq!(ours.last_refresh_added, 6_667);
    assert_eq!(ours.total, 26_667);
    ours.last_refresh_at = None;
    theirs.last_refresh_at = None;
    for batch in ours.batches.iter_mut().chain(theirs.batches.iter_mut()) {
        batch.tag = None;
    }
    assert_eq!(ours, theirs);
    assert_eq!(
        batch_keys(&fixture, &project).await,
        batch_keys(&fixture, &reference).await
    );
    assert_eq!(
        fixture.total_items(&project).await,
        fixture.total_items(&reference).await
    );
    assert_eq!(
        refresh_status(&fixture, &project).await,
        refresh_status(&fixture, &reference).await
    );
    assert!(!checkpoint_row(&fixture, &project, "REFRESH").await);
    assert!(
        fixture
            .table
            .get(&Key::new(format!("P#{project}"), "REFRESH"))
            .await
            .unwrap()
            .is_none(),
        "the refresh lease is given back"
    );
}

#[tokio::test]
async fn a_continuation_after_the_project_was_deleted_is_dropped() {
    let (fixture, stepwise) = fixture("deleted-mid-job");
    add_files(&fixture, image_names(0..3_000));
    let ingesting = create(&fixture, "deleted-while-ingesting").await;
    let (body, receipt) = next_job(&fixture).await.unwrap();
    stepwise.jobs().run_job(&body).await.unwrap();
    done(&fixture, &receipt).await;
    assert_eq!(queued(&fixture).await, 1, "a continuation waits");
    fixture
        .service
        .projects()
        .delete_project(&fixture.admin, &ingesting)
        .await
        .unwrap();
    let bodies = drain_jobs(&fixture, &stepwise).await;
    assert_eq!(
        bodies.len(),
        1,
        "the continuation ran once and sent nothing"
    );
    assert_eq!(status(&fixture, &ingesting).await, "deleted");

    let refreshing = create(&fixture, "deleted-while-refreshing").await;
    drain_jobs(&fixture, &fixture.service).await;
    add_files(&fixture, image_names(3_000..5_000));
    fixture
        .service
        .refreshes()
        .request_refresh(&fixture.admin, &refreshing)
        .await
        .unwrap();
    let (body, receipt) = next_job(&fixture).await.unwrap();
    stepwise.jobs().run_job(&body).await.unwrap();
    done(&fixture, &receipt).await;
    assert_eq!(queued(&fixture).await, 1, "a continuation waits");
    fixture
        .service
        .projects()
        .delete_project(&fixture.admin, &refreshing)
        .await
        .unwrap();
    let bodies = drain_jobs(&fixture, &stepwise).await;
    assert_eq!(
        bodies.len(),
        1,
        "the continuation ran once and sent nothing"
    );
    assert_eq!(manifest(&fixture, &refreshing).await.total, 3_000);
}

#[tokio::test]
async fn a_refresh_holds_a_chunk_a_batch_and_a_page_however_large_the_manifest() {
    let fixture = Direct::new("refresh-memory", |table| table);
    add_files(&fixture, image_names(0..30_000));
    let project = create(&fixture, "large").await;
    drain_jobs(&fixture, &fixture.service).await;
    add_files(
        &fixture,
        (0..30_000).step_by(30).map(|i| format!("img-{i:05}a.png")),
    );
    let memory = fixture.service.jobs().refresh_now(&project).await.unwrap();
    let manifest = manifest(&fixture, &project).await;
    assert_eq!(manifest.total, 31_000);
    // One batch of 30,000 keys (listed again with 1,000 more): a chunk of it, the new batch's
    // chunk (1,000 keys), a page and the merge's head.
    let bound = CHUNK_KEYS as usize + 1_000 + MAX_LIST_KEYS + 1;
    assert!(
        memory.most_keys_held <= bound,
        "held {} keys at once, more than {bound}",
        memory.most_keys_held
    );
    assert!(memory.most_keys_held < 30_000 / 2);
}

/// By hand: `cargo test -p labeling-tests --release --test blackbox long_jobs::measure -- --ignored
/// --nocapture`.
#[tokio::test]
#[ignore = "a measurement: 500,000 files take minutes to list"]
async fn measure_a_refresh_of_490_000_keys() {
    let fixture = Direct::new("refresh-500k", |table| table);
    add_files(
        &fixture,
        image_names(0..90_000).chain((0..400_000).map(|i| format!("more-{i:06}.png"))),
    );
    let project = create(&fixture, "huge").await;
    let started = std::time::Instant::now();
    drain_jobs(&fixture, &fixture.service).await;
    let ingest = started.elapsed();
    remove_files(&fixture, image_names(0..90_000).step_by(10));
    add_files(
        &fixture,
        (0..90_000).step_by(10).map(|i| format!("img-{i:05}b.png")),
    );
    let started = std::time::Instant::now();
    let memory = fixture.service.jobs().refresh_now(&project).await.unwrap();
    let refresh = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|line| line.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "ingest of 490,000 keys: {ingest:?}; refresh: {refresh:?}, most keys held {}; {peak}",
        memory.most_keys_held
    );
}

/// Runs every job on the emulator's queue with `service` (continuations arrive 2 s late, in
/// real time there); the bodies run.
async fn drain_sqs(local: &labeling_local::Local, service: &Service) -> Vec<String> {
    let queue = &service.config().jobs_queue;
    let mut bodies = Vec::new();
    loop {
        let received = local
            .queue
            .receive(queue, 1, Duration::from_secs(60), Duration::from_secs(5))
            .await
            .unwrap();
        let Some(message) = received.into_iter().next() else {
            return bodies;
        };
        service.jobs().run_job(&message.body).await.unwrap();
        local.queue.delete(queue, &message.receipt).await.unwrap();
        bodies.push(message.body);
        assert!(bodies.len() < 100, "the jobs never end");
    }
}

#[tokio::test]
async fn on_the_emulator_an_ingest_and_a_refresh_resume_from_second_messages() {
    use labeling_local::{Local, Options, Store};
    let moto = labeling_tests::MotoServer::start();
    let suffix = labeling_testkit::unique("l")
        .to_lowercase()
        .replace('_', "-");
    let suffix = suffix[suffix.len().saturating_sub(24)..]
        .trim_start_matches('-')
        .to_owned();
    let clock = std::sync::Arc::new(labeling_testkit::FakeClock::default());
    let dir = std::env::temp_dir().join(format!("labeling-long-{suffix}"));
    let mut options = Options::new(&dir);
    options.clock = clock.clone();
    options.store = Store::Aws {
        settings: labeling_aws::AwsSettings {
            table: format!("long-{suffix}"),
            bucket: format!("long-{suffix}"),
            jobs_queue: format!("long-{suffix}"),
            region: "us-east-1".to_owned(),
            endpoint: Some(moto.endpoint.clone()),
        },
        create_resources: true,
    };
    let local = Local::open(options).await.unwrap();
    let stepwise = Service::new(
        local.table.clone(),
        local.blobs.clone(),
        local.queue.clone(),
        clock.clone(),
        ServiceConfig {
            job_time_budget: Duration::ZERO,
            ..local.service.config().clone()
        },
    );
    let bucket = format!("long-{suffix}");
    let put = |names: Vec<String>| {
        let blobs = local.blobs.clone();
        let bucket = bucket.clone();
        async move {
            let puts = names.into_iter().map(|name| {
                let blobs = blobs.clone();
                let bucket = bucket.clone();
                async move {
                    blobs
                        .put(&bucket, &format!("imgs/{name}"), Vec::new(), "image/png")
                        .await
                }
            });
            let results: Vec<_> = futures::StreamExt::collect(
                futures::StreamExt::buffer_unordered(futures::stream::iter(puts), 16),
            )
            .await;
            results.into_iter().for_each(|r| r.unwrap());
        }
    };
    put(image_names(0..2_500).collect()).await;
    let admin = labeling_core::Actor::admin("admin");
    let project = local
        .service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: "long-on-aws".to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["cat".to_owned()],
                source: format!("s3://{bucket}/imgs/**"),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let bodies = drain_sqs(&local, &stepwise).await;
    assert_eq!(bodies.len(), 3, "a message a page of 1,000 keys");
    let dashboard = |id: String| {
        let service = local.service.clone();
        let admin = admin.clone();
        async move {
            service
                .dashboard()
                .dashboard(&admin, &id)
                .await
                .unwrap()
                .total_items
        }
    };
    assert_eq!(dashboard(project.clone()).await, 2_500);

    put((0..2_500)
        .step_by(2)
        .map(|i| format!("img-{i:05}a.png"))
        .collect())
    .await;
    local
        .service
        .refreshes()
        .request_refresh(&admin, &project)
        .await
        .unwrap();
    let bodies = drain_sqs(&local, &stepwise).await;
    assert_eq!(bodies.len(), 4, "a message a page of 1,000 keys");
    assert_eq!(dashboard(project.clone()).await, 3_750);
    let _ = std::fs::remove_dir_all(dir);
}

/// Paused projects are refreshed (their labelers wait, their source does not), so a refresh
/// paused mid-way finishes rather than being dropped.
#[tokio::test]
async fn a_refresh_continuation_after_the_project_was_paused_still_finishes() {
    let (fixture, stepwise) = fixture("paused-mid-refresh");
    add_files(&fixture, image_names(0..2_000));
    let project = create(&fixture, "paused-while-refreshing").await;
    drain_jobs(&fixture, &fixture.service).await;
    add_files(&fixture, image_names(2_000..3_500));
    fixture
        .service
        .refreshes()
        .request_refresh(&fixture.admin, &project)
        .await
        .unwrap();
    let (body, receipt) = next_job(&fixture).await.unwrap();
    stepwise.jobs().run_job(&body).await.unwrap();
    done(&fixture, &receipt).await;
    fixture
        .service
        .projects()
        .pause_project(&fixture.admin, &project)
        .await
        .unwrap();
    let bodies = drain_jobs(&fixture, &stepwise).await;
    assert_eq!(continuations(&bodies), 3);
    assert_eq!(status(&fixture, &project).await, "paused");
    assert_eq!(manifest(&fixture, &project).await.total, 3_500);
}
