//! Use cases, one module per area; each public method opens a tracing span.

pub mod dashboard;
pub mod datasets;
pub mod export;
pub mod ingest;
pub mod labeling;
pub mod projects;
pub mod refresh;
pub mod review;
