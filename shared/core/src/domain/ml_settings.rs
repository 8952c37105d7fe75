//! A project's ML-assist settings: whether the model prelabels and clusters, the precision its
//! prelabels must reach on held-out labels, and how many labels the first training waits for.
//! Stored projects from before these settings hold a plain boolean; it still reads. A project
//! may name its own ONNX backbone in a bucket instead of the default EfficientNet-Lite0.

use serde::{Deserialize, Deserializer, Serialize};

use super::errors::ValidationErrors;

pub const DEFAULT_TARGET_PRECISION: f64 = 0.95;
pub const DEFAULT_MIN_LABELS: u32 = 100;
/// Precision below a half is no assistance (a coin toss between two classes is as good), and
/// 1.0 could never be shown on a finite held-out set.
pub const TARGET_PRECISION_RANGE: std::ops::RangeInclusive<f64> = 0.5..=0.999;
/// At least 10 labels (each class with labels needs 10 anyway); at most the item cap.
pub const MIN_LABELS_RANGE: std::ops::RangeInclusive<u32> = 10..=500_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MlAssist {
    pub enabled: bool,
    pub target_precision: f64,
    pub min_labels: u32,
    /// The project's own backbone; the default one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backbone: Option<CustomBackbone>,
}

impl Default for MlAssist {
    fn default() -> Self {
        Self {
            enabled: false,
            target_precision: DEFAULT_TARGET_PRECISION,
            min_labels: DEFAULT_MIN_LABELS,
            backbone: None,
        }
    }
}

/// An ONNX backbone in a bucket and how to feed it: input `[N, 3, size, size]` RGB, each
/// 0-255 pixel mapped to `(x - mean) / std` per channel after a centre crop, and the output
/// holding the `[N, D]` embedding (see the README for exporting one from torchvision or timm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomBackbone {
    /// `s3://bucket/key.onnx`.
    pub model: String,
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    #[serde(default = "default_crop")]
    pub crop: f32,
    /// Per channel (R, G, B), on the 0-255 scale; torchvision's ImageNet values by default.
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    #[serde(default = "default_embedding_output")]
    pub embedding_output: String,
}

fn default_input_size() -> u32 {
    224
}
fn default_crop() -> f32 {
    0.875
}
fn default_mean() -> [f32; 3] {
    [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0]
}
fn default_std() -> [f32; 3] {
    [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0]
}
fn default_embedding_output() -> String {
    "embedding".to_owned()
}

impl CustomBackbone {
    /// The bucket and key of the model, when `model` is an `s3://bucket/key.onnx` URI.
    pub fn location(&self) -> Option<(&str, &str)> {
        let (bucket, key) = self.model.strip_prefix("s3://")?.split_once('/')?;
        (super::source::valid_bucket_name(bucket)
            && !key.is_empty()
            && key.len() <= 1024
            && key.to_ascii_lowercase().ends_with(".onnx"))
        .then_some((bucket, key))
    }

    fn check(&self, at: &str, errors: &mut ValidationErrors) {
        if self.location().is_none() {
            errors.push(
                format!("{at}/model"),
                "expected s3://bucket/key.onnx (a valid bucket name, a key ending in .onnx)",
            );
        }
        if !(16..=2048).contains(&self.input_size) {
            errors.push(
                format!("{at}/input_size"),
                "an input size is 16 to 2048 pixels",
            );
        }
        if !(self.crop > 0.0 && self.crop <= 1.0) {
            errors.push(
                format!("{at}/crop"),
                "a centre crop keeps more than 0 and at most 1",
            );
        }
        if !self.mean.iter().all(|m| m.is_finite()) {
            errors.push(format!("{at}/mean"), "three finite numbers");
        }
        if !self.std.iter().all(|s| s.is_finite() && *s != 0.0) {
            errors.push(format!("{at}/std"), "three finite numbers, none 0");
        }
        if self.embedding_output.trim().is_empty() || self.embedding_output.len() > 256 {
            errors.push(
                format!("{at}/embedding_output"),
                "the name of the model's embedding output (1 to 256 bytes)",
            );
        }
    }
}

impl<'de> Deserialize<'de> for MlAssist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = MlAssistInput::deserialize(deserializer)?;
        Ok(MlAssist::default().with(&input))
    }
}

/// What a request says about ML assist: `true`, `false`, or an object whose fields given
/// change (the others keep their value, or the default on create).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MlAssistInput {
    pub enabled: Option<bool>,
    pub target_precision: Option<f64>,
    pub min_labels: Option<u32>,
    /// `Some(None)`: back to the default backbone (`"backbone": null`).
    pub backbone: Option<Option<CustomBackbone>>,
}

impl<'de> Deserialize<'de> for MlAssistInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            enabled: Option<bool>,
            target_precision: Option<f64>,
            min_labels: Option<u32>,
            // Present and null means "the default backbone again".
            #[serde(default, deserialize_with = "present")]
            backbone: Option<Option<CustomBackbone>>,
        }
        fn present<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Option<CustomBackbone>>, D::Error> {
            Option::<CustomBackbone>::deserialize(deserializer).map(Some)
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Switch(bool),
            Fields(Fields),
        }
        match Either::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected true, false or {\"enabled\", \"target_precision\", \"min_labels\", \"backbone\"} (a backbone: {\"model\": \"s3://bucket/key.onnx\", \"input_size\", \"crop\", \"mean\", \"std\", \"embedding_output\"})",
            )
        })? {
            Either::Switch(enabled) => Ok(Self {
                enabled: Some(enabled),
                ..Self::default()
            }),
            Either::Fields(fields) => Ok(Self {
                enabled: fields.enabled,
                target_precision: fields.target_precision,
                min_labels: fields.min_labels,
                backbone: fields.backbone,
            }),
        }
    }
}

impl MlAssist {
    /// These settings with the given fields changed (not validated: see [`MlAssistInput::check`]).
    pub fn with(self, input: &MlAssistInput) -> Self {
        Self {
            enabled: input.enabled.unwrap_or(self.enabled),
            target_precision: input.target_precision.unwrap_or(self.target_precision),
            min_labels: input.min_labels.unwrap_or(self.min_labels),
            backbone: match &input.backbone {
                Some(choice) => choice.clone(),
                None => self.backbone,
            },
        }
    }
}

impl MlAssistInput {
    /// Records what is wrong with the given fields under `at` (`/ml_assist`).
    pub fn check(&self, at: &str, errors: &mut ValidationErrors) {
        if let Some(Some(backbone)) = &self.backbone {
            backbone.check(&format!("{at}/backbone"), errors);
        }
        if let Some(target) = self.target_precision
            && !TARGET_PRECISION_RANGE.contains(&target)
        {
            errors.push(
                format!("{at}/target_precision"),
                format!(
                    "a target precision is between {} and {}",
                    TARGET_PRECISION_RANGE.start(),
                    TARGET_PRECISION_RANGE.end()
                ),
            );
        }
        if let Some(labels) = self.min_labels
            && !MIN_LABELS_RANGE.contains(&labels)
        {
            errors.push(
                format!("{at}/min_labels"),
                format!(
                    "the labels before the first training are {} to {}",
                    MIN_LABELS_RANGE.start(),
                    MIN_LABELS_RANGE.end()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_boolean_reads_as_the_switch_with_default_settings() {
        let on: MlAssist = serde_json::from_str("true").unwrap();
        assert_eq!(
            on,
            MlAssist {
                enabled: true,
                ..MlAssist::default()
            }
        );
        let off: MlAssist = serde_json::from_str("false").unwrap();
        assert_eq!(off, MlAssist::default());
    }

    #[test]
    fn stored_settings_come_back_as_they_went_in() {
        let settings = MlAssist {
            enabled: true,
            target_precision: 0.9,
            min_labels: 250,
            backbone: Some(CustomBackbone {
                model: "s3://models/resnet50.onnx".to_owned(),
                input_size: 224,
                crop: 0.875,
                mean: default_mean(),
                std: default_std(),
                embedding_output: "pooled".to_owned(),
            }),
        };
        let json = serde_json::to_string(&settings).unwrap();
        assert_eq!(serde_json::from_str::<MlAssist>(&json).unwrap(), settings);
    }

    #[test]
    fn a_change_keeps_the_fields_it_does_not_name() {
        let input: MlAssistInput = serde_json::from_str(r#"{"min_labels": 40}"#).unwrap();
        let settings = MlAssist {
            enabled: true,
            target_precision: 0.9,
            min_labels: 250,
            backbone: None,
        }
        .with(&input);
        assert_eq!(settings.min_labels, 40);
        assert_eq!(settings.target_precision, 0.9);
        assert!(settings.enabled);
    }

    #[test]
    fn out_of_range_settings_and_unknown_fields_are_refused() {
        let mut errors = ValidationErrors::default();
        MlAssistInput {
            target_precision: Some(1.0),
            min_labels: Some(5),
            ..Default::default()
        }
        .check("/ml_assist", &mut errors);
        let pointers: Vec<_> = errors.0.iter().map(|e| e.pointer.clone()).collect();
        assert_eq!(
            pointers,
            ["/ml_assist/target_precision", "/ml_assist/min_labels"]
        );
        assert!(serde_json::from_str::<MlAssistInput>(r#"{"enable": true}"#).is_err());
        let mut errors = ValidationErrors::default();
        let bad: MlAssistInput = serde_json::from_str(
            r#"{"backbone": {"model": "s3://b/model.pt", "input_size": 8, "std": [1, 0, 1], "embedding_output": ""}}"#,
        )
        .unwrap();
        bad.check("/ml_assist", &mut errors);
        let pointers: Vec<_> = errors.0.iter().map(|e| e.pointer.clone()).collect();
        assert_eq!(
            pointers,
            [
                "/ml_assist/backbone/model",
                "/ml_assist/backbone/input_size",
                "/ml_assist/backbone/std",
                "/ml_assist/backbone/embedding_output"
            ]
        );
        let reset: MlAssistInput = serde_json::from_str(r#"{"backbone": null}"#).unwrap();
        assert_eq!(reset.backbone, Some(None));
        let kept: MlAssistInput = serde_json::from_str(r#"{"enabled": true}"#).unwrap();
        assert_eq!(kept.backbone, None);
        assert!(serde_json::from_str::<MlAssistInput>("1").is_err());
    }
}
