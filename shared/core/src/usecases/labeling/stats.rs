//! A round's counters, spread over shard rows so that no row is in every labeling transaction.
//!
//! Each labeling transaction adds its changes to ONE shard picked at random, in the same
//! transaction as the change it counts, so the counters stay exact; readers add the base row
//! (which holds `started_at` and the counters of rows written before sharding) and every shard.

use serde_json::Value;

use crate::keys::{self, attr};
use crate::ports::{Attrs, Query, Table, TableError, Update, Write};

/// Attributes of the stats rows that are no counters: kept from the row that has them, never
/// added up.
const NOT_COUNTERS: [&str; 3] = [attr::ENTITY, attr::SCHEMA_VERSION, "started_at"];

/// A shard of the round's counters, picked at random: two labelers' transactions share a
/// stats row one time in [`keys::STATS_SHARDS`] instead of every time.
pub(crate) fn random_shard() -> u8 {
    (crate::ids::new_seed() % u64::from(keys::STATS_SHARDS)) as u8
}

/// Adds `changes` (zero deltas left out) to one shard of the round's counters.
pub(crate) fn stats_write(project_id: &str, round: u32, changes: &[(&str, i64)]) -> Write {
    Write::Update {
        key: keys::stats_shard(project_id, round, random_shard()),
        update: stats_update(changes),
        condition: None,
    }
}

pub(crate) fn stats_update(changes: &[(&str, i64)]) -> Update {
    changes
        .iter()
        .filter(|(_, delta)| *delta != 0)
        .fold(Update::default(), |update, (name, delta)| {
            update.add(name, *delta)
        })
}

/// The round's counters: the base row and every shard, read with one query of the project's
/// partition and added up. Empty when the round has no stats rows yet.
pub(crate) async fn round_stats(
    table: &dyn Table,
    project_id: &str,
    round: u32,
) -> Result<Attrs, TableError> {
    let mut query = Query::new(keys::project_pk(project_id), keys::stats_range(round), 128);
    let mut summed = Attrs::new();
    loop {
        let page = table.query(query.clone()).await?;
        for item in &page.items {
            add_row(&mut summed, &item.attrs);
        }
        match page.last_evaluated {
            Some(last) => query.start_after = Some(last),
            None => return Ok(summed),
        }
    }
}

fn add_row(summed: &mut Attrs, row: &Attrs) {
    for (name, value) in row {
        let delta = value
            .as_i64()
            .filter(|_| !NOT_COUNTERS.contains(&name.as_str()));
        match (delta, summed.get(name).and_then(Value::as_i64)) {
            (Some(delta), Some(total)) => {
                summed.insert(name.clone(), total.saturating_add(delta).into());
            }
            _ => {
                summed.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Attrs {
        match value {
            Value::Object(map) => map,
            _ => Attrs::new(),
        }
    }

    #[test]
    fn counters_of_the_base_row_and_the_shards_add_up_and_started_at_is_kept() {
        let mut summed = Attrs::new();
        add_row(
            &mut summed,
            &attrs(json!({"started_at": 5, "v": 1, "labeled": 2, "c_0": 1})),
        );
        add_row(&mut summed, &attrs(json!({"labeled": 3, "in_task": -1})));
        add_row(&mut summed, &attrs(json!({"labeled": 1, "c_0": 4, "v": 1})));
        assert_eq!(
            Value::Object(summed),
            json!({"started_at": 5, "v": 1, "labeled": 6, "c_0": 5, "in_task": -1})
        );
    }

    #[test]
    fn the_stats_range_holds_the_rounds_rows_and_no_other_rounds() {
        let range = keys::stats_range(7);
        for own in ["STATS#000007", "STATS#000007#00", "STATS#000007#15"] {
            assert!(range.contains(own), "{own}");
        }
        for other in [
            "STATS#000070",
            "STATS#0000070",
            "STATS#000008",
            "CURSOR#000007",
        ] {
            assert!(!range.contains(other), "{other}");
        }
    }
}
