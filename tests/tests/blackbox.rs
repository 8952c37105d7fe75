//! The black-box HTTP suite as one test binary: each module is one file beside this one, named
//! by its concern. One binary links once (31 links of the whole service cost minutes and
//! gigabytes on a 2-core CI machine), and the AWS pass reruns it with
//! `cargo test --workspace --test blackbox`, which reuses the workspace's build.
//! `logging.rs` stays a binary of its own: it installs a process-wide subscriber and asserts
//! that nothing else in the process logged an error.
//!
//! One test by hand: `cargo test -p labeling-tests --test blackbox ml_assist::prelabels`.

mod access;
mod api_contract;
mod blobs;
mod bounded_reads;
mod box_jobs;
mod box_prelabels;
mod checkout_fault;
mod concurrency;
mod conflicts;
mod contention;
mod edge;
mod export;
mod export_continuations;
mod export_jobs;
mod labeling_loop;
mod limits;
mod long_jobs;
mod ml_assist;
mod ml_jobs;
mod openapi_document;
mod openapi_routes;
mod provenance;
mod recovery;
mod refresh;
mod refresh_fault;
mod request_budget;
mod stale_round;
mod stats_shards;
mod template;
mod uploads;
mod validation;
mod web_app;
