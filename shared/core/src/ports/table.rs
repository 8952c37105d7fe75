//! The `Table` port: a DynamoDB-shaped key-value store.
//!
//! An adapter MUST guarantee:
//! - items are addressed by a partition key and a sort key; attributes are JSON values
//!   (strings, numbers, booleans, null, lists and maps), which map one to one onto DynamoDB types;
//! - conditions are evaluated atomically with the write they guard; a failed condition is
//!   `TableError::ConditionFailed` carrying the index of the failing write in a transaction;
//! - `update` creates the item when it is missing (as `UpdateItem` does) and `add` starts from 0;
//! - a transaction of at most [`MAX_TRANSACTION_WRITES`] writes, each on a distinct item, applies
//!   all writes or none;
//! - an item is at most [`MAX_ITEM_BYTES`]; a query page holds at most [`MAX_QUERY_PAGE_BYTES`]
//!   and returns `last_evaluated` when more items match; items come in sort-key order.
//!
//! These limits are checked here, in the port, so nothing works locally that would fail on AWS.

use async_trait::async_trait;
use serde_json::Value;

use super::BoxError;

pub const MAX_TRANSACTION_WRITES: usize = 100;
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
pub const MAX_QUERY_PAGE_BYTES: usize = 1024 * 1024;
pub const MAX_BATCH_GET: usize = 100;

pub type Attrs = serde_json::Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub attrs: Attrs,
}

impl Item {
    pub fn new(key: Key, attrs: Attrs) -> Self {
        Self { key, attrs }
    }

    /// Size as DynamoDB counts it, closely enough: names plus values.
    pub fn size_bytes(&self) -> usize {
        let attrs: usize = self
            .attrs
            .iter()
            .map(|(name, value)| name.len() + value_size(value))
            .sum();
        2 + 2 + self.key.pk.len() + self.key.sk.len() + attrs
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len(),
        Value::Array(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// A condition on the item a write touches, evaluated against its current state.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The item exists.
    Exists,
    /// The item does not exist.
    NotExists,
    /// The attribute exists and equals the value.
    Equals(String, Value),
    /// The attribute is missing or differs from the value.
    NotEquals(String, Value),
    /// The attribute exists and is less than the value (numbers or strings).
    LessThan(String, Value),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

impl Condition {
    pub fn equals(name: &str, value: impl Into<Value>) -> Self {
        Self::Equals(name.to_owned(), value.into())
    }
    pub fn less_than(name: &str, value: impl Into<Value>) -> Self {
        Self::LessThan(name.to_owned(), value.into())
    }

    /// Evaluates the condition against the current item (None when missing). Adapters that
    /// cannot push conditions down (the embedded store) use this; DynamoDB evaluates its own.
    pub fn holds(&self, current: Option<&Attrs>) -> bool {
        match self {
            Condition::Exists => current.is_some(),
            Condition::NotExists => current.is_none(),
            Condition::Equals(name, value) => current.and_then(|a| a.get(name)) == Some(value),
            Condition::NotEquals(name, value) => current.and_then(|a| a.get(name)) != Some(value),
            Condition::LessThan(name, value) => {
                compare(current.and_then(|a| a.get(name)), value) == Some(std::cmp::Ordering::Less)
            }
            Condition::And(all) => all.iter().all(|c| c.holds(current)),
            Condition::Or(any) => any.iter().any(|c| c.holds(current)),
        }
    }
}

fn compare(left: Option<&Value>, right: &Value) -> Option<std::cmp::Ordering> {
    match (left?, right) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// An update expression: SET, atomic ADD on numbers, REMOVE.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub set: Attrs,
    pub add: Vec<(String, i64)>,
    pub remove: Vec<String>,
}

impl Update {
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set.insert(name.to_owned(), value.into());
        self
    }
    pub fn add(mut self, name: &str, delta: i64) -> Self {
        if let Some(existing) = self.add.iter_mut().find(|(n, _)| n == name) {
            existing.1 += delta;
        } else {
            self.add.push((name.to_owned(), delta));
        }
        self
    }
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }

    /// Applies the update to the current attributes (None when the item is missing).
    pub fn apply(&self, current: Option<&Attrs>) -> Attrs {
        let mut attrs = current.cloned().unwrap_or_default();
        for name in &self.remove {
            attrs.remove(name);
        }
        for (name, value) in &self.set {
            attrs.insert(name.clone(), value.clone());
        }
        for (name, delta) in &self.add {
            let before = attrs.get(name).and_then(Value::as_i64).unwrap_or(0);
            attrs.insert(name.clone(), Value::from(before + delta));
        }
        attrs
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        key: Key,
        update: Update,
        condition: Option<Condition>,
    },
    Delete {
        key: Key,
        condition: Option<Condition>,
    },
    /// A condition on an item the transaction does not change.
    Check { key: Key, condition: Condition },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { item, .. } => &item.key,
            Write::Update { key, .. } | Write::Delete { key, .. } | Write::Check { key, .. } => key,
        }
    }
}

/// Which sort keys a query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum SkRange {
    All,
    BeginsWith(String),
    /// Strictly less than.
    LessThan(String),
    /// Inclusive on both ends.
    Between(String, String),
}

impl SkRange {
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            SkRange::All => true,
            SkRange::BeginsWith(prefix) => sk.starts_with(prefix.as_str()),
            SkRange::LessThan(bound) => sk < bound.as_str(),
            SkRange::Between(low, high) => sk >= low.as_str() && sk <= high.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub pk: String,
    pub range: SkRange,
    /// At most this many items (an adapter may return fewer, with `last_evaluated`).
    pub limit: usize,
    /// Continue after this sort key (the previous page's `last_evaluated`); pages come in
    /// ascending sort-key order.
    pub start_after: Option<String>,
}

impl Query {
    pub fn new(pk: impl Into<String>, range: SkRange, limit: usize) -> Self {
        Self {
            pk: pk.into(),
            range,
            limit,
            start_after: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Set when more items may match: pass it as `start_after` for the next page.
    pub last_evaluated: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("condition failed on write {index}")]
    ConditionFailed { index: usize },
    #[error("item {pk}/{sk} is {bytes} bytes, over the 400 KB item limit")]
    ItemTooLarge {
        pk: String,
        sk: String,
        bytes: usize,
    },
    #[error("a transaction holds {0} writes; the limit is 100")]
    TooManyWrites(usize),
    #[error("a transaction writes {0}/{1} twice")]
    DuplicateKeyInTransaction(String, String),
    /// Another transaction held an item this write touches (a transaction overlapping an
    /// open one is cancelled; a plain write to an item an open transaction holds is refused).
    /// Nothing was written; the same request may succeed when retried.
    #[error("a transaction conflicted with another one; retry")]
    TransactionConflict,
    /// The table refused the request for going over a throughput limit (an item's or a
    /// partition's write units a second, the table's or account's capacity). Nothing was
    /// written; the same request may succeed when retried a little later.
    #[error("the table throttled the request; retry")]
    Throttled,
    #[error("the table is unavailable")]
    Unavailable(#[source] BoxError),
}

impl TableError {
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, TableError::ConditionFailed { .. })
    }

    /// A refusal that wrote nothing and may pass when the same request is sent again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TableError::TransactionConflict | TableError::Throttled
        )
    }
}

/// Checks what DynamoDB would refuse before any write is attempted.
pub fn check_transaction(writes: &[Write]) -> Result<(), TableError> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(TableError::TooManyWrites(writes.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for write in writes {
        let key = write.key();
        if !seen.insert(key) {
            return Err(TableError::DuplicateKeyInTransaction(
                key.pk.clone(),
                key.sk.clone(),
            ));
        }
        if let Write::Put { item, .. } = write {
            check_item_size(item)?;
        }
    }
    Ok(())
}

pub fn check_item_size(item: &Item) -> Result<(), TableError> {
    let bytes = item.size_bytes();
    if bytes > MAX_ITEM_BYTES {
        return Err(TableError::ItemTooLarge {
            pk: item.key.pk.clone(),
            sk: item.key.sk.clone(),
            bytes,
        });
    }
    Ok(())
}

#[async_trait]
pub trait Table: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError>;
    /// At most [`MAX_BATCH_GET`] keys; missing items are left out; order is not kept.
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError>;
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError>;
    /// Returns the item as it is after the update.
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError>;
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError>;
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError>;
    async fn query(&self, query: Query) -> Result<Page, TableError>;
}

/// A shared table is a table, so decorators can wrap an `Arc<dyn Table>` as well as an owned one.
#[async_trait]
impl<T: Table + ?Sized> Table for std::sync::Arc<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        (**self).get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        (**self).batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        (**self).put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        (**self).update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        (**self).delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        (**self).transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        (**self).query(query).await
    }
}
