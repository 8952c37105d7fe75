//! Typed shapes that use cases hand to the API layer (which turns them into its own DTOs):
//! labels as a labeler reads them, and the changes an admin asks of a project.

use serde::Serialize;

use super::labeling::StoredAnnotation;
use super::project::{Instructions, ProjectRecord};

/// One label as a client reads it: a class name for classification, a named shape otherwise.
/// Serialized untagged, so a classification item's labels are a plain list of names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LabelView {
    Class(String),
    Shape(ShapeView),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeView {
    pub label: String,
    /// `[x, y, width, height]` in pixels.
    pub bbox: Option<[f64; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<[f64; 2]>>,
}

/// Stored annotations with their class ids turned into the project's class names.
pub fn label_views(project: &ProjectRecord, annotations: &[StoredAnnotation]) -> Vec<LabelView> {
    let name = |id: u32| project.class_name(id).unwrap_or("?").to_owned();
    annotations
        .iter()
        .map(|annotation| {
            if project.task_type.is_classification() {
                LabelView::Class(name(annotation.class_id))
            } else {
                LabelView::Shape(ShapeView {
                    label: name(annotation.class_id),
                    bbox: annotation.bbox,
                    polygon: annotation.polygon.clone(),
                })
            }
        })
        .collect()
}

/// A prelabel as a labeler reads it at checkout: always an object, so a client finds the
/// class under `label` whatever the task type; a shape's `bbox` (and `polygon`) as in
/// [`ShapeView`]; `confidence` only on prelabels a model made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrelabelView {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<[f64; 2]>>,
    /// The model's confidence, as the `f32` it is stored as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// Stored prelabels with their class ids turned into the project's class names.
pub fn prelabel_views(
    project: &ProjectRecord,
    prelabels: &[StoredAnnotation],
) -> Vec<PrelabelView> {
    prelabels
        .iter()
        .map(|prelabel| PrelabelView {
            label: project
                .class_name(prelabel.class_id)
                .unwrap_or("?")
                .to_owned(),
            bbox: prelabel.bbox,
            polygon: prelabel.polygon.clone(),
            confidence: prelabel.confidence,
        })
        .collect()
}

/// What `PATCH /projects/{id}` may change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectChanges {
    pub instructions: Option<Instructions>,
    pub lease_seconds: Option<u32>,
    pub incremental_refresh: Option<bool>,
    pub ml_assist: Option<super::ml_settings::MlAssistInput>,
}
