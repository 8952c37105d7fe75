//! The job runner on the embedded queue: malformed messages are dropped, long CPU-bound jobs
//! keep their messages through heartbeats, shutdown never loses a message, failed jobs come
//! back after the doubling backoff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use labeling_core::ports::{Clock, Message, Queue, QueueError, SystemClock};
use labeling_core::usecases::ingest::JobError;
use labeling_embedded::{Database, SqliteQueue};
use labeling_host::{CancellationToken, Deletion, Delivery, Fate, JobHandler, Policy, Runner};
use labeling_testkit::FakeClock;

const JOBS: &str = "jobs";

/// Jobs staged by their body: `ok`, `fail`, `spin:<ms>` (computes without awaiting),
/// `forever` (waits for ever); anything else is malformed, as the service says.
#[derive(Default)]
struct Staged {
    runs: AtomicU32,
}

#[async_trait]
impl JobHandler for Staged {
    async fn run(&self, body: &str) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match body.split_once(':').unwrap_or((body, "")) {
            ("ok", _) => Ok(()),
            ("fail", _) => Err(JobError::Unavailable("staged failure".into())),
            ("spin", ms) => {
                let until = Instant::now() + Duration::from_millis(ms.parse().unwrap());
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                Ok(())
            }
            ("forever", _) => std::future::pending().await,
            _ => Err(JobError::Malformed(format!("no job {body:?}"))),
        }
    }
}

/// The embedded queue, counting the visibility extensions asked of it.
struct Watched {
    queue: SqliteQueue,
    extensions: AtomicU32,
}

#[async_trait]
impl Queue for Watched {
    async fn send(&self, queue: &str, body: &str, delay: Duration) -> Result<String, QueueError> {
        self.queue.send(queue, body, delay).await
    }
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        self.queue.receive(queue, max, visibility, wait).await
    }
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.queue.delete(queue, receipt).await
    }
    async fn extend_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.extensions.fetch_add(1, Ordering::SeqCst);
        self.queue
            .extend_visibility(queue, receipt, visibility)
            .await
    }
    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        self.queue.depth(queue).await
    }
}

struct Fixture {
    queue: Arc<Watched>,
    jobs: Arc<Staged>,
    runner: Runner,
}

fn fixture(clock: Arc<dyn Clock>, policy: Policy) -> Fixture {
    let queue = Arc::new(Watched {
        queue: SqliteQueue::new(Database::in_memory().unwrap(), clock, 5),
        extensions: AtomicU32::new(0),
    });
    let jobs = Arc::new(Staged::default());
    let runner = Runner::new(jobs.clone(), queue.clone(), policy, Deletion::ByRunner);
    Fixture {
        queue,
        jobs,
        runner,
    }
}

impl Fixture {
    async fn send(&self, body: &str) {
        self.queue.send(JOBS, body, Duration::ZERO).await.unwrap();
    }

    /// What is visible on `queue` now (received with a visibility that ends at once on the
    /// fake clock, so a look changes nothing a later look would see).
    async fn look(&self, queue: &str) -> Vec<Message> {
        self.queue
            .receive(queue, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
    }

    async fn receive_all(&self) -> Vec<Delivery> {
        let visibility = self.runner.policy().visibility;
        self.queue
            .receive(JOBS, 10, visibility, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|message| Delivery {
                queue: JOBS.to_owned(),
                message,
            })
            .collect()
    }
}

#[tokio::test]
async fn a_malformed_message_is_dropped_at_once_never_retried_into_the_dead_letter_queue() {
    let clock = Arc::new(FakeClock::default());
    let f = fixture(clock.clone(), Policy::default());
    f.send("{not a job").await;

    let fates = f
        .runner
        .run_batch(f.receive_all().await, &CancellationToken::new())
        .await;

    assert_eq!(fates, [Fate::Dropped]);
    assert_eq!(f.queue.depth(JOBS).await.unwrap(), 0, "deleted");
    clock.advance(Duration::from_secs(3600));
    assert!(f.look(JOBS).await.is_empty());
    assert!(f.look("jobs-dlq").await.is_empty());
    assert_eq!(f.jobs.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_job_comes_back_after_a_backoff_that_doubles_with_each_receive() {
    let clock = Arc::new(FakeClock::default());
    let f = fixture(clock.clone(), Policy::default());
    f.send("fail").await;

    for (receive, backoff) in [(1, 5_000), (2, 10_000), (3, 20_000)] {
        let deliveries = f.receive_all().await;
        assert_eq!(deliveries[0].message.receive_count, receive);
        let fates = f
            .runner
            .run_batch(deliveries, &CancellationToken::new())
            .await;
        assert_eq!(
            fates,
            [Fate::Retry {
                after: Duration::from_millis(backoff)
            }]
        );
        clock.advance(Duration::from_millis(backoff - 1));
        assert!(f.look(JOBS).await.is_empty(), "back before {backoff} ms");
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(
        f.queue.depth(JOBS).await.unwrap(),
        1,
        "kept for its retries"
    );
}

/// The runtime has one thread, and the job computes without awaiting for longer than two
/// visibility timeouts: the heartbeats still hide its message and the one waiting behind it.
#[tokio::test]
async fn a_job_that_computes_longer_than_the_visibility_keeps_its_messages() {
    let policy = Policy {
        visibility: Duration::from_millis(600),
        heartbeat: Duration::from_millis(150),
        ..Policy::default()
    };
    let f = fixture(Arc::new(SystemClock), policy.clone());
    f.send("spin:1500").await;
    f.send("ok").await;
    let deliveries = f.receive_all().await;
    assert_eq!(deliveries.len(), 2);

    // Another consumer, polling while the job runs.
    let rival = {
        let queue = f.queue.clone();
        let visibility = policy.visibility;
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                taken.extend(
                    queue
                        .receive(JOBS, 10, visibility, Duration::ZERO)
                        .await
                        .unwrap(),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                if taken.len() > 10 {
                    return taken;
                }
            }
        })
    };
    let fates = f
        .runner
        .run_batch(deliveries, &CancellationToken::new())
        .await;
    rival.abort();
    let taken = match rival.await {
        Ok(taken) => taken,
        Err(cancelled) => {
            assert!(cancelled.is_cancelled());
            Vec::new()
        }
    };

    assert_eq!(fates, [Fate::Done, Fate::Done]);
    assert!(taken.is_empty(), "another consumer got {taken:?}");
    let heartbeats = f.queue.extensions.load(Ordering::SeqCst);
    assert!(
        heartbeats >= 2 * 4,
        "{heartbeats} extensions for two messages over 1.5 s"
    );
    assert_eq!(f.jobs.runs.load(Ordering::SeqCst), 2, "each job ran once");
    assert_eq!(f.queue.depth(JOBS).await.unwrap(), 0);
}

#[tokio::test]
async fn shutdown_during_a_job_lets_it_finish_and_returns_the_messages_not_started() {
    let clock = Arc::new(FakeClock::default());
    let policy = Policy {
        shutdown_grace: Duration::from_secs(30),
        ..Policy::default()
    };
    let f = fixture(clock.clone(), policy);
    f.send("spin:300").await;
    f.send("ok").await;
    let shutdown = CancellationToken::new();
    shutdown.cancel();

    let deliveries = f.receive_all().await;
    let first = deliveries[0].message.id.clone();
    let runs = f.runner.run_batch(deliveries[..1].to_vec(), &shutdown);
    let fates = runs.await;
    assert_eq!(fates, [Fate::Returned], "shutdown before the start");

    // Shutdown arrives while the job computes.
    let shutdown = CancellationToken::new();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            tokio::task::yield_now().await;
            shutdown.cancel();
        }
    };
    let redelivered = f.receive_all().await;
    assert_eq!(redelivered[0].message.id, first, "visible again at once");
    let mut batch = redelivered;
    batch.extend(deliveries[1..].to_vec());
    let (fates, ()) = tokio::join!(f.runner.run_batch(batch, &shutdown), signal);

    assert_eq!(fates, [Fate::Done, Fate::Returned]);
    let left = f.look(JOBS).await;
    assert_eq!(left.len(), 1, "the job not started is visible at once");
    assert_eq!(left[0].body, "ok");
    assert!(f.look("jobs-dlq").await.is_empty());
}

#[tokio::test]
async fn shutdown_during_a_job_that_outlasts_the_grace_returns_its_message() {
    let clock = Arc::new(FakeClock::default());
    let policy = Policy {
        shutdown_grace: Duration::from_millis(50),
        ..Policy::default()
    };
    let f = fixture(clock.clone(), policy);
    f.send("forever").await;
    let shutdown = CancellationToken::new();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            tokio::task::yield_now().await;
            shutdown.cancel();
        }
    };

    let (fates, ()) = tokio::join!(f.runner.run_batch(f.receive_all().await, &shutdown), signal);

    assert_eq!(fates, [Fate::Returned]);
    let back = f.look(JOBS).await;
    assert_eq!(back.len(), 1, "visible again at once, not lost");
    assert_eq!(back[0].body, "forever");
}

#[tokio::test]
async fn polling_runs_what_comes_until_shutdown() {
    let clock = Arc::new(FakeClock::default());
    let f = fixture(clock.clone(), Policy::default());
    f.send("ok").await;
    f.send("garbage").await;
    let shutdown = CancellationToken::new();
    let polling = labeling_host::Polling {
        batch: 10,
        wait: Duration::from_millis(20),
    };
    let queues = [JOBS.to_owned()];
    let stop = async {
        while f.queue.depth(JOBS).await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
    };

    tokio::join!(f.runner.poll(&queues, &polling, &shutdown), stop);

    assert_eq!(f.jobs.runs.load(Ordering::SeqCst), 2);
    assert!(f.look("jobs-dlq").await.is_empty());
}
