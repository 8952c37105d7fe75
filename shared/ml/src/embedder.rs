//! The ONNX Runtime adapter of the embedder port: one session per backbone, decoding and
//! resizing of the next batch on other threads while the session runs the current one.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use labeling_core::ports::{Backbone, Embedder, EmbedderError, ImageRejected};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::preprocess::preprocess;
use crate::spec::BackboneSpec;

/// Images a batch holds unless told otherwise: large enough that ONNX Runtime's per-run cost
/// vanishes, small enough that a batch's tensor (32 x 3 x 224 x 224 f32: 19 MB) stays modest.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// ONNX Runtime allows one environment a process; every session shares it.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

pub(crate) fn environment(dylib: &Path) -> anyhow::Result<Environment> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    let environment = ort::init_from(dylib)
        .with_context(|| format!("loading ONNX Runtime from {}", dylib.display()))?
        .with_name("labeling")
        .with_telemetry(false)
        .build()
        .context("creating the ONNX Runtime environment")?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// A backbone in an ONNX Runtime session. Cheap to clone (the session is shared); runs of one
/// session are serialized, the preprocessing of the next batch is not.
#[derive(Clone)]
pub struct OnnxEmbedder {
    inner: Arc<Inner>,
    batch_size: usize,
    preprocess_threads: usize,
}

struct Inner {
    session: Mutex<Session>,
    spec: BackboneSpec,
    backbone: Backbone,
    input_name: String,
}

/// One batch ready for the session: the tensor rows of the accepted images, which images they
/// are, and why the others were refused.
struct Prepared {
    tensor: Vec<f32>,
    accepted: Vec<usize>,
    rejected: Vec<(usize, ImageRejected)>,
}

impl OnnxEmbedder {
    /// Loads ONNX Runtime from `dylib` (once a process; later calls reuse it) and the model
    /// file at `model`.
    pub fn open(dylib: &Path, model: &Path, spec: BackboneSpec) -> anyhow::Result<Self> {
        let bytes = std::fs::read(model)
            .with_context(|| format!("reading the model {}", model.display()))?;
        Self::open_bytes(dylib, &bytes, spec)
    }

    /// As [`OnnxEmbedder::open`], from the model's bytes (a backbone read from a bucket).
    pub fn open_bytes(dylib: &Path, model: &[u8], spec: BackboneSpec) -> anyhow::Result<Self> {
        spec.check()?;
        let environment = environment(dylib)?;
        let (session, provider) = build_session(&environment, model)?;
        let input_name = match session.inputs() {
            [input] => input.name().to_owned(),
            inputs => anyhow::bail!("the model has {} inputs; a backbone has one", inputs.len()),
        };
        for wanted in std::iter::once(&spec.embedding_output).chain(spec.logits_output.iter()) {
            anyhow::ensure!(
                session
                    .outputs()
                    .iter()
                    .any(|o| o.name() == wanted.as_str()),
                "the model has no output named {wanted:?} (it has {:?})",
                session
                    .outputs()
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
            );
        }
        let mut inner = Inner {
            session: Mutex::new(session),
            backbone: Backbone {
                id: spec.id.clone(),
                dimensions: 0,
                execution_provider: provider.into(),
            },
            spec,
            input_name,
        };
        // One run on a blank image proves the declared input size and tells the embedding's
        // length, whatever the graph's metadata says.
        let side = inner.spec.input_size as usize;
        let probe = inner
            .run(
                vec![0.0; 3 * side * side],
                1,
                &[inner.spec.embedding_output.clone()],
            )
            .context("a first run on a blank image of the declared input size")?;
        inner.backbone.dimensions = probe[0].1;
        tracing::info!(
            backbone = %inner.backbone.id,
            dimensions = inner.backbone.dimensions,
            execution_provider = %inner.backbone.execution_provider,
            "backbone ready"
        );
        Ok(Self {
            inner: Arc::new(inner),
            batch_size: DEFAULT_BATCH_SIZE,
            preprocess_threads: if provider == "cpu" {
                // The session's own threads use the cores; one more decodes ahead.
                1
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            },
        })
    }

    /// Images a session run takes at most (at least 1).
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Threads that decode and resize the next batch while the session runs (at least 1).
    #[must_use]
    pub fn with_preprocess_threads(mut self, threads: usize) -> Self {
        self.preprocess_threads = threads.max(1);
        self
    }

    pub fn spec(&self) -> &BackboneSpec {
        &self.inner.spec
    }

    /// [`Embedder::embed`] on the calling thread (it blocks for the whole run).
    pub fn embed_blocking(
        &self,
        images: &[Vec<u8>],
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError> {
        let output = self.inner.spec.embedding_output.clone();
        self.pipeline(images, output)
    }

    /// The model's logits per image (ImageNet's 1000 classes for the default backbone), for
    /// checking a backbone, not for labeling.
    pub fn classify(
        &self,
        images: &[Vec<u8>],
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError> {
        let Some(output) = self.inner.spec.logits_output.clone() else {
            return Err(failure(anyhow!("the backbone declares no logits output")));
        };
        self.pipeline(images, output)
    }

    /// The session alone on a ready `[n, 3, size, size]` tensor: embeddings, row after row. What
    /// the benchmark measures the pipeline against.
    pub fn embed_tensor(&self, tensor: Vec<f32>, n: usize) -> Result<Vec<f32>, EmbedderError> {
        let output = self.inner.spec.embedding_output.clone();
        let mut outputs = self.inner.run(tensor, n, &[output]).map_err(failure)?;
        Ok(outputs.remove(0).0)
    }

    fn pipeline(
        &self,
        images: &[Vec<u8>],
        output: String,
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError> {
        let inner = &*self.inner;
        let mut results: Vec<Option<Result<Vec<f32>, ImageRejected>>> = vec![None; images.len()];
        std::thread::scope(|scope| {
            // Room for one batch ahead: decoding never runs further ahead than that.
            let (ready, prepared) = mpsc::sync_channel::<Prepared>(1);
            scope.spawn(move || {
                for (number, chunk) in images.chunks(self.batch_size).enumerate() {
                    let batch = self.prepare(chunk, number * self.batch_size);
                    if ready.send(batch).is_err() {
                        return; // the session failed; nothing waits for more
                    }
                }
            });
            for batch in prepared {
                for (index, why) in batch.rejected {
                    results[index] = Some(Err(why));
                }
                if batch.accepted.is_empty() {
                    continue;
                }
                let outputs = inner
                    .run(
                        batch.tensor,
                        batch.accepted.len(),
                        std::slice::from_ref(&output),
                    )
                    .map_err(failure)?;
                let (values, width) = &outputs[0];
                for (row, index) in values.chunks_exact(*width).zip(batch.accepted) {
                    results[index] = Some(Ok(row.to_vec()));
                }
            }
            Ok::<_, EmbedderError>(())
        })?;
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| failure(anyhow!("an image of the batch got no outcome"))))
            .collect()
    }

    /// Decodes and resizes `chunk` (whose first image is number `first`) on up to
    /// `preprocess_threads` threads into one tensor of the accepted images.
    fn prepare(&self, chunk: &[Vec<u8>], first: usize) -> Prepared {
        let side = self.inner.spec.input_size as usize;
        let per_image = 3 * side * side;
        let mut tensor = vec![0f32; chunk.len() * per_image];
        let mut outcomes: Vec<Result<(), ImageRejected>> = vec![Ok(()); chunk.len()];
        let per_thread = chunk.len().div_ceil(self.preprocess_threads);
        std::thread::scope(|scope| {
            let work = chunk
                .chunks(per_thread)
                .zip(tensor.chunks_mut(per_thread * per_image))
                .zip(outcomes.chunks_mut(per_thread));
            for ((images, rows), outcomes) in work {
                let spec = &self.inner.spec;
                let job = move || {
                    for ((bytes, row), outcome) in images
                        .iter()
                        .zip(rows.chunks_exact_mut(per_image))
                        .zip(outcomes)
                    {
                        *outcome = preprocess(bytes, spec, row);
                    }
                };
                if per_thread == chunk.len() {
                    job(); // one worker: this thread is it
                } else {
                    scope.spawn(job);
                }
            }
        });
        let mut accepted = Vec::with_capacity(chunk.len());
        let mut rejected = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(()) => {
                    // Close the gaps the refused images left.
                    let slot = accepted.len();
                    if slot != i {
                        tensor.copy_within(i * per_image..(i + 1) * per_image, slot * per_image);
                    }
                    accepted.push(first + i);
                }
                Err(why) => rejected.push((first + i, why)),
            }
        }
        tensor.truncate(accepted.len() * per_image);
        Prepared {
            tensor,
            accepted,
            rejected,
        }
    }
}

impl Inner {
    /// Runs the session on `n` images; each named output as its values and its row length.
    fn run(
        &self,
        tensor: Vec<f32>,
        n: usize,
        outputs: &[String],
    ) -> anyhow::Result<Vec<(Vec<f32>, usize)>> {
        let side = self.spec.input_size as usize;
        let input =
            Tensor::from_array(([n, 3, side, side], tensor)).context("making the input tensor")?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let results = session
            .run(ort::inputs![self.input_name.as_str() => input])
            .context("running the model")?;
        outputs
            .iter()
            .map(|name| {
                let (shape, values) = results[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .with_context(|| format!("reading the output {name:?}"))?;
                let width = match **shape {
                    [rows, width] if rows as usize == n && width > 0 => width as usize,
                    _ => anyhow::bail!("the output {name:?} has shape {shape:?}, not [{n}, D]"),
                };
                if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                    anyhow::bail!(
                        "the output {name:?} holds a non-finite value (row {})",
                        bad / width
                    );
                }
                Ok((values.to_vec(), width))
            })
            .collect()
    }
}

/// A CUDA session when this ONNX Runtime has the provider and a GPU answers; CPU otherwise.
/// Says which.
pub(crate) fn build_session(
    environment: &Environment,
    model: &[u8],
) -> anyhow::Result<(Session, &'static str)> {
    let cuda = Session::builder(environment)
        .map_err(|e| anyhow!("{e}"))?
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| anyhow!("{e}"))
        .and_then(|mut builder| {
            builder
                .commit_from_memory(model)
                .map_err(|e| anyhow!("{e}"))
        });
    match cuda {
        Ok(session) => return Ok((session, "cuda")),
        Err(why) => {
            tracing::info!(reason = %why, "the CUDA execution provider is unavailable; running on the CPU")
        }
    }
    // ONNX Runtime's threads busy-wait between operators by default, taking the cores from
    // the thread that decodes the next batch: without it the pipeline ran 0.73 to 0.87 of the
    // session alone on 2 cores, with it 0.58 to 0.85.
    let session = Session::builder(environment)
        .map_err(|e| anyhow!("{e}"))?
        .with_intra_op_spinning(false)
        .map_err(|e| anyhow!("{e}"))?
        .commit_from_memory(model)
        .map_err(|e| anyhow!("loading the model: {e}"))?;
    Ok((session, "cpu"))
}

fn failure(error: anyhow::Error) -> EmbedderError {
    EmbedderError(error.into())
}

#[async_trait]
impl Embedder for OnnxEmbedder {
    fn backbone(&self) -> &Backbone {
        &self.inner.backbone
    }

    async fn embed(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.embed_blocking(&images))
            .await
            .map_err(|e| failure(anyhow!("the embedding thread failed: {e}")))?
    }
}

/// Opens projects' own backbones (ONNX models read from a bucket) with the process's ONNX
/// Runtime library.
pub struct OnnxBackboneLoader {
    dylib: std::path::PathBuf,
}

impl OnnxBackboneLoader {
    pub fn new(dylib: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dylib: dylib.into(),
        }
    }
}

#[async_trait]
impl labeling_core::ports::BackboneLoader for OnnxBackboneLoader {
    async fn load(
        &self,
        id: &str,
        backbone: &labeling_core::domain::ml_settings::CustomBackbone,
        model: Vec<u8>,
    ) -> Result<Arc<dyn Embedder>, EmbedderError> {
        let spec = BackboneSpec {
            id: id.to_owned(),
            input_size: backbone.input_size,
            crop: backbone.crop,
            mean: backbone.mean,
            std: backbone.std,
            embedding_output: backbone.embedding_output.clone(),
            logits_output: None,
        };
        let dylib = self.dylib.clone();
        tokio::task::spawn_blocking(move || OnnxEmbedder::open_bytes(&dylib, &model, spec))
            .await
            .map_err(|e| failure(anyhow!("the model-loading thread failed: {e}")))?
            .map(|embedder| Arc::new(embedder) as Arc<dyn Embedder>)
            .map_err(failure)
    }
}
