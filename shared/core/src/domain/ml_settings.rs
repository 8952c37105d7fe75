//! A project's ML-assist settings: whether the model prelabels and clusters, the precision its
//! prelabels must reach on held-out labels, and how many labels the first training waits for.
//! Stored projects from before these settings hold a plain boolean; it still reads.

use serde::{Deserialize, Deserializer, Serialize};

use super::errors::ValidationErrors;

pub const DEFAULT_TARGET_PRECISION: f64 = 0.95;
pub const DEFAULT_MIN_LABELS: u32 = 100;
/// Precision below a half is no assistance (a coin toss between two classes is as good), and
/// 1.0 could never be shown on a finite held-out set.
pub const TARGET_PRECISION_RANGE: std::ops::RangeInclusive<f64> = 0.5..=0.999;
/// At least 10 labels (each class with labels needs 10 anyway); at most the item cap.
pub const MIN_LABELS_RANGE: std::ops::RangeInclusive<u32> = 10..=500_000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MlAssist {
    pub enabled: bool,
    pub target_precision: f64,
    pub min_labels: u32,
}

impl Default for MlAssist {
    fn default() -> Self {
        Self {
            enabled: false,
            target_precision: DEFAULT_TARGET_PRECISION,
            min_labels: DEFAULT_MIN_LABELS,
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MlAssistInput {
    pub enabled: Option<bool>,
    pub target_precision: Option<f64>,
    pub min_labels: Option<u32>,
}

impl<'de> Deserialize<'de> for MlAssistInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            enabled: Option<bool>,
            target_precision: Option<f64>,
            min_labels: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Switch(bool),
            Fields(Fields),
        }
        match Either::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected true, false or {\"enabled\", \"target_precision\", \"min_labels\"}",
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
        }
    }
}

impl MlAssistInput {
    /// Records what is wrong with the given fields under `at` (`/ml_assist`).
    pub fn check(&self, at: &str, errors: &mut ValidationErrors) {
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
        assert!(serde_json::from_str::<MlAssistInput>("1").is_err());
    }
}
