//! The detection backbone: images letterboxed into the model's square input, and the stride-16
//! feature maps that the box head (`labeling_core::domain::ml::detect`) trains on and reads.
//! One session, batches run one after another; decoding uses the same limits as embedding.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use labeling_core::domain::ml::detect::{FeatureMap, Letterbox};
use labeling_core::ports::{EmbedderError, ExtractedMap, FeatureExtractor, ImageRejected};
use ort::session::Session;
use ort::value::Tensor;

use crate::embedder::{build_session, environment};
use crate::preprocess::{decode_guarded, letterbox_normalize};

/// What a detection backbone expects and gives.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Stable and path-safe, as [`crate::BackboneSpec::id`].
    pub id: String,
    /// Side of the square input (`[N, 3, size, size]`, RGB).
    pub input_size: u32,
    /// Input pixels a feature cell stands for.
    pub stride: u32,
    /// `(x - mean) / std` per channel on 0-255 pixels.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The output holding the `[N, C, size / stride, size / stride]` map.
    pub output: String,
}

impl FeatureSpec {
    /// EfficientNet-Lite0's stage-5 map as `infra/models/convert_efficientnet_lite0.py
    /// --features` exports it: 384 x 384 in, 112 x 24 x 24 out.
    pub fn efficientnet_lite0() -> Self {
        Self {
            id: "efficientnet-lite0-features".into(),
            input_size: 384,
            stride: 16,
            mean: [127.0; 3],
            std: [128.0; 3],
            output: "features".into(),
        }
    }
}

/// Decodes `bytes` (with the embedder's limits, a panicking decoder caught) and writes the letterboxed, normalized planes
/// into `out` (`3 * input_size^2`); returns how the image sits in the input.
pub fn letterbox_preprocess(
    bytes: &[u8],
    spec: &FeatureSpec,
    out: &mut [f32],
) -> Result<Letterbox, ImageRejected> {
    let rgb = decode_guarded(bytes)?;
    let letterbox = Letterbox::new(rgb.width(), rgb.height(), spec.input_size, spec.stride)
        .map_err(|e| ImageRejected(e.to_string()))?;
    letterbox_normalize(
        &rgb,
        letterbox.content_size(),
        letterbox.padding(),
        spec.input_size,
        spec.mean,
        spec.std,
        out,
    );
    Ok(letterbox)
}

/// Images one session run takes: 8 x 3 x 384 x 384 f32 is 14 MB in, 8 x 112 x 24 x 24 2 MB out.
pub const FEATURE_BATCH_SIZE: usize = 8;

/// A detection backbone in an ONNX Runtime session (CUDA when there, CPU otherwise). Clones
/// share the session.
#[derive(Clone)]
pub struct OnnxFeatureExtractor {
    session: Arc<Mutex<Session>>,
    spec: FeatureSpec,
    input_name: String,
    channels: usize,
    cells: usize,
    execution_provider: &'static str,
}

impl OnnxFeatureExtractor {
    /// Loads ONNX Runtime from `dylib` (once a process) and the model at `model`; one run on a
    /// blank input proves the input size and tells the map's channels and cells.
    pub fn open(dylib: &Path, model: &Path, spec: FeatureSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(
            spec.stride > 0
                && spec.input_size.is_multiple_of(spec.stride)
                && spec.input_size <= 2048,
            "input size {} is not a multiple of the stride {} (at most 2048)",
            spec.input_size,
            spec.stride
        );
        let bytes = std::fs::read(model)
            .with_context(|| format!("reading the model {}", model.display()))?;
        let environment = environment(dylib)?;
        let (session, execution_provider) = build_session(&environment, &bytes)?;
        let input_name = match session.inputs() {
            [input] => input.name().to_owned(),
            inputs => anyhow::bail!("the model has {} inputs; a backbone has one", inputs.len()),
        };
        let mut extractor = Self {
            session: Arc::new(Mutex::new(session)),
            input_name,
            channels: 0,
            cells: (spec.input_size / spec.stride) as usize,
            execution_provider,
            spec,
        };
        let side = extractor.spec.input_size as usize;
        let (_, channels) = extractor
            .run(vec![0.0; 3 * side * side], 1, None)
            .context("a first run on a blank image of the declared input size")?;
        extractor.channels = channels;
        tracing::info!(
            backbone = %extractor.spec.id,
            channels,
            cells = extractor.cells,
            execution_provider,
            "detection backbone ready"
        );
        Ok(extractor)
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Channels of the map.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Which execution provider runs the session (`cuda` or `cpu`).
    pub fn execution_provider(&self) -> &'static str {
        self.execution_provider
    }

    /// The feature map and letterbox of each image, in order, or why it was refused; blocks
    /// for the whole run.
    pub fn extract_blocking(
        &self,
        images: &[Vec<u8>],
    ) -> anyhow::Result<Vec<Result<(FeatureMap, Letterbox), ImageRejected>>> {
        let side = self.spec.input_size as usize;
        let input = 3 * side * side;
        let mut results = Vec::with_capacity(images.len());
        for batch in images.chunks(FEATURE_BATCH_SIZE) {
            let mut tensor = vec![0f32; batch.len() * input];
            let mut accepted = Vec::with_capacity(batch.len());
            let mut outcomes: Vec<Option<Result<(FeatureMap, Letterbox), ImageRejected>>> =
                Vec::with_capacity(batch.len());
            for bytes in batch {
                let row = accepted.len();
                match letterbox_preprocess(
                    bytes,
                    &self.spec,
                    &mut tensor[row * input..(row + 1) * input],
                ) {
                    Ok(letterbox) => {
                        accepted.push(letterbox);
                        outcomes.push(None);
                    }
                    Err(rejected) => outcomes.push(Some(Err(rejected))),
                }
            }
            let mut maps = if accepted.is_empty() {
                Vec::new()
            } else {
                tensor.truncate(accepted.len() * input);
                let (values, channels) = self.run(tensor, accepted.len(), Some(self.channels))?;
                let per_map = channels * self.cells * self.cells;
                values
                    .chunks_exact(per_map)
                    .map(|map| FeatureMap::new(channels, self.cells, self.cells, map.to_vec()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("the model's map: {e}"))?
            }
            .into_iter()
            .zip(accepted);
            for outcome in outcomes {
                results.push(match outcome {
                    Some(rejected) => rejected,
                    None => Ok(maps
                        .next()
                        .context("the model returned fewer maps than images")?),
                });
            }
        }
        Ok(results)
    }

    /// Runs `n` images; the map's values and its channels (checked against `channels` when
    /// known).
    fn run(
        &self,
        tensor: Vec<f32>,
        n: usize,
        channels: Option<usize>,
    ) -> anyhow::Result<(Vec<f32>, usize)> {
        let side = self.spec.input_size as usize;
        let input =
            Tensor::from_array(([n, 3, side, side], tensor)).context("making the input tensor")?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let results = session
            .run(ort::inputs![self.input_name.as_str() => input])
            .context("running the model")?;
        let name = self.spec.output.as_str();
        let (shape, values) = results
            .get(name)
            .with_context(|| format!("the model has no output named {name:?}"))?
            .try_extract_tensor::<f32>()
            .with_context(|| format!("reading the output {name:?}"))?;
        let cells = self.cells as i64;
        let found = match **shape {
            [rows, c, h, w] if rows as usize == n && h == cells && w == cells && c > 0 => {
                c as usize
            }
            _ => anyhow::bail!(
                "the output {name:?} has shape {shape:?}, not [{n}, C, {cells}, {cells}]"
            ),
        };
        if let Some(expected) = channels {
            anyhow::ensure!(
                found == expected,
                "the map has {found} channels, {expected} before"
            );
        }
        if values.iter().any(|v| !v.is_finite()) {
            anyhow::bail!("the output {name:?} holds a non-finite value");
        }
        Ok((values.to_vec(), found))
    }
}

#[async_trait]
impl FeatureExtractor for OnnxFeatureExtractor {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn stride(&self) -> u32 {
        self.spec.stride
    }

    fn execution_provider(&self) -> &str {
        self.execution_provider
    }

    async fn extract(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<ExtractedMap, ImageRejected>>, EmbedderError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.extract_blocking(&images))
            .await
            .map_err(|e| EmbedderError(anyhow!("the feature thread failed: {e}").into()))?
            .map_err(|e| EmbedderError(e.into()))
    }
}
