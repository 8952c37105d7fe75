//! Background jobs carried by the jobs queue. Every handler is idempotent: the queue delivers
//! at least once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// First listing of a new project's source.
    Ingest { project_id: String },
    /// Writes an export into the project's bucket.
    Export {
        project_id: String,
        export_id: String,
    },
}

impl Job {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
