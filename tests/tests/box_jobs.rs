//! Box-prelabel runs under faults, on the service without HTTP so each job is run by the test:
//! the detection backbone fails once while the training extracts its maps and once while the
//! inference does; the retried run stores the same detector and queues the same prelabeled
//! boxes as an uninterrupted run of a twin project (the training is seeded).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::domain::labeling::{AnnotationInput, SubmissionInput, SubmittedItemInput};
use labeling_core::domain::ml_settings::MlAssistInput;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::keys;
use labeling_core::ports::{
    Blobs, Embedder, EmbedderError, ExtractedMap, FeatureExtractor, ImageRejected,
};
use labeling_embedded::SqliteTable;
use labeling_local::ml_setup::MlBackbone;
use labeling_ml::{BackboneSpec, FeatureSpec, OnnxEmbedder, OnnxFeatureExtractor};
use labeling_tests::direct::Direct;
use labeling_tests::ml::TrueBox;
use serde_json::Value;

/// The real detection backbone, failing its n-th next call when asked.
struct FaultyExtractor {
    inner: OnnxFeatureExtractor,
    fail_call: AtomicUsize,
    calls: AtomicUsize,
    failures: AtomicUsize,
}

#[async_trait]
impl FeatureExtractor for FaultyExtractor {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn stride(&self) -> u32 {
        self.inner.stride()
    }
    fn execution_provider(&self) -> &str {
        FeatureExtractor::execution_provider(&self.inner)
    }
    async fn extract(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<ExtractedMap, ImageRejected>>, EmbedderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.fail_call.load(Ordering::SeqCst);
        if left == 1 {
            self.fail_call.store(0, Ordering::SeqCst);
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(EmbedderError(
                "injected: the worker died while extracting maps".into(),
            ));
        } else if left > 1 {
            self.fail_call.store(left - 1, Ordering::SeqCst);
        }
        self.inner.extract(images).await
    }
}

/// Labels `pages` tasks with their true boxes.
async fn label(
    fixture: &Direct<SqliteTable>,
    project: &str,
    pages: usize,
    truth: &HashMap<String, Vec<TrueBox>>,
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
                let boxes = &truth[item.key.rsplit('/').next().unwrap()];
                SubmittedItemInput {
                    item_id: Some(item.item_id),
                    annotations: Some(
                        boxes
                            .iter()
                            .map(|(label, bbox)| AnnotationInput {
                                label: label.clone(),
                                bbox: Some(bbox.to_vec()),
                                polygon: None,
                            })
                            .collect(),
                    ),
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

/// The project's stored detector and its queued work (kind, items and prelabels of each
/// waiting task).
async fn outcome(fixture: &Direct<SqliteTable>, project: &str) -> (Value, Vec<Value>) {
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
            .get(
                &fixture.config.system_bucket,
                &keys::ml_model(project, &model_run),
                None,
            )
            .await
            .unwrap(),
    )
    .unwrap();
    (model, fixture.queued_work(project).await)
}

#[tokio::test]
async fn a_box_run_whose_backbone_fails_in_training_and_inference_ends_as_an_uninterrupted_run_does()
 {
    if labeling_tests::on_aws() {
        // The service without HTTP runs on the embedded adapters only: once is enough.
        return;
    }
    let fixture = Direct::new("box-faults", |table| table);
    let MlBackbone::Files {
        dylib,
        model,
        detection,
    } = labeling_tests::ml::backbone()
    else {
        unreachable!()
    };
    let extractor = Arc::new(FaultyExtractor {
        inner: OnnxFeatureExtractor::open(
            &dylib,
            &detection.unwrap(),
            FeatureSpec::efficientnet_lite0(),
        )
        .unwrap(),
        fail_call: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
    });
    fixture.service.set_embedder(Ok(Arc::new(
        OnnxEmbedder::open(&dylib, &model, BackboneSpec::efficientnet_lite0()).unwrap(),
    ) as Arc<dyn Embedder>));
    fixture
        .service
        .set_feature_extractor(Ok(extractor.clone() as Arc<dyn FeatureExtractor>));

    let (dir, listed) = labeling_tests::ml::scenes(80, 7);
    for (name, _) in &listed {
        fixture
            .blobs
            .put(
                "photos",
                &format!("set/{name}"),
                std::fs::read(dir.join(name)).unwrap(),
                "image/jpeg",
            )
            .await
            .unwrap();
    }
    let truth: HashMap<String, Vec<TrueBox>> = listed.into_iter().collect();
    let classes = ["cup", "cat", "rocket"];
    let steady = fixture
        .project("steady", "object_detection", &classes)
        .await;
    let twin = fixture.project("twin", "object_detection", &classes).await;
    // The twin shuffles as the first does, so both hand out (and window) the same items.
    fixture.copy_seed(&steady, &twin).await;
    fixture.clock.advance(Duration::from_secs(5));
    for project in [&steady, &twin] {
        fixture
            .service
            .projects()
            .update_project(
                &fixture.admin,
                project,
                ProjectChanges {
                    ml_assist: Some(MlAssistInput {
                        enabled: Some(true),
                        min_labels: Some(60),
                        target_precision: Some(0.8),
                        backbone: None,
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // Pages of one item (the fixture's default page size).
    let pages = 60;
    assert_eq!(
        label(&fixture, &steady, pages, &truth).await,
        label(&fixture, &twin, pages, &truth).await,
        "the twins hand out the same items"
    );

    fixture
        .service
        .ml()
        .start_run_now(&fixture.admin, &steady)
        .await
        .unwrap();
    assert_eq!(fixture.run_jobs().await, 0, "the steady run fails nowhere");
    let calls_per_run = extractor.calls.swap(0, Ordering::SeqCst);
    assert!(calls_per_run >= 4, "{calls_per_run} extraction calls");

    // The twin's backbone fails on the second call of its training; the retried training
    // extracts again from the start, and the inference's second call fails too.
    extractor.fail_call.store(2, Ordering::SeqCst);
    fixture
        .service
        .ml()
        .start_run_now(&fixture.admin, &twin)
        .await
        .unwrap();
    // Arms the second fault once the first was spent, so it hits the inference.
    let failed = fixture
        .run_jobs_with(|body| {
            if body.contains("\"infer\"") && extractor.failures.load(Ordering::SeqCst) == 1 {
                extractor.fail_call.store(2, Ordering::SeqCst);
            }
        })
        .await;
    assert_eq!(extractor.failures.load(Ordering::SeqCst), 2);
    assert_eq!(
        failed, 2,
        "one failure in training and one in inference, each retried"
    );

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
    let (steady_model, steady_work) = outcome(&fixture, &steady).await;
    let (twin_model, twin_work) = outcome(&fixture, &twin).await;
    assert!(
        steady_model["detector"]["hidden_weights"].is_array(),
        "a detector was stored"
    );
    assert!(steady_model == twin_model, "the detectors differ");
    assert!(!steady_work.is_empty());
    assert_eq!(steady_work, twin_work, "the queued work differs");
    let _ = std::fs::remove_dir_all(dir);
}
