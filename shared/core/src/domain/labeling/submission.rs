//! A submission as sent, its limits and its validation against the task and the project.

use serde::Deserialize;

use super::item::StoredAnnotation;
use super::task::{TaskItem, TaskRecord};
use crate::domain::errors::ValidationErrors;
use crate::domain::geometry::{BoundingBox, Polygon};
use crate::domain::project::{ProjectRecord, TaskType};

/// One item of a submission, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubmittedItemInput {
    pub item_id: Option<u64>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub annotations: Option<Vec<AnnotationInput>>,
    #[serde(default)]
    pub skip: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnnotationInput {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub bbox: Option<Vec<f64>>,
    #[serde(default)]
    pub polygon: Option<Vec<Vec<f64>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubmissionInput {
    #[serde(default)]
    pub items: Vec<SubmittedItemInput>,
}

/// What a validated submission does to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Labeled(Vec<StoredAnnotation>),
    Skipped,
}

// An item's row holds its labels, the labels of the previous round (shown as prelabels after
// a start-over that keeps them) and up to 96 KB of replaced labels, and must stay under the
// table's 400 KB item limit. Stored, a box takes at most 117 bytes and a polygon 128 bytes
// plus 54 a point (coordinates of up to 24 characters), so these limits keep an item's labels
// under 117 KB and its whole row near 340 KB (`the_largest_item_fits_in_a_row`).
/// Boxes or polygons on one image.
pub const MAX_ANNOTATIONS_PER_ITEM: usize = 1000;
/// Points of one polygon.
pub const MAX_POLYGON_POINTS: usize = 1000;
/// Points of all the polygons of one image together.
pub const MAX_POINTS_PER_ITEM: usize = 1000;

/// Validates a whole submission against the task's items and the project's classes.
/// All-or-nothing: every problem is reported, each with a pointer into the request.
pub fn validate_submission(
    project: &ProjectRecord,
    task: &TaskRecord,
    input: &SubmissionInput,
) -> Result<Vec<(u64, ItemOutcome)>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let mut outcomes = Vec::with_capacity(input.items.len());
    let mut seen = std::collections::HashSet::new();
    for (index, submitted) in input.items.iter().enumerate() {
        let at = format!("/items/{index}");
        let Some(item_id) = submitted.item_id else {
            errors.push(format!("{at}/item_id"), "item_id is required");
            continue;
        };
        let Some(task_item) = task.items.iter().find(|i| i.item == item_id) else {
            errors.push(
                format!("{at}/item_id"),
                format!("item {item_id} is not in this task"),
            );
            continue;
        };
        if !seen.insert(item_id) {
            errors.push(
                format!("{at}/item_id"),
                format!("item {item_id} appears twice"),
            );
            continue;
        }
        if submitted.skip == Some(true) {
            if submitted.labels.as_ref().is_some_and(|l| !l.is_empty())
                || submitted
                    .annotations
                    .as_ref()
                    .is_some_and(|a| !a.is_empty())
            {
                errors.push(at, "a skipped item carries no labels");
            } else {
                outcomes.push((item_id, ItemOutcome::Skipped));
            }
            continue;
        }
        if let Some(labels) = validate_item(project, task_item, submitted, &at, &mut errors) {
            outcomes.push((item_id, ItemOutcome::Labeled(labels)));
        }
    }
    for task_item in &task.items {
        if !seen.contains(&task_item.item) {
            errors.push(
                "/items",
                format!(
                    "item {} of the task is missing: label or skip it",
                    task_item.item
                ),
            );
        }
    }
    errors.into_result().map(|()| outcomes)
}

fn validate_item(
    project: &ProjectRecord,
    task_item: &TaskItem,
    submitted: &SubmittedItemInput,
    at: &str,
    errors: &mut ValidationErrors,
) -> Option<Vec<StoredAnnotation>> {
    let before = errors.0.len();
    let mut stored = Vec::new();
    if project.task_type.is_classification() {
        if submitted.annotations.is_some() {
            errors.push(
                format!("{at}/annotations"),
                "classification takes `labels`, not annotations",
            );
        }
        let labels = submitted.labels.as_deref().unwrap_or_default();
        match project.task_type {
            TaskType::ImageClassificationMulticlass if labels.len() != 1 => errors.push(
                format!("{at}/labels"),
                format!("multi-class takes exactly one class, got {}", labels.len()),
            ),
            TaskType::ImageClassificationMultilabel if labels.is_empty() => errors.push(
                format!("{at}/labels"),
                "multi-label takes one or more classes (or skip the item)",
            ),
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (index, name) in labels.iter().enumerate() {
            match project.class_by_name(name) {
                None => errors.push(
                    format!("{at}/labels/{index}"),
                    format!("{name:?} is not a label class of this project"),
                ),
                Some(class) if !seen.insert(class.id) => errors.push(
                    format!("{at}/labels/{index}"),
                    format!("{name:?} appears twice"),
                ),
                Some(class) => stored.push(StoredAnnotation {
                    class_id: class.id,
                    bbox: None,
                    polygon: None,
                    confidence: None,
                }),
            }
        }
    } else {
        if submitted.labels.is_some() {
            errors.push(
                format!("{at}/labels"),
                "detection and segmentation take `annotations`",
            );
        }
        let Some(annotations) = submitted.annotations.as_ref() else {
            errors.push(
                format!("{at}/annotations"),
                "annotations are required (an empty list means nothing to mark)",
            );
            return None;
        };
        if annotations.len() > MAX_ANNOTATIONS_PER_ITEM {
            errors.push(
                format!("{at}/annotations"),
                format!(
                    "at most {MAX_ANNOTATIONS_PER_ITEM} annotations on one image, got {}",
                    annotations.len()
                ),
            );
            return None;
        }
        let points: usize = annotations
            .iter()
            .filter_map(|a| a.polygon.as_ref().map(Vec::len))
            .sum();
        if points > MAX_POINTS_PER_ITEM {
            errors.push(
                format!("{at}/annotations"),
                format!(
                    "at most {MAX_POINTS_PER_ITEM} polygon points on one image in all, got {points}"
                ),
            );
        }
        let (Some(width), Some(height)) = (task_item.width, task_item.height) else {
            errors.push(
                at.to_owned(),
                "the image size is unknown, so shapes cannot be checked",
            );
            return None;
        };
        for (index, annotation) in annotations.iter().enumerate() {
            let at = format!("{at}/annotations/{index}");
            let class = project.class_by_name(&annotation.label);
            if class.is_none() {
                errors.push(
                    format!("{at}/label"),
                    format!(
                        "{:?} is not a label class of this project",
                        annotation.label
                    ),
                );
            }
            let shape = match project.task_type {
                TaskType::ObjectDetection => {
                    if annotation.polygon.is_some() {
                        errors.push(format!("{at}/polygon"), "object detection takes boxes only");
                        None
                    } else {
                        match &annotation.bbox {
                            None => {
                                errors.push(format!("{at}/bbox"), "a box is required");
                                None
                            }
                            Some(values) => match BoundingBox::parse(values, width, height) {
                                Ok(bbox) => Some((Some(bbox.to_array()), None)),
                                Err(error) => {
                                    errors.push(format!("{at}/bbox"), error.to_string());
                                    None
                                }
                            },
                        }
                    }
                }
                _ => match &annotation.polygon {
                    None => {
                        errors.push(format!("{at}/polygon"), "a polygon is required");
                        None
                    }
                    Some(points) if points.len() > MAX_POLYGON_POINTS => {
                        errors.push(
                            format!("{at}/polygon"),
                            format!(
                                "a polygon has at most {MAX_POLYGON_POINTS} points, got {}",
                                points.len()
                            ),
                        );
                        None
                    }
                    Some(points) => match Polygon::parse(points, width, height) {
                        Ok(polygon) => Some((
                            Some(polygon.bounding_box().to_array()),
                            Some(polygon.points().to_vec()),
                        )),
                        Err(error) => {
                            errors.push(format!("{at}/polygon"), error.to_string());
                            None
                        }
                    },
                },
            };
            if let (Some(class), Some((bbox, polygon))) = (class, shape) {
                stored.push(StoredAnnotation {
                    class_id: class.id,
                    bbox,
                    polygon,
                    confidence: None,
                });
            }
        }
    }
    (errors.0.len() == before).then_some(stored)
}
