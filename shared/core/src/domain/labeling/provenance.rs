//! Provenance of labels: what a labeler did with the prelabels an item was handed out with,
//! per item (`PrelabelOutcome`) and, for boxes, per box (`judge_boxes`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::item::StoredAnnotation;

/// What became of an item's prelabels once a labeler submitted the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrelabelOutcome {
    /// Submitted as they were: the same classes (and for shapes, the same shapes).
    Accepted,
    /// Some of the prelabels' classes stayed, but not all of it is as it was.
    Edited,
    /// None of the prelabels' classes stayed.
    Replaced,
}

/// How far apart (in pixels) two coordinates may be and still be the same shape: a client
/// that echoes a prelabel's box back may round it a little.
pub const SAME_GEOMETRY_PIXELS: f64 = 0.01;

impl PrelabelOutcome {
    pub const ALL: [PrelabelOutcome; 3] = [
        PrelabelOutcome::Accepted,
        PrelabelOutcome::Edited,
        PrelabelOutcome::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrelabelOutcome::Accepted => "accepted",
            PrelabelOutcome::Edited => "edited",
            PrelabelOutcome::Replaced => "replaced",
        }
    }

    /// Judges submitted `labels` against the `prelabels` the item was handed out with;
    /// `None` when there were no prelabels. Accepted: the same set of classes, and for boxes
    /// and polygons the same shapes in any order; replaced: no class in common; edited:
    /// anything between (a class added or dropped in multi-label, a box moved).
    pub fn judge(prelabels: &[StoredAnnotation], labels: &[StoredAnnotation]) -> Option<Self> {
        if prelabels.is_empty() {
            return None;
        }
        let classes = |annotations: &[StoredAnnotation]| -> BTreeSet<u32> {
            annotations.iter().map(|a| a.class_id).collect()
        };
        let (before, after) = (classes(prelabels), classes(labels));
        Some(if before.is_disjoint(&after) {
            PrelabelOutcome::Replaced
        } else if before == after && same_shapes(prelabels, labels) {
            PrelabelOutcome::Accepted
        } else {
            PrelabelOutcome::Edited
        })
    }
}

fn has_shape(annotation: &StoredAnnotation) -> bool {
    annotation.bbox.is_some() || annotation.polygon.is_some()
}

/// Whether two lists hold the same shapes, each of one matched by a distinct one of the other
/// (order aside). Classification labels carry no shape, so their classes decide alone.
fn same_shapes(prelabels: &[StoredAnnotation], labels: &[StoredAnnotation]) -> bool {
    if !prelabels.iter().chain(labels).any(has_shape) {
        return true;
    }
    if prelabels.len() != labels.len() {
        return false;
    }
    let mut unmatched: Vec<&StoredAnnotation> = prelabels.iter().collect();
    labels.iter().all(|label| {
        match unmatched
            .iter()
            .position(|prelabel| same_annotation(prelabel, label))
        {
            Some(found) => {
                unmatched.swap_remove(found);
                true
            }
            None => false,
        }
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME_GEOMETRY_PIXELS
}

fn same_annotation(a: &StoredAnnotation, b: &StoredAnnotation) -> bool {
    let same_box = match (a.bbox, b.bbox) {
        (None, None) => true,
        (Some(a), Some(b)) => a.iter().zip(b).all(|(a, b)| close(*a, b)),
        _ => false,
    };
    let same_polygon = match (&a.polygon, &b.polygon) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| close(a[0], b[0]) && close(a[1], b[1]))
        }
        _ => false,
    };
    a.class_id == b.class_id && same_box && same_polygon
}

/// The prelabel a submitted label came from, as far as can be told: one of the same class
/// and shape, else one of the same class.
pub fn source_prelabel<'a>(
    prelabels: &'a [StoredAnnotation],
    label: &StoredAnnotation,
) -> Option<&'a StoredAnnotation> {
    prelabels
        .iter()
        .find(|prelabel| same_annotation(prelabel, label))
        .or_else(|| {
            prelabels
                .iter()
                .find(|prelabel| prelabel.class_id == label.class_id)
        })
}

/// What became of one box: a submitted box kept from a prelabel unchanged (`Accepted`) or
/// corrected (`Edited`), a prelabel box the labeler removed (`Deleted`), or a box the labeler
/// drew where the model proposed none (`Added`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxOutcome {
    Accepted,
    Edited,
    Deleted,
    Added,
}

impl BoxOutcome {
    pub const ALL: [BoxOutcome; 4] = [
        BoxOutcome::Accepted,
        BoxOutcome::Edited,
        BoxOutcome::Deleted,
        BoxOutcome::Added,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BoxOutcome::Accepted => "accepted",
            BoxOutcome::Edited => "edited",
            BoxOutcome::Deleted => "deleted",
            BoxOutcome::Added => "added",
        }
    }
}

/// The overlap at or above which a submitted box of the prelabel's class is the prelabel
/// accepted: a nudge of a pixel or two (or a client's rounding) changes nothing a detector
/// learns, while a box a labeler redrew to fit moves further than that.
pub const ACCEPTED_MIN_IOU: f64 = 0.95;

/// The overlap at or above which a submitted box is a prelabel box corrected (moved, resized
/// or given another class) rather than another object: a badly placed proposal that the
/// labeler dragged onto its object still marks the same object (0.3 still pairs a box
/// shifted by half its width, IoU 1/3); below it the two boxes cover mostly different
/// pixels, so they are a proposal deleted and another object added.
pub const EDITED_MIN_IOU: f64 = 0.3;

/// One submitted box, judged against the prelabel boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgedBox {
    /// The box's index among the submitted labels.
    pub label: usize,
    /// `Accepted`, `Edited` or `Added` (never `Deleted`: that is a prelabel's fate).
    pub outcome: BoxOutcome,
    /// The index among the prelabels of the box it came from; `None` when `Added`.
    pub prelabel: Option<usize>,
    /// That prelabel's confidence, when the model gave one.
    pub confidence: Option<f32>,
}

/// What a labeler did with each prelabel box of one item (see [`judge_boxes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoxJudgement {
    /// One entry per submitted box, in label order.
    pub boxes: Vec<JudgedBox>,
    /// The indices among the prelabels of the boxes no submitted box came from, in order.
    pub deleted: Vec<usize>,
}

impl BoxJudgement {
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty() && self.deleted.is_empty()
    }

    /// What the submitted label at index `label` was judged; `None` for a label without a
    /// box (or any label, when no prelabel had a box).
    pub fn of_label(&self, label: usize) -> Option<&JudgedBox> {
        self.boxes
            .binary_search_by_key(&label, |judged| judged.label)
            .ok()
            .and_then(|at| self.boxes.get(at))
    }

    /// Each box's outcome with the class it counts under: a prelabel's box (accepted, edited,
    /// deleted) under the prelabel's class, since the counts measure the model's proposals
    /// per class, and an added box under its own class, since no proposal had one. The same
    /// `prelabels` and `labels` the judgement was made from.
    pub fn counted<'a>(
        &'a self,
        prelabels: &'a [StoredAnnotation],
        labels: &'a [StoredAnnotation],
    ) -> impl Iterator<Item = (BoxOutcome, u32)> + 'a {
        let submitted = self.boxes.iter().filter_map(|judged| {
            let class = match judged.prelabel {
                Some(prelabel) => prelabels.get(prelabel)?.class_id,
                None => labels.get(judged.label)?.class_id,
            };
            Some((judged.outcome, class))
        });
        let deleted = self
            .deleted
            .iter()
            .filter_map(|prelabel| Some((BoxOutcome::Deleted, prelabels.get(*prelabel)?.class_id)));
        submitted.chain(deleted)
    }
}

/// A box as this judgement reads it: an annotation's `bbox` when the annotation is a box.
/// A polygon's stored bounding box is derived, not drawn, so polygons are left out.
fn drawn_box(annotation: &StoredAnnotation) -> Option<[f64; 4]> {
    annotation.bbox.filter(|_| annotation.polygon.is_none())
}

/// Intersection over union of two `[x, y, w, h]` boxes; 0 for boxes without area.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let overlap = |a0: f64, a_len: f64, b0: f64, b_len: f64| {
        ((a0 + a_len).min(b0 + b_len) - a0.max(b0)).max(0.0)
    };
    let intersection = overlap(a[0], a[2], b[0], b[2]) * overlap(a[1], a[3], b[1], b[3]);
    let union = a[2] * a[3] + b[2] * b[3] - intersection;
    if union > 0.0 && intersection.is_finite() {
        intersection / union
    } else {
        0.0
    }
}

/// The one-to-one matching under way: which prelabel each submitted label came from so far.
struct Matching {
    /// Per submitted label: the prelabel it was matched to, and how.
    source: Vec<Option<(usize, BoxOutcome)>>,
    /// Per prelabel: whether a submitted label was matched to it.
    taken: Vec<bool>,
}

impl Matching {
    /// Matches, in the order of `pairs` (best first), every pair `eligible` admits whose two
    /// boxes are both still free.
    fn pass(
        &mut self,
        pairs: &[(f64, usize, usize)],
        outcome: BoxOutcome,
        eligible: impl Fn(f64, usize, usize) -> bool,
    ) {
        for &(overlap, prelabel, label) in pairs {
            if !self.taken[prelabel]
                && self.source[label].is_none()
                && eligible(overlap, prelabel, label)
            {
                self.taken[prelabel] = true;
                self.source[label] = Some((prelabel, outcome));
            }
        }
    }
}

/// Judges each box of a submission against the item's prelabel boxes:
/// - **accepted**: the submitted box overlaps a prelabel box of the same class with IoU >=
///   [`ACCEPTED_MIN_IOU`] (0.95);
/// - **edited**: otherwise it overlaps a prelabel box of any class with IoU >=
///   [`EDITED_MIN_IOU`] (0.3): moved, resized or relabeled;
/// - **deleted**: a prelabel box no submitted box was matched to;
/// - **added**: a submitted box matched to no prelabel box.
///
/// Matching is one-to-one and greedy, so one proposal is never credited twice: first every
/// same-class pair at or above 0.95 by descending IoU, then every remaining pair at or above
/// 0.3 by descending IoU; equal IoUs go to the lower prelabel index, then the lower label
/// index, so the same submission always gets the same judgement. Annotations without a box
/// (classification labels, polygons) take no part; when no prelabel has a box the judgement
/// is empty (nothing was proposed, so nothing was added either).
pub fn judge_boxes(prelabels: &[StoredAnnotation], labels: &[StoredAnnotation]) -> BoxJudgement {
    let proposed: Vec<(usize, [f64; 4])> = prelabels
        .iter()
        .enumerate()
        .filter_map(|(index, prelabel)| Some((index, drawn_box(prelabel)?)))
        .collect();
    if proposed.is_empty() {
        return BoxJudgement::default();
    }
    let submitted: Vec<(usize, [f64; 4])> = labels
        .iter()
        .enumerate()
        .filter_map(|(index, label)| Some((index, drawn_box(label)?)))
        .collect();
    // (IoU, prelabel index, label index) of every pair that overlaps enough to be an edit.
    let mut pairs: Vec<(f64, usize, usize)> = proposed
        .iter()
        .flat_map(|(prelabel, proposed_box)| {
            submitted.iter().map(move |(label, submitted_box)| {
                (iou(*proposed_box, *submitted_box), *prelabel, *label)
            })
        })
        .filter(|(overlap, _, _)| *overlap >= EDITED_MIN_IOU)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut matching = Matching {
        source: vec![None; labels.len()],
        taken: vec![false; prelabels.len()],
    };
    matching.pass(&pairs, BoxOutcome::Accepted, |overlap, prelabel, label| {
        overlap >= ACCEPTED_MIN_IOU && prelabels[prelabel].class_id == labels[label].class_id
    });
    matching.pass(&pairs, BoxOutcome::Edited, |_, _, _| true);
    let Matching { source, taken } = matching;
    BoxJudgement {
        boxes: submitted
            .iter()
            .map(|(label, _)| match source[*label] {
                Some((prelabel, outcome)) => JudgedBox {
                    label: *label,
                    outcome,
                    prelabel: Some(prelabel),
                    confidence: prelabels[prelabel].confidence,
                },
                None => JudgedBox {
                    label: *label,
                    outcome: BoxOutcome::Added,
                    prelabel: None,
                    confidence: None,
                },
            })
            .collect(),
        deleted: proposed
            .iter()
            .map(|(prelabel, _)| *prelabel)
            .filter(|prelabel| !taken[*prelabel])
            .collect(),
    }
}

/// A confidence as JSON shows it: the shortest decimal that reads back as the same `f32`
/// (0.97, not the 0.9700000286102295 its widening to `f64` would print). `None` for a value
/// that is no number.
pub fn confidence_number(confidence: f32) -> Option<serde_json::Number> {
    let shortest: f64 = confidence.to_string().parse().ok()?;
    serde_json::Number::from_f64(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(class_id: u32) -> StoredAnnotation {
        StoredAnnotation {
            class_id,
            bbox: None,
            polygon: None,
            confidence: None,
        }
    }

    fn boxed(class_id: u32, bbox: [f64; 4]) -> StoredAnnotation {
        StoredAnnotation {
            bbox: Some(bbox),
            ..class(class_id)
        }
    }

    fn judge<const N: usize, const M: usize>(
        prelabels: [StoredAnnotation; N],
        labels: [StoredAnnotation; M],
    ) -> Option<&'static str> {
        PrelabelOutcome::judge(&prelabels, &labels).map(PrelabelOutcome::as_str)
    }

    #[test]
    fn classes_decide_for_classification() {
        let scored = StoredAnnotation {
            confidence: Some(0.9),
            ..class(1)
        };
        assert_eq!(judge([], [class(1)]), None, "no prelabels, no provenance");
        assert_eq!(judge([scored.clone()], [class(1)]), Some("accepted"));
        assert_eq!(
            judge([class(1), class(2)], [class(2), class(1)]),
            Some("accepted")
        );
        assert_eq!(judge([class(1), class(2)], [class(1)]), Some("edited"));
        assert_eq!(judge([class(1)], [class(1), class(3)]), Some("edited"));
        assert_eq!(judge([scored], [class(2)]), Some("replaced"));
        assert_eq!(judge([class(1)], []), Some("replaced"));
    }

    #[test]
    fn shapes_are_accepted_only_when_they_stay_where_they_were() {
        let a = boxed(1, [1.0, 2.0, 3.0, 4.0]);
        let b = boxed(2, [5.0, 5.0, 3.0, 3.0]);
        let nudged = boxed(1, [1.005, 2.0, 3.0, 4.0]);
        let moved = boxed(1, [9.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            judge([a.clone(), b.clone()], [b.clone(), a.clone()]),
            Some("accepted")
        );
        assert_eq!(judge([a.clone()], [nudged]), Some("accepted"));
        assert_eq!(judge([a.clone()], [moved]), Some("edited"));
        assert_eq!(judge([a.clone()], [a.clone(), a.clone()]), Some("edited"));
        assert_eq!(judge([a.clone(), b.clone()], [a.clone()]), Some("edited"));
        assert_eq!(judge([a], [b]), Some("replaced"));
    }

    #[test]
    fn a_label_is_traced_to_the_prelabel_of_its_shape_before_one_of_its_class() {
        let far = StoredAnnotation {
            confidence: Some(0.5),
            ..boxed(1, [50.0, 50.0, 3.0, 3.0])
        };
        let near = StoredAnnotation {
            confidence: Some(0.9),
            ..boxed(1, [1.0, 2.0, 3.0, 4.0])
        };
        let prelabels = [far.clone(), near.clone()];
        assert_eq!(
            source_prelabel(&prelabels, &boxed(1, [1.0, 2.0, 3.0, 4.0])),
            Some(&near)
        );
        assert_eq!(
            source_prelabel(&prelabels, &boxed(1, [7.0, 7.0, 3.0, 3.0])),
            Some(&far)
        );
        assert_eq!(
            source_prelabel(&prelabels, &boxed(2, [1.0, 2.0, 3.0, 4.0])),
            None
        );
    }

    fn proposal(class_id: u32, bbox: [f64; 4], confidence: f32) -> StoredAnnotation {
        StoredAnnotation {
            confidence: Some(confidence),
            ..boxed(class_id, bbox)
        }
    }

    /// Per submitted label (by index): its outcome and the prelabel it came from.
    fn outcomes(judgement: &BoxJudgement) -> Vec<(usize, &'static str, Option<usize>)> {
        judgement
            .boxes
            .iter()
            .map(|judged| (judged.label, judged.outcome.as_str(), judged.prelabel))
            .collect()
    }

    #[test]
    fn box_outcomes_name_themselves_in_snake_case() {
        for outcome in BoxOutcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).ok(),
                Some(serde_json::Value::from(outcome.as_str()))
            );
        }
    }

    #[test]
    fn iou_is_overlap_over_union_and_zero_without_area() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(a, a), 1.0);
        assert_eq!(iou(a, [5.0, 0.0, 10.0, 10.0]), 50.0 / 150.0);
        assert_eq!(iou(a, [20.0, 20.0, 5.0, 5.0]), 0.0, "apart");
        assert_eq!(iou(a, [10.0, 0.0, 5.0, 5.0]), 0.0, "touching");
        assert_eq!(iou([1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn each_box_is_accepted_edited_deleted_or_added() {
        let prelabels = [
            proposal(1, [10.0, 10.0, 40.0, 30.0], 0.9),
            proposal(1, [100.0, 10.0, 40.0, 30.0], 0.8),
            proposal(2, [10.0, 100.0, 40.0, 30.0], 0.7),
            proposal(2, [100.0, 100.0, 40.0, 30.0], 0.6),
        ];
        let labels = [
            // Nudged half a pixel: the proposal as it was.
            boxed(1, [10.5, 10.0, 40.0, 30.0]),
            // Moved by a quarter of its width.
            boxed(1, [110.0, 10.0, 40.0, 30.0]),
            // Where the model put it, as another class.
            boxed(3, [10.0, 100.0, 40.0, 30.0]),
            // Where the model saw nothing.
            boxed(2, [200.0, 200.0, 20.0, 20.0]),
        ];

        let judgement = judge_boxes(&prelabels, &labels);

        assert_eq!(
            outcomes(&judgement),
            vec![
                (0, "accepted", Some(0)),
                (1, "edited", Some(1)),
                (2, "edited", Some(2)),
                (3, "added", None),
            ]
        );
        assert_eq!(judgement.deleted, vec![3]);
        assert_eq!(
            judgement.of_label(1).and_then(|judged| judged.confidence),
            Some(0.8)
        );
        assert_eq!(
            judgement.of_label(3).and_then(|judged| judged.confidence),
            None
        );
        let mut counted: Vec<(&str, u32)> = judgement
            .counted(&prelabels, &labels)
            .map(|(outcome, class)| (outcome.as_str(), class))
            .collect();
        counted.sort_unstable();
        assert_eq!(
            counted,
            vec![
                ("accepted", 1),
                ("added", 2),
                ("deleted", 2),
                ("edited", 1),
                ("edited", 2),
            ],
            "the relabeled box counts under the class the model proposed"
        );
    }

    #[test]
    fn a_box_overlapping_too_little_is_a_deletion_and_an_addition() {
        let prelabels = [proposal(1, [0.0, 0.0, 10.0, 10.0], 0.9)];
        // IoU 0.25, under EDITED_MIN_IOU; then 1/3, over it.
        let far = judge_boxes(&prelabels, &[boxed(1, [5.0, 0.0, 10.0, 10.0 / 1.5])]);
        let near = judge_boxes(&prelabels, &[boxed(1, [5.0, 0.0, 10.0, 10.0])]);

        assert!(iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0 / 1.5]) < EDITED_MIN_IOU);
        assert_eq!(outcomes(&far), vec![(0, "added", None)]);
        assert_eq!(far.deleted, vec![0]);
        assert_eq!(outcomes(&near), vec![(0, "edited", Some(0))]);
        assert!(near.deleted.is_empty());
    }

    #[test]
    fn a_box_of_the_proposed_class_is_accepted_before_a_closer_box_is_relabeled() {
        let box_a = [0.0, 0.0, 100.0, 100.0];
        // The dog proposal lies exactly under the cat box, the cat proposal a pixel aside.
        let prelabels = [
            proposal(2, box_a, 0.8),
            proposal(1, [1.0, 0.0, 100.0, 100.0], 0.9),
        ];

        let judgement = judge_boxes(&prelabels, &[boxed(1, box_a)]);

        assert_eq!(outcomes(&judgement), vec![(0, "accepted", Some(1))]);
        assert_eq!(judgement.deleted, vec![0]);
    }

    #[test]
    fn matching_is_one_to_one_and_greedy_by_overlap() {
        let prelabels = [proposal(1, [0.0, 0.0, 10.0, 10.0], 0.9)];
        // Two boxes over one proposal: the closer one took it, the other was added.
        let labels = [
            boxed(1, [2.0, 0.0, 10.0, 10.0]),
            boxed(1, [1.0, 0.0, 10.0, 10.0]),
        ];
        let judgement = judge_boxes(&prelabels, &labels);
        assert_eq!(
            outcomes(&judgement),
            vec![(0, "added", None), (1, "edited", Some(0))]
        );

        // Two identical proposals under one box: the lower index is taken, the other deleted.
        let twins = [
            proposal(1, [0.0, 0.0, 10.0, 10.0], 0.9),
            proposal(1, [0.0, 0.0, 10.0, 10.0], 0.5),
        ];
        let judgement = judge_boxes(&twins, &[boxed(1, [0.0, 0.0, 10.0, 10.0])]);
        assert_eq!(outcomes(&judgement), vec![(0, "accepted", Some(0))]);
        assert_eq!(judgement.deleted, vec![1]);

        // Greedy, not optimal: the best pair is matched first even when that leaves a box
        // without a partner it could have had (the first box overlaps both proposals, the
        // second only the first proposal).
        let prelabels = [
            proposal(1, [0.0, 0.0, 10.0, 10.0], 0.9),
            proposal(1, [4.0, 0.0, 10.0, 10.0], 0.8),
        ];
        let labels = [
            boxed(1, [1.0, 0.0, 10.0, 10.0]),
            boxed(1, [-4.0, 0.0, 10.0, 10.0]),
        ];
        let judgement = judge_boxes(&prelabels, &labels);
        assert_eq!(
            outcomes(&judgement),
            vec![(0, "edited", Some(0)), (1, "added", None)]
        );
        assert_eq!(judgement.deleted, vec![1]);
    }

    #[test]
    fn a_relabeled_box_is_edited_and_a_tiny_nudge_is_accepted() {
        let prelabels = [proposal(1, [10.0, 10.0, 20.0, 20.0], 0.9)];
        assert_eq!(
            outcomes(&judge_boxes(
                &prelabels,
                &[boxed(2, [10.0, 10.0, 20.0, 20.0])]
            )),
            vec![(0, "edited", Some(0))]
        );
        assert_eq!(
            outcomes(&judge_boxes(
                &prelabels,
                &[boxed(1, [10.3, 9.8, 20.0, 20.2])]
            )),
            vec![(0, "accepted", Some(0))]
        );
    }

    #[test]
    fn without_prelabel_boxes_nothing_is_judged() {
        let a_box = [boxed(1, [0.0, 0.0, 10.0, 10.0])];
        let polygon = [StoredAnnotation {
            polygon: Some(vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]),
            ..boxed(1, [0.0, 0.0, 10.0, 10.0])
        }];
        assert!(judge_boxes(&[], &a_box).is_empty());
        assert!(judge_boxes(&[class(1)], &[a_box[0].clone(), class(1)]).is_empty());
        assert!(
            judge_boxes(&polygon, &polygon).is_empty(),
            "a polygon's bounding box is derived, not drawn"
        );

        // Every proposal deleted: nothing submitted, or only annotations without a box.
        let judgement = judge_boxes(&a_box, &[]);
        assert_eq!(judgement.deleted, vec![0]);
        assert!(judgement.boxes.is_empty());
        let judgement = judge_boxes(&a_box, &polygon);
        assert_eq!(judgement.deleted, vec![0]);
        assert_eq!(judgement.of_label(0), None);
    }

    #[test]
    fn confidences_print_as_the_f32_they_are() {
        for (value, printed) in [(0.97f32, "0.97"), (0.123_456_7, "0.1234567"), (1.0, "1.0")] {
            let number = confidence_number(value).map(|n| n.to_string());
            assert_eq!(number.as_deref(), Some(printed));
        }
        assert_eq!(confidence_number(f32::NAN), None);
    }
}
