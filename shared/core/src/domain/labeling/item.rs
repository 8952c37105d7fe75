//! Items and their labels as stored: states, label history and its size limits.

use serde::{Deserialize, Serialize};

use super::provenance::PrelabelOutcome;

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
    /// A model's confidence in this label: set on prelabels that ML assist made, absent on
    /// labels people made (and on prelabels carried over from an earlier round).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
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
    /// What the labeler did with `prelabels`, set by the submit that labeled the item when its
    /// task carried prelabels; absent otherwise (skipped, or labeled from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prelabel: Option<PrelabelOutcome>,
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
            prelabel: None,
            labeled_by: version.labeled_by.clone(),
            labeled_at: Some(version.labeled_at),
            superseded: Vec::new(),
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::labeling::{
        MAX_ANNOTATIONS_PER_ITEM, MAX_POINTS_PER_ITEM, MAX_POLYGON_POINTS,
    };

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
                confidence: None,
            }],
            prelabels: Vec::new(),
            prelabel: None,
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
            confidence: None,
        }
    }

    fn worst_polygon(points: usize) -> StoredAnnotation {
        StoredAnnotation {
            polygon: Some(vec![[LONGEST, LONGEST]; points]),
            ..worst_box()
        }
    }

    /// An item at its largest: `labels` as its labels and, each with the longest confidence a
    /// model could give, as its prelabels; replaced labels kept up to the history's limit, the
    /// longest key and user name. (Only a model's prelabels carry confidences: labels, and so
    /// the history, are what people submitted.)
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
        item.prelabels = labels
            .into_iter()
            .map(|label| StoredAnnotation {
                confidence: Some(-1.234_567_9e-38),
                ..label
            })
            .collect();
        let size = |item: &ItemRecord| {
            let key = crate::keys::item("p_01JDZ8Q3M7X9V2K4N6P8R0S2T4", u64::MAX);
            crate::service::to_item(key, crate::keys::entity::ITEM, item)
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
