//! A `Table` wrapper that counts what the service asks of the table: the request budgets in
//! tests, the benchmarks, and "a refresh with nothing new writes nothing".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Condition, Item, Key, Page, Query, Table, TableError, Update, Write};

/// What a [`CountingTable`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Items written: one per put, update or delete, and one per write of a transaction.
    pub writes: u64,
    /// Calls of any kind (reads, writes, transactions, queries).
    pub round_trips: u64,
}

impl TableCounts {
    pub fn since(self, before: TableCounts) -> TableCounts {
        TableCounts {
            writes: self.writes - before.writes,
            round_trips: self.round_trips - before.round_trips,
        }
    }
}

/// A `Table` that delegates every call and counts writes and round trips.
pub struct CountingTable {
    inner: Arc<dyn Table>,
    writes: AtomicU64,
    round_trips: AtomicU64,
}

impl CountingTable {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        Self {
            inner,
            writes: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> TableCounts {
        TableCounts {
            writes: self.writes.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
        }
    }

    fn trip(&self, writes: u64) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.trip(0);
        self.inner.get(key).await
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.trip(0);
        self.inner.batch_get(keys).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.trip(1);
        self.inner.put(item, condition).await
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.trip(1);
        self.inner.update(key, update, condition).await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.trip(1);
        self.inner.delete(key, condition).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        self.trip(writes.len() as u64);
        self.inner.transact(writes).await
    }

    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.trip(0);
        self.inner.query(query).await
    }
}
