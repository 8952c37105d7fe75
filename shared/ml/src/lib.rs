//! The ML backbone: ONNX Runtime sessions (CUDA when there, CPU otherwise), image decoding with
//! limits, centre crop and resize, and the embedder port's adapter built on them.

mod embedder;
mod preprocess;
mod spec;

pub use embedder::{DEFAULT_BATCH_SIZE, OnnxBackboneLoader, OnnxEmbedder};
pub use preprocess::{MAX_PIXELS, MAX_SIDE, crop_resize_normalize, decode, preprocess};
pub use spec::BackboneSpec;
