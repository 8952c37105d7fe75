//! Export: the COCO writer, one JSON object streamed in passes over the snapshot (images,
//! then annotations, then categories), a step at a time so a run can stop between any two.

use std::collections::VecDeque;

use futures::StreamExt;
use serde_json::{Value, json};

use super::Exports;
use crate::domain::geometry::shoelace_area;
use crate::domain::labeling::{ItemRecord, StoredAnnotation, confidence_number, source_prelabel};
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
                let image_entry =
                    |item: u64, key: &str, width: Option<u32>, height: Option<u32>| {
                        let file_name = key.strip_prefix(root.as_str()).unwrap_or(key);
                        json!({
                            "id": item + 1,
                            "file_name": file_name,
                            "width": width,
                            "height": height,
                            "s3_uri": source.object_uri(key),
                        })
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
                            let size = walk.size_of(self, item, end).await?;
                            let key = self
                                .item_keys()
                                .item_key(&project.id, &manifest, item)
                                .await?;
                            batch.push((item, key, size));
                        }
                        let bucket = source.bucket();
                        let sized: Vec<(u64, String, Option<u32>, Option<u32>)> =
                            futures::stream::iter(batch.into_iter().map(
                                |(item, key, size)| async move {
                                    let (width, height) = match size {
                                        Some((w, h)) => (Some(w), Some(h)),
                                        None => self.header_size(bucket, &key).await,
                                    };
                                    (item, key, width, height)
                                },
                            ))
                            .buffered(HEADER_READS_AT_ONCE)
                            .collect()
                            .await;
                        for (item, key, width, height) in sized {
                            push(&mut pending, image_entry(item, &key, width, height))?;
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
                            push(
                                &mut pending,
                                image_entry(item.item, &item.key, item.width, item.height),
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
                        for label in &item.labels {
                            if state.annotations_written > 0 {
                                pending.push(b',');
                            }
                            state.annotations_written += 1;
                            serde_json::to_writer(
                                &mut pending,
                                &with_provenance(
                                    coco_annotation(
                                        project.task_type,
                                        state.annotations_written,
                                        item.item + 1,
                                        label,
                                    ),
                                    &item,
                                    label,
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

    /// The size a record holds for `item`, reading pages up to `end` (items come in order).
    async fn size_of(
        &mut self,
        service: &Exports<'_>,
        item: u64,
        end: u64,
    ) -> Result<Option<(u32, u32)>, JobError> {
        while self.known.back().is_none_or(|record| record.item < end) {
            match self.pages.next(service).await? {
                Some(page) => self.known.extend(page),
                None => break,
            }
        }
        while self.known.front().is_some_and(|record| record.item < item) {
            self.known.pop_front();
        }
        Ok(self
            .known
            .front()
            .filter(|record| record.item == item)
            .and_then(|record| record.width.zip(record.height)))
    }
}

/// An exported annotation with where it came from, when its item was handed out with
/// prelabels: `prelabel` (accepted, edited, replaced: the item's outcome) and, when the
/// annotation kept a prelabel's class (and shape), that prelabel's `prelabel_confidence`.
/// Annotations of items labeled without prelabels carry nothing extra.
pub(super) fn with_provenance(
    mut annotation: Value,
    item: &ItemRecord,
    label: &StoredAnnotation,
) -> Value {
    let Some(outcome) = item.prelabel else {
        return annotation;
    };
    if let Value::Object(fields) = &mut annotation {
        fields.insert("prelabel".to_owned(), outcome.as_str().into());
        if let Some(confidence) = source_prelabel(&item.prelabels, label)
            .and_then(|prelabel| prelabel.confidence)
            .and_then(confidence_number)
        {
            fields.insert("prelabel_confidence".to_owned(), Value::Number(confidence));
        }
    }
    annotation
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
