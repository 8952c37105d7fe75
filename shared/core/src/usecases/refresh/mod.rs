//! Refresh: pick up only what is new in a project's source. The sorted listing is merged with
//! the manifest's keys in one pass; new keys become a new batch (shuffled within itself, written
//! under its own path), so nothing already handed out moves. A refresh that finds nothing new
//! writes nothing to the table. Triggers: on demand, the daily schedule, the queue of never
//! handed out items running low, and object-created events.
//!
//! One flow a file: `requests` queues refreshes and reports their status; `merge` lists the
//! source and merges it with the manifest; `events` adds the keys of object-created events;
//! `lease` keeps refreshes of one project one at a time.

mod events;
mod lease;
mod merge;
mod requests;

pub use merge::MergeMemory;

use serde::{Deserialize, Serialize};

use crate::domain::refresh::RefreshTrigger;

/// How long a refresh holds its project's refresh lease.
const LEASE_MILLIS: i64 = 15 * 60 * 1000;
/// New objects' keys one event job adds at most; more wait for the next job.
const EVENT_KEYS_PER_JOB: usize = 5000;
/// Events within this window after the first share one job, and so one manifest batch.
const EVENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// When a listing refresh holds the lease, the event job comes back after this long.
const LEASE_BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// Sort keys are at most 1,024 bytes: longer object keys are left to the daily listing.
const MAX_EVENT_KEY_BYTES: usize = 1000;
/// Commits tried while checkouts keep moving the cursor, before the job is retried later.
const CURSOR_ATTEMPTS: usize = 20;
/// Rows that only coordinate refreshes are useless a day after they stop mattering.
const COORDINATION_ROW_LIFETIME_MILLIS: i64 = 24 * 3600 * 1000;

/// The table's `ttl` attribute (epoch seconds, as DynamoDB's time to live reads it) of a
/// coordination row that stops mattering at `millis`: DynamoDB deletes it a day later, should
/// the job that would have deleted it have died.
fn expiry_seconds(millis: i64) -> i64 {
    (millis + COORDINATION_ROW_LIFETIME_MILLIS) / 1000
}

/// The daily refresh runs at this hour (UTC), locally and on the AWS schedule.
pub const DAILY_REFRESH_HOUR_UTC: i64 = 2;

/// What the last refresh of a project did (kept in the blob store, so that a refresh which finds
/// nothing new writes nothing to the table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    pub at: i64,
    pub trigger: RefreshTrigger,
    pub added: u64,
    pub dropped: u64,
    pub removed: u64,
    /// Entries of the source the last listing could not read (left out, like files removed).
    #[serde(default)]
    pub unreadable: u64,
    pub listed: u64,
    /// Why nothing was looked at, when the project is full.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshView {
    pub last_refresh_at: Option<String>,
    pub last_refresh_trigger: Option<String>,
    pub items_added: u64,
    pub items_dropped: u64,
    pub files_removed: u64,
    /// Entries of the source the last listing left out because they could not be read:
    /// dangling links, FIFOs, sockets, devices, folders it may not open.
    pub files_unreadable: u64,
    pub next_scheduled_at: Option<String>,
    pub note: Option<String>,
}

fn status_key(project_id: &str) -> String {
    format!("manifests/{project_id}/refresh-status.json")
}

/// The next daily run after `now`.
pub fn next_daily_run(now: i64) -> i64 {
    let day = 86_400_000;
    let at = now.div_euclid(day) * day + DAILY_REFRESH_HOUR_UTC * 3_600_000;
    if at > now { at } else { at + day }
}

/// Refreshing projects from their sources. Holds only the ports this area touches.
pub struct Refreshes<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
    pub(crate) cursors: &'a crate::usecases::labeling::CursorHints,
}

/// Reads and writes a project's refresh status (a small blob beside its manifests).
pub struct RefreshStatuses<'a> {
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_rows_expire_a_day_late_in_epoch_seconds() {
        let midnight = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(expiry_seconds(midnight), 1_767_225_600 + 86_400);
    }

    #[test]
    fn the_daily_run_is_the_next_two_oclock() {
        let midnight = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(next_daily_run(midnight), midnight + 2 * 3_600_000);
        assert_eq!(
            next_daily_run(midnight + 3 * 3_600_000),
            midnight + 26 * 3_600_000
        );
    }
}
