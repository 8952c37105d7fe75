//! Labels, items and tasks: what is stored, and the validation of a submission.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ValidationErrors;
use super::geometry::{BoundingBox, Polygon};
use super::project::{ProjectRecord, TaskType};

/// One stored label: a class, and for detection a box, for segmentation a polygon and its box.
/// Classes are stored by their stable id, so names can be shown however classes grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnnotation {
    #[serde(rename = "c")]
    pub class_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<[f64; 2]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// In a waiting task of a priority queue (released, rejected, expired and reclaimed).
    Queued,
    InTask,
    Labeled,
    Skipped,
    /// The image could not be read when it was handed out.
    Missing,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Queued => "queued",
            ItemState::InTask => "in_task",
            ItemState::Labeled => "labeled",
            ItemState::Skipped => "skipped",
            ItemState::Missing => "missing",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "queued" => Some(Self::Queued),
            "in_task" | "in-task" | "intask" => Some(Self::InTask),
            "labeled" => Some(Self::Labeled),
            "skipped" => Some(Self::Skipped),
            "missing" => Some(Self::Missing),
            _ => None,
        }
    }
}

/// The stored item (`P#<pid>` / `ITEM#<item>`), created when the item is first handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub item: u64,
    pub key: String,
    pub round: u32,
    pub state: ItemState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default)]
    pub labels: Vec<StoredAnnotation>,
    #[serde(default)]
    pub prelabels: Vec<StoredAnnotation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeled_at: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Labels this item held before a reject or a start-over replaced them, newest last, so
    /// that an export which began before the change still writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<LabelVersion>,
}

/// Labels an item held from `labeled_at` until `superseded_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelVersion {
    pub round: u32,
    pub labels: Vec<StoredAnnotation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeled_by: Option<String>,
    pub labeled_at: i64,
    pub superseded_at: i64,
}

/// How long replaced labels are kept for exports that began before the change: far longer
/// than any export runs.
pub const LABEL_HISTORY_MILLIS: i64 = 24 * 3600 * 1000;
/// At most this many replaced versions an item, however often it is rejected in a day.
pub const MAX_LABEL_VERSIONS: usize = 4;
/// Replaced labels are dropped, oldest first, beyond this many bytes, keeping the item well
/// under the table's 400 KB item limit.
const MAX_LABEL_HISTORY_BYTES: usize = 96 * 1024;

impl ItemRecord {
    /// The versions to store once this item's current labels are replaced at `now`: the
    /// current labels (when the item is labeled) join the recent history; versions older than
    /// [`LABEL_HISTORY_MILLIS`], beyond [`MAX_LABEL_VERSIONS`] or too large are dropped.
    pub fn history_after_replacing(&self, now: i64) -> Vec<LabelVersion> {
        let mut history: Vec<LabelVersion> = self
            .superseded
            .iter()
            .filter(|version| now - version.superseded_at < LABEL_HISTORY_MILLIS)
            .cloned()
            .collect();
        if self.state == ItemState::Labeled
            && let Some(labeled_at) = self.labeled_at
        {
            history.push(LabelVersion {
                round: self.round,
                labels: self.labels.clone(),
                labeled_by: self.labeled_by.clone(),
                labeled_at,
                superseded_at: now,
            });
        }
        let excess = history.len().saturating_sub(MAX_LABEL_VERSIONS);
        history.drain(..excess);
        while !history.is_empty()
            && serde_json::to_vec(&history).map_or(0, |bytes| bytes.len()) > MAX_LABEL_HISTORY_BYTES
        {
            history.remove(0);
        }
        history
    }

    /// This item as an export with a snapshot at `at` of `round` sees it: labeled then, with
    /// the labels it had then; `None` when it was not labeled in that round at that time.
    pub fn as_labeled_at(self, round: u32, at: i64) -> Option<ItemRecord> {
        if self.round == round
            && self.state == ItemState::Labeled
            && self.labeled_at.is_some_and(|labeled_at| labeled_at <= at)
        {
            return Some(self);
        }
        let version = self.superseded.iter().rev().find(|version| {
            version.round == round && version.labeled_at <= at && at < version.superseded_at
        })?;
        Some(ItemRecord {
            round,
            state: ItemState::Labeled,
            task_id: None,
            labels: version.labels.clone(),
            prelabels: Vec::new(),
            labeled_by: version.labeled_by.clone(),
            labeled_at: Some(version.labeled_at),
            superseded: Vec::new(),
            ..self
        })
    }
}

/// Which queue a task came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Fresh items in the shuffled order.
    Manual,
    /// Released, rejected or expired work.
    Requeued,
    Prelabeled,
    Clustered,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Manual => "manual",
            TaskKind::Requeued => "requeued",
            TaskKind::Prelabeled => "prelabeled",
            TaskKind::Clustered => "clustered",
        }
    }
    /// Lower sorts first in the work partition.
    pub fn priority(self) -> u8 {
        match self {
            TaskKind::Requeued => 0,
            TaskKind::Prelabeled => 1,
            TaskKind::Clustered => 2,
            TaskKind::Manual => 3,
        }
    }
    /// The counter of waiting items of this kind.
    pub fn queue_counter(self) -> &'static str {
        match self {
            TaskKind::Manual => "q_manual",
            TaskKind::Requeued => "q_requeued",
            TaskKind::Prelabeled => "q_prelabeled",
            TaskKind::Clustered => "q_clustered",
        }
    }
}

/// An item as a task carries it, so a task needs no further reads to be handed out or checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskItem {
    pub item: u64,
    pub key: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    #[serde(default)]
    pub prelabels: Vec<StoredAnnotation>,
}

/// A live lease (`P#<pid>` / `TASK#<tid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub round: u32,
    pub kind: TaskKind,
    pub items: Vec<TaskItem>,
    pub labeler: String,
    pub lease_expires_at: i64,
    pub lease_version: u64,
    pub created_at: i64,
}

/// What a work-partition entry holds: a waiting task, or the index entry of a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkEntry {
    pub task_id: String,
    pub kind: TaskKind,
    pub items: Vec<TaskItem>,
    /// For lease entries: the lease version the entry was written for.
    #[serde(default)]
    pub lease_version: u64,
    /// For lease entries: who holds the lease, so a member's leases are found without
    /// reading every task (absent in entries written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeler: Option<String>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    Submitted,
    /// Its lease expired and another labeler's checkout took the items.
    TakenOver,
    Released,
    /// The labeler was removed from the project; the items went back to the queue.
    Revoked,
}

/// What stays of a task (`P#<pid>` / `TASK#<tid>`) once it ended, so a late submit, renew
/// or release is told what happened instead of "no such task". The table deletes it after
/// `ttl` (clean-up only: nothing depends on it being gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedTask {
    pub id: String,
    /// Empty when the task's lease entry predates recording its labeler.
    pub labeler: String,
    pub ended: TaskEnd,
    pub ended_at: i64,
    /// Epoch seconds.
    pub ttl: i64,
}

/// How long an ended task is remembered: longer than the longest lease.
pub const ENDED_TASK_KEPT_MILLIS: i64 = 8 * 24 * 3600 * 1000;

impl EndedTask {
    pub fn new(id: &str, labeler: &str, ended: TaskEnd, now: i64) -> Self {
        Self {
            id: id.to_owned(),
            labeler: labeler.to_owned(),
            ended,
            ended_at: now,
            ttl: (now + ENDED_TASK_KEPT_MILLIS) / 1000,
        }
    }
}

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
                });
            }
        }
    }
    (errors.0.len() == before).then_some(stored)
}

/// Labels in the shape the API speaks: class names for classification, `{label, bbox}` for
/// boxes, `{label, polygon, bbox}` for polygons.
pub fn annotations_to_json(project: &ProjectRecord, annotations: &[StoredAnnotation]) -> Value {
    serde_json::to_value(super::presented::label_views(project, annotations)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labeled_item(round: u32, class_id: u32, labeled_at: i64) -> ItemRecord {
        ItemRecord {
            item: 7,
            key: "a.png".to_owned(),
            round,
            state: ItemState::Labeled,
            task_id: None,
            labels: vec![StoredAnnotation {
                class_id,
                bbox: None,
                polygon: None,
            }],
            prelabels: Vec::new(),
            labeled_by: Some("ann".to_owned()),
            labeled_at: Some(labeled_at),
            width: Some(8),
            height: Some(8),
            superseded: Vec::new(),
        }
    }

    /// The item relabeled with `class_id` at `at` in `round`, its labels before kept.
    fn relabeled(item: &ItemRecord, round: u32, class_id: u32, at: i64) -> ItemRecord {
        ItemRecord {
            superseded: item.history_after_replacing(at),
            ..labeled_item(round, class_id, at)
        }
    }

    fn class_at(item: &ItemRecord, round: u32, at: i64) -> Option<u32> {
        item.clone()
            .as_labeled_at(round, at)
            .map(|seen| seen.labels[0].class_id)
    }

    #[test]
    fn each_moment_sees_the_labels_of_that_moment() {
        let first = labeled_item(0, 1, 100);
        let second = relabeled(&first, 0, 2, 200);
        let third = relabeled(&second, 1, 3, 300);
        assert_eq!(class_at(&third, 0, 50), None, "not labeled yet");
        assert_eq!(class_at(&third, 0, 150), Some(1));
        assert_eq!(class_at(&third, 0, 250), Some(2));
        assert_eq!(class_at(&third, 0, 350), None, "round 0 was over");
        assert_eq!(class_at(&third, 1, 350), Some(3));
        assert_eq!(class_at(&third, 1, 250), None);
    }

    #[test]
    fn an_unlabeled_item_adds_no_version() {
        let mut item = labeled_item(0, 1, 100);
        item.state = ItemState::Skipped;
        assert!(item.history_after_replacing(200).is_empty());
    }

    #[test]
    fn history_keeps_a_day_and_a_few_versions() {
        let mut item = labeled_item(0, 0, 0);
        for version in 1..10u32 {
            item = relabeled(&item, 0, version, i64::from(version) * 1000);
        }
        assert_eq!(item.superseded.len(), MAX_LABEL_VERSIONS);
        assert_eq!(
            item.superseded.last().map(|v| v.labels[0].class_id),
            Some(8)
        );
        let day_later = 9000 + LABEL_HISTORY_MILLIS;
        let kept = item.history_after_replacing(day_later);
        assert_eq!(kept.len(), 1, "only the version replaced now: {kept:?}");
    }

    #[test]
    fn large_histories_drop_their_oldest_versions() {
        let polygon: Vec<[f64; 2]> = (0..3000).map(|i| [f64::from(i), 1.5]).collect();
        let mut item = labeled_item(0, 0, 0);
        item.labels[0].polygon = Some(polygon);
        for version in 1..4 {
            let mut next = relabeled(&item, 0, version, i64::from(version) * 10);
            next.labels = item.labels.clone();
            item = next;
        }
        let bytes = serde_json::to_vec(&item.superseded).unwrap().len();
        assert!(bytes <= MAX_LABEL_HISTORY_BYTES, "{bytes} bytes kept");
        assert!(!item.superseded.is_empty());
        // A single version larger than the allowance is not kept at all.
        let polygon: Vec<[f64; 2]> = (0..20_000).map(|i| [f64::from(i), 1.5]).collect();
        item.labels[0].polygon = Some(polygon);
        assert!(item.history_after_replacing(100).is_empty());
    }

    /// The longest a coordinate prints (23 characters).
    const LONGEST: f64 = 1.234_567_890_123_456_7e-300;

    fn worst_box() -> StoredAnnotation {
        StoredAnnotation {
            class_id: 499,
            bbox: Some([LONGEST; 4]),
            polygon: None,
        }
    }

    fn worst_polygon(points: usize) -> StoredAnnotation {
        StoredAnnotation {
            polygon: Some(vec![[LONGEST, LONGEST]; points]),
            ..worst_box()
        }
    }

    /// An item at its largest: `labels` as its labels and prelabels, replaced labels kept up
    /// to the history's limit, the longest key and user name.
    fn largest_item(labels: Vec<StoredAnnotation>, history_labels: &[StoredAnnotation]) -> usize {
        let mut item = labeled_item(1, 0, 0);
        item.key = "k".repeat(1024);
        item.labeled_by = Some("u".repeat(128));
        item.task_id = Some("t_01JDZ8Q3M7X9V2K4N6P8R0S2T4".to_owned());
        for version in 1..=8usize {
            let mut next = ItemRecord {
                superseded: item.history_after_replacing(version as i64),
                labeled_at: Some(version as i64),
                ..item.clone()
            };
            // Versions of about a quarter of the allowance each, of slightly different sizes,
            // so the history fills its allowance closely.
            let each = serde_json::to_vec(&history_labels[0]).unwrap().len() + 1;
            let count = (MAX_LABEL_HISTORY_BYTES / 4 / each + version % 3).saturating_sub(2);
            next.labels = history_labels[..count.min(history_labels.len())].to_vec();
            item = next;
        }
        let history_json = serde_json::to_vec(&item.superseded).unwrap().len();
        assert!(history_json <= MAX_LABEL_HISTORY_BYTES);
        assert!(
            history_json > MAX_LABEL_HISTORY_BYTES * 3 / 4,
            "{history_json}"
        );
        item.labels = labels.clone();
        item.prelabels = labels;
        let size = |item: &ItemRecord| {
            let key = crate::keys::item("p_01JDZ8Q3M7X9V2K4N6P8R0S2T4", u64::MAX);
            crate::service::to_item(key, "item", item)
                .unwrap()
                .size_bytes()
        };
        let with_history = size(&item);
        item.superseded.clear();
        let without = size(&item);
        // The table counts the history at most a tenth above its JSON size (brackets of each
        // point); a history filling its whole allowance adds at most this much.
        let history = with_history - without;
        assert!(
            history * 10 <= history_json * 11,
            "{history} for {history_json}"
        );
        without + MAX_LABEL_HISTORY_BYTES * 11 / 10
    }

    #[test]
    fn the_largest_item_fits_in_a_row() {
        let limit = crate::ports::table::MAX_ITEM_BYTES;
        let boxes = vec![worst_box(); MAX_ANNOTATIONS_PER_ITEM];
        let polygons: Vec<_> = (0..MAX_POINTS_PER_ITEM / 3)
            .map(|i| {
                worst_polygon(if i == 0 {
                    3 + MAX_POINTS_PER_ITEM % 3
                } else {
                    3
                })
            })
            .collect();
        let long_polygon = vec![worst_polygon(MAX_POLYGON_POINTS)];
        for (case, labels) in [
            ("boxes", boxes.clone()),
            ("polygons", polygons.clone()),
            ("one long polygon", long_polygon),
        ] {
            for (history, history_labels) in [("boxes", &boxes), ("polygons", &polygons)] {
                let bytes = largest_item(labels.clone(), history_labels);
                eprintln!("{case} with a history of {history}: {bytes} bytes");
                // Headroom for what the estimate may miss: at least 40 KB below the limit.
                assert!(
                    bytes + 40 * 1024 <= limit,
                    "{case} with a history of {history}: {bytes} bytes"
                );
            }
        }
    }
}
