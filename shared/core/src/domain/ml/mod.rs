//! The pure math of ML assist: linear heads on frozen embeddings, held-out validation with
//! per-class thresholds, clustering into pages of similar items, and the stored embeddings format.
//!
//! Everything here is deterministic for a given seed (single-threaded, seeded shuffles, no hash
//! map iteration in results), so a retried job computes exactly what the interrupted one would
//! have, and the jobs that call it stay idempotent. (Deterministic per platform: `exp` and `ln`
//! come from the platform's math library, so an x86 and an ARM worker may differ in the last
//! bits; a job's retry runs on the same worker image.)
//!
//! Which job calls what:
//! - featurize: [`embeddings::encode_part`] per manifest chunk, written to the blob store;
//! - train + validate: [`embeddings::decode_part`], then [`validation::evaluate_and_train`]
//!   (the head goes to a blob as [`head::Head::to_json`], the [`validation::ValidationReport`]
//!   into the run);
//! - infer: [`head::Head::from_json`], [`head::Head::probabilities`] per unlabeled item, and
//!   [`validation::ValidationReport::prelabels`] for the labels (with confidences) to queue;
//! - cluster: [`cluster::pack_pages`] over a window of upcoming unlabeled items;
//! - detect: [`detect::train_detector`] on frozen backbone feature maps (a CenterNet-style
//!   object-detection head), [`detect::Detector::detect`] per image, and
//!   [`detect::evaluate_detections`] with [`detect::choose_threshold`] for per-class AP and
//!   prelabel thresholds.

pub mod cluster;
pub mod detect;
pub mod embeddings;
pub mod head;
pub mod validation;

mod numeric;

#[cfg(test)]
mod bench;
