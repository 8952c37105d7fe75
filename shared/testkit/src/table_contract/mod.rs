//! The `Table` contract: one public async function per case, each on a fresh table;
//! [`crate::table_contract_tests`] makes each case a test of its own.
//!
//! The cases live in files by theme; they are re-exported here because the macro names each
//! as `table_contract::<case>`.

mod conditions;
mod reads;
mod writes;

use std::sync::Arc;

use labeling_core::ports::{Attrs, Table};

pub use conditions::{
    and_needs_every_condition_and_empty_groups_are_true_and_false,
    comparisons_need_the_attribute_and_order_numbers_and_strings,
    not_equals_holds_when_the_attribute_is_missing_or_differs,
};
pub use reads::{
    a_query_page_holds_at_most_one_megabyte,
    batch_get_takes_at_most_100_keys_and_answers_each_item_once,
    every_range_pages_with_start_after, queries_page_in_sort_key_order,
};
pub use writes::{
    concurrent_adds_are_not_lost, limits_are_enforced, put_get_and_conditions,
    transactions_are_all_or_nothing, update_is_an_upsert_with_atomic_add,
};

/// What every case runs on: a fresh, empty table.
pub type Fixture = Arc<dyn Table>;

/// The partition keys of the cases start with this.
const PREFIX: &str = "contract";

fn attrs(value: serde_json::Value) -> Attrs {
    value.as_object().cloned().unwrap()
}
