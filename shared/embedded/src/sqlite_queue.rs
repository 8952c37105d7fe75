//! The `Queue` port on SQLite, with SQS's at-least-once semantics: visibility timeouts,
//! receipts that go stale on redelivery, and a dead-letter queue after too many receives.
//! Messages survive a restart of the process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::ports::queue::{DEAD_LETTER_SUFFIX, MAX_RECEIVE_BATCH};
use labeling_core::ports::{Clock, Message, Queue, QueueError};
use rusqlite::params;
use tokio::sync::Notify;

use crate::Database;

pub struct SqliteQueue {
    database: Database,
    clock: Arc<dyn Clock>,
    /// Deliveries after which a message goes to the dead-letter queue.
    max_receives: u32,
    sent: Notify,
}

impl SqliteQueue {
    pub fn new(database: Database, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        Self {
            database,
            clock,
            max_receives,
            sent: Notify::new(),
        }
    }

    /// Makes every message in flight visible at once, on every queue, and returns how many.
    /// Called once at start, before any worker receives: the previous process held them, and
    /// being gone (killed, say) it will never finish or delete them, so waiting out their
    /// visibility timeout would only delay the retry. Delayed messages keep their delay.
    pub fn release_in_flight(&self) -> Result<u64, QueueError> {
        let now = self.clock.now();
        let released = self
            .database
            .lock()
            .execute(
                "UPDATE messages SET visible_at = ?1, receipt = NULL
                 WHERE receipt IS NOT NULL AND visible_at > ?1",
                params![now],
            )
            .map_err(unavailable)?;
        if released > 0 {
            self.sent.notify_waiters();
        }
        Ok(released as u64)
    }

    fn try_receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let now = self.clock.now();
        let mut connection = self.database.lock();
        let transaction = connection.transaction().map_err(unavailable)?;
        let candidates: Vec<(String, String, u32)> = {
            let mut statement = transaction
                .prepare_cached(
                    "SELECT id, body, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, sent_at LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![queue, now, (max * 2) as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)?
        };
        let mut delivered = Vec::new();
        for (id, body, count) in candidates {
            if count >= self.max_receives {
                transaction
                    .execute(
                        "UPDATE messages SET queue = ?2, receive_count = 0, receipt = NULL, visible_at = ?3 WHERE id = ?1",
                        params![id, format!("{queue}{DEAD_LETTER_SUFFIX}"), now],
                    )
                    .map_err(unavailable)?;
                tracing::warn!(queue, message_id = %id, "message moved to the dead-letter queue");
                continue;
            }
            if delivered.len() == max {
                break;
            }
            let receipt = uuid::Uuid::new_v4().simple().to_string();
            let visible_at = now + i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX / 2);
            transaction
                .execute(
                    "UPDATE messages SET receipt = ?2, receive_count = receive_count + 1, visible_at = ?3 WHERE id = ?1",
                    params![id, receipt, visible_at],
                )
                .map_err(unavailable)?;
            delivered.push(Message {
                id,
                receipt,
                body,
                receive_count: count + 1,
            });
        }
        transaction.commit().map_err(unavailable)?;
        Ok(delivered)
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Unavailable(Box::new(error))
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: &str, body: &str, delay: Duration) -> Result<String, QueueError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = self.clock.now();
        let visible_at = now + i64::try_from(delay.as_millis()).unwrap_or(0);
        self.database
            .lock()
            .execute(
                "INSERT INTO messages (id, queue, body, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, queue, body, visible_at, now],
            )
            .map_err(unavailable)?;
        self.sent.notify_waiters();
        Ok(id)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let max = max.clamp(1, MAX_RECEIVE_BATCH);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.sent.notified();
            let messages = self.try_receive(queue, max, visibility)?;
            if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(messages);
            }
            // Wake on a send, or poll again soon for messages whose visibility ran out.
            let _ = tokio::time::timeout(Duration::from_millis(100).min(wait), notified).await;
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let deleted = self
            .database
            .lock()
            .execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )
            .map_err(unavailable)?;
        if deleted == 0 {
            return Err(QueueError::InvalidReceipt);
        }
        Ok(())
    }

    async fn extend_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let visible_at = self.clock.now() + i64::try_from(visibility.as_millis()).unwrap_or(0);
        let changed = self
            .database
            .lock()
            .execute(
                "UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt, visible_at],
            )
            .map_err(unavailable)?;
        if changed == 0 {
            return Err(QueueError::InvalidReceipt);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let count: i64 = self
            .database
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                params![queue],
                |row| row.get(0),
            )
            .map_err(unavailable)?;
        Ok(count.max(0) as u64)
    }
}
