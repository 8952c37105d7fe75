//! Contract suites every adapter of a port must pass, and a clock tests can move.
//!
//! Each suite is a module of public async functions, one a case, each taking a fresh fixture
//! (the adapter, and what it needs). An adapter crate expands a suite's macro in its own tests
//! (the embedded adapters always, the AWS adapters against an emulator), which makes every case
//! a test of its own: one failing case never hides the others. A case panics with a message
//! naming the broken guarantee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blobs_contract;
pub mod clock;
pub mod dynamo_like;
pub mod queue_contract;
pub mod table_contract;

pub use clock::FakeClock;
pub use dynamo_like::{DynamoLike, DynamoLikeConfig, RefusalCounts};

/// A name unique to this test run, so suites can share one emulator.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One `#[tokio::test]` per case of a suite, in a module named after the suite (so a test file
/// that expands it must not import that suite's module by the same name). `$make` is evaluated
/// inside each test (so it may `.await`) and gives that test's fresh fixture.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = $make;
                    $crate::$suite::$case(&fixture).await;
                }
            )*
        }
    };
}

/// Every case of the `Table` contract as its own test; `$make` gives a fresh
/// [`table_contract::Fixture`].
#[macro_export]
macro_rules! table_contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(
            table_contract,
            $make,
            [
                put_get_and_conditions,
                update_is_an_upsert_with_atomic_add,
                transactions_are_all_or_nothing,
                limits_are_enforced,
                queries_page_in_sort_key_order,
                concurrent_adds_are_not_lost,
                not_equals_holds_when_the_attribute_is_missing_or_differs,
                and_needs_every_condition_and_empty_groups_are_true_and_false,
                comparisons_need_the_attribute_and_order_numbers_and_strings,
                every_range_pages_with_start_after,
                a_query_page_holds_at_most_one_megabyte,
                batch_get_takes_at_most_100_keys_and_answers_each_item_once,
            ]
        );
    };
}

/// Every case of the `Blobs` contract as its own test; `$make` gives a fresh
/// [`blobs_contract::Fixture`].
#[macro_export]
macro_rules! blobs_contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(
            blobs_contract,
            $make,
            [
                put_get_head_delete,
                listing_is_lexicographic_and_pages,
                multipart_appears_whole_on_completion,
                a_small_part_that_is_not_the_last_is_refused,
                presigned_urls_are_made,
                head_checksum_answers_the_size_and_a_true_digest,
                ranges_past_the_end_or_empty_read_empty,
            ]
        );
    };
}

/// Every case of the `Queue` contract as its own test; `$make` gives a fresh
/// [`queue_contract::Fixture`].
#[macro_export]
macro_rules! queue_contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(
            queue_contract,
            $make,
            [
                a_new_queue_is_empty,
                a_received_message_is_invisible_while_in_flight,
                an_undeleted_message_comes_back_after_its_visibility_timeout,
                extended_visibility_holds,
                a_deleted_message_is_never_delivered_again,
                a_message_received_too_often_moves_to_the_dead_letter_queue,
                a_delayed_message_waits_out_its_delay,
                a_receive_returns_at_most_max_messages,
            ]
        );
    };
}
