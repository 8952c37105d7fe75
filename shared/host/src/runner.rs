//! The one runner of queued jobs, for every host: the local server's worker, the worker
//! container and the Lambda SQS handlers. Whoever received the messages, the runner decides the
//! same way what becomes of each:
//!
//! - a body that is no job is dropped with a log line (deleted, never retried into the
//!   dead-letter queue: retrying cannot make it a job);
//! - while a job runs, it and the messages waiting behind it in the batch are hidden again every
//!   [`Policy::heartbeat`], so a long job is never handed to a second consumer; the job runs on a
//!   thread of its own, so CPU-heavy work cannot starve the heartbeats;
//! - a failed job comes back after a backoff that doubles with each receive (the queue's own
//!   receive count), and the queue dead-letters it after its maximum receives;
//! - on shutdown, a running job gets [`Policy::shutdown_grace`] to finish; after that it is
//!   stopped and its message made visible again at once, as are the messages not yet started.
//!   A message is never lost: at worst it runs twice, and every job is idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::Service;
use labeling_core::ports::{Message, Queue};
use labeling_core::usecases::ingest::JobError;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The timings of the runner. The same defaults serve every host; tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long a received message stays hidden from other consumers; each heartbeat hides it
    /// for this long again. Short enough that a job of a crashed consumer is retried soon.
    pub visibility: Duration,
    /// How often messages in hand are hidden again: well under `visibility`, so one late
    /// heartbeat does not let a message go.
    pub heartbeat: Duration,
    /// The wait before the first retry of a failed job; each further receive doubles it, up to
    /// `visibility`.
    pub retry_backoff: Duration,
    /// On shutdown, how long a running job may still finish before its message is returned
    /// (ECS waits 30 s between SIGTERM and SIGKILL).
    pub shutdown_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(300),
            heartbeat: Duration::from_secs(100),
            retry_backoff: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Policy {
    /// How long a job that failed on its `receive_count`-th receive waits before the next:
    /// 5 s, 10 s, 20 s, ... up to the visibility timeout.
    pub fn retry_after(&self, receive_count: u32) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(16);
        self.retry_backoff
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.visibility)
    }
}

/// What runs a job's message body. The service is the real one; tests stage slow, failing or
/// CPU-bound jobs.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, body: &str) -> Result<(), JobError>;
}

#[async_trait]
impl JobHandler for Service {
    async fn run(&self, body: &str) -> Result<(), JobError> {
        self.jobs().run_job(body).await
    }
}

/// A received message and the queue it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub queue: String,
    pub message: Message,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The job ran to its end; the message leaves the queue.
    Done,
    /// The body is no job: the message leaves the queue, with a log line.
    Dropped,
    /// The job failed: the message comes back after `after`.
    Retry { after: Duration },
    /// Shutdown came first: the message is visible again at once.
    Returned,
}

impl Fate {
    /// Whether the message is to be deleted (a Lambda event source deletes what its handler
    /// does not report as failed).
    pub fn leaves_the_queue(self) -> bool {
        matches!(self, Fate::Done | Fate::Dropped)
    }
}

/// Who deletes a message whose job is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The runner, as a consumer that received the message itself does.
    ByRunner,
    /// The Lambda event source, for every record the handler does not report as failed.
    ByEventSource,
}

/// How a polling host receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polling {
    /// Messages taken at once (the rest of a batch waits, hidden by the heartbeats).
    pub batch: usize,
    /// How long one receive waits for a message (long polling).
    pub wait: Duration,
}

pub struct Runner {
    handler: Arc<dyn JobHandler>,
    queue: Arc<dyn Queue>,
    policy: Policy,
    deletion: Deletion,
}

/// A message in hand whose job is not over, for the heartbeats.
struct InHand {
    queue: String,
    receipt: String,
    message_id: String,
}

impl Runner {
    pub fn new(
        handler: Arc<dyn JobHandler>,
        queue: Arc<dyn Queue>,
        policy: Policy,
        deletion: Deletion,
    ) -> Self {
        Self {
            handler,
            queue,
            policy,
            deletion,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Receives from `queues` in turn and runs what comes, until `shutdown` is cancelled.
    pub async fn poll(&self, queues: &[String], polling: &Polling, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            for queue in queues {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = self.queue.receive(queue, polling.batch, self.policy.visibility, polling.wait) => received,
                };
                let messages = match received {
                    Ok(messages) => messages,
                    Err(error) => {
                        tracing::error!(%error, queue, "could not receive jobs");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                };
                let deliveries = messages
                    .into_iter()
                    .map(|message| Delivery {
                        queue: queue.clone(),
                        message,
                    })
                    .collect();
                self.run_batch(deliveries, shutdown).await;
            }
        }
    }

    /// Runs a batch of received messages one after the other, keeping all that are not over
    /// hidden, and settles each; returns their fates in order.
    pub async fn run_batch(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Vec<Fate> {
        let in_hand = Arc::new(Mutex::new(
            deliveries
                .iter()
                .map(|delivery| InHand {
                    queue: delivery.queue.clone(),
                    receipt: delivery.message.receipt.clone(),
                    message_id: delivery.message.id.clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let heartbeats = tokio::spawn(beat(
            self.queue.clone(),
            in_hand.clone(),
            self.policy.clone(),
        ));
        let mut fates = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            let fate = if shutdown.is_cancelled() {
                Fate::Returned
            } else {
                self.run_one(delivery, shutdown).await
            };
            // Out of the heartbeats' hands before it is settled, so no heartbeat hides a
            // message after it was deleted or given its retry time.
            in_hand
                .lock()
                .await
                .retain(|held| held.receipt != delivery.message.receipt);
            self.settle(delivery, fate).await;
            fates.push(fate);
        }
        heartbeats.abort();
        fates
    }

    /// Runs one message's job to its fate, without settling it.
    async fn run_one(&self, delivery: &Delivery, shutdown: &CancellationToken) -> Fate {
        let message = &delivery.message;
        let span = tracing::info_span!(
            "job",
            queue = %delivery.queue,
            message_id = %message.id,
            receive_count = message.receive_count
        );
        let stop = CancellationToken::new();
        // A runner dropped mid-job (its task aborted, its runtime shutting down) stops the job
        // too: nothing else would, and a runtime waits for its blocking threads.
        let _stop_when_dropped = stop.clone().drop_guard();
        let job = spawn_job(
            self.handler.clone(),
            message.body.clone(),
            stop.clone(),
            span.clone(),
        );
        tokio::pin!(job);
        let joined = tokio::select! {
            joined = &mut job => joined,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(self.policy.shutdown_grace, &mut job).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(parent: &span, grace_s = self.policy.shutdown_grace.as_secs(), "shutting down: the job is stopped and its message returned");
                        stop.cancel();
                        // It stops at its next await; whatever it did is done again on retry.
                        let _ = job.await;
                        return Fate::Returned;
                    }
                }
            }
        };
        match joined {
            Ok(Some(Ok(()))) => Fate::Done,
            Ok(Some(Err(JobError::Malformed(reason)))) => {
                tracing::error!(parent: &span, %reason, "dropping a malformed job");
                Fate::Dropped
            }
            Ok(Some(Err(error))) => {
                let after = self.policy.retry_after(message.receive_count);
                tracing::warn!(parent: &span, %error, retry_in_s = after.as_secs(), "job failed; it will be retried");
                Fate::Retry { after }
            }
            Ok(None) => Fate::Returned,
            Err(error) => {
                let after = self.policy.retry_after(message.receive_count);
                tracing::error!(parent: &span, %error, retry_in_s = after.as_secs(), "job panicked; it will be retried");
                Fate::Retry { after }
            }
        }
    }

    /// Deletes the message or sets when it is seen again.
    async fn settle(&self, delivery: &Delivery, fate: Fate) {
        let queue = &delivery.queue;
        let message = &delivery.message;
        let hide_for = match fate {
            Fate::Done | Fate::Dropped => {
                if self.deletion == Deletion::ByRunner
                    && let Err(error) = self.queue.delete(queue, &message.receipt).await
                {
                    tracing::warn!(%error, message_id = %message.id, "could not delete a finished job; it may run again");
                }
                return;
            }
            Fate::Retry { after } => after,
            Fate::Returned => Duration::ZERO,
        };
        if message.receipt.is_empty() {
            return;
        }
        if let Err(error) = self
            .queue
            .extend_visibility(queue, &message.receipt, hide_for)
            .await
        {
            tracing::warn!(%error, message_id = %message.id, "could not set when the job runs again; it comes back after its visibility timeout");
        }
    }
}

/// Runs a job on a thread of the blocking pool, driven by the runtime's reactor from there: a
/// job that computes for long between awaits then holds no worker thread of the runtime, and
/// the heartbeats keep beating. `stop` ends it at its next await; the answer is then `None`.
fn spawn_job(
    handler: Arc<dyn JobHandler>,
    body: String,
    stop: CancellationToken,
    span: tracing::Span,
) -> tokio::task::JoinHandle<Option<Result<(), JobError>>> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(
            async move {
                tokio::select! {
                    outcome = handler.run(&body) => Some(outcome),
                    _ = stop.cancelled() => None,
                }
            }
            .instrument(span),
        )
    })
}

/// Hides every message in hand for another visibility timeout, every heartbeat, until aborted.
async fn beat(queue: Arc<dyn Queue>, in_hand: Arc<Mutex<Vec<InHand>>>, policy: Policy) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + policy.heartbeat,
        policy.heartbeat,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let held = in_hand.lock().await;
        for message in held.iter().filter(|held| !held.receipt.is_empty()) {
            if let Err(error) = queue
                .extend_visibility(&message.queue, &message.receipt, policy.visibility)
                .await
            {
                tracing::warn!(%error, message_id = %message.message_id, "could not extend a job's visibility");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_jobs_back_off_doubling_up_to_the_visibility_timeout() {
        let policy = Policy::default();
        assert_eq!(policy.retry_after(1), Duration::from_secs(5));
        assert_eq!(policy.retry_after(2), Duration::from_secs(10));
        assert_eq!(policy.retry_after(4), Duration::from_secs(40));
        assert_eq!(policy.retry_after(40), policy.visibility);
        assert_eq!(policy.retry_after(0), Duration::from_secs(5));
    }
}
