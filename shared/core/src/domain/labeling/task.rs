//! Tasks: where they come from, live leases, work entries and what stays once they end.

use serde::{Deserialize, Serialize};

use super::item::StoredAnnotation;

/// Which queue a task came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Fresh items in the shuffled order.
    Manual,
    /// Released, rejected or expired work.
    Requeued,
    Prelabeled,
    Clustered,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Manual => "manual",
            TaskKind::Requeued => "requeued",
            TaskKind::Prelabeled => "prelabeled",
            TaskKind::Clustered => "clustered",
        }
    }
    /// Lower sorts first in the work partition.
    pub fn priority(self) -> u8 {
        match self {
            TaskKind::Requeued => 0,
            TaskKind::Prelabeled => 1,
            TaskKind::Clustered => 2,
            TaskKind::Manual => 3,
        }
    }
    /// The counter of waiting items of this kind.
    pub fn queue_counter(self) -> &'static str {
        match self {
            TaskKind::Manual => "q_manual",
            TaskKind::Requeued => "q_requeued",
            TaskKind::Prelabeled => "q_prelabeled",
            TaskKind::Clustered => "q_clustered",
        }
    }
}

/// An item as a task carries it, so a task needs no further reads to be handed out or checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskItem {
    pub item: u64,
    pub key: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    #[serde(default)]
    pub prelabels: Vec<StoredAnnotation>,
}

/// A live lease (`P#<pid>` / `TASK#<tid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub round: u32,
    pub kind: TaskKind,
    pub items: Vec<TaskItem>,
    pub labeler: String,
    pub lease_expires_at: i64,
    pub lease_version: u64,
    pub created_at: i64,
}

/// What a work-partition entry holds: a waiting task, or the index entry of a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkEntry {
    pub task_id: String,
    pub kind: TaskKind,
    pub items: Vec<TaskItem>,
    /// For lease entries: the lease version the entry was written for.
    #[serde(default)]
    pub lease_version: u64,
    /// For lease entries: who holds the lease, so a member's leases are found without
    /// reading every task (absent in entries written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeler: Option<String>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    Submitted,
    /// Its lease expired and another labeler's checkout took the items.
    TakenOver,
    Released,
    /// The labeler was removed from the project; the items went back to the queue.
    Revoked,
}

/// What stays of a task (`P#<pid>` / `TASK#<tid>`) once it ended, so a late submit, renew
/// or release is told what happened instead of "no such task". The table deletes it after
/// `ttl` (clean-up only: nothing depends on it being gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedTask {
    pub id: String,
    /// Empty when the task's lease entry predates recording its labeler.
    pub labeler: String,
    pub ended: TaskEnd,
    pub ended_at: i64,
    /// Epoch seconds.
    pub ttl: i64,
}

/// How long an ended task is remembered: longer than the longest lease.
pub const ENDED_TASK_KEPT_MILLIS: i64 = 8 * 24 * 3600 * 1000;

impl EndedTask {
    pub fn new(id: &str, labeler: &str, ended: TaskEnd, now: i64) -> Self {
        Self {
            id: id.to_owned(),
            labeler: labeler.to_owned(),
            ended,
            ended_at: now,
            ttl: (now + ENDED_TASK_KEPT_MILLIS) / 1000,
        }
    }
}
