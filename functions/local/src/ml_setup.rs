//! ML assist in the local server: where ONNX Runtime and the backbone come from, and the timer
//! that stands in for the AWS schedule of ML checks. Given paths (flags or
//! `LABELING_ORT_DYLIB` / `LABELING_BACKBONE`) are opened at start; otherwise, run from a
//! checkout, the server runs `infra/models/prepare.sh` in the background on its first start
//! (idempotent and cached in `.venv/ml`, a few minutes the first time) and serves meanwhile,
//! saying that ML assist is unavailable until the backbone is ready, and why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use labeling_core::Service;
use labeling_core::ports::{Embedder, FeatureExtractor, Queue};
use labeling_ml::{
    BackboneSpec, FeatureSpec, OnnxBackboneLoader, OnnxEmbedder, OnnxFeatureExtractor,
};

/// Where the local server's backbone comes from.
#[derive(Debug, Clone)]
pub enum MlBackbone {
    /// No ML assist in this process, and why (said on the runs page).
    Off(String),
    /// ONNX Runtime's shared library and the model, both given, and the detection backbone if
    /// box prelabels are wanted.
    Files {
        dylib: PathBuf,
        model: PathBuf,
        detection: Option<PathBuf>,
    },
    /// Run this preparation script (prints `export LABELING_ORT_DYLIB=...`,
    /// `export LABELING_BACKBONE=...` and `export LABELING_DETECTION_BACKBONE=...`), then open
    /// what it names.
    Prepare { script: PathBuf },
}

/// How often the local server checks whether an ML run is due (the AWS schedule's stand-in).
pub const ML_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Opens the backbone (preparing it first if asked) and gives it to the service; on failure
/// the service is told why, and serves without ML assist.
pub async fn provide_backbone(service: Arc<Service>, backbone: MlBackbone) {
    let outcome = match backbone {
        MlBackbone::Off(reason) => Err(reason),
        MlBackbone::Files {
            dylib,
            model,
            detection,
        } => open(&service, dylib, model, detection).await,
        MlBackbone::Prepare { script } => {
            service.set_embedder(Err(format!(
                "ONNX Runtime and the backbone are being prepared ({}); ML assist starts when \
                 that finishes",
                script.display()
            )));
            match prepare(&script).await {
                Ok((dylib, model, detection)) => open(&service, dylib, model, detection).await,
                Err(error) => Err(format!("{error:#}")),
            }
        }
    };
    service.set_embedder(outcome);
}

async fn open(
    service: &Service,
    dylib: PathBuf,
    model: PathBuf,
    detection: Option<PathBuf>,
) -> Result<Arc<dyn Embedder>, String> {
    service.set_backbone_loader(Arc::new(OnnxBackboneLoader::new(dylib.clone())));
    let features = match detection {
        Some(detection) => {
            let dylib = dylib.clone();
            tokio::task::spawn_blocking(move || {
                OnnxFeatureExtractor::open(&dylib, &detection, FeatureSpec::efficientnet_lite0())
                    .map(|extractor| Arc::new(extractor) as Arc<dyn FeatureExtractor>)
                    .map_err(|error| format!("{error:#}"))
            })
            .await
            .unwrap_or_else(|error| {
                Err(format!("opening the detection backbone panicked: {error}"))
            })
        }
        None => Err("no detection backbone was given (--ml-detection-backbone)".to_owned()),
    };
    service.set_feature_extractor(features);
    tokio::task::spawn_blocking(move || {
        OnnxEmbedder::open(&dylib, &model, BackboneSpec::efficientnet_lite0())
            .map(|embedder| Arc::new(embedder) as Arc<dyn Embedder>)
            .map_err(|error| format!("{error:#}"))
    })
    .await
    .unwrap_or_else(|error| Err(format!("opening the backbone panicked: {error}")))
}

/// Runs the preparation script and reads the paths it prints (the detection backbone's is
/// optional: an older script does not make it).
async fn prepare(script: &Path) -> anyhow::Result<(PathBuf, PathBuf, Option<PathBuf>)> {
    tracing::info!(script = %script.display(), "preparing ONNX Runtime and the ML-assist backbone");
    let output = tokio::process::Command::new("bash")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        anyhow::bail!("{} failed ({}): {tail}", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let variable = |name: &str| {
        stdout.lines().find_map(|line| {
            line.strip_prefix(&format!("export {name}="))
                .map(|value| PathBuf::from(value.trim()))
        })
    };
    match (
        variable("LABELING_ORT_DYLIB"),
        variable("LABELING_BACKBONE"),
    ) {
        (Some(dylib), Some(model)) => Ok((dylib, model, variable("LABELING_DETECTION_BACKBONE"))),
        _ => anyhow::bail!(
            "{} did not name LABELING_ORT_DYLIB and LABELING_BACKBONE",
            script.display()
        ),
    }
}

/// The local stand-in for the AWS ML-check schedule: every `interval`, one job checks every
/// project with ML assist on and starts the runs that are due.
pub async fn run_ml_checks(service: Arc<Service>, queue: Arc<dyn Queue>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let job = labeling_core::jobs::Job::MlCheckAll;
        if let Err(error) = job
            .send(queue.as_ref(), &service.config().jobs_queue, Duration::ZERO)
            .await
        {
            tracing::warn!(%error, "could not queue the ML check");
        }
    }
}
