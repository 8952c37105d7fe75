//! ML runs under faults, on the service without HTTP so each job is run by the test: a run
//! interrupted in each stage (the backbone failing mid-featurization, the training's commit
//! lost, the inference dying between pages) is retried and ends exactly as an uninterrupted
//! run of a twin project; bad images are skipped with their reasons and never stop a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::domain::ml_settings::{CustomBackbone, MlAssistInput};
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::keys;
use labeling_core::ports::{
    Backbone, Blobs, Condition, Embedder, EmbedderError, ImageRejected, Item, Key, Page, Query,
    Table, TableError, Update, Write,
};
use labeling_embedded::SqliteTable;
use labeling_local::ml_setup::MlBackbone;
use labeling_ml::{BackboneSpec, OnnxBackboneLoader, OnnxEmbedder};
use labeling_tests::direct::Direct;
use serde_json::Value;

/// The embedded table, losing the training's commit or an inference page when asked.
struct Faulty {
    inner: SqliteTable,
    fail_model_commit: AtomicBool,
    /// Fails the n-th next transaction that queues a waiting task (0: off).
    fail_page: AtomicUsize,
    failures: AtomicUsize,
}

impl Faulty {
    fn injected(&self, what: &str) -> TableError {
        self.failures.fetch_add(1, Ordering::SeqCst);
        TableError::Unavailable(format!("injected: the worker died {what}").into())
    }
}

#[async_trait]
impl Table for Faulty {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        let commits_model = item.key.sk == "ML"
            && item.attrs.get("model_run").is_some_and(Value::is_string)
            && item.attrs.get("active_run").is_some_and(Value::is_string);
        if commits_model && self.fail_model_commit.swap(false, Ordering::SeqCst) {
            return Err(self.injected("before the trained model was committed"));
        }
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
        if writes.iter().any(|w| w.key().sk.starts_with("A#")) {
            let left = self.fail_page.load(Ordering::SeqCst);
            if left == 1 {
                self.fail_page.store(0, Ordering::SeqCst);
                return Err(self.injected("between two pages of prelabeled tasks"));
            } else if left > 1 {
                self.fail_page.store(left - 1, Ordering::SeqCst);
            }
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

/// The real backbone, failing its n-th next call when asked.
struct FaultyEmbedder {
    inner: OnnxEmbedder,
    fail_call: AtomicUsize,
    failures: AtomicUsize,
}

#[async_trait]
impl Embedder for FaultyEmbedder {
    fn backbone(&self) -> &Backbone {
        self.inner.backbone()
    }
    async fn embed(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError> {
        let left = self.fail_call.load(Ordering::SeqCst);
        if left == 1 {
            self.fail_call.store(0, Ordering::SeqCst);
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(EmbedderError(
                "injected: the worker died mid-featurization".into(),
            ));
        } else if left > 1 {
            self.fail_call.store(left - 1, Ordering::SeqCst);
        }
        self.inner.embed(images).await
    }
}

fn faulty_fixture(name: &str) -> (Direct<Faulty>, Arc<FaultyEmbedder>) {
    let fixture = Direct::new(name, |inner| Faulty {
        inner,
        fail_model_commit: AtomicBool::new(false),
        fail_page: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
    });
    let MlBackbone::Files { dylib, model, .. } = labeling_tests::ml::backbone() else {
        unreachable!()
    };
    let embedder = Arc::new(FaultyEmbedder {
        inner: OnnxEmbedder::open(&dylib, &model, BackboneSpec::efficientnet_lite0()).unwrap(),
        fail_call: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
    });
    fixture
        .service
        .set_embedder(Ok(embedder.clone() as Arc<dyn Embedder>));
    fixture
        .service
        .set_backbone_loader(Arc::new(OnnxBackboneLoader::new(dylib)));
    (fixture, embedder)
}

/// The first `count` digits as `set/<name>` in the bucket `photos` (the fixture's source):
/// their folder and true classes.
async fn put_digits(
    fixture: &Direct<Faulty>,
    count: usize,
) -> (std::path::PathBuf, Vec<(String, String)>) {
    let (dir, listed) = labeling_tests::ml::digits(count);
    for (name, _) in &listed {
        fixture
            .blobs
            .put(
                "photos",
                &format!("set/{name}"),
                std::fs::read(dir.join(name)).unwrap(),
                "image/png",
            )
            .await
            .unwrap();
    }
    (dir, listed)
}

/// Starts a run of `project` now and runs the jobs until none is left: how many failed, and
/// the runs page after.
async fn run_now(
    fixture: &Direct<Faulty>,
    project: &str,
) -> (usize, labeling_core::usecases::ml::MlView) {
    fixture
        .service
        .ml()
        .start_run_now(&fixture.admin, project)
        .await
        .unwrap();
    let failed = fixture.run_jobs().await;
    let view = fixture
        .service
        .ml()
        .ml_view(&fixture.admin, project)
        .await
        .unwrap();
    (failed, view)
}

async fn enable_ml(fixture: &Direct<Faulty>, project: &str, min_labels: u32) {
    enable_ml_with(fixture, project, min_labels, None).await;
}

async fn enable_ml_with(
    fixture: &Direct<Faulty>,
    project: &str,
    min_labels: u32,
    backbone: Option<CustomBackbone>,
) {
    fixture
        .service
        .projects()
        .update_project(
            &fixture.admin,
            project,
            ProjectChanges {
                ml_assist: Some(MlAssistInput {
                    enabled: Some(true),
                    min_labels: Some(min_labels),
                    target_precision: Some(0.9),
                    backbone: backbone.map(Some),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Labels `pages` tasks with the truth; the keys labeled, in order.
async fn label(
    fixture: &Direct<Faulty>,
    project: &str,
    pages: usize,
    truth: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..pages {
        let task = fixture
            .service
            .labeling()
            .checkout(&fixture.admin, project)
            .await
            .unwrap()
            .unwrap();
        let items = task
            .items
            .iter()
            .map(|item| {
                keys.push(item.key.clone());
                let name = item.key.rsplit('/').next().unwrap();
                SubmittedItemInput {
                    item_id: Some(item.item_id),
                    labels: Some(vec![truth[name].clone()]),
                    ..Default::default()
                }
            })
            .collect();
        fixture
            .service
            .labeling()
            .submit(
                &fixture.admin,
                project,
                &task.task_id,
                SubmissionInput { items },
            )
            .await
            .unwrap();
    }
    keys
}

/// What a project's ML produced: its embeddings (decoded), its model, and its queued work
/// (kind, items and prelabels of each waiting task, without the run-specific task ids).
async fn outcome(fixture: &Direct<Faulty>, project: &str) -> (Vec<Value>, Value, Vec<Value>) {
    let system = &fixture.config.system_bucket;
    let prefix = keys::ml_embeddings(project, "efficientnet-lite0");
    let listed = fixture
        .blobs
        .list(system, &prefix, None, 1000)
        .await
        .unwrap();
    let mut parts = Vec::new();
    for object in &listed.objects {
        let bytes = fixture.blobs.get(system, &object.key, None).await.unwrap();
        let part = labeling_core::domain::ml::embeddings::decode_part(&bytes).unwrap();
        parts.push(serde_json::json!({
            "name": object.key.strip_prefix(&prefix).unwrap(),
            "embeddings": part.embeddings().map(|(item, values)| (item, values.to_vec())).collect::<Vec<_>>(),
            "rejected": part.rejected().iter().map(|r| (r.item, r.reason.clone())).collect::<Vec<_>>(),
        }));
    }
    let ml = fixture
        .service
        .ml()
        .ml_view(&fixture.admin, project)
        .await
        .unwrap();
    let model_run = ml.model_run.expect("a model");
    let model: Value = serde_json::from_slice(
        &fixture
            .blobs
            .get(system, &keys::ml_model(project, &model_run), None)
            .await
            .unwrap(),
    )
    .unwrap();
    (parts, model, fixture.queued_work(project).await)
}

#[tokio::test]
async fn a_run_interrupted_in_each_stage_ends_as_an_uninterrupted_run_does() {
    if labeling_tests::on_aws() {
        // The service without HTTP runs on the embedded adapters only: once is enough.
        return;
    }
    let (fixture, embedder) = faulty_fixture("ml-faults");
    // 1,100 images: two parts of embeddings, so featurization has progress to keep.
    let (dir, listed) = put_digits(&fixture, 1100).await;
    let truth: BTreeMap<String, String> = listed.into_iter().collect();
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let classes: Vec<&str> = classes.iter().map(String::as_str).collect();
    let steady = fixture
        .project("steady", "image_classification_multiclass", &classes)
        .await;
    let twin = fixture
        .project("twin", "image_classification_multiclass", &classes)
        .await;
    // The twin shuffles as the first does, so both hand out (and window) the same items.
    fixture.copy_seed(&steady, &twin).await;
    fixture.clock.advance(Duration::from_secs(5));
    for project in [&steady, &twin] {
        enable_ml(&fixture, project, 60).await;
    }
    assert_eq!(
        label(&fixture, &steady, 1, &truth).await,
        label(&fixture, &twin, 1, &truth).await,
        "the twins hand out the same items"
    );
    label(&fixture, &steady, 199, &truth).await;
    label(&fixture, &twin, 199, &truth).await;

    let (failed, _) = run_now(&fixture, &steady).await;
    assert_eq!(failed, 0, "the steady run fails nowhere");
    let calls_per_run = 1000usize.div_ceil(32) + 100usize.div_ceil(32);

    // The twin's worker dies once in each stage.
    embedder
        .fail_call
        .store(calls_per_run - 2, Ordering::SeqCst);
    fixture
        .table
        .fail_model_commit
        .store(true, Ordering::SeqCst);
    fixture.table.fail_page.store(3, Ordering::SeqCst);
    fixture
        .service
        .ml()
        .start_run_now(&fixture.admin, &twin)
        .await
        .unwrap();
    let failed = fixture.run_jobs().await;
    assert_eq!(embedder.failures.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.table.failures.load(Ordering::SeqCst), 2);
    assert_eq!(failed, 3, "one failure in each stage, each retried");

    let twin_ml = fixture
        .service
        .ml()
        .ml_view(&fixture.admin, &twin)
        .await
        .unwrap();
    assert_eq!(
        twin_ml.runs[0].status,
        labeling_core::usecases::ml::RunStatus::Succeeded
    );
    assert!(twin_ml.active_run.is_none());
    let (steady_parts, steady_model, steady_work) = outcome(&fixture, &steady).await;
    let (twin_parts, twin_model, twin_work) = outcome(&fixture, &twin).await;
    assert_eq!(steady_parts.len(), 2);
    assert!(steady_parts == twin_parts, "the embeddings differ");
    assert!(steady_model == twin_model, "the models differ");
    assert!(!steady_work.is_empty());
    assert_eq!(steady_work, twin_work, "the queued work differs");
    let _ = std::fs::remove_dir_all(dir);
}

/// PNG's chunk checksum (CRC-32, IEEE).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn bad_images_are_skipped_with_their_reasons_and_the_run_succeeds() {
    if labeling_tests::on_aws() {
        // The service without HTTP runs on the embedded adapters only: once is enough.
        return;
    }
    let (fixture, _) = faulty_fixture("ml-bad-images");
    let (dir, listed) = put_digits(&fixture, 20).await;
    let good = std::fs::read(dir.join(&listed[0].0)).unwrap();
    let mut huge = labeling_tests::png(8, 8, 1);
    // The IHDR's width and height: 30,000 x 30,000 declared (with a valid checksum, so only
    // the size can refuse it), 8 x 8 of data.
    huge[16..20].copy_from_slice(&30_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&30_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let bad: [(&str, Vec<u8>); 3] = [
        ("set/truncated.png", good[..good.len() / 2].to_vec()),
        (
            "set/not-an-image.png",
            b"this is a text file, not a picture".to_vec(),
        ),
        ("set/huge-header.png", huge),
    ];
    for (key, body) in &bad {
        fixture
            .blobs
            .put("photos", key, body.clone(), "image/png")
            .await
            .unwrap();
    }
    let project = fixture
        .project("bad", "instance_segmentation", &["digit"])
        .await;
    enable_ml(&fixture, &project, 10).await;
    let (failed, ml) = run_now(&fixture, &project).await;
    assert_eq!(failed, 0);
    let run = &ml.runs[0];
    assert_eq!(
        run.status,
        labeling_core::usecases::ml::RunStatus::Succeeded,
        "{run:?}"
    );
    let metrics = &run.steps[0].metrics;
    assert_eq!(metrics["embedded"], 20, "{metrics:?}");
    assert_eq!(metrics["rejected"], 3, "{metrics:?}");
    let examples = metrics["rejected_examples"].as_array().unwrap();
    for (key, _) in &bad {
        let example = examples
            .iter()
            .find(|e| e["key"] == *key)
            .unwrap_or_else(|| panic!("{key} is not named: {examples:?}"));
        assert!(!example["reason"].as_str().unwrap().is_empty());
        if key.contains("huge") {
            assert!(
                example["reason"].as_str().unwrap().contains("30000"),
                "{example}"
            );
        }
        println!("{key}: {}", example["reason"]);
    }
    // The reasons are kept with the embeddings too, so the next run does not try again.
    let (parts, ..) = (
        fixture
            .blobs
            .list(
                &fixture.config.system_bucket,
                &keys::ml_embeddings(&project, "efficientnet-lite0"),
                None,
                10,
            )
            .await
            .unwrap()
            .objects,
        (),
    );
    assert_eq!(parts.len(), 1);
    let part = labeling_core::domain::ml::embeddings::decode_part(
        &fixture
            .blobs
            .get(&fixture.config.system_bucket, &parts[0].key, None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(part.rejected().len(), 3);
    assert_eq!(part.items().len(), 20);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_project_embeds_with_its_own_backbone_and_a_broken_one_fails_saying_why() {
    if labeling_tests::on_aws() {
        // The service without HTTP runs on the embedded adapters only: once is enough.
        return;
    }
    let (fixture, embedder) = faulty_fixture("ml-own-backbone");
    let (dir, _) = put_digits(&fixture, 12).await;
    // The project's "own" model: the backbone's ONNX file put into a bucket, declared with its
    // normalization as a user would declare a torchvision export.
    let MlBackbone::Files { model, .. } = labeling_tests::ml::backbone() else {
        unreachable!()
    };
    fixture
        .blobs
        .put(
            "photos",
            "models/mine.onnx",
            std::fs::read(&model).unwrap(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let own = CustomBackbone {
        model: "s3://photos/models/mine.onnx".to_owned(),
        input_size: 224,
        crop: 0.875,
        mean: [127.0; 3],
        std: [128.0; 3],
        embedding_output: "embedding".to_owned(),
    };
    let project = fixture
        .project("own", "instance_segmentation", &["digit"])
        .await;
    enable_ml_with(&fixture, &project, 10, Some(own.clone())).await;
    let calls_before = embedder.failures.load(Ordering::SeqCst);
    let (failed, ml) = run_now(&fixture, &project).await;
    assert_eq!(failed, 0);
    let metrics = &ml.runs[0].steps[0].metrics;
    let backbone = metrics["backbone"].as_str().unwrap().to_owned();
    assert!(backbone.starts_with("custom-"), "{metrics:?}");
    assert_eq!(metrics["embedded"], 12, "{metrics:?}");
    assert_eq!(embedder.failures.load(Ordering::SeqCst), calls_before);
    let stored = fixture
        .blobs
        .list(
            &fixture.config.system_bucket,
            &keys::ml_embeddings(&project, &backbone),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        stored.objects.len(),
        1,
        "embeddings stored under the project's backbone"
    );
    let default_stored = fixture
        .blobs
        .list(
            &fixture.config.system_bucket,
            &keys::ml_embeddings(&project, "efficientnet-lite0"),
            None,
            10,
        )
        .await
        .unwrap();
    assert!(default_stored.objects.is_empty());

    // A model without the declared output: the run fails after its tries, saying why.
    let broken = fixture
        .project("broken", "instance_segmentation", &["digit"])
        .await;
    enable_ml_with(
        &fixture,
        &broken,
        10,
        Some(CustomBackbone {
            embedding_output: "pooled".to_owned(),
            ..own
        }),
    )
    .await;
    let (_, ml) = run_now(&fixture, &broken).await;
    let run = &ml.runs[0];
    assert_eq!(
        run.status,
        labeling_core::usecases::ml::RunStatus::Failed,
        "{run:?}"
    );
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("pooled"), "{error}");
    assert!(
        ml.active_run.is_none(),
        "the failed run released the project"
    );
    let _ = std::fs::remove_dir_all(dir);
}
