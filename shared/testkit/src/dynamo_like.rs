//! A table decorator that behaves like DynamoDB under concurrency, which the emulator (one
//! request at a time, never a conflict, never throttled) and SQLite hide.
//!
//! The rules modelled, as the DynamoDB developer guide states them ("Transaction conflict
//! handling", "Capacity management for transactions", partition throughput limits):
//! - a `TransactWriteItems` holds its items from the moment it starts until it applied; a
//!   second transaction that touches any of those items (a `ConditionCheck` included) is
//!   cancelled with reason `TransactionConflict`: [`TableError::TransactionConflict`], nothing
//!   written;
//! - a plain `PutItem`, `UpdateItem` or `DeleteItem` on an item an open transaction holds fails
//!   with `TransactionConflictException`: the same error, nothing written;
//! - reads (`GetItem`, `Query`, `BatchGetItem`) do not conflict and read what was applied;
//! - every item has a budget of [`DynamoLikeConfig::item_write_units_per_second`] write units
//!   in each second (1,000 on DynamoDB, the most one partition takes); a write costs one unit per
//!   started KB of the item (the larger of before and after), a write in a transaction twice
//!   that (prepare and commit), a `ConditionCheck` as a transactional write; a request that
//!   would go over any of its items' budgets is refused whole with [`TableError::Throttled`]
//!   (`ProvisionedThroughputExceededException` / `ThrottlingException`), nothing written.
//!
//! In-process calls are too fast to overlap, so a transaction holds its items for
//! [`DynamoLikeConfig::transaction_hold`] (a tokio sleep, so a test with paused time decides
//! exactly) before it applies to the inner table. Budgets count seconds of tokio time too.
//! What is not modelled: read throttling, adaptive capacity and burst credits, partitions
//! holding many items (the budget is per item, the finest DynamoDB can throttle).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::ports::table::check_transaction;
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Page, Query, Table, TableError, Update, Write,
};
use tokio::time::Instant;

/// How the decorator times transactions and budgets writes.
#[derive(Debug, Clone)]
pub struct DynamoLikeConfig {
    /// How long a transaction holds its items before it applies (DynamoDB's own take tens of
    /// milliseconds end to end).
    pub transaction_hold: Duration,
    /// Write units each item may take in one second.
    pub item_write_units_per_second: u64,
}

impl Default for DynamoLikeConfig {
    fn default() -> Self {
        Self {
            transaction_hold: Duration::from_millis(2),
            item_write_units_per_second: 1_000,
        }
    }
}

/// What the decorator refused and passed, since it was made.
#[derive(Debug, Default)]
pub struct Refusals {
    conflicts: AtomicU64,
    throttles: AtomicU64,
    transactions: AtomicU64,
    writes: AtomicU64,
}

/// A copy of [`Refusals`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Requests refused with `TransactionConflict` (transactions and plain writes).
    pub conflicts: u64,
    /// Requests refused with `Throttled`.
    pub throttles: u64,
    /// Transactions passed to the inner table.
    pub transactions: u64,
    /// Plain writes passed to the inner table.
    pub writes: u64,
}

/// Another table, with DynamoDB's conflicts and per-item throttling (see the module's rules).
pub struct DynamoLike<T> {
    inner: T,
    config: DynamoLikeConfig,
    state: Mutex<State>,
    refusals: Refusals,
}

#[derive(Default)]
struct State {
    /// Items held by transactions that started and have not applied yet.
    held: HashSet<Key>,
    /// Write units each item took in its current second.
    budgets: HashMap<Key, Budget>,
}

struct Budget {
    second_started: Instant,
    used: u64,
}

/// Releases a transaction's items however it ends (applied, failed, or its future dropped).
struct Hold<'a> {
    state: &'a Mutex<State>,
    keys: Vec<Key>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut state = lock(self.state);
        for key in &self.keys {
            state.held.remove(key);
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic elsewhere while holding the lock leaves consistent sets: keep going.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Units of one write of an item this size: one per started KB, at least one.
fn units(bytes: usize) -> u64 {
    (bytes.div_ceil(1024)).max(1) as u64
}

fn size_of(key: &Key, attrs: Option<&Attrs>) -> usize {
    attrs.map_or(0, |attrs| {
        Item::new(key.clone(), attrs.clone()).size_bytes()
    })
}

impl<T: Table> DynamoLike<T> {
    pub fn new(inner: T) -> Self {
        Self::with_config(inner, DynamoLikeConfig::default())
    }

    pub fn with_config(inner: T, config: DynamoLikeConfig) -> Self {
        Self {
            inner,
            config,
            state: Mutex::new(State::default()),
            refusals: Refusals::default(),
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn refusals(&self) -> RefusalCounts {
        RefusalCounts {
            conflicts: self.refusals.conflicts.load(Ordering::Relaxed),
            throttles: self.refusals.throttles.load(Ordering::Relaxed),
            transactions: self.refusals.transactions.load(Ordering::Relaxed),
            writes: self.refusals.writes.load(Ordering::Relaxed),
        }
    }

    /// The units a write takes once (before any transactional doubling): the larger of the
    /// item before and after, as DynamoDB charges.
    fn write_units(&self, write: &Write, current: Option<&Attrs>) -> u64 {
        let key = write.key();
        let before = size_of(key, current);
        let after = match write {
            Write::Put { item, .. } => item.size_bytes(),
            Write::Update { update, .. } => size_of(key, Some(&update.apply(current))),
            Write::Delete { .. } | Write::Check { .. } => 0,
        };
        units(before.max(after))
    }

    /// Charges `costs` to their items' budgets, all or none: `false` when one would go over.
    fn charge(&self, state: &mut State, costs: &[(Key, u64)]) -> bool {
        let now = Instant::now();
        let limit = self.config.item_write_units_per_second;
        let fits = costs.iter().all(|(key, cost)| {
            let used = state
                .budgets
                .get(key)
                .filter(|budget| now.duration_since(budget.second_started) < Duration::from_secs(1))
                .map_or(0, |budget| budget.used);
            used + cost <= limit
        });
        if !fits {
            return false;
        }
        for (key, cost) in costs {
            let budget = state.budgets.entry(key.clone()).or_insert(Budget {
                second_started: now,
                used: 0,
            });
            if now.duration_since(budget.second_started) >= Duration::from_secs(1) {
                budget.second_started = now;
                budget.used = 0;
            }
            budget.used += cost;
        }
        true
    }

    /// Admits a plain write on `key`: refused when a transaction holds the item or its
    /// budget is spent.
    async fn admit_plain(&self, write: &Write) -> Result<(), TableError> {
        let key = write.key();
        let current = self.inner.get(key).await?.map(|item| item.attrs);
        let cost = self.write_units(write, current.as_ref());
        let mut state = lock(&self.state);
        if state.held.contains(key) {
            self.refusals.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(TableError::TransactionConflict);
        }
        if !self.charge(&mut state, &[(key.clone(), cost)]) {
            self.refusals.throttles.fetch_add(1, Ordering::Relaxed);
            return Err(TableError::Throttled);
        }
        self.refusals.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl<T: Table> Table for DynamoLike<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.admit_plain(&Write::Put {
            item: item.clone(),
            condition: None,
        })
        .await?;
        self.inner.put(item, condition).await
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.admit_plain(&Write::Update {
            key: key.clone(),
            update: update.clone(),
            condition: None,
        })
        .await?;
        self.inner.update(key, update, condition).await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.admit_plain(&Write::Delete {
            key: key.clone(),
            condition: None,
        })
        .await?;
        self.inner.delete(key, condition).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        check_transaction(&writes)?;
        let keys: Vec<Key> = writes.iter().map(|w| w.key().clone()).collect();
        let current: HashMap<Key, Attrs> = self
            .inner
            .batch_get(&keys)
            .await?
            .into_iter()
            .map(|item| (item.key, item.attrs))
            .collect();
        let mut costs = Vec::with_capacity(writes.len());
        for write in &writes {
            let once = self.write_units(write, current.get(write.key()));
            costs.push((write.key().clone(), 2 * once));
        }
        let hold = {
            let mut state = lock(&self.state);
            if keys.iter().any(|key| state.held.contains(key)) {
                self.refusals.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(TableError::TransactionConflict);
            }
            if !self.charge(&mut state, &costs) {
                self.refusals.throttles.fetch_add(1, Ordering::Relaxed);
                return Err(TableError::Throttled);
            }
            state.held.extend(keys.iter().cloned());
            Hold {
                state: &self.state,
                keys,
            }
        };
        self.refusals.transactions.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.config.transaction_hold).await;
        let outcome = self.inner.transact(writes).await;
        drop(hold);
        outcome
    }

    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    /// The least table that keeps the port's single-item semantics, so the decorator is tested
    /// alone.
    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<Key, Attrs>>);

    impl Memory {
        fn apply(&self, write: &Write) -> Result<(), TableError> {
            let mut items = self.0.lock().unwrap();
            let current = items.get(write.key()).cloned();
            match write {
                Write::Put { item, .. } => {
                    items.insert(item.key.clone(), item.attrs.clone());
                }
                Write::Update { key, update, .. } => {
                    items.insert(key.clone(), update.apply(current.as_ref()));
                }
                Write::Delete { key, .. } => {
                    items.remove(key);
                }
                Write::Check { condition, .. } if !condition.holds(current.as_ref()) => {
                    return Err(TableError::ConditionFailed { index: 0 });
                }
                Write::Check { .. } => {}
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Table for Memory {
        async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
            let items = self.0.lock().unwrap();
            Ok(items
                .get(key)
                .map(|attrs| Item::new(key.clone(), attrs.clone())))
        }
        async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
            let mut found = Vec::new();
            for key in keys {
                found.extend(self.get(key).await?);
            }
            Ok(found)
        }
        async fn put(&self, item: Item, _: Option<Condition>) -> Result<(), TableError> {
            self.apply(&Write::Put {
                item,
                condition: None,
            })
        }
        async fn update(
            &self,
            key: &Key,
            update: Update,
            _: Option<Condition>,
        ) -> Result<Item, TableError> {
            self.apply(&Write::Update {
                key: key.clone(),
                update,
                condition: None,
            })?;
            Ok(self.get(key).await?.unwrap())
        }
        async fn delete(&self, key: &Key, _: Option<Condition>) -> Result<(), TableError> {
            self.apply(&Write::Delete {
                key: key.clone(),
                condition: None,
            })
        }
        async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
            writes.iter().try_for_each(|write| self.apply(write))
        }
        async fn query(&self, _: Query) -> Result<Page, TableError> {
            Ok(Page::default())
        }
    }

    fn small_budget() -> DynamoLikeConfig {
        DynamoLikeConfig {
            transaction_hold: Duration::from_millis(10),
            item_write_units_per_second: 10,
        }
    }

    fn check(sk: &str) -> Write {
        Write::Check {
            key: Key::new("P#p", sk),
            condition: Condition::Exists,
        }
    }

    fn row(sk: &str, bytes: usize) -> Item {
        let mut attrs = serde_json::Map::new();
        attrs.insert("pad".to_owned(), json!("x".repeat(bytes)));
        Item::new(Key::new("P#p", sk), attrs)
    }

    fn dynamo_like() -> Arc<DynamoLike<Memory>> {
        Arc::new(DynamoLike::with_config(Memory::default(), small_budget()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_transaction_overlapping_an_open_one_even_by_a_condition_check_is_cancelled() {
        let table = dynamo_like();
        table.put(row("META", 10), None).await.unwrap();
        let first = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .transact(vec![
                        check("META"),
                        Write::Put {
                            item: row("A", 10),
                            condition: None,
                        },
                    ])
                    .await
            })
        };
        tokio::task::yield_now().await;
        let second = table
            .transact(vec![
                check("META"),
                Write::Put {
                    item: row("B", 10),
                    condition: None,
                },
            ])
            .await;
        assert!(
            matches!(second, Err(TableError::TransactionConflict)),
            "{second:?}"
        );
        first.await.unwrap().unwrap();
        assert!(table.get(&Key::new("P#p", "A")).await.unwrap().is_some());
        assert!(
            table.get(&Key::new("P#p", "B")).await.unwrap().is_none(),
            "the cancelled transaction wrote nothing"
        );
        table
            .transact(vec![check("META")])
            .await
            .expect("once the first applied, the item is free");
        assert_eq!(table.refusals().conflicts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_plain_write_to_an_item_an_open_transaction_holds_is_refused() {
        let table = dynamo_like();
        let open = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .transact(vec![Write::Update {
                        key: Key::new("P#p", "STATS"),
                        update: Update::default().add("n", 1),
                        condition: None,
                    }])
                    .await
            })
        };
        tokio::task::yield_now().await;
        let plain = table
            .update(
                &Key::new("P#p", "STATS"),
                Update::default().add("n", 1),
                None,
            )
            .await;
        assert!(
            matches!(plain, Err(TableError::TransactionConflict)),
            "{plain:?}"
        );
        open.await.unwrap().unwrap();
        let stats = table.get(&Key::new("P#p", "STATS")).await.unwrap().unwrap();
        assert_eq!(
            stats.attrs["n"], 1,
            "only the transaction's increment applied"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_is_throttled_above_its_write_units_a_second_counted_by_size() {
        let table = dynamo_like();
        // 10 units a second: ten writes of a small item, three of a 3 KB one, five in transactions.
        for _ in 0..10 {
            table.put(row("SMALL", 10), None).await.unwrap();
        }
        let refused = table.put(row("SMALL", 10), None).await;
        assert!(matches!(refused, Err(TableError::Throttled)), "{refused:?}");
        for _ in 0..3 {
            table.put(row("BIG", 2_500), None).await.unwrap();
        }
        assert!(matches!(
            table.put(row("BIG", 2_500), None).await,
            Err(TableError::Throttled)
        ));
        let increment = || {
            vec![Write::Update {
                key: Key::new("P#p", "STATS"),
                update: Update::default().add("n", 1),
                condition: None,
            }]
        };
        for _ in 0..5 {
            table.transact(increment()).await.unwrap();
        }
        assert!(matches!(
            table.transact(increment()).await,
            Err(TableError::Throttled)
        ));

        tokio::time::advance(Duration::from_secs(1)).await;
        table
            .put(row("SMALL", 10), None)
            .await
            .expect("a new second, a new budget");
        assert_eq!(table.refusals().throttles, 3);
    }
}
