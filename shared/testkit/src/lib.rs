//! Contract suites every adapter of a port must pass, and a clock tests can move.
//!
//! Each suite is an async function taking the adapter; an adapter crate calls it from its
//! own tests (the embedded adapters always, the AWS adapters against an emulator). A suite
//! panics with a message naming the broken guarantee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blobs_contract;
pub mod clock;
pub mod queue_contract;
pub mod table_contract;

pub use clock::FakeClock;

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
