//! Provenance of labels: what a labeler did with the prelabels an item was handed out with.

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

    #[test]
    fn confidences_print_as_the_f32_they_are() {
        for (value, printed) in [(0.97f32, "0.97"), (0.123_456_7, "0.1234567"), (1.0, "1.0")] {
            let number = confidence_number(value).map(|n| n.to_string());
            assert_eq!(number.as_deref(), Some(printed));
        }
        assert_eq!(confidence_number(f32::NAN), None);
    }
}
