//! The worker container (ECS on GPU capacity): long-polls its queues and runs the jobs they
//! carry with the one job runner (heartbeats while a job runs, backoff on failure, malformed
//! messages dropped), until SIGTERM: then the running job finishes or its message goes back.
//! It embeds images with ONNX Runtime (CUDA when the library and a GPU are there, else CPU)
//! for the ML runs' featurization, and reads the detection backbone's feature maps for box
//! prelabels (training and inference of object detection projects).

use std::sync::Arc;
use std::time::Duration;

use labeling_core::ports::{Embedder, FeatureExtractor};
use labeling_host::{CancellationToken, Deletion, Policy, Polling, Runner};
use labeling_ml::{
    BackboneSpec, FeatureSpec, OnnxBackboneLoader, OnnxEmbedder, OnnxFeatureExtractor,
};

/// One message at a time: a GPU job is long, and messages left on the queue go to whichever
/// worker (or new instance) is free first.
const POLLING: Polling = Polling {
    batch: 1,
    wait: Duration::from_secs(20),
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let config = labeling_lambda::Config::from_env()?;
    let (service, aws) = labeling_lambda::service(&config).await?;
    let embedder = match (&config.ml_dylib, &config.ml_backbone) {
        (Some(dylib), Some(model)) => {
            service.set_backbone_loader(Arc::new(OnnxBackboneLoader::new(dylib.clone())));
            OnnxEmbedder::open(dylib, model, BackboneSpec::efficientnet_lite0())
                .map(|embedder| Arc::new(embedder) as Arc<dyn Embedder>)
                .map_err(|error| format!("{error:#}"))
        }
        _ => Err(
            "LABELING_ORT_DYLIB (or ORT_DYLIB_PATH) and LABELING_BACKBONE are not set".to_owned(),
        ),
    };
    service.set_embedder(embedder);
    let features = match (&config.ml_dylib, &config.ml_detection_backbone) {
        (Some(dylib), Some(model)) => {
            OnnxFeatureExtractor::open(dylib, model, FeatureSpec::efficientnet_lite0())
                .map(|extractor| Arc::new(extractor) as Arc<dyn FeatureExtractor>)
                .map_err(|error| format!("{error:#}"))
        }
        _ => Err(
            "LABELING_ORT_DYLIB and LABELING_DETECTION_BACKBONE are not set: no box prelabels"
                .to_owned(),
        ),
    };
    service.set_feature_extractor(features);
    let runner = Runner::new(service, aws.queue, Policy::default(), Deletion::ByRunner);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        labeling_host::terminated().await;
        on_signal.cancel();
    });
    tracing::info!(queues = ?config.worker_queues, "worker polling");
    runner
        .poll(&config.worker_queues, &POLLING, &shutdown)
        .await;
    tracing::info!("worker stopped");
    Ok(())
}
