//! Every table key format, in one place. See ARCHITECTURE.md section 4.

use crate::ports::Key;

/// Schema version stamped on every item.
pub const SCHEMA_VERSION: i64 = 1;

pub fn name_reservation(lower_name: &str) -> Key {
    Key::new(format!("NAME#{lower_name}"), "NAME")
}

pub const PROJECT_INDEX_PK: &str = "PROJECTS";

pub fn project_index(project_id: &str) -> Key {
    Key::new(PROJECT_INDEX_PK, format!("P#{project_id}"))
}

pub fn project_pk(project_id: &str) -> String {
    format!("P#{project_id}")
}

pub fn project(project_id: &str) -> Key {
    Key::new(project_pk(project_id), "META")
}

pub fn manifest(project_id: &str) -> Key {
    Key::new(project_pk(project_id), "MANIFEST")
}

/// Fresh positions handed out in a labeling round, and how many positions exist.
pub fn cursor(project_id: &str, round: u32) -> Key {
    Key::new(project_pk(project_id), format!("CURSOR#{round:06}"))
}

/// Counters of a labeling round.
pub fn stats(project_id: &str, round: u32) -> Key {
    Key::new(project_pk(project_id), format!("STATS#{round:06}"))
}

pub fn task(project_id: &str, task_id: &str) -> Key {
    Key::new(project_pk(project_id), format!("TASK#{task_id}"))
}

pub const ITEM_SK_PREFIX: &str = "ITEM#";

pub fn item_sk(item: u64) -> String {
    format!("{ITEM_SK_PREFIX}{item:09}")
}

pub fn item(project_id: &str, item: u64) -> Key {
    Key::new(project_pk(project_id), item_sk(item))
}

pub fn item_id_from_sk(sk: &str) -> Option<u64> {
    sk.strip_prefix(ITEM_SK_PREFIX)?.parse().ok()
}

/// The work partition of a round: waiting tasks (`A#...`) sort before leases (`L#...`), so one
/// query for sort keys below `L#<now>` returns waiting work and expired leases together.
pub fn work_pk(project_id: &str, round: u32) -> String {
    format!("P#{project_id}#Q#{round:06}")
}

pub fn waiting_sk(priority: u8, created_at: i64, task_id: &str) -> String {
    format!("A#{priority:02}#{created_at:013}#{task_id}")
}

pub fn lease_sk(expires_at: i64, task_id: &str) -> String {
    format!("L#{expires_at:013}#{task_id}")
}

/// Sort keys strictly below this are waiting work or leases expired at `now`.
pub fn available_work_bound(now: i64) -> String {
    format!("L#{:013}", now.saturating_add(1))
}
