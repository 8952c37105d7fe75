//! The pure math of ML assist: linear heads on frozen embeddings, held-out validation with
//! per-class thresholds, clustering into pages of similar items, and the stored embeddings format.
//!
//! Everything here is deterministic for a given seed (single-threaded, seeded shuffles, no hash
//! map iteration in results), so a retried job computes exactly what the interrupted one would
//! have, and the jobs that call it stay idempotent.

pub mod cluster;
pub mod embeddings;
pub mod head;
pub mod validation;

mod numeric;

#[cfg(test)]
mod bench;
