//! What a backbone expects and gives: input size, crop, normalization and output names.

/// How to feed a backbone and where its embedding comes out. A project that names its own ONNX
/// backbone declares these; [`BackboneSpec::efficientnet_lite0`] is the default model's.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneSpec {
    /// Stable and path-safe (`[a-z0-9-]`): embeddings are stored under it, so two backbones'
    /// vectors never mix.
    pub id: String,
    /// Side of the square input in pixels (the model's input is `[N, 3, size, size]`, RGB).
    pub input_size: u32,
    /// Fraction of the shorter side kept by the centre crop before the resize (0.875: the
    /// centre 87.5%, as these models were evaluated on ImageNet).
    pub crop: f32,
    /// Per-channel (R, G, B) value subtracted from each 0-255 pixel...
    pub mean: [f32; 3],
    /// ...and the divisor after it: `(x - mean) / std`. EfficientNet-Lite (TF) uses 127 and
    /// 128; torchvision and timm models use `255 * [0.485, 0.456, 0.406]` and
    /// `255 * [0.229, 0.224, 0.225]`.
    pub std: [f32; 3],
    /// Name of the output holding the `[N, D]` embedding.
    pub embedding_output: String,
    /// Name of the output holding the `[N, classes]` logits, when the model has one (only
    /// [`crate::OnnxEmbedder::classify`] reads it).
    pub logits_output: Option<String>,
}

impl BackboneSpec {
    /// EfficientNet-Lite0 as `infra/models/convert_efficientnet_lite0.py` exports it.
    pub fn efficientnet_lite0() -> Self {
        Self {
            id: "efficientnet-lite0".into(),
            input_size: 224,
            crop: 0.875,
            mean: [127.0; 3],
            std: [128.0; 3],
            embedding_output: "embedding".into(),
            logits_output: Some("logits".into()),
        }
    }

    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.id.is_empty()
                && self
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "backbone id {:?} must be [a-z0-9-]",
            self.id
        );
        anyhow::ensure!(
            (16..=2048).contains(&self.input_size),
            "input size {} is not within 16..=2048",
            self.input_size
        );
        anyhow::ensure!(
            self.crop > 0.0 && self.crop <= 1.0,
            "crop {} is not within (0, 1]",
            self.crop
        );
        anyhow::ensure!(
            self.std.iter().all(|s| s.is_finite() && *s != 0.0)
                && self.mean.iter().all(|m| m.is_finite()),
            "mean and std must be finite and std non-zero"
        );
        Ok(())
    }
}
