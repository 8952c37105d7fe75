//! The ML backbone: ONNX Runtime sessions (CUDA when there, CPU otherwise), image decoding with
//! limits, centre crop and resize, and the embedder port's adapter built on them; the detection
//! backbone's letterboxed feature maps beside it.

mod embedder;
mod features;
mod preprocess;
mod spec;

pub use embedder::{DEFAULT_BATCH_SIZE, OnnxBackboneLoader, OnnxEmbedder};
pub use features::{FEATURE_BATCH_SIZE, FeatureSpec, OnnxFeatureExtractor, letterbox_preprocess};
pub use preprocess::{
    MAX_PIXELS, MAX_SIDE, crop_resize_normalize, decode, letterbox_normalize, preprocess,
};
pub use spec::BackboneSpec;
