//! Export: the JSON Lines writer, one line an item in Azure ML AutoML's schema, a page of item
//! records a step.

use serde_json::{Value, json};

use super::Exports;
use crate::domain::labeling::{ItemRecord, confidence_number};
use crate::domain::project::{ProjectRecord, TaskType};
use crate::domain::source::Source;
use crate::usecases::ingest::JobError;

use super::ExportRecord;
use super::checkpoint::{Position, WriterState};
use super::coco::Provenance;
use super::part_writer::PartWriter;
use super::snapshot::{ItemPages, Selection};

fn image_format(key: &str) -> String {
    let extension = key.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "jpeg" | "jpe" | "jfif" => "jpg".to_owned(),
        "tif" => "tiff".to_owned(),
        other => other.to_owned(),
    }
}

impl Exports<'_> {
    /// One step of the JSON Lines writer: the lines of one page of item records.
    pub(super) async fn jsonl_step(
        &self,
        project: &ProjectRecord,
        record: &ExportRecord,
        state: &mut WriterState,
        writer: &mut PartWriter<'_>,
    ) -> Result<(), JobError> {
        let after = match &state.position {
            Position::Begin => None,
            Position::Lines { after } => after.clone(),
            Position::Images { .. } | Position::Annotations { .. } | Position::End => {
                return Ok(());
            }
        };
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let selection = Selection::of(record);
        let mut pending = Vec::new();
        let mut pages = ItemPages::after(&project.id, after);
        if let Some(page) = pages.next(self).await? {
            for item in page.into_iter().filter_map(|item| selection.snapshot(item)) {
                state.annotations_written += item.labels.len() as u64;
                serde_json::to_writer(&mut pending, &jsonl_line(project, source, &item))
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                pending.push(b'\n');
                state.items_written += 1;
            }
        }
        writer.write(&pending).await?;
        state.position = if pages.is_done() {
            Position::End
        } else {
            Position::Lines {
                after: pages.position(),
            }
        };
        Ok(())
    }
}

/// One line in Azure ML AutoML's JSON Lines schema, coordinates normalized to 0..1.
fn jsonl_line(project: &ProjectRecord, source: &Source, item: &ItemRecord) -> Value {
    let name = |id: u32| project.class_name(id).unwrap_or("?").to_owned();
    let width = f64::from(item.width.unwrap_or(1).max(1));
    let height = f64::from(item.height.unwrap_or(1).max(1));
    let normalized = |value: f64, size: f64| (value / size * 1e6).round() / 1e6;
    let provenance = Provenance::of(item);
    // A box as this schema writes it: its corners normalized to 0..1.
    let corners = |class_id: u32, [x, y, w, h]: [f64; 4]| {
        json!({
            "label": name(class_id),
            "topX": normalized(x, width),
            "topY": normalized(y, height),
            "bottomX": normalized(x + w, width),
            "bottomY": normalized(y + h, height),
        })
    };
    let label = match project.task_type {
        TaskType::ImageClassificationMulticlass => {
            json!(item.labels.first().map(|l| name(l.class_id)))
        }
        TaskType::ImageClassificationMultilabel => json!(
            item.labels
                .iter()
                .map(|l| name(l.class_id))
                .collect::<Vec<_>>()
        ),
        TaskType::ObjectDetection => json!(
            item.labels
                .iter()
                .enumerate()
                .map(|(index, l)| {
                    let mut annotation = corners(l.class_id, l.bbox.unwrap_or_default());
                    if let Value::Object(fields) = &mut annotation {
                        fields.insert("isCrowd".to_owned(), 0.into());
                    }
                    provenance.annotate(annotation, index)
                })
                .collect::<Vec<_>>()
        ),
        TaskType::InstanceSegmentation => json!(
            item.labels
                .iter()
                .enumerate()
                .map(|(index, l)| {
                    let polygon: Vec<f64> = l
                        .polygon
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|[x, y]| [normalized(*x, width), normalized(*y, height)])
                        .collect();
                    let annotation =
                        json!({ "label": name(l.class_id), "isCrowd": 0, "polygon": [polygon] });
                    provenance.annotate(annotation, index)
                })
                .collect::<Vec<_>>()
        ),
    };
    let mut line = json!({
        "image_url": source.object_uri(&item.key),
        "image_details": {
            "format": image_format(&item.key),
            "width": item.width.map(|w| format!("{w}px")),
            "height": item.height.map(|h| format!("{h}px")),
        },
        "label": label,
    });
    if let (Some(outcome), Value::Object(fields)) = (item.prelabel, &mut line) {
        // Classification labels are plain names, so the line says what the model proposed
        // (classes and confidences) and what became of it; shapes also carry it each.
        let proposed: Vec<Value> = item
            .prelabels
            .iter()
            .map(|prelabel| {
                let mut entry = json!({ "label": name(prelabel.class_id) });
                if let (Some(confidence), Value::Object(entry)) =
                    (prelabel.confidence.and_then(confidence_number), &mut entry)
                {
                    entry.insert("confidence".to_owned(), Value::Number(confidence));
                }
                entry
            })
            .collect();
        fields.insert(
            "prelabel".to_owned(),
            json!({ "outcome": outcome.as_str(), "prelabels": proposed }),
        );
        // The boxes the labeler deleted left no label behind to carry them.
        if let Some(deleted) =
            provenance.deleted_prelabels(|prelabel, bbox| corners(prelabel.class_id, bbox))
        {
            fields.insert("deleted_prelabels".to_owned(), deleted);
        }
    }
    line
}
