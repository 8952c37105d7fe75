//! The embedder port: images in, one embedding (the backbone's penultimate features) per image
//! out. The ML use cases featurize, train and predict on these vectors; the adapter (shared/ml,
//! ONNX Runtime) owns decoding, resizing and the model.

use async_trait::async_trait;

/// Which model made an embedding: embeddings of different backbones never mix, so the id is
/// part of where they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backbone {
    /// Stable and path-safe (`[a-z0-9-]`), e.g. `efficientnet-lite0`.
    pub id: String,
    /// Length of every embedding.
    pub dimensions: usize,
    /// What runs it, for the runs page and the logs (`cpu`, `cuda`).
    pub execution_provider: String,
}

/// Why one image has no embedding. The job records it and goes on with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImageRejected(pub String);

/// The model could not run at all (not the fault of one image).
#[derive(Debug, thiserror::Error)]
#[error("the embedder failed: {0}")]
pub struct EmbedderError(#[source] pub super::BoxError);

#[async_trait]
pub trait Embedder: Send + Sync {
    fn backbone(&self) -> &Backbone;

    /// One outcome per image, in order: an embedding of exactly
    /// [`Backbone::dimensions`] finite values, or why the image was refused (not an image,
    /// truncated, a header declaring more pixels than the decoder's limits). The adapter
    /// batches as it likes; it MUST NOT allocate what a hostile header declares.
    async fn embed(
        &self,
        images: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Vec<f32>, ImageRejected>>, EmbedderError>;
}

/// Opens a project's own backbone (an ONNX model in a bucket) from its bytes.
#[async_trait]
pub trait BackboneLoader: Send + Sync {
    /// `id` is what its embeddings are stored under; the returned embedder's backbone carries it.
    async fn load(
        &self,
        id: &str,
        backbone: &crate::domain::ml_settings::CustomBackbone,
        model: Vec<u8>,
    ) -> Result<std::sync::Arc<dyn Embedder>, EmbedderError>;
}
