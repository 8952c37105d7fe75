//! Export: the COCO writer, one JSON object streamed in passes over the snapshot (images,
//! then annotations, then categories), a step at a time so a run can stop between any two.

use std::collections::VecDeque;

use futures::StreamExt;
use serde_json::{Value, json};

use super::Exports;
use crate::domain::geometry::shoelace_area;
use crate::domain::labeling::{
    BoxJudgement, ItemRecord, StoredAnnotation, confidence_number, judge_boxes, source_prelabel,
};
use crate::domain::project::{ProjectRecord, TaskType};
use crate::keys;
use crate::ports::ByteRange;
use crate::service::to_json_bytes;
use crate::time::rfc3339;
use crate::usecases::ingest::JobError;

use super::checkpoint::{Position, WriterState};
use super::part_writer::PartWriter;
use super::snapshot::{ItemPages, Selection};
use super::{ExportRecord, HEADER_READS_AT_ONCE, INCLUDE_UNLABELED_BATCH};

fn flat_polygon(points: &[[f64; 2]]) -> Vec<f64> {
    points.iter().flat_map(|[x, y]| [*x, *y]).collect()
}

/// Rounds to 1/1000 of a unit, so floating noise does not bloat the file.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl Exports<'_> {
    /// Width and height of an image no labeler has opened yet (for `include_unlabeled`).
    async fn header_size(&self, bucket: &str, key: &str) -> (Option<u32>, Option<u32>) {
        match self
            .blobs
            .get(
                bucket,
                key,
                Some(ByteRange {
                    start: 0,
                    end: 64 * 1024,
                }),
            )
            .await
        {
            Ok(head) => match imagesize::blob_size(&head) {
                Ok(size) => (Some(size.width as u32), Some(size.height as u32)),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        }
    }

    /// One step of the COCO writer, from where `state` stands: the header with the first page
    /// of images, a page of images (a batch of items with `include_unlabeled`), or a page of
    /// annotations; the step that ends an array writes what follows it, the last one the
    /// categories. The bytes are those of one uninterrupted pass, however the steps fall.
    pub(super) async fn coco_step(
        &self,
        project: &ProjectRecord,
        record: &ExportRecord,
        state: &mut WriterState,
        unlabeled: &mut Option<UnlabeledWalk>,
        writer: &mut PartWriter<'_>,
    ) -> Result<(), JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let root = source.list_prefix().to_owned();
        if state.position == Position::Begin {
            let dataset_root = source.object_uri(&root);
            let info = json!({
                "description": format!("{} ({})", project.name, project.task_type.as_str()),
                "version": "1.0",
                "year": rfc3339(record.snapshot_at)[..4].parse::<i64>().unwrap_or(1970),
                "contributor": "labeling",
                "url": "",
                "date_created": rfc3339(record.snapshot_at),
                "project_id": project.id,
                "project_name": project.name,
                "export_id": record.id,
                "task_type": project.task_type.as_str(),
                "dataset_root": dataset_root,
            });
            writer.write(b"{\"info\":").await?;
            writer.write(&to_json_bytes("COCO info", &info)?).await?;
            writer.write(b",\"licenses\":[],\"images\":[").await?;
            state.position = Position::Images {
                after: None,
                next_item: 0,
            };
        }
        let selection = Selection::of(record);
        let mut pending: Vec<u8> = Vec::new();
        match state.position.clone() {
            Position::Images { after, next_item } => {
                let image_entry = |item: u64,
                                   key: &str,
                                   width: Option<u32>,
                                   height: Option<u32>,
                                   deleted: Option<Value>| {
                    let file_name = key.strip_prefix(root.as_str()).unwrap_or(key);
                    let mut entry = json!({
                        "id": item + 1,
                        "file_name": file_name,
                        "width": width,
                        "height": height,
                        "s3_uri": source.object_uri(key),
                    });
                    if let (Some(deleted), Value::Object(fields)) = (deleted, &mut entry) {
                        fields.insert("deleted_prelabels".to_owned(), deleted);
                    }
                    entry
                };
                let mut push = |pending: &mut Vec<u8>, entry: Value| {
                    if state.items_written > 0 {
                        pending.push(b',');
                    }
                    state.items_written += 1;
                    serde_json::to_writer(pending, &entry)
                        .map_err(|e| JobError::Unavailable(Box::new(e)))
                };
                let images_done = if record.include_unlabeled {
                    // Every item of the manifest, labeled or not, in item order, a batch a step.
                    let manifest = self
                        .reader()
                        .read_manifest(&project.id)
                        .await?
                        .unwrap_or_default();
                    let total = record
                        .snapshot_items
                        .map_or(manifest.total, |n| n.min(manifest.total));
                    let start = next_item;
                    let end = (start + INCLUDE_UNLABELED_BATCH).min(total);
                    if start < end {
                        let walk =
                            unlabeled.get_or_insert_with(|| UnlabeledWalk::at(&project.id, start));
                        let mut batch = Vec::with_capacity((end - start) as usize);
                        for item in start..end {
                            let record = walk.record_of(self, item, end).await?;
                            let size = record.and_then(|record| record.width.zip(record.height));
                            // Only an item the export holds lists what its labeler deleted,
                            // as its annotations come only with such items.
                            let deleted = record
                                .filter(|record| record.prelabel.is_some())
                                .and_then(|record| selection.snapshot(record.clone()))
                                .and_then(|record| coco_deleted_prelabels(&record));
                            let key = self
                                .item_keys()
                                .item_key(&project.id, &manifest, item)
                                .await?;
                            batch.push((item, key, size, deleted));
                        }
                        let bucket = source.bucket();
                        let sized: Vec<_> = futures::stream::iter(batch.into_iter().map(
                            |(item, key, size, deleted)| async move {
                                let (width, height) = match size {
                                    Some((w, h)) => (Some(w), Some(h)),
                                    None => self.header_size(bucket, &key).await,
                                };
                                (item, key, width, height, deleted)
                            },
                        ))
                        .buffered(HEADER_READS_AT_ONCE)
                        .collect()
                        .await;
                        for (item, key, width, height, deleted) in sized {
                            push(
                                &mut pending,
                                image_entry(item, &key, width, height, deleted),
                            )?;
                        }
                    }
                    state.position = Position::Images {
                        after: None,
                        next_item: end.max(start),
                    };
                    end >= total
                } else {
                    let mut pages = ItemPages::after(&project.id, after);
                    if let Some(page) = pages.next(self).await? {
                        for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                            let deleted = coco_deleted_prelabels(&item);
                            push(
                                &mut pending,
                                image_entry(item.item, &item.key, item.width, item.height, deleted),
                            )?;
                        }
                    }
                    state.position = Position::Images {
                        after: pages.position(),
                        next_item: 0,
                    };
                    pages.is_done()
                };
                if images_done {
                    pending.extend_from_slice(b"],\"annotations\":[");
                    state.position = Position::Annotations { after: None };
                }
            }
            Position::Annotations { after } => {
                let mut pages = ItemPages::after(&project.id, after);
                if let Some(page) = pages.next(self).await? {
                    for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                        let provenance = Provenance::of(&item);
                        for (index, label) in item.labels.iter().enumerate() {
                            if state.annotations_written > 0 {
                                pending.push(b',');
                            }
                            state.annotations_written += 1;
                            serde_json::to_writer(
                                &mut pending,
                                &provenance.annotate(
                                    coco_annotation(
                                        project.task_type,
                                        state.annotations_written,
                                        item.item + 1,
                                        label,
                                    ),
                                    index,
                                ),
                            )
                            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                        }
                    }
                }
                state.position = Position::Annotations {
                    after: pages.position(),
                };
                if pages.is_done() {
                    pending.extend_from_slice(b"],\"categories\":");
                    let supercategory = if project.task_type.is_classification() {
                        "class"
                    } else {
                        "object"
                    };
                    let categories: Vec<Value> = project
                        .classes
                        .iter()
                        .map(|class| json!({ "id": class.id, "name": class.name, "supercategory": supercategory }))
                        .collect();
                    pending.extend_from_slice(&to_json_bytes("COCO categories", &categories)?);
                    pending.push(b'}');
                    state.position = Position::End;
                }
            }
            Position::Begin | Position::Lines { .. } | Position::End => {}
        }
        writer.write(&pending).await?;
        Ok(())
    }
}

/// The item records beside the item ids of an `include_unlabeled` walk, read a page at a time
/// ahead of the batch being written, so memory stays flat; kept for the rest of a run.
pub(super) struct UnlabeledWalk {
    pages: ItemPages,
    known: VecDeque<ItemRecord>,
}

impl UnlabeledWalk {
    /// A walk from item `start` (records of earlier items are not read again).
    fn at(project_id: &str, start: u64) -> Self {
        let after = start.checked_sub(1).map(keys::item_sk);
        Self {
            pages: ItemPages::after(project_id, after),
            known: VecDeque::new(),
        }
    }

    /// The record of `item`, if it has one, reading pages up to `end` (items come in order).
    async fn record_of(
        &mut self,
        service: &Exports<'_>,
        item: u64,
        end: u64,
    ) -> Result<Option<&ItemRecord>, JobError> {
        while self.known.back().is_none_or(|record| record.item < end) {
            match self.pages.next(service).await? {
                Some(page) => self.known.extend(page),
                None => break,
            }
        }
        while self.known.front().is_some_and(|record| record.item < item) {
            self.known.pop_front();
        }
        Ok(self.known.front().filter(|record| record.item == item))
    }
}

/// Where an item's annotations came from, judged once for all of them: its prelabel
/// outcome and, when its prelabels held boxes, what became of each box. Items labeled
/// without prelabels have none of it.
pub(super) struct Provenance<'a> {
    item: &'a ItemRecord,
    boxes: BoxJudgement,
}

impl<'a> Provenance<'a> {
    pub(super) fn of(item: &'a ItemRecord) -> Self {
        let boxes = match item.prelabel {
            Some(_) => judge_boxes(&item.prelabels, &item.labels),
            None => BoxJudgement::default(),
        };
        Self { item, boxes }
    }

    /// The exported form of the item's label at `index` with where it came from: `prelabel`
    /// (accepted, edited, replaced: the item's outcome); for a box judged against prelabel
    /// boxes, `prelabel_box` (accepted, edited, added) and the matched prelabel's
    /// `prelabel_confidence`; for other labels, when the label kept a prelabel's class (and
    /// shape), that prelabel's `prelabel_confidence`.
    pub(super) fn annotate(&self, mut annotation: Value, index: usize) -> Value {
        let (Some(outcome), Value::Object(fields)) = (self.item.prelabel, &mut annotation) else {
            return annotation;
        };
        fields.insert("prelabel".to_owned(), outcome.as_str().into());
        let confidence = match self.boxes.of_label(index) {
            Some(judged) => {
                fields.insert("prelabel_box".to_owned(), judged.outcome.as_str().into());
                judged.confidence
            }
            None => self
                .item
                .labels
                .get(index)
                .and_then(|label| source_prelabel(&self.item.prelabels, label))
                .and_then(|prelabel| prelabel.confidence),
        };
        if let Some(confidence) = confidence.and_then(confidence_number) {
            fields.insert("prelabel_confidence".to_owned(), Value::Number(confidence));
        }
        annotation
    }

    /// The prelabel boxes the labeler deleted, each as `describe` writes it plus its
    /// `confidence` when the model gave one; `None` when none was deleted.
    pub(super) fn deleted_prelabels(
        &self,
        describe: impl Fn(&StoredAnnotation, [f64; 4]) -> Value,
    ) -> Option<Value> {
        let deleted: Vec<Value> = self
            .boxes
            .deleted
            .iter()
            .filter_map(|index| self.item.prelabels.get(*index))
            .filter_map(|prelabel| {
                let mut entry = describe(prelabel, prelabel.bbox?);
                if let (Some(confidence), Value::Object(fields)) =
                    (prelabel.confidence.and_then(confidence_number), &mut entry)
                {
                    fields.insert("confidence".to_owned(), Value::Number(confidence));
                }
                Some(entry)
            })
            .collect();
        (!deleted.is_empty()).then_some(Value::Array(deleted))
    }
}

/// The `deleted_prelabels` of an image entry: `{category_id, bbox, confidence}` per prelabel
/// box its labeler deleted (extra image fields, which pycocotools ignores).
fn coco_deleted_prelabels(item: &ItemRecord) -> Option<Value> {
    Provenance::of(item).deleted_prelabels(
        |prelabel, bbox| json!({ "category_id": prelabel.class_id, "bbox": bbox.map(round3) }),
    )
}

/// One COCO annotation: classification has no geometry; boxes have `segmentation: []`.
fn coco_annotation(task_type: TaskType, id: u64, image_id: u64, label: &StoredAnnotation) -> Value {
    if task_type.is_classification() {
        return json!({ "id": id, "image_id": image_id, "category_id": label.class_id, "iscrowd": 0 });
    }
    let bbox = label.bbox.unwrap_or_default().map(round3);
    let (segmentation, area) = match &label.polygon {
        Some(points) => (
            json!([flat_polygon(points)
                .into_iter()
                .map(round3)
                .collect::<Vec<_>>()]),
            shoelace_area(points),
        ),
        None => (json!([]), bbox[2] * bbox[3]),
    };
    json!({
        "id": id,
        "image_id": image_id,
        "category_id": label.class_id,
        "bbox": bbox,
        "area": round3(area),
        "segmentation": segmentation,
        "iscrowd": 0,
    })
}
