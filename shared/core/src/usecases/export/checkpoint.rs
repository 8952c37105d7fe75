//! Export: the checkpoint, what a run leaves for the next: the open multipart upload with its
//! parts, the bytes written but not yet a part, and where the format writer stands.
//!
//! It is an object in the system bucket, not a table item: an export of thousands of parts
//! keeps thousands of etags, and the bytes not yet a part may be a whole part's worth, far past
//! DynamoDB's 400 KB item and SQS's 256 KB message. The object is one JSON line (the state)
//! followed by the buffered bytes as they are.

use serde::{Deserialize, Serialize};

use crate::domain::project::LabelClass;
use crate::ports::CompletedPart;

/// Where the writer stands: the next step starts here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub(super) enum Position {
    /// Nothing written yet.
    Begin,
    /// COCO's `images` array: records after `after` (the sort key of the last one read) are
    /// next; with `include_unlabeled`, item `next_item` is.
    Images {
        after: Option<String>,
        next_item: u64,
    },
    /// COCO's `annotations` array, records after `after`.
    Annotations { after: Option<String> },
    /// JSON Lines, records after `after`.
    Lines { after: Option<String> },
    /// Every byte is written: what is left is completing the upload.
    End,
}

/// The format writer's state, besides the bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct WriterState {
    pub position: Position,
    /// Images (or lines) written so far; with COCO also whether the next needs a comma.
    pub items_written: u64,
    /// Annotations written so far: COCO's next annotation id is one more.
    pub annotations_written: u64,
    /// The project's classes when the export began, so categories and class names stay
    /// those of one instant even when classes are added between runs.
    pub classes: Vec<LabelClass>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    number: u32,
    etag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    upload_id: String,
    parts: Vec<Part>,
    state: WriterState,
}

/// A checkpoint as read back.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Checkpoint {
    pub upload_id: String,
    pub parts: Vec<CompletedPart>,
    pub buffered: Vec<u8>,
    pub state: WriterState,
}

/// A checkpoint object that is not one this code wrote.
#[derive(Debug, thiserror::Error)]
#[error("the export's checkpoint cannot be read: {0}")]
pub(super) struct BadCheckpoint(String);

/// The checkpoint object's bytes.
pub(super) fn encode(
    upload_id: &str,
    parts: &[CompletedPart],
    buffered: &[u8],
    state: &WriterState,
) -> Result<Vec<u8>, BadCheckpoint> {
    let header = Header {
        upload_id: upload_id.to_owned(),
        parts: parts
            .iter()
            .map(|part| Part {
                number: part.part_number,
                etag: part.etag.clone(),
            })
            .collect(),
        state: state.clone(),
    };
    let mut bytes =
        serde_json::to_vec(&header).map_err(|error| BadCheckpoint(error.to_string()))?;
    bytes.reserve(buffered.len() + 1);
    bytes.push(b'\n');
    bytes.extend_from_slice(buffered);
    Ok(bytes)
}

pub(super) fn decode(mut bytes: Vec<u8>) -> Result<Checkpoint, BadCheckpoint> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| BadCheckpoint("no header line".to_owned()))?;
    let header: Header = serde_json::from_slice(&bytes[..newline])
        .map_err(|error| BadCheckpoint(error.to_string()))?;
    let buffered = bytes.split_off(newline + 1);
    Ok(Checkpoint {
        upload_id: header.upload_id,
        parts: header
            .parts
            .into_iter()
            .map(|part| CompletedPart {
                part_number: part.number,
                etag: part.etag,
            })
            .collect(),
        buffered,
        state: header.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_comes_back_as_it_was_written_with_its_bytes_untouched() {
        let state = WriterState {
            position: Position::Images {
                after: Some("ITEM#000000041".to_owned()),
                next_item: 0,
            },
            items_written: 42,
            annotations_written: 7,
            classes: vec![LabelClass {
                id: 1,
                name: "cat".to_owned(),
            }],
        };
        let parts = vec![CompletedPart {
            part_number: 1,
            etag: "\"e1\"".to_owned(),
        }];
        // Buffered bytes hold newlines of their own (JSON Lines): only the first one splits.
        let buffered = b"{\"a\":1}\n{\"b\":2}\n\xff".to_vec();
        let bytes = encode("u-1", &parts, &buffered, &state).map_err(|e| e.to_string());
        let back = bytes
            .map(|b| decode(b).map_err(|e| e.to_string()))
            .and_then(|r| r);
        assert_eq!(
            back,
            Ok(Checkpoint {
                upload_id: "u-1".to_owned(),
                parts,
                buffered,
                state,
            })
        );
    }
}
