//! Exports that outgrow one run: with a job time budget of zero every run makes one step, saves
//! a checkpoint and continues in a new message, and the file is byte for byte the one an
//! uninterrupted run writes; duplicated messages, a run killed between sending its continuation
//! and recording it, and a run that fails mid-way all end in that same file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::domain::labeling::{AnnotationInput, SubmittedItemInput};
use labeling_core::ports::{
    Blobs, Condition, Item, Key, Page, Query, Queue, Table, TableError, Update, Write,
};
use labeling_core::usecases::export::{ExportInput, ExportView};
use labeling_core::{Service, ServiceConfig};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

/// The embedded table, counting queries of item records, failing one of them on demand, and
/// able to "kill" a run at the write that records its continuation.
struct Faults {
    inner: SqliteTable,
    item_queries: AtomicUsize,
    /// The item query (counted from 1) that fails, once; 0 for none.
    fail_item_query: AtomicUsize,
    /// Whether the next write recording a continuation kills the run: from there on, no
    /// write of an export record goes through until `dead` is cleared.
    kill_at_continuation: AtomicBool,
    dead: AtomicBool,
}

impl Faults {
    fn new(inner: SqliteTable) -> Self {
        Self {
            inner,
            item_queries: AtomicUsize::new(0),
            fail_item_query: AtomicUsize::new(0),
            kill_at_continuation: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        }
    }
}

fn unavailable() -> TableError {
    TableError::Unavailable("staged failure".into())
}

#[async_trait]
impl Table for Faults {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        if item.key.sk.starts_with("RUN#EXPORT#") {
            // A continuation is recorded by a write that lets go of the export mid-way.
            let letting_go = matches!(condition, Some(Condition::Equals(ref name, _)) if name == "holder")
                && !item.attrs.contains_key("holder")
                && item.attrs.get("status").and_then(|s| s.as_str()) == Some("running")
                && item.attrs.get("error").is_none_or(|e| e.is_null());
            if letting_go && self.kill_at_continuation.swap(false, Ordering::SeqCst) {
                self.dead.store(true, Ordering::SeqCst);
            }
            if self.dead.load(Ordering::SeqCst) {
                return Err(unavailable());
            }
        }
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        if key.sk.starts_with("RUN#EXPORT#") && self.dead.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        if matches!(&query.range, labeling_core::ports::SkRange::BeginsWith(prefix) if prefix == "ITEM#")
        {
            let count = self.item_queries.fetch_add(1, Ordering::SeqCst) + 1;
            if count == self.fail_item_query.load(Ordering::SeqCst) {
                return Err(unavailable());
            }
        }
        self.inner.query(query).await
    }
}

type Fixture = Direct<Faults>;

fn fixture(name: &str) -> Fixture {
    Direct::new(name, Faults::new)
}

/// The fixture's adapters under a service whose job time budget is zero: one step a message.
fn one_step_a_message(fixture: &Fixture) -> Service {
    Service::new(
        fixture.table.clone(),
        fixture.blobs.clone(),
        fixture.queue.clone(),
        fixture.clock.clone(),
        ServiceConfig {
            job_time_budget: Duration::ZERO,
            ..fixture.config.clone()
        },
    )
}

async fn start(
    fixture: &Fixture,
    service: &Service,
    project: &str,
    format: &str,
    include_unlabeled: bool,
) -> ExportView {
    service
        .exports()
        .start_export(
            &fixture.admin,
            project,
            ExportInput {
                format: Some(format.to_owned()),
                include_unlabeled: Some(include_unlabeled),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// Runs queued jobs on `service` until none is due; how many messages ran. `before_each` sees
/// each message's body before it runs.
async fn run_due_jobs(
    fixture: &Fixture,
    service: &Service,
    mut before_each: impl AsyncFnMut(&str),
) -> usize {
    let jobs = &fixture.config.jobs_queue;
    let mut ran = 0;
    loop {
        let received = fixture
            .queue
            .receive(jobs, 1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let Some(message) = received.first() else {
            return ran;
        };
        before_each(&message.body).await;
        service.jobs().run_job(&message.body).await.unwrap();
        fixture.queue.delete(jobs, &message.receipt).await.unwrap();
        ran += 1;
    }
}

async fn view(fixture: &Fixture, project: &str, export_id: &str) -> ExportView {
    fixture
        .service
        .exports()
        .get_export(&fixture.admin, project, export_id)
        .await
        .unwrap()
}

/// A finished export's bytes, with its own id replaced by `X` (COCO's `info` names it), so
/// two exports of one snapshot compare byte for byte.
async fn bytes_of(fixture: &Fixture, project: &str, export_id: &str) -> Vec<u8> {
    let shown = view(fixture, project, export_id).await;
    assert_eq!(
        serde_json::to_value(shown.status).unwrap(),
        "succeeded",
        "{shown:?}"
    );
    let (bucket, key) = shown
        .location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap();
    let bytes = fixture.blobs.get(bucket, key, None).await.unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .replace(export_id, "X")
        .into_bytes()
}

/// Asserts two files are the same bytes; tells where they part, not every byte.
#[track_caller]
fn assert_same_bytes(continued: &[u8], uninterrupted: &[u8]) {
    if continued == uninterrupted {
        return;
    }
    let at = continued
        .iter()
        .zip(uninterrupted)
        .position(|(a, b)| a != b)
        .unwrap_or(continued.len().min(uninterrupted.len()));
    let around = |bytes: &[u8]| {
        String::from_utf8_lossy(&bytes[at.saturating_sub(80)..(at + 80).min(bytes.len())])
            .into_owned()
    };
    panic!(
        "the continued export ({} bytes) differs from the uninterrupted one ({} bytes) at byte {at}:\n{}\n---\n{}",
        continued.len(),
        uninterrupted.len(),
        around(continued),
        around(uninterrupted)
    );
}

/// The same export run in one go by the fixture's own service (a budget of minutes).
async fn uninterrupted(fixture: &Fixture, project: &str, format: &str, unlabeled: bool) -> Vec<u8> {
    let export = start(fixture, &fixture.service, project, format, unlabeled).await;
    assert_eq!(
        run_due_jobs(fixture, &fixture.service, async |_| {}).await,
        1,
        "one message does it all"
    );
    bytes_of(fixture, project, &export.id).await
}

fn a_box(index: usize) -> AnnotationInput {
    let step = index as f64;
    AnnotationInput {
        label: "cell".to_owned(),
        bbox: Some(vec![
            0.5 + (step * 0.003_141_592_653).rem_euclid(3.0),
            0.5 + (step * 0.002_718_281_828).rem_euclid(3.0),
            1.123_456_789_012_3,
            2.718_281_9,
        ]),
        ..Default::default()
    }
}

/// A detection project over `images` images, the first `labeled` of which hold one box each.
async fn detection_project(fixture: &Fixture, name: &str, images: usize, labeled: usize) -> String {
    fixture.add_images("img", images).await;
    let project = fixture.project(name, "object_detection", &["cell"]).await;
    let mut left = labeled;
    while left > 0 {
        let task = fixture
            .service
            .labeling()
            .checkout(&fixture.admin, &project)
            .await
            .unwrap()
            .unwrap();
        let items = task
            .items
            .iter()
            .map(|i| SubmittedItemInput {
                item_id: Some(i.item_id),
                annotations: Some(vec![a_box(i.item_id as usize)]),
                ..Default::default()
            })
            .collect();
        left = left.saturating_sub(task.items.len());
        fixture
            .service
            .labeling()
            .submit(
                &fixture.admin,
                &project,
                &task.task_id,
                labeling_core::domain::labeling::SubmissionInput { items },
            )
            .await
            .unwrap();
    }
    project
}

/// Runs pycocotools (every configured version) over the file, as the other export tests do.
fn judge_boxes(path: &std::path::Path) -> Vec<serde_json::Value> {
    let pythons = std::env::var("LABELING_COCO_PYTHONS").unwrap_or_default();
    let judges: Vec<&str> = pythons.split(':').filter(|p| !p.is_empty()).collect();
    assert!(
        !judges.is_empty(),
        "LABELING_COCO_PYTHONS is not set: run ./infra/test.sh, or eval \"$(./infra/python-env.sh)\" first"
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/coco_check.py");
    judges
        .iter()
        .map(|python| {
            let output = std::process::Command::new(python)
                .arg(&script)
                .arg(path)
                .arg("bbox")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{python}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_slice(&output.stdout).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_coco_export_of_every_image_continues_through_several_messages_into_the_same_file() {
    let fixture = fixture("continued-coco");
    let project = detection_project(&fixture, "continued-coco", 2_100, 40).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "coco", true).await;
    let mut progress = Vec::new();
    let messages = run_due_jobs(&fixture, &stepwise, async |_| {
        progress.push(
            view(&fixture, &project, &export.id)
                .await
                .progress
                .items_written,
        );
    })
    .await;
    // Images 0-999 (with the header), 1,000-1,999, 2,000-2,099, then the annotations (one
    // page) with the categories, and the upload completed.
    assert_eq!(messages, 4, "one step a message");
    assert_eq!(
        progress,
        [0, 1_000, 2_000, 2_100],
        "progress moved run by run"
    );
    let continued = bytes_of(&fixture, &project, &export.id).await;
    assert_same_bytes(
        &continued,
        &uninterrupted(&fixture, &project, "coco", true).await,
    );
    let coco: serde_json::Value = serde_json::from_slice(&continued).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 2_100);
    assert!(coco["annotations"].as_array().unwrap().len() >= 40);
    let path = fixture.dir.join("continued.json");
    std::fs::write(&path, &continued).unwrap();
    for report in judge_boxes(&path) {
        assert_eq!(report["images"], 2_100, "{report}");
        assert_eq!(report["bbox_ap"], 1.0, "{report}");
    }
}

/// A project whose item records are about 100 KB each (1,000 boxes at coordinates that print
/// long), so a query page (1 MB) holds about ten and the JSON Lines file takes two parts.
async fn heavy_project(fixture: &Fixture, items: usize) -> String {
    fixture.add_images("img", items).await;
    let project = fixture
        .project("heavy", "object_detection", &["cell"])
        .await;
    let boxes: Vec<AnnotationInput> = (0..1_000).map(a_box).collect();
    fixture
        .drain_with(&project, |_| SubmittedItemInput {
            annotations: Some(boxes.clone()),
            ..Default::default()
        })
        .await;
    project
}

#[tokio::test]
async fn a_json_lines_export_continues_through_several_messages_into_the_same_file() {
    let fixture = fixture("continued-jsonl");
    let project = heavy_project(&fixture, 100).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "jsonl", true).await;
    let messages = run_due_jobs(&fixture, &stepwise, async |_| {}).await;
    let continued = bytes_of(&fixture, &project, &export.id).await;
    assert!(
        continued.len() > 8 << 20,
        "a part boundary falls mid-way: {} bytes",
        continued.len()
    );
    assert!(messages >= 8, "one page of records a message: {messages}");
    assert_same_bytes(
        &continued,
        &uninterrupted(&fixture, &project, "jsonl", true).await,
    );
    assert_eq!(
        view(&fixture, &project, &export.id)
            .await
            .progress
            .items_written,
        100
    );
}

#[tokio::test]
async fn a_duplicated_continuation_changes_nothing() {
    let fixture = fixture("duplicated");
    let project = detection_project(&fixture, "duplicated", 2_100, 20).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "coco", true).await;
    // Every message is delivered twice: the copy runs after the original has continued.
    let jobs = fixture.config.jobs_queue.clone();
    let mut copies = 0;
    let messages = run_due_jobs(&fixture, &stepwise, async |body| {
        if !body.contains("\"copy\"") {
            let copy = body.replacen('{', "{\"copy\":true,", 1);
            fixture
                .queue
                .send(&jobs, &copy, Duration::ZERO)
                .await
                .unwrap();
            copies += 1;
        }
    })
    .await;
    assert_eq!(messages, 2 * copies, "every copy ran");
    assert_eq!(copies, 4, "the copies made no continuations of their own");
    assert_same_bytes(
        &bytes_of(&fixture, &project, &export.id).await,
        &uninterrupted(&fixture, &project, "coco", true).await,
    );
    assert!(view(&fixture, &project, &export.id).await.error.is_none());
}

#[tokio::test]
async fn a_run_killed_after_sending_its_continuation_is_taken_over_once_its_hold_lapses() {
    let fixture = fixture("killed-continuation");
    let project = detection_project(&fixture, "killed", 2_100, 20).await;
    // The file one run writes, at the same snapshot instant (the clock moves below).
    let expected = uninterrupted(&fixture, &project, "coco", true).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "coco", true).await;
    let jobs = fixture.config.jobs_queue.clone();
    // The first run sends its continuation and dies before recording it.
    fixture
        .table
        .kill_at_continuation
        .store(true, Ordering::SeqCst);
    let first = fixture
        .queue
        .receive(&jobs, 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    assert!(stepwise.jobs().run_job(&first.body).await.is_err());
    fixture.table.dead.store(false, Ordering::SeqCst);
    // Its continuation finds the export still held: it waits, it does not run beside it.
    assert_eq!(run_due_jobs(&fixture, &stepwise, async |_| {}).await, 1);
    assert_eq!(
        fixture.queue.depth(&jobs).await.unwrap(),
        2,
        "waiting: the continuation and the dead run's message"
    );
    // Once the dead run's hold lapses, the continuation takes over from the last checkpoint
    // and the dead run's own message, redelivered, is stale.
    fixture.clock.advance(Duration::from_secs(6 * 60));
    run_due_jobs(&fixture, &stepwise, async |_| {}).await;
    let shown = view(&fixture, &project, &export.id).await;
    assert_eq!(fixture.queue.depth(&jobs).await.unwrap(), 0);
    assert_same_bytes(&bytes_of(&fixture, &project, &export.id).await, &expected);
    assert!(
        shown.error.is_none(),
        "a success clears the dead run's error: {shown:?}"
    );
}

#[tokio::test]
async fn a_run_that_fails_mid_way_resumes_from_its_checkpoint() {
    let fixture = fixture("resumed");
    let project = heavy_project(&fixture, 150).await;
    let whole = {
        let before = fixture.table.item_queries.load(Ordering::SeqCst);
        let bytes = uninterrupted(&fixture, &project, "jsonl", false).await;
        (
            fixture.table.item_queries.load(Ordering::SeqCst) - before,
            bytes,
        )
    };
    let (queries_in_one_go, expected) = whole;
    assert!(queries_in_one_go >= 10, "{queries_in_one_go} pages");
    assert!(expected.len() > 12 << 20, "{} bytes", expected.len());
    let export = start(&fixture, &fixture.service, &project, "jsonl", false).await;
    // The run fails reading its last page, well after the first part (8 MiB, about 80
    // records) is up.
    let fail_at = fixture.table.item_queries.load(Ordering::SeqCst) + queries_in_one_go;
    fixture
        .table
        .fail_item_query
        .store(fail_at, Ordering::SeqCst);
    assert!(fixture.run_next_job().await.is_err());
    let shown = view(&fixture, &project, &export.id).await;
    assert!(
        shown
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("try 1 of 4; retrying"),
        "{shown:?}"
    );
    assert!(shown.progress.items_written > 0, "{shown:?}");
    fixture.clock.advance(Duration::from_secs(31));
    let before = fixture.table.item_queries.load(Ordering::SeqCst);
    fixture.run_next_job().await.unwrap();
    let queries_of_the_retry = fixture.table.item_queries.load(Ordering::SeqCst) - before;
    assert!(
        queries_of_the_retry <= queries_in_one_go / 2,
        "the retry read {queries_of_the_retry} of {queries_in_one_go} pages: it started over"
    );
    assert_same_bytes(&bytes_of(&fixture, &project, &export.id).await, &expected);
}

#[tokio::test]
async fn an_export_whose_upload_is_gone_between_runs_starts_over_once() {
    let fixture = fixture("upload-gone");
    let project = detection_project(&fixture, "gone", 2_100, 20).await;
    let expected = uninterrupted(&fixture, &project, "coco", true).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "coco", true).await;
    let mut ran = 0;
    run_due_jobs(&fixture, &stepwise, async |_| {
        ran += 1;
        if ran == 2 {
            // What a restart of the local server does to the uploads it finds.
            for upload in std::fs::read_dir(fixture.dir.join("multipart")).unwrap() {
                let path = upload.unwrap().path();
                if path.is_dir() {
                    std::fs::remove_dir_all(path).unwrap();
                } else {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
    })
    .await;
    assert_same_bytes(&bytes_of(&fixture, &project, &export.id).await, &expected);
}

/// The realistic size, measured by hand (`cargo test -p labeling-tests --test blackbox
/// export_continuations::measure -- --ignored --nocapture`): a COCO export with `include_unlabeled` of
/// 100,000 images in one step a message; prints the messages, the time and the peak memory.
#[tokio::test]
#[ignore = "a measurement: minutes of work"]
async fn measure_an_export_of_100_000_images_in_continuations() {
    const IMAGES: usize = 100_000;
    let fixture = fixture("measure-100k");
    let project = detection_project(&fixture, "measure", IMAGES, 1_000).await;
    let stepwise = one_step_a_message(&fixture);
    let export = start(&fixture, &stepwise, &project, "coco", true).await;
    let started = std::time::Instant::now();
    let messages = run_due_jobs(&fixture, &stepwise, async |_| {}).await;
    let elapsed = started.elapsed();
    let continued = bytes_of(&fixture, &project, &export.id).await;
    let coco: serde_json::Value = serde_json::from_slice(&continued).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), IMAGES);
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown")
        .to_owned();
    println!(
        "{IMAGES} images, {} annotations, {} bytes, {messages} messages in {elapsed:?} ({peak})",
        coco["annotations"].as_array().unwrap().len(),
        continued.len()
    );
}
