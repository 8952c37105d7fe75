//! Background jobs carried by the jobs queue. Every handler is idempotent: the queue delivers
//! at least once.

use serde::{Deserialize, Serialize};

/// Runs of one job (an ingest, an export) before it gives up and records why: one fewer than
/// the queue's receives before dead-lettering (5 locally and in template.yaml), so that a run
/// after this many crashed ones still records the failure.
pub const MAX_JOB_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// First listing of a new project's source.
    Ingest { project_id: String },
    /// Looks for new images in a project's source; `request_id` makes redeliveries of one
    /// request recognizable (they may take back their own refresh lease).
    Refresh {
        project_id: String,
        trigger: String,
        request_id: String,
    },
    /// Adds the new objects that events recorded for the project (rows `EVENT#<key>`), those
    /// not in it yet, without listing its source.
    AddEventKeys {
        project_id: String,
        request_id: String,
    },
    /// Queues a refresh of every project with incremental refresh on (the daily schedule).
    RefreshAll { trigger: String },
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
