//! Labels, items and tasks: what is stored, and the validation of a submission.

mod item;
mod provenance;
mod submission;
mod task;

pub use item::{
    ItemRecord, ItemState, LABEL_HISTORY_MILLIS, LabelVersion, MAX_LABEL_VERSIONS, StoredAnnotation,
};
pub use provenance::{
    ACCEPTED_MIN_IOU, BoxJudgement, BoxOutcome, EDITED_MIN_IOU, JudgedBox, PrelabelOutcome,
    SAME_GEOMETRY_PIXELS, confidence_number, judge_boxes, source_prelabel,
};
pub use submission::{
    AnnotationInput, ItemOutcome, MAX_ANNOTATIONS_PER_ITEM, MAX_POINTS_PER_ITEM,
    MAX_POLYGON_POINTS, SubmissionInput, SubmittedItemInput, validate_submission,
};
pub use task::{
    ENDED_TASK_KEPT_MILLIS, EndedTask, TaskEnd, TaskItem, TaskKind, TaskRecord, WorkEntry,
};
