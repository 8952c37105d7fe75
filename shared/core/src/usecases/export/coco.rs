//! Export: the COCO writer, one JSON object streamed in passes over the snapshot (images,
//! then annotations, then categories).

use futures::StreamExt;
use serde_json::{Value, json};

use super::Exports;
use crate::domain::geometry::shoelace_area;
use crate::domain::labeling::{ItemRecord, StoredAnnotation};
use crate::domain::project::{ProjectRecord, TaskType};
use crate::ports::ByteRange;
use crate::service::to_json_bytes;
use crate::time::rfc3339;
use crate::usecases::ingest::JobError;

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

    pub(super) async fn write_coco(
        &self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        writer: &mut PartWriter<'_>,
    ) -> Result<(), JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let root = source.list_prefix().to_owned();
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

        // Pass 1: images.
        let selection = Selection::of(record);
        let include_unlabeled = record.include_unlabeled;
        let mut first = true;
        let mut written = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        let image_entry = |item: u64, key: &str, width: Option<u32>, height: Option<u32>| {
            let file_name = key.strip_prefix(root.as_str()).unwrap_or(key);
            json!({
                "id": item + 1,
                "file_name": file_name,
                "width": width,
                "height": height,
                "s3_uri": source.object_uri(key),
            })
        };
        if include_unlabeled {
            // Every item of the manifest, labeled or not, in item order.
            let manifest = self
                .reader()
                .read_manifest(&project.id)
                .await?
                .unwrap_or_default();
            let total = record
                .snapshot_items
                .map_or(manifest.total, |n| n.min(manifest.total));
            // Item records come in item order: walk them beside the item ids, a page at a
            // time, so memory stays flat; images no labeler opened yet get their size from
            // their headers, many reads at a time.
            let mut pages = ItemPages::new(&project.id);
            let mut known: std::collections::VecDeque<ItemRecord> = Default::default();
            let mut start = 0u64;
            while start < total {
                let end = (start + INCLUDE_UNLABELED_BATCH).min(total);
                while known.back().is_none_or(|record| record.item < end) {
                    match pages.next(self).await? {
                        Some(page) => known.extend(page),
                        None => break,
                    }
                }
                let mut batch = Vec::with_capacity((end - start) as usize);
                for item in start..end {
                    while known.front().is_some_and(|record| record.item < item) {
                        known.pop_front();
                    }
                    let size = known
                        .front()
                        .filter(|record| record.item == item)
                        .and_then(|record| record.width.zip(record.height));
                    let key = self
                        .item_keys()
                        .item_key(&project.id, &manifest, item)
                        .await?;
                    batch.push((item, key, size));
                }
                let bucket = source.bucket();
                let sized: Vec<(u64, String, Option<u32>, Option<u32>)> =
                    futures::stream::iter(batch.into_iter().map(|(item, key, size)| async move {
                        let (width, height) = match size {
                            Some((w, h)) => (Some(w), Some(h)),
                            None => self.header_size(bucket, &key).await,
                        };
                        (item, key, width, height)
                    }))
                    .buffered(HEADER_READS_AT_ONCE)
                    .collect()
                    .await;
                for (item, key, width, height) in sized {
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut pending, &image_entry(item, &key, width, height))
                        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                    written += 1;
                }
                writer.write(&pending).await?;
                pending.clear();
                record.items_written = written;
                self.save_progress(record).await;
                start = end;
            }
        } else {
            let mut pages = ItemPages::new(&project.id);
            while let Some(page) = pages.next(self).await? {
                for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(
                        &mut pending,
                        &image_entry(item.item, &item.key, item.width, item.height),
                    )
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                    written += 1;
                }
                let uploaded = writer.write(&pending).await?;
                pending.clear();
                if uploaded {
                    record.items_written = written;
                    self.save_progress(record).await;
                }
            }
        }
        record.items_written = written;
        writer.write(b"],\"annotations\":[").await?;

        // Pass 2: annotations.
        let selection = Selection::of(record);
        let mut annotation_id = 0u64;
        let mut first = true;
        let mut pages = ItemPages::new(&project.id);
        while let Some(page) = pages.next(self).await? {
            for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                for label in &item.labels {
                    annotation_id += 1;
                    if !first {
                        pending.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(
                        &mut pending,
                        &coco_annotation(project.task_type, annotation_id, item.item + 1, label),
                    )
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                }
            }
            let uploaded = writer.write(&pending).await?;
            pending.clear();
            if uploaded {
                record.annotations_written = annotation_id;
                self.save_progress(record).await;
            }
        }
        record.annotations_written = annotation_id;
        writer.write(b"],\"categories\":").await?;
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
        writer
            .write(&to_json_bytes("COCO categories", &categories)?)
            .await?;
        writer.write(b"}").await?;
        Ok(())
    }
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
