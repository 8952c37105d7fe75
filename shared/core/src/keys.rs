//! Every table key format, in one place. See ARCHITECTURE.md section 4.

use crate::ports::Key;

/// Schema version stamped on every item.
pub const SCHEMA_VERSION: i64 = 1;

pub fn name_reservation(lower_name: &str) -> Key {
    Key::new(format!("NAME#{lower_name}"), "NAME")
}

pub const PROJECT_INDEX_PK: &str = "PROJECTS";

pub fn project_index(project_id: &str) -> Key {
    Key::new(PROJECT_INDEX_PK, format!("{PROJECT_PREFIX}{project_id}"))
}

/// The project an entry of the project index points at.
pub fn project_id_from_index_sk(sk: &str) -> Option<&str> {
    sk.strip_prefix(PROJECT_PREFIX)
}

const PROJECT_PREFIX: &str = "P#";

pub fn project_pk(project_id: &str) -> String {
    format!("{PROJECT_PREFIX}{project_id}")
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

/// A labeling round's base stats row: when the round started, and the counters rows written
/// before counters were sharded. Readers sum it with every shard ([`stats_range`]).
pub fn stats(project_id: &str, round: u32) -> Key {
    Key::new(project_pk(project_id), format!("STATS#{round:06}"))
}

/// How many rows a round's counters are spread over. Every labeling transaction adds to one
/// of them, so no single row takes every labeler's writes (DynamoDB cancels transactions that
/// share an item and caps each item at 1,000 write units a second). 64, not 16: with N
/// transactions in flight one meets a busy shard with chance about N/64, and 16 shards still
/// took most conflicts at 128 labelers (README, "Under contention"); readers pay 65 small rows.
pub const STATS_SHARDS: u8 = 64;

/// One shard of a round's counters.
pub fn stats_shard(project_id: &str, round: u32, shard: u8) -> Key {
    Key::new(
        project_pk(project_id),
        format!("STATS#{round:06}#{shard:02}"),
    )
}

/// The sort keys of a round's base stats row and all its shards, and nothing else: the bound
/// `#~` sorts after every shard suffix and before a longer round number.
pub fn stats_range(round: u32) -> crate::ports::SkRange {
    let base = format!("STATS#{round:06}");
    crate::ports::SkRange::Between(base.clone(), format!("{base}#~"))
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

/// The entry of a waiting task in the work partition.
pub fn waiting_entry(
    project_id: &str,
    round: u32,
    priority: u8,
    created_at: i64,
    task_id: &str,
) -> Key {
    Key::new(
        work_pk(project_id, round),
        waiting_sk(priority, created_at, task_id),
    )
}

/// The entry of a live lease in the work partition.
pub fn lease_entry(project_id: &str, round: u32, expires_at: i64, task_id: &str) -> Key {
    Key::new(work_pk(project_id, round), lease_sk(expires_at, task_id))
}

/// Sort keys of lease entries (as opposed to waiting tasks) begin with this.
pub const LEASE_SK_PREFIX: &str = "L#";

pub fn is_lease_sk(sk: &str) -> bool {
    sk.starts_with(LEASE_SK_PREFIX)
}

pub fn waiting_sk(priority: u8, created_at: i64, task_id: &str) -> String {
    format!("A#{priority:02}#{created_at:013}#{task_id}")
}

pub fn lease_sk(expires_at: i64, task_id: &str) -> String {
    format!("{LEASE_SK_PREFIX}{expires_at:013}#{task_id}")
}

/// Sort keys strictly below this are waiting work or leases expired at `now`.
pub fn available_work_bound(now: i64) -> String {
    format!("{LEASE_SK_PREFIX}{:013}", now.saturating_add(1))
}

/// The lease that lets one refresh of a project run at a time.
pub fn refresh_lease(project_id: &str) -> Key {
    Key::new(project_pk(project_id), "REFRESH")
}

/// Present while an event-keys job of the project is queued.
pub fn events_scheduled(project_id: &str) -> Key {
    Key::new(project_pk(project_id), "EVENTS_SCHEDULED")
}

/// Rows `P#<pid>` / `EVENT#<object key>`: new objects an event job has yet to add.
pub const EVENT_SK_PREFIX: &str = "EVENT#";

pub fn event_key(project_id: &str, object_key: &str) -> Key {
    Key::new(
        project_pk(project_id),
        format!("{EVENT_SK_PREFIX}{object_key}"),
    )
}

/// Sort keys of a project's export jobs begin with this.
pub const EXPORT_SK_PREFIX: &str = "RUN#EXPORT#";

pub fn export(project_id: &str, export_id: &str) -> Key {
    Key::new(
        project_pk(project_id),
        format!("{EXPORT_SK_PREFIX}{export_id}"),
    )
}

/// Where an export's checkpoint objects live in the system bucket.
pub fn export_checkpoints(project_id: &str, export_id: &str) -> String {
    format!("exports/{project_id}/{export_id}/")
}

/// The checkpoint object (system bucket) a run of an export writes: one key a run, so a run
/// that lost its claim never overwrites the checkpoint of the run that took over.
pub fn export_checkpoint(project_id: &str, export_id: &str, run_id: &str) -> String {
    format!(
        "{}checkpoint-{run_id}",
        export_checkpoints(project_id, export_id)
    )
}

/// Sort keys of a project's ML runs begin with this; run ids sort by creation time.
pub const ML_RUN_SK_PREFIX: &str = "RUN#ML#";

pub fn ml_run(project_id: &str, run_id: &str) -> Key {
    Key::new(
        project_pk(project_id),
        format!("{ML_RUN_SK_PREFIX}{run_id}"),
    )
}

/// A project's ML-assist state: the run under way, the model in use, when the next is due.
pub fn ml_state(project_id: &str) -> Key {
    Key::new(project_pk(project_id), "ML")
}

/// Where a project's embeddings live in the system bucket, per backbone (never under an
/// image suffix, so no listing of images ever takes them for images).
pub fn ml_embeddings(project_id: &str, backbone: &str) -> String {
    format!("ml/{project_id}/embeddings/{backbone}/")
}

/// The model (head, thresholds, validation report) an ML run trained.
pub fn ml_model(project_id: &str, run_id: &str) -> String {
    format!("ml/{project_id}/runs/{run_id}/model.json")
}

pub fn dataset(name: &str) -> Key {
    Key::new(format!("DATASET#{name}"), "META")
}

pub const DATASET_INDEX_PK: &str = "DATASETS";
const DATASET_INDEX_PREFIX: &str = "D#";

pub fn dataset_index(name: &str) -> Key {
    Key::new(DATASET_INDEX_PK, format!("{DATASET_INDEX_PREFIX}{name}"))
}

/// The dataset an entry of the dataset index points at.
pub fn dataset_name_from_index_sk(sk: &str) -> Option<&str> {
    sk.strip_prefix(DATASET_INDEX_PREFIX)
}

/// Attribute names that conditions and updates name, so a write and the condition that
/// guards it cannot drift apart by a typo. Records serialize their own fields under the same
/// names (serde), which the test below pins for items and tasks.
pub mod attr {
    /// The entity stamped on every record (`project`, `task`, `item`, ...).
    pub const ENTITY: &str = "entity";
    /// The schema version stamped on every record.
    pub const SCHEMA_VERSION: &str = "v";
    /// DynamoDB's time to live (epoch seconds) on coordination rows.
    pub const TTL: &str = "ttl";
    pub const STATUS: &str = "status";
    pub const ROUND: &str = "round";
    pub const STATE: &str = "state";
    pub const TASK_ID: &str = "task_id";
    pub const LABELS: &str = "labels";
    pub const LABELED_BY: &str = "labeled_by";
    pub const LABELED_AT: &str = "labeled_at";
    pub const SUPERSEDED: &str = "superseded";
    /// What the labeler did with the item's prelabels (accepted, edited, replaced).
    pub const PRELABEL: &str = "prelabel";
    pub const LEASE_VERSION: &str = "lease_version";
    pub const LEASE_EXPIRES_AT: &str = "lease_expires_at";
    /// A project's record version, moved by every change of its settings.
    pub const VERSION: &str = "version";
    /// The cursor's next fresh position and how many positions exist.
    pub const NEXT: &str = "next";
    pub const TOTAL: &str = "total";
    /// The cursor's total when a low-water refresh was last asked for.
    pub const LOW_WATER_TOTAL: &str = "low_water_total";
    pub const UPDATED_AT: &str = "updated_at";
    /// When a reviewer sent an item back.
    pub const REJECTED_AT: &str = "rejected_at";
    /// Progress of an export job.
    pub const ITEMS_TOTAL: &str = "items_total";
    pub const ITEMS_WRITTEN: &str = "items_written";
    pub const ANNOTATIONS_WRITTEN: &str = "annotations_written";
    /// An export's claims by runs so far (a claim writes on the count it read), the run that
    /// holds it (`holder`) and until when, and its latest checkpoint object.
    pub const CLAIMS: &str = "claims";
    pub const HELD_UNTIL: &str = "held_until";
    pub const CHECKPOINT: &str = "checkpoint";
    /// The request that holds a refresh lease, and when the lease runs out.
    pub const HOLDER: &str = "holder";
    pub const EXPIRES_AT: &str = "expires_at";
    /// When an event row or the events-scheduled marker was written.
    pub const AT: &str = "at";
    /// The object key an event row carries.
    pub const KEY: &str = "key";
    /// A dataset's counts: files and bytes in its folder, when they were counted, and when an
    /// upload last queued a count.
    pub const FILES: &str = "files";
    pub const BYTES: &str = "bytes";
    pub const COUNTED_AT: &str = "counted_at";
    pub const COUNT_REQUESTED_AT: &str = "count_requested_at";
}

/// The entities stamped on the coordination rows of [`row`].
pub mod entity {
    pub const PROJECT: &str = "project";
    pub const MANIFEST: &str = "manifest";
    pub const EXPORT: &str = "export";
    pub const DATASET: &str = "dataset";
    pub const TASK: &str = "task";
    pub const TASK_ENDED: &str = "task_ended";
    pub const ITEM: &str = "item";
    pub const CURSOR: &str = "cursor";
    pub const STATS: &str = "stats";
    pub const REFRESH_LEASE: &str = "refresh_lease";
    pub const EVENT_KEY: &str = "event_key";
    pub const EVENTS_SCHEDULED: &str = "events_scheduled";
    pub const NAME_RESERVATION: &str = "name";
    pub const PROJECT_INDEX: &str = "project_index";
    pub const DATASET_INDEX: &str = "dataset_index";
    pub const ML_RUN: &str = "ml_run";
    pub const ML_STATE: &str = "ml_state";
}

/// Coordination rows, typed, so their attributes are written under the names conditions and
/// readers use (pinned by the tests below) instead of being spelled again in ad-hoc JSON.
pub mod row {
    use serde::{Deserialize, Serialize};

    /// A round's cursor as the round starts: nothing handed out of `total` positions.
    #[derive(Debug, Serialize)]
    pub struct Cursor {
        pub next: u64,
        pub total: u64,
    }

    /// A round's statistics as the round starts; counters are added to it by updates.
    #[derive(Debug, Serialize)]
    pub struct Stats {
        pub started_at: i64,
    }

    /// The lease that lets one refresh of a project run at a time.
    #[derive(Debug, Serialize)]
    pub struct RefreshLease<'a> {
        pub holder: &'a str,
        pub expires_at: i64,
        pub ttl: i64,
    }

    /// A new object an event job has yet to add.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct EventKey {
        pub key: String,
        pub at: i64,
        pub ttl: i64,
    }

    /// Present while an event-keys job of the project is queued.
    #[derive(Debug, Serialize)]
    pub struct EventsScheduled {
        pub at: i64,
        pub ttl: i64,
    }

    /// A project name, reserved (case-insensitively) by the project that holds it.
    #[derive(Debug, Serialize)]
    pub struct NameReservation<'a> {
        pub project_id: &'a str,
        pub name: &'a str,
    }

    /// A project's entry in the project index.
    #[derive(Debug, Serialize)]
    pub struct ProjectIndexEntry<'a> {
        pub project_id: &'a str,
    }

    /// A dataset's entry in the dataset index.
    #[derive(Debug, Serialize)]
    pub struct DatasetIndexEntry<'a> {
        pub name: &'a str,
    }
}

/// Counters of a round's stats row (summed by the dashboard).
pub mod counter {
    pub const IN_TASK: &str = "in_task";
    pub const QUEUED: &str = "queued";
    pub const LABELED: &str = "labeled";
    pub const SKIPPED: &str = "skipped";
    pub const MISSING: &str = "missing";

    /// The counter of label class `id`.
    pub fn class(id: u32) -> String {
        format!("c_{id}")
    }

    /// Submitted items whose prelabels held class `id` and met `outcome` (`accepted`,
    /// `edited`, `replaced`): the acceptance of the model's labels per class.
    pub fn prelabel(outcome: &str, id: u32) -> String {
        format!("pre_{outcome}_{id}")
    }

    /// Prelabel boxes of class `id` that were `accepted`, `edited` or `deleted`, and boxes of
    /// class `id` that labelers `added` where no prelabel was: the acceptance of the model's
    /// boxes per class (see `domain::labeling::judge_boxes`).
    pub fn prelabel_box(outcome: &str, id: u32) -> String {
        format!("pre_box_{outcome}_{id}")
    }
}

/// The checkpoint row of a long job that continues in new messages (`P#<pid>` /
/// `CHECKPOINT#<kind>`): the step it has reached, who is running the step, and the job's
/// progress so far.
pub mod checkpoint {
    use crate::ports::Key;

    /// The first listing of a project's source.
    pub const INGEST: &str = "INGEST";
    /// A listing refresh of a project.
    pub const REFRESH: &str = "REFRESH";

    pub const ENTITY: &str = "job_checkpoint";

    pub fn key(project_id: &str, kind: &str) -> Key {
        Key::new(super::project_pk(project_id), format!("CHECKPOINT#{kind}"))
    }

    /// Attribute names of the row that conditions name.
    pub mod attr {
        /// Steps committed so far: a message carrying another number is stale or early.
        pub const GENERATION: &str = "generation";
        /// The run working on the current step (a random token), and until when.
        pub const CLAIM: &str = "claim";
        pub const CLAIM_UNTIL: &str = "claim_until";
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::attr;
    use crate::domain::labeling::{ItemRecord, ItemState, LabelVersion, TaskKind, TaskRecord};

    fn stored_names<T: serde::Serialize>(entity: &'static str, record: &T) -> Vec<String> {
        crate::service::to_item(super::project("p"), entity, record)
            .unwrap()
            .attrs
            .keys()
            .cloned()
            .collect()
    }

    /// Conditions name attributes by these constants; the records write them through serde.
    #[test]
    fn the_attribute_names_are_the_names_records_are_stored_under() {
        let item = ItemRecord {
            item: 1,
            key: "a.png".to_owned(),
            round: 0,
            state: ItemState::Labeled,
            task_id: Some("t_1".to_owned()),
            labels: Vec::new(),
            prelabels: Vec::new(),
            prelabel: None,
            labeled_by: Some("ann".to_owned()),
            labeled_at: Some(1),
            width: None,
            height: None,
            superseded: vec![LabelVersion {
                round: 0,
                labels: Vec::new(),
                labeled_by: None,
                labeled_at: 0,
                superseded_at: 1,
            }],
        };
        let names = stored_names(super::entity::ITEM, &item);
        for name in [
            attr::ENTITY,
            attr::SCHEMA_VERSION,
            attr::ROUND,
            attr::STATE,
            attr::TASK_ID,
            attr::LABELS,
            attr::LABELED_BY,
            attr::LABELED_AT,
            attr::SUPERSEDED,
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let task = TaskRecord {
            id: "t_1".to_owned(),
            round: 0,
            kind: TaskKind::Manual,
            items: Vec::new(),
            labeler: "ann".to_owned(),
            lease_expires_at: 1,
            lease_version: 1,
            created_at: 0,
        };
        let names = stored_names(super::entity::TASK, &task);
        for name in [attr::ROUND, attr::LEASE_VERSION, attr::LEASE_EXPIRES_AT] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }

    fn assert_stored<T: serde::Serialize>(entity: &'static str, record: &T, expected: &[&str]) {
        let names = stored_names(entity, record);
        for name in expected {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }

    /// The coordination rows are written under the names their conditions and readers use.
    #[test]
    fn the_coordination_rows_are_stored_under_the_names_conditions_read() {
        use super::{entity, row};
        assert_stored(
            entity::CURSOR,
            &row::Cursor { next: 0, total: 3 },
            &[attr::ENTITY, attr::SCHEMA_VERSION, attr::NEXT, attr::TOTAL],
        );
        assert_stored(
            entity::STATS,
            &row::Stats { started_at: 1 },
            &["started_at"],
        );
        assert_stored(
            entity::REFRESH_LEASE,
            &row::RefreshLease {
                holder: "r_1",
                expires_at: 2,
                ttl: 3,
            },
            &[attr::HOLDER, attr::EXPIRES_AT, attr::TTL],
        );
        assert_stored(
            entity::EVENT_KEY,
            &row::EventKey {
                key: "a.png".to_owned(),
                at: 1,
                ttl: 2,
            },
            &[attr::KEY, attr::AT, attr::TTL],
        );
        assert_stored(
            entity::EVENTS_SCHEDULED,
            &row::EventsScheduled { at: 1, ttl: 2 },
            &[attr::AT, attr::TTL],
        );
    }
}
