//! The labeling service's domain and use cases, written against ports only.
//!
//! This crate owns the rules: what a valid project, label or submission is, how items are
//! handed out and leased, and what each use case writes. It depends on no adapter, no HTTP
//! framework and no async runtime; adapters implement [`ports`] and `functions/*` wire them in.

pub mod access;
pub mod domain;
pub mod ids;
pub mod jobs;
pub mod keys;
pub mod manifest;
pub mod ports;
pub mod service;
pub mod time;
mod transaction;
pub mod usecases;

pub use access::{Actor, Role};
pub use service::{Service, ServiceConfig};
