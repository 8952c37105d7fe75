//! Jobs that get stuck: a process killed mid-job (its jobs run again at once on the next start,
//! the parts of its uploads go), an ingest that keeps failing (the project ends `failed` with
//! the reason instead of `initializing` for ever) and the retry of a failed project.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use labeling_core::Actor;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::ports::{Clock, Key, Queue, Table, Update};
use labeling_core::usecases::export::ExportInput;
use labeling_core::usecases::projects::ProjectError;
use labeling_embedded::SqliteTable;
use labeling_local::{Local, Options, run_worker};
use labeling_testkit::FakeClock;
use labeling_tests::direct::Direct;
use labeling_tests::{Patience, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

/// How long a job hides from other workers while one runs it (the local worker's timeout).
const VISIBILITY: Duration = Duration::from_secs(300);

async fn open(dir: &Path, clock: &Arc<FakeClock>) -> Local {
    let mut options = Options::new(dir);
    options.admin_token = Some("admin-token".to_owned());
    options.clock = clock.clone();
    Local::open(options).await.unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(labeling_testkit::unique(name))
}

/// Creates a project over three images in `photos/set/`; its ingest job waits on the queue.
async fn project_waiting_for_ingest(local: &Local) -> String {
    let png = labeling_tests::png(8, 8, 1);
    for index in 0..3 {
        local
            .blobs
            .put(
                "photos",
                &format!("set/img-{index}.png"),
                png.clone(),
                "image/png",
            )
            .await
            .unwrap();
    }
    local
        .service
        .projects()
        .create_project(
            &Actor::admin("admin"),
            NewProjectInput {
                name: labeling_testkit::unique("recovery"),
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

/// Waits, in real time and without moving the fake clock, until `done` holds: whatever ran
/// did so before any visibility timeout could have run out.
async fn promptly<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(local: &Local, project: &str) -> String {
    local
        .service
        .projects()
        .get_project(&Actor::admin("admin"), project)
        .await
        .unwrap()
        .status
        .to_owned()
}

#[tokio::test]
async fn a_job_in_flight_when_the_process_was_killed_runs_again_at_once_on_the_next_start() {
    let dir = fresh_dir("killed-ingest");
    let clock = Arc::new(FakeClock::default());
    let local = open(&dir, &clock).await;
    let project = project_waiting_for_ingest(&local).await;
    // The worker of the process took the job, then the process was killed (kill -9): the job
    // is in flight, hidden for the whole visibility timeout, and nobody will finish it.
    let jobs = local.service.config().jobs_queue.clone();
    let taken = local
        .queue
        .receive(&jobs, 10, VISIBILITY, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    drop(local);

    let started_at = clock.now();
    let local = open(&dir, &clock).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(
        local.service.clone(),
        local.queue.clone(),
        stopped,
    ));
    promptly("the ingest of the killed process", || async {
        status(&local, &project).await == "running"
    })
    .await;
    assert_eq!(clock.now(), started_at, "no time had to pass");
    let _ = stop.send(true);
    worker.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_export_killed_mid_way_runs_again_at_once_and_its_parts_are_removed() {
    let dir = fresh_dir("killed-export");
    let clock = Arc::new(FakeClock::default());
    let local = open(&dir, &clock).await;
    let admin = Actor::admin("admin");
    let project = project_waiting_for_ingest(&local).await;
    local.service.jobs().ingest_now(&project).await.unwrap();
    let jobs = local.service.config().jobs_queue.clone();
    for message in local
        .queue
        .receive(&jobs, 10, VISIBILITY, Duration::ZERO)
        .await
        .unwrap()
    {
        local.queue.delete(&jobs, &message.receipt).await.unwrap();
    }
    let export = local
        .service
        .exports()
        .start_export(
            &admin,
            &project,
            ExportInput {
                format: Some("coco".to_owned()),
                include_unlabeled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The export's run had taken its job and written a part when the process was killed.
    let taken = local
        .queue
        .receive(&jobs, 10, VISIBILITY, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let system = local.service.config().system_bucket.clone();
    let upload = local
        .blobs
        .start_multipart(&system, "export/dead.jsonl", "application/jsonl")
        .await
        .unwrap();
    local
        .blobs
        .upload_part(&system, "export/dead.jsonl", &upload, 1, vec![7; 1024])
        .await
        .unwrap();
    let uploads = dir.join("multipart");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    drop(local);

    let local = open(&dir, &clock).await;
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        0,
        "the dead run's parts are gone"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(
        local.service.clone(),
        local.queue.clone(),
        stopped,
    ));
    promptly("the export of the killed process", || async {
        let view = local
            .service
            .exports()
            .get_export(&admin, &project, &export.id)
            .await
            .unwrap();
        serde_json::to_value(view.status).unwrap() == "succeeded"
    })
    .await;
    let view = local
        .service
        .exports()
        .get_export(&admin, &project, &export.id)
        .await
        .unwrap();
    assert_eq!(view.progress.items_written, 3);
    let _ = stop.send(true);
    worker.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Puts a file where the project's manifest folder must go: every ingest fails to write it.
fn block_manifests(fixture: &Direct<SqliteTable>) -> PathBuf {
    let manifests = fixture
        .dir
        .join("buckets")
        .join(&fixture.config.system_bucket)
        .join("manifests");
    std::fs::write(&manifests, b"in the way").unwrap();
    manifests
}

async fn create(fixture: &Direct<SqliteTable>) -> String {
    fixture
        .service
        .projects()
        .create_project(
            &fixture.admin,
            NewProjectInput {
                name: labeling_testkit::unique("failing"),
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

async fn view(
    fixture: &Direct<SqliteTable>,
    project: &str,
) -> labeling_core::usecases::projects::ProjectView {
    fixture
        .service
        .projects()
        .get_project(&fixture.admin, project)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_ingest_that_keeps_failing_moves_the_project_to_failed_with_the_reason() {
    let fixture = Direct::new("ingest-failing", |table| table);
    fixture.add_images("img", 3).await;
    let blocker = block_manifests(&fixture);
    let project = create(&fixture).await;
    for attempt in 1..labeling_core::jobs::MAX_JOB_ATTEMPTS {
        assert!(fixture.run_next_job().await.is_err(), "try {attempt} fails");
        let shown = view(&fixture, &project).await;
        assert_eq!(shown.status, "initializing", "try {attempt}");
        fixture.clock.advance(Duration::from_secs(31));
    }
    fixture.run_next_job().await.unwrap();
    let shown = view(&fixture, &project).await;
    assert_eq!(shown.status, "failed");
    let failure = shown.failure.unwrap_or_default();
    assert!(failure.contains("gave up after 4 tries"), "{failure}");
    assert!(
        failure.contains("os error"),
        "the cause is named: {failure}"
    );
    assert!(
        failure.contains("Refresh the project"),
        "says what to do: {failure}"
    );
    assert_eq!(
        fixture
            .queue
            .depth(&fixture.config.jobs_queue)
            .await
            .unwrap(),
        0,
        "the job is done with, not dead-lettered"
    );

    // The cause fixed, a retry lists the source afresh.
    std::fs::remove_file(blocker).unwrap();
    let retried = fixture
        .service
        .projects()
        .retry_project(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(retried.status, "initializing");
    assert!(retried.failure.is_none());
    fixture.run_next_job().await.unwrap();
    assert_eq!(view(&fixture, &project).await.status, "running");
    assert_eq!(fixture.total_items(&project).await, 3);
    assert!(matches!(
        fixture
            .service
            .projects()
            .retry_project(&fixture.admin, &project)
            .await,
        Err(ProjectError::WrongStatus { .. })
    ));
}

#[tokio::test]
async fn an_ingest_whose_runs_keep_dying_fails_the_project_before_the_queue_gives_up() {
    let fixture = Direct::new("ingest-dying", |table| table);
    fixture.add_images("img", 3).await;
    let project = create(&fixture).await;
    // What four runs that died mid-way (kill -9, a Lambda timeout) leave behind.
    fixture
        .table
        .update(
            &Key::new(format!("P#{project}"), "META"),
            Update::default().set("ingest_attempts", labeling_core::jobs::MAX_JOB_ATTEMPTS),
            None,
        )
        .await
        .unwrap();
    fixture.run_next_job().await.unwrap();
    let shown = view(&fixture, &project).await;
    assert_eq!(shown.status, "failed");
    let failure = shown.failure.unwrap_or_default();
    assert!(
        failure.contains("stopped without finishing 4 times"),
        "{failure}"
    );
    // A retry starts the count again.
    fixture
        .service
        .projects()
        .retry_project(&fixture.admin, &project)
        .await
        .unwrap();
    fixture.run_next_job().await.unwrap();
    assert_eq!(view(&fixture, &project).await.status, "running");
}

#[tokio::test]
async fn a_retry_of_a_project_that_had_items_adds_only_what_is_new() {
    let fixture = Direct::new("retry-listed", |table| table);
    fixture.add_images("img", 3).await;
    let project = fixture
        .project("listed", "image_classification_multiclass", &["cat"])
        .await;
    // A project that failed after its first listing finished.
    fixture
        .table
        .update(
            &Key::new(format!("P#{project}"), "META"),
            Update::default()
                .set("status", "failed")
                .set("failure", "something broke"),
            None,
        )
        .await
        .unwrap();
    fixture.add_images("new", 1).await;
    let retried = fixture
        .service
        .projects()
        .retry_project(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(retried.status, "running");
    fixture.run_next_job().await.unwrap();
    assert_eq!(fixture.total_items(&project).await, 4);
    let keys = fixture.drain(&project).await;
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (4, 4), "{keys:?}");
}

#[tokio::test]
async fn a_failed_project_is_retried_by_an_admins_refresh() {
    let app = spawn_app().await;
    let bucket = app.bucket(&format!(
        "late{}",
        labeling_testkit::unique("b")
            .replace(['-', '_'], "")
            .to_lowercase()
    ));
    let bucket = &bucket[..bucket.len().min(40)];
    let reply = app
        .post(
            "/projects",
            &app.admin,
            json!({
                "name": labeling_testkit::unique("late bucket"),
                "task_type": "image_classification_multiclass",
                "labels": ["cat"],
                "source": format!("s3://{bucket}/set/**"),
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let failed = app.wait_for_status(&id, "failed").await;
    assert!(
        failed["failure"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{failed}"
    );
    let labeler = app.user("lee", "labeler").await;
    let refused = app
        .post(&format!("/projects/{id}/refresh"), &labeler, json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");

    app.images(bucket, "set", 2, 16, 16).await;
    let retried = app
        .post(&format!("/projects/{id}/refresh"), &app.admin, json!({}))
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{retried:?}");
    let shown = app.get(&format!("/projects/{id}"), &app.admin).await.body;
    assert!(shown["failure"].is_null(), "{shown}");
    app.wait_for_status(&id, "running").await;
    let mut patience = Patience::new();
    while app.dashboard(&id).await["total_items"] != 2 {
        assert!(patience.wait(&app.clock).await, "the items never showed");
    }
}
