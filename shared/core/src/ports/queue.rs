//! The `Queue` port: an SQS-shaped job queue.
//!
//! An adapter MUST guarantee:
//! - at least once: a received message comes back after its visibility timeout unless deleted;
//! - a message received more than the queue's maximum number of times moves to the dead-letter
//!   queue `<name>-dlq` instead of being delivered again;
//! - `receive` waits up to `wait` for a message (long polling) and returns at most `max`
//!   (at most 10, as SQS);
//! - a receipt from an earlier delivery no longer deletes or extends a redelivered message.
//!
//! Consumers are idempotent.

use std::time::Duration;

use async_trait::async_trait;

use super::BoxError;

pub const MAX_RECEIVE_BATCH: usize = 10;

/// Suffix of the dead-letter queue of a queue.
pub const DEAD_LETTER_SUFFIX: &str = "-dlq";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// How many times this message was delivered, this time included.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no queue {0}")]
    NoSuchQueue(String),
    #[error("the receipt is stale or unknown")]
    InvalidReceipt,
    #[error("the queue is unavailable")]
    Unavailable(#[source] BoxError),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Returns the message id.
    async fn send(&self, queue: &str, body: &str, delay: Duration) -> Result<String, QueueError>;
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError>;
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError>;
    async fn extend_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError>;
    /// Messages waiting or in flight, for dashboards and tests (approximate on SQS).
    async fn depth(&self, queue: &str) -> Result<u64, QueueError>;
}
