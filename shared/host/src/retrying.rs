//! A table that sends again what the store refused without writing anything (a transaction
//! conflict, throttling), after a capped, jittered exponential backoff and a bounded number of
//! tries; every composition root puts it around its table.
//!
//! Retrying here is safe because both refusals guarantee that nothing was applied, and every
//! write's condition is evaluated afresh on the next try. A refusal that survives the tries is
//! returned as it came: the use case answers it as "busy, retry" (503), never as a domain
//! outcome such as a lost lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::ports::{Condition, Item, Key, Page, Query, Table, TableError, Update, Write};

/// How often and how long to wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The cap of the first wait; each further wait's cap doubles.
    pub first_delay: Duration,
    /// No wait is longer.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About two seconds of waiting at most: long enough for a hot item's next second of write
    /// units, short enough for an HTTP request.
    fn default() -> Self {
        Self {
            attempts: 10,
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": a uniform wait up to the capped exponential, so clients that collided
    /// once do not collide again in lock step.
    fn delay(&self, retry: u32, random: u64) -> Duration {
        let cap = self
            .first_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let cap_micros = cap.as_micros().max(1) as u64;
        Duration::from_micros(random % (cap_micros + 1))
    }
}

/// `inner`, retrying transient refusals (see the module).
pub struct Retrying<T> {
    inner: T,
    policy: RetryPolicy,
    retries: AtomicU64,
    given_up: AtomicU64,
    seed: AtomicU64,
}

impl<T: Table> Retrying<T> {
    pub fn new(inner: T) -> Self {
        Self::with_policy(inner, RetryPolicy::default())
    }

    pub fn with_policy(inner: T, policy: RetryPolicy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self {
            inner,
            policy,
            retries: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            seed: AtomicU64::new(seed),
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Requests sent again since this table was made.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Requests whose refusal outlived every try.
    pub fn given_up(&self) -> u64 {
        self.given_up.load(Ordering::Relaxed)
    }

    /// splitmix64: enough randomness for jitter, no dependency.
    fn random(&self) -> u64 {
        let mut z = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    async fn with_retries<R, F, Fut>(&self, mut attempt: F) -> Result<R, TableError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, TableError>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Err(error) if error.is_transient() => {
                    if retry + 1 >= self.policy.attempts {
                        self.given_up.fetch_add(1, Ordering::Relaxed);
                        return Err(error);
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.policy.delay(retry, self.random())).await;
                    retry += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

#[async_trait]
impl<T: Table> Table for Retrying<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.with_retries(|| self.inner.get(key)).await
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.with_retries(|| self.inner.batch_get(keys)).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.with_retries(|| self.inner.put(item.clone(), condition.clone()))
            .await
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.with_retries(|| self.inner.update(key, update.clone(), condition.clone()))
            .await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.with_retries(|| self.inner.delete(key, condition.clone()))
            .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        self.with_retries(|| self.inner.transact(writes.clone()))
            .await
    }

    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.with_retries(|| self.inner.query(query.clone())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_under_their_doubling_cap_and_the_maximum() {
        let policy = RetryPolicy::default();
        for retry in 0..12 {
            let cap = (policy.first_delay * (1 << retry)).min(policy.max_delay);
            for random in [0, 1, 12_345, u64::MAX] {
                assert!(policy.delay(retry, random) <= cap, "retry {retry}");
            }
        }
    }
}
