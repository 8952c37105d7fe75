//! The feature-map port: images in, the detection backbone's spatial map of each out (with how
//! the image was letterboxed into the backbone's square input). The box head
//! (`domain::ml::detect`) trains on and reads these maps; the adapter (shared/ml, ONNX Runtime)
//! owns decoding, letterboxing and the model. Maps are recomputed by every run that needs them,
//! never stored: one is 258 KB (112 x 24 x 24 floats), about 40 times an image's embedding.

use async_trait::async_trait;

use super::embedder::{EmbedderError, ImageRejected};
use crate::domain::ml::detect::{FeatureMap, Letterbox};

/// One image's map and where the image sits in the backbone's input.
pub type ExtractedMap = (FeatureMap, Letterbox);

#[async_trait]
pub trait FeatureExtractor: Send + Sync {
    /// Stable and path-safe, e.g. `efficientnet-lite0-features`: a detector is read only with
    /// the maps of the backbone it was trained on.
    fn id(&self) -> &str;

    /// Input pixels per cell of the map.
    fn stride(&self) -> u32;

    /// What runs it (`cpu`, `cuda`).
    fn execution_provider(&self) -> &str;

    /// One outcome per image, in order: its map and letterbox, or why the image was refused
    /// (the embedder's limits apply: a hostile header's declared size is never allocated).
    async fn extract(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<ExtractedMap, ImageRejected>>, EmbedderError>;
}
