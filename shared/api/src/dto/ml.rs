//! ML assist as the API shows it: the settings a project carries, and the shape a request may
//! give them in.

use labeling_core::domain::ml_settings::MlAssist as CoreMlAssist;
use serde::Serialize;
use utoipa::ToSchema;

/// A project's ML-assist settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MlAssist {
    /// Whether a model trained on the labels so far prelabels and clusters the rest.
    pub enabled: bool,
    /// The precision a class's prelabels must reach on held-out labels before that class is
    /// prelabeled at all.
    #[schema(minimum = 0.5, maximum = 0.999)]
    pub target_precision: f64,
    /// Labels the project needs before the first training (and 10 for each class that has any).
    #[schema(minimum = 10, maximum = 500000)]
    pub min_labels: u32,
}

impl From<CoreMlAssist> for MlAssist {
    fn from(settings: CoreMlAssist) -> Self {
        Self {
            enabled: settings.enabled,
            target_precision: settings.target_precision,
            min_labels: settings.min_labels,
        }
    }
}

/// ML assist in a request: `true` or `false` switches it (settings keep their values, or the
/// defaults 0.95 and 100), an object changes the fields it names.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum MlAssistChange {
    Switch(bool),
    Settings(MlAssistSettings),
}

/// The ML-assist fields a request changes; those left out keep their value.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MlAssistSettings {
    enabled: Option<bool>,
    #[schema(minimum = 0.5, maximum = 0.999)]
    target_precision: Option<f64>,
    #[schema(minimum = 10, maximum = 500000)]
    min_labels: Option<u32>,
}
