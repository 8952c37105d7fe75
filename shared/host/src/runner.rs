//! The one runner of queued jobs, for every host: the local server's worker, the worker
//! container and the Lambda SQS handlers. Whoever received the messages, the runner decides the
//! same way what becomes of each:
//!
//! - a body that is no job is dropped with a log line (deleted, never retried into the
//!   dead-letter queue: retrying cannot make it a job);
//! - while a job runs, it and the messages waiting behind it in the batch are hidden again every
//!   [`Policy::heartbeat`], so a long job is never handed to a second consumer; the job runs on a
//!   thread of its own, so CPU-heavy work cannot starve the heartbeats. SQS refuses to hide a
//!   message past [`MAX_HIDDEN`] (12 hours) after its receipt, so the heartbeats never ask for
//!   more: a job still running then lets its message go to another consumer;
//! - several messages may be merged into one job ([`Work`]): a batch of S3 notifications is one
//!   refresh, not one each; every message of it shares the job's fate;
//! - a failed job comes back after a backoff that doubles with each receive (the queue's own
//!   receive count), and the queue dead-letters it after its maximum receives;
//! - on shutdown, a running job gets [`Policy::shutdown_grace`] to finish; after that it is
//!   stopped and its message made visible again at once, as are the messages not yet started.
//!   A message is never lost: at worst it runs twice, and every job is idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::Service;
use labeling_core::ports::{Clock, Message, Queue, SystemClock};
use labeling_core::usecases::ingest::JobError;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// SQS's limit: a message is hidden at most 12 hours after it was received, heartbeats or not.
pub const MAX_HIDDEN: Duration = Duration::from_secs(43_200);

/// How long to hide a message received `held_for` ago when `wanted` is asked: at most what is
/// left of [`MAX_HIDDEN`], in whole seconds rounded down (SQS rounds up what it is given);
/// `None` once nothing is left.
pub fn hide_within_limit(wanted: Duration, held_for: Duration) -> Option<Duration> {
    let left = Duration::from_secs(MAX_HIDDEN.saturating_sub(held_for).as_secs());
    (!left.is_zero()).then(|| wanted.min(left))
}

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

/// One job for one message, or for several whose bodies were merged into `body`; every message
/// is kept hidden while it runs and shares its fate (each backs off by its own receive count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub body: String,
    pub deliveries: Vec<Delivery>,
}

impl From<Delivery> for Work {
    fn from(delivery: Delivery) -> Self {
        Self {
            body: delivery.message.body.clone(),
            deliveries: vec![delivery],
        }
    }
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
    /// Measures how long a message has been held, against [`MAX_HIDDEN`]; tests move it.
    clock: Arc<dyn Clock>,
}

/// A message in hand whose job is not over, for the heartbeats.
struct InHand {
    queue: String,
    receipt: String,
    message_id: String,
}

/// What a job came to, before it is settled per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Dropped,
    Failed,
    Returned,
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
            clock: Arc::new(SystemClock),
        }
    }

    /// The same runner measuring held time on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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
        let works = deliveries.into_iter().map(Work::from).collect();
        self.run_works(works, shutdown)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Runs works one after the other, keeping every message not over hidden, and settles
    /// each message; returns the fates of each work's messages, in order.
    pub async fn run_works(
        &self,
        works: Vec<Work>,
        shutdown: &CancellationToken,
    ) -> Vec<Vec<Fate>> {
        // The messages were received just before: their 12 hours count from about now.
        let received = self.clock.now();
        let in_hand = Arc::new(Mutex::new(
            works
                .iter()
                .flat_map(|work| &work.deliveries)
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
            self.clock.clone(),
            received,
        ));
        let mut fates = Vec::with_capacity(works.len());
        for work in &works {
            let outcome = if shutdown.is_cancelled() {
                Outcome::Returned
            } else {
                self.run_one(work, shutdown).await
            };
            // Out of the heartbeats' hands before they are settled, so no heartbeat hides a
            // message after it was deleted or given its retry time.
            in_hand.lock().await.retain(|held| {
                !work
                    .deliveries
                    .iter()
                    .any(|delivery| delivery.message.receipt == held.receipt)
            });
            let mut work_fates = Vec::with_capacity(work.deliveries.len());
            for delivery in &work.deliveries {
                let fate = match outcome {
                    Outcome::Done => Fate::Done,
                    Outcome::Dropped => Fate::Dropped,
                    Outcome::Failed => Fate::Retry {
                        after: self.policy.retry_after(delivery.message.receive_count),
                    },
                    Outcome::Returned => Fate::Returned,
                };
                self.settle(delivery, fate, held_for(self.clock.as_ref(), received))
                    .await;
                work_fates.push(fate);
            }
            fates.push(work_fates);
        }
        heartbeats.abort();
        fates
    }

    /// Runs one work's job to its outcome, without settling its messages.
    async fn run_one(&self, work: &Work, shutdown: &CancellationToken) -> Outcome {
        let first = work.deliveries.first();
        let span = tracing::info_span!(
            "job",
            queue = first.map(|d| d.queue.as_str()).unwrap_or_default(),
            message_id = first.map(|d| d.message.id.as_str()).unwrap_or_default(),
            messages = work.deliveries.len(),
            receive_count = first.map(|d| d.message.receive_count).unwrap_or(1)
        );
        let stop = CancellationToken::new();
        // A runner dropped mid-job (its task aborted, its runtime shutting down) stops the job
        // too: nothing else would, and a runtime waits for its blocking threads.
        let _stop_when_dropped = stop.clone().drop_guard();
        let job = spawn_job(
            self.handler.clone(),
            work.body.clone(),
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
                        return Outcome::Returned;
                    }
                }
            }
        };
        let after = self
            .policy
            .retry_after(first.map(|d| d.message.receive_count).unwrap_or(1));
        match joined {
            Ok(Some(Ok(()))) => Outcome::Done,
            Ok(Some(Err(JobError::Malformed(reason)))) => {
                tracing::error!(parent: &span, %reason, "dropping a malformed job");
                Outcome::Dropped
            }
            Ok(Some(Err(error))) => {
                tracing::warn!(parent: &span, %error, retry_in_s = after.as_secs(), "job failed; it will be retried");
                Outcome::Failed
            }
            Ok(None) => Outcome::Returned,
            Err(error) => {
                tracing::error!(parent: &span, %error, retry_in_s = after.as_secs(), "job panicked; it will be retried");
                Outcome::Failed
            }
        }
    }

    /// Deletes the message or sets when it is seen again (never past [`MAX_HIDDEN`] after it
    /// was received, `held_for` ago).
    async fn settle(&self, delivery: &Delivery, fate: Fate, held_for: Duration) {
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
        let Some(hide_for) = hide_within_limit(hide_for, held_for) else {
            // SQS shows it again by itself at the 12-hour mark; asking more would be refused.
            return;
        };
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

/// How long ago `received` was on `clock` (zero if the clock went back).
fn held_for(clock: &dyn Clock, received: i64) -> Duration {
    Duration::from_millis(u64::try_from(clock.now().saturating_sub(received)).unwrap_or(0))
}

/// Hides every message in hand for another visibility timeout, every heartbeat, until aborted
/// or until SQS's 12 hours since `received` are spent.
async fn beat(
    queue: Arc<dyn Queue>,
    in_hand: Arc<Mutex<Vec<InHand>>>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    received: i64,
) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + policy.heartbeat,
        policy.heartbeat,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(hide_for) =
            hide_within_limit(policy.visibility, held_for(clock.as_ref(), received))
        else {
            tracing::warn!(
                "a job has held its messages for SQS's 12 hours: they go back to the queue"
            );
            return;
        };
        let held = in_hand.lock().await;
        for message in held.iter().filter(|held| !held.receipt.is_empty()) {
            if let Err(error) = queue
                .extend_visibility(&message.queue, &message.receipt, hide_for)
                .await
            {
                tracing::warn!(%error, message_id = %message.message_id, "could not extend a job's visibility");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use labeling_core::ports::QueueError;
    use labeling_testkit::FakeClock;
    use tokio::sync::Notify;

    /// A queue that only records, on the fake clock, each visibility asked of it.
    struct Recorder {
        clock: Arc<FakeClock>,
        start: i64,
        asked: std::sync::Mutex<Vec<(Duration, Duration)>>,
        asked_once: Notify,
    }

    #[async_trait]
    impl Queue for Recorder {
        async fn send(&self, _: &str, _: &str, _: Duration) -> Result<String, QueueError> {
            unreachable!("the runner sends nothing")
        }
        async fn receive(
            &self,
            _: &str,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Message>, QueueError> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str, _: &str) -> Result<(), QueueError> {
            Ok(())
        }
        async fn extend_visibility(
            &self,
            _: &str,
            _: &str,
            visibility: Duration,
        ) -> Result<(), QueueError> {
            let since = Duration::from_millis((self.clock.now() - self.start) as u64);
            self.asked.lock().unwrap().push((since, visibility));
            self.asked_once.notify_one();
            Ok(())
        }
        async fn depth(&self, _: &str) -> Result<u64, QueueError> {
            Ok(0)
        }
    }

    /// A job that runs until told to finish.
    struct UntilTold(Arc<Notify>);

    #[async_trait]
    impl JobHandler for UntilTold {
        async fn run(&self, _: &str) -> Result<(), JobError> {
            self.0.notified().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn heartbeats_never_hide_a_message_past_twelve_hours_after_its_receipt() {
        let clock = Arc::new(FakeClock::default());
        let queue = Arc::new(Recorder {
            clock: clock.clone(),
            start: clock.now(),
            asked: std::sync::Mutex::new(Vec::new()),
            asked_once: Notify::new(),
        });
        let finish = Arc::new(Notify::new());
        let policy = Policy {
            visibility: Duration::from_secs(300),
            heartbeat: Duration::from_millis(5),
            ..Policy::default()
        };
        let runner = Arc::new(
            Runner::new(
                Arc::new(UntilTold(finish.clone())),
                queue.clone(),
                policy,
                Deletion::ByEventSource,
            )
            .with_clock(clock.clone()),
        );
        let delivery = Delivery {
            queue: "jobs".to_owned(),
            message: Message {
                id: "m1".to_owned(),
                receipt: "r1".to_owned(),
                body: "long".to_owned(),
                receive_count: 1,
            },
        };
        let batch = tokio::spawn({
            let runner = runner.clone();
            async move {
                runner
                    .run_batch(vec![delivery], &CancellationToken::new())
                    .await
            }
        });

        queue.asked_once.notified().await;
        clock.advance(Duration::from_secs(43_000));
        queue.asked_once.notified().await;
        queue.asked_once.notified().await;
        clock.advance(Duration::from_secs(200));
        finish.notify_one();
        assert_eq!(batch.await.unwrap(), [Fate::Done]);

        let asked = queue.asked.lock().unwrap().clone();
        assert_eq!(asked[0], (Duration::ZERO, Duration::from_secs(300)));
        assert!(
            asked.contains(&(Duration::from_secs(43_000), Duration::from_secs(200))),
            "the last 200 s are asked, not 300: {asked:?}"
        );
        for (since, visibility) in asked {
            assert!(
                since + visibility <= MAX_HIDDEN,
                "{since:?} + {visibility:?}"
            );
        }
    }

    #[test]
    fn failed_jobs_back_off_doubling_up_to_the_visibility_timeout() {
        let policy = Policy::default();
        assert_eq!(policy.retry_after(1), Duration::from_secs(5));
        assert_eq!(policy.retry_after(2), Duration::from_secs(10));
        assert_eq!(policy.retry_after(4), Duration::from_secs(40));
        assert_eq!(policy.retry_after(40), policy.visibility);
        assert_eq!(policy.retry_after(0), Duration::from_secs(5));
    }

    #[test]
    fn no_message_is_hidden_past_twelve_hours_after_its_receipt() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(
            hide_within_limit(five_minutes, Duration::from_secs(60)),
            Some(five_minutes)
        );
        assert_eq!(
            hide_within_limit(five_minutes, Duration::from_secs(43_000)),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            hide_within_limit(five_minutes, Duration::from_millis(43_199_500)),
            None,
            "half a second left rounds down to nothing, as SQS would round it up"
        );
        assert_eq!(hide_within_limit(five_minutes, MAX_HIDDEN), None);
        assert_eq!(hide_within_limit(five_minutes, 2 * MAX_HIDDEN), None);
    }
}
