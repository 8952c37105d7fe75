//! The `Table` port on DynamoDB: one table, string key attributes `PK` (hash) and `SK` (range).
//!
//! Item attributes are JSON values mapped one to one onto DynamoDB types (string → S,
//! number → N, bool → BOOL, null → NULL, array → L, object → M). Conditions and updates become
//! condition and update expressions with `#name`/`:value` placeholders, so DynamoDB evaluates
//! them atomically with the write. Reads are strongly consistent, as the embedded store's are:
//! a use case that writes and then reads sees its write. Attributes named `PK` or `SK` are the
//! key and are not kept among an item's attributes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ConsumedCapacity, Delete, KeysAndAttributes, Put,
    ReturnConsumedCapacity, ReturnValue, TransactWriteItem, Update as UpdateAction,
};
use labeling_core::ports::table::{
    MAX_BATCH_GET, MAX_QUERY_PAGE_BYTES, check_item_size, check_transaction,
};
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Page, Query, SkRange, Table, TableError, Update, Write,
};
use serde_json::{Number, Value};

use crate::error::{failure, invalid_answer};

/// The hash key attribute.
pub const PK: &str = "PK";
/// The range key attribute.
pub const SK: &str = "SK";

/// The attribute an update that changes nothing removes.
const NO_SUCH_ATTRIBUTE: &str = "labeling:no-such-attribute";

/// How often `batch_get` asks again for keys DynamoDB left unprocessed before giving up.
const BATCH_GET_RETRIES: u32 = 10;

type AttributeMap = HashMap<String, AttributeValue>;

pub struct DynamoTable {
    client: Client,
    table: String,
    one_at_a_time: Option<Arc<tokio::sync::Semaphore>>,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            one_at_a_time: None,
        }
    }

    /// For an emulator: moto's DynamoDB is not thread-safe (concurrent transactions fail with
    /// its "dictionary changed size during iteration", or lose writes), so this process sends
    /// it one request at a time. DynamoDB itself needs no such thing.
    pub fn for_emulator(client: Client, table: impl Into<String>) -> Self {
        static EMULATOR: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> =
            std::sync::OnceLock::new();
        Self {
            one_at_a_time: Some(
                EMULATOR
                    .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(1)))
                    .clone(),
            ),
            ..Self::new(client, table)
        }
    }

    async fn serialized(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.one_at_a_time {
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A JSON value as a DynamoDB attribute value.
pub fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

/// A DynamoDB attribute value as JSON; sets become arrays. Binary values have no JSON form.
pub fn from_attribute(value: &AttributeValue) -> Result<Value, TableError> {
    Ok(match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => parse_number(n)?,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => Value::Array(
            values
                .iter()
                .map(from_attribute)
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(name, value)| Ok((name.clone(), from_attribute(value)?)))
                .collect::<Result<_, TableError>>()?,
        ),
        AttributeValue::Ss(values) => {
            Value::Array(values.iter().cloned().map(Value::from).collect())
        }
        AttributeValue::Ns(values) => Value::Array(
            values
                .iter()
                .map(|n| parse_number(n))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(TableError::Unavailable(invalid_answer(
                "decoding an item",
                format!("an attribute of a type JSON cannot hold: {other:?}"),
            )));
        }
    })
}

/// Parses a DynamoDB number: an integer when it is integral and fits, else a float.
fn parse_number(text: &str) -> Result<Value, TableError> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Value::from(u));
    }
    let float: f64 = text.parse().map_err(|_| {
        TableError::Unavailable(invalid_answer(
            "decoding an item",
            format!("{text:?} is not a number"),
        ))
    })?;
    // i64::MIN..=i64::MAX as floats; 2^63 itself is out of range.
    if float.fract() == 0.0
        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float)
    {
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Value::from(float as i64));
    }
    Number::from_f64(float).map(Value::Number).ok_or_else(|| {
        TableError::Unavailable(invalid_answer(
            "decoding an item",
            format!("{text:?} is not a finite number"),
        ))
    })
}

fn key_map(key: &Key) -> AttributeMap {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn encode_item(item: &Item) -> AttributeMap {
    let mut map: AttributeMap = item
        .attrs
        .iter()
        .map(|(name, value)| (name.clone(), to_attribute(value)))
        .collect();
    map.extend(key_map(&item.key));
    map
}

fn decode_item(map: &AttributeMap) -> Result<Item, TableError> {
    let key_part = |name: &str| -> Result<String, TableError> {
        match map.get(name) {
            Some(AttributeValue::S(s)) => Ok(s.clone()),
            _ => Err(TableError::Unavailable(invalid_answer(
                "decoding an item",
                format!("an item without a string {name}"),
            ))),
        }
    };
    let key = Key::new(key_part(PK)?, key_part(SK)?);
    let mut attrs = Attrs::new();
    for (name, value) in map {
        if name != PK && name != SK {
            attrs.insert(name.clone(), from_attribute(value)?);
        }
    }
    Ok(Item::new(key, attrs))
}

/// Placeholders of one request's expressions: each attribute name gets one `#nN`, each value
/// its own `:vN`. DynamoDB refuses unused placeholders, so they are only made on use.
#[derive(Debug, Default)]
struct Expressions {
    names: HashMap<String, String>,
    placeholders: HashMap<String, String>,
    values: AttributeMap,
}

impl Expressions {
    fn name(&mut self, name: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.placeholders.len());
        self.placeholders
            .insert(name.to_owned(), placeholder.clone());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::Exists => format!("attribute_exists({})", self.name(PK)),
            Condition::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Condition::Equals(name, value) => self.comparison(name, "=", value),
            Condition::NotEquals(name, value) => {
                let name = self.name(name);
                let value = self.value(to_attribute(value));
                format!("(attribute_not_exists({name}) OR {name} <> {value})")
            }
            Condition::LessThan(name, value) => self.comparison(name, "<", value),
            Condition::GreaterThan(name, value) => self.comparison(name, ">", value),
            Condition::AttributeNotExists(name) => {
                format!("attribute_not_exists({})", self.name(name))
            }
            Condition::And(all) if all.is_empty() => self.always(true),
            Condition::Or(any) if any.is_empty() => self.always(false),
            Condition::And(all) => self.join(all, " AND "),
            Condition::Or(any) => self.join(any, " OR "),
        }
    }

    fn comparison(&mut self, name: &str, operator: &str, value: &Value) -> String {
        let name = self.name(name);
        let value = self.value(to_attribute(value));
        format!("{name} {operator} {value}")
    }

    fn join(&mut self, conditions: &[Condition], operator: &str) -> String {
        let parts: Vec<String> = conditions.iter().map(|c| self.condition(c)).collect();
        format!("({})", parts.join(operator))
    }

    /// DynamoDB has no literal true or false; an item exists or it does not.
    fn always(&mut self, truth: bool) -> String {
        let pk = self.name(PK);
        if truth {
            format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))")
        } else {
            format!("(attribute_exists({pk}) AND attribute_not_exists({pk}))")
        }
    }

    /// The update expression. The port applies REMOVE, then SET, then ADD; DynamoDB refuses two
    /// actions on one attribute, so those are folded into one SET first, with the same outcome.
    /// An update that changes nothing removes an attribute no item has: DynamoDB needs an
    /// action, and still creates a missing item, as the port's `update` does.
    fn update(&mut self, update: &Update) -> String {
        let mut set = update.set.clone();
        let mut add = Vec::new();
        for (name, delta) in &update.add {
            if let Some(value) = set.get(name) {
                let base = value.as_i64().unwrap_or(0);
                set.insert(name.clone(), Value::from(base.saturating_add(*delta)));
            } else if update.remove.contains(name) {
                set.insert(name.clone(), Value::from(*delta));
            } else {
                add.push((name, *delta));
            }
        }
        let remove: BTreeSet<&String> = update
            .remove
            .iter()
            .filter(|name| !set.contains_key(*name))
            .collect();
        let mut clauses = Vec::new();
        if !set.is_empty() {
            let assignments: Vec<String> = set
                .iter()
                .map(|(name, value)| {
                    let name = self.name(name);
                    let value = self.value(to_attribute(value));
                    format!("{name} = {value}")
                })
                .collect();
            clauses.push(format!("SET {}", assignments.join(", ")));
        }
        if !add.is_empty() {
            let additions: Vec<String> = add
                .iter()
                .map(|(name, delta)| {
                    let name = self.name(name);
                    let value = self.value(AttributeValue::N(delta.to_string()));
                    format!("{name} {value}")
                })
                .collect();
            clauses.push(format!("ADD {}", additions.join(", ")));
        }
        if !remove.is_empty() {
            let names: Vec<String> = remove.iter().map(|name| self.name(name)).collect();
            clauses.push(format!("REMOVE {}", names.join(", ")));
        }
        if clauses.is_empty() {
            return format!("REMOVE {}", self.name(NO_SUCH_ATTRIBUTE));
        }
        clauses.join(" ")
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<AttributeMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// An update's SET values alone over the item limit make the item over it, whatever it held.
fn check_update_size(key: &Key, update: &Update) -> Result<(), TableError> {
    check_item_size(&Item::new(key.clone(), update.set.clone()))
}

/// Maps the error of a single-item write: a failed condition, an item DynamoDB found too large,
/// or anything else (unavailable).
fn write_error<E>(operation: &'static str, key: &Key, error: SdkError<E>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error.code() {
        Some("ConditionalCheckFailedException") => TableError::ConditionFailed { index: 0 },
        Some("ValidationException")
            if error
                .message()
                .is_some_and(|m| m.contains("Item size") || m.contains("item size")) =>
        {
            TableError::ItemTooLarge {
                pk: key.pk.clone(),
                sk: key.sk.clone(),
                bytes: labeling_core::ports::table::MAX_ITEM_BYTES + 1,
            }
        }
        _ => TableError::Unavailable(failure(operation, error)),
    }
}

/// Capacity units a write consumed, summed over the tables DynamoDB reports; None when it
/// reported none (an emulator, or a request that did not ask).
fn capacity_units(reported: &[ConsumedCapacity]) -> Option<f64> {
    let units: Vec<f64> = reported
        .iter()
        .filter_map(|c| c.capacity_units().or(c.write_capacity_units()))
        .collect();
    (!units.is_empty()).then(|| units.iter().sum())
}

/// One line per committed transaction, so the write units per label can be read off the logs
/// (CloudWatch Logs Insights: `stats sum(capacity_units) by table`).
fn log_consumed_capacity(table: &str, items: usize, reported: &[ConsumedCapacity]) {
    if let Some(capacity_units) = capacity_units(reported) {
        tracing::info!(
            table,
            items,
            capacity_units,
            "TransactWriteItems consumed capacity"
        );
    }
}

fn unavailable(
    operation: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TableError {
    TableError::Unavailable(failure(operation, error))
}

impl DynamoTable {
    fn transact_item(&self, write: &Write) -> Result<TransactWriteItem, TableError> {
        let build_error = |error| unavailable("building a transaction", error);
        let mut exprs = Expressions::default();
        Ok(match write {
            Write::Put { item, condition } => {
                let condition = condition.as_ref().map(|c| exprs.condition(c));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode_item(item)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(exprs.names())
                    .set_expression_attribute_values(exprs.values())
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().put(put).build()
            }
            Write::Update {
                key,
                update,
                condition,
            } => {
                let condition = condition.as_ref().map(|c| exprs.condition(c));
                let expression = exprs.update(update);
                let action = UpdateAction::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .update_expression(expression)
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(exprs.names())
                    .set_expression_attribute_values(exprs.values())
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().update(action).build()
            }
            Write::Delete { key, condition } => {
                let condition = condition.as_ref().map(|c| exprs.condition(c));
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(exprs.names())
                    .set_expression_attribute_values(exprs.values())
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().delete(delete).build()
            }
            Write::Check { key, condition } => {
                let condition = exprs.condition(condition);
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(exprs.names())
                    .set_expression_attribute_values(exprs.values())
                    .build()
                    .map_err(build_error)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        })
    }
}

#[async_trait]
impl Table for DynamoTable {
    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %key.pk, sk = %key.sk))]
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let _serialized = self.serialized().await;
        let response = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        response.item().map(decode_item).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, keys = keys.len()))]
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        let _serialized = self.serialized().await;
        if keys.len() > MAX_BATCH_GET {
            return Err(TableError::TooManyWrites(keys.len()));
        }
        // DynamoDB refuses a request that names one key twice.
        let unique: BTreeSet<&Key> = keys.iter().collect();
        let mut pending: Vec<AttributeMap> = unique.into_iter().map(key_map).collect();
        let mut items = Vec::with_capacity(pending.len());
        let mut retries = 0;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(|e| unavailable("BatchGetItem", e))?;
            let response = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", e))?;
            for raw in response
                .responses()
                .and_then(|tables| tables.get(&self.table))
                .into_iter()
                .flatten()
            {
                items.push(decode_item(raw)?);
            }
            pending = response
                .unprocessed_keys()
                .and_then(|tables| tables.get(&self.table))
                .map(|left| left.keys().to_vec())
                .unwrap_or_default();
            if !pending.is_empty() {
                retries += 1;
                if retries > BATCH_GET_RETRIES {
                    return Err(TableError::Unavailable(invalid_answer(
                        "BatchGetItem",
                        format!(
                            "{} keys still unprocessed after {BATCH_GET_RETRIES} retries",
                            pending.len()
                        ),
                    )));
                }
                let backoff = Duration::from_millis(25 << retries.min(6));
                tracing::debug!(
                    unprocessed = pending.len(),
                    ?backoff,
                    "retrying unprocessed keys"
                );
                tokio::time::sleep(backoff).await;
            }
        }
        Ok(items)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %item.key.pk, sk = %item.key.sk))]
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        let _serialized = self.serialized().await;
        check_item_size(&item)?;
        let mut exprs = Expressions::default();
        let condition = condition.as_ref().map(|c| exprs.condition(c));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_item(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(exprs.names())
            .set_expression_attribute_values(exprs.values())
            .send()
            .await
            .map_err(|e| write_error("PutItem", &item.key, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %key.pk, sk = %key.sk))]
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        let _serialized = self.serialized().await;
        check_update_size(key, &update)?;
        let mut exprs = Expressions::default();
        let condition = condition.as_ref().map(|c| exprs.condition(c));
        let expression = exprs.update(&update);
        let response = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression(expression)
            .set_condition_expression(condition)
            .set_expression_attribute_names(exprs.names())
            .set_expression_attribute_values(exprs.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| write_error("UpdateItem", key, e))?;
        let mut attrs = Attrs::new();
        for (name, value) in response.attributes().into_iter().flatten() {
            if name != PK && name != SK {
                attrs.insert(name.clone(), from_attribute(value)?);
            }
        }
        Ok(Item::new(key.clone(), attrs))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %key.pk, sk = %key.sk))]
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        let _serialized = self.serialized().await;
        let mut exprs = Expressions::default();
        let condition = condition.as_ref().map(|c| exprs.condition(c));
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(exprs.names())
            .set_expression_attribute_values(exprs.values())
            .send()
            .await
            .map_err(|e| write_error("DeleteItem", key, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, writes = writes.len()))]
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        let _serialized = self.serialized().await;
        check_transaction(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let mut items = Vec::with_capacity(writes.len());
        for write in &writes {
            if let Write::Update { key, update, .. } = write {
                check_update_size(key, update)?;
            }
            items.push(self.transact_item(write)?);
        }
        // TOTAL costs nothing extra and answers one number per table: what the README's write
        // units per label are checked against on AWS (emulators may leave it out).
        let outcome = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let error = match outcome {
            Ok(output) => {
                log_consumed_capacity(&self.table, writes.len(), output.consumed_capacity());
                return Ok(());
            }
            Err(error) => error,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            if let Some(index) = reasons
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Err(TableError::ConditionFailed { index });
            }
            if reasons
                .iter()
                .any(|r| r.code() == Some("TransactionConflict"))
            {
                return Err(TableError::TransactionConflict);
            }
        }
        if error.code() == Some("TransactionConflictException") {
            return Err(TableError::TransactionConflict);
        }
        Err(unavailable("TransactWriteItems", error))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %query.pk, limit = query.limit))]
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        let _serialized = self.serialized().await;
        let limit = query.limit.max(1);
        let mut exprs = Expressions::default();
        let pk = exprs.name(PK);
        let pk_value = exprs.value(AttributeValue::S(query.pk.clone()));
        // Empty strings cannot be key values: bounds of "" are either no bound or no match.
        let sk_condition = match &query.range {
            SkRange::All => None,
            SkRange::BeginsWith(prefix) if prefix.is_empty() => None,
            SkRange::BeginsWith(prefix) => {
                let sk = exprs.name(SK);
                let prefix = exprs.value(AttributeValue::S(prefix.clone()));
                Some(format!("begins_with({sk}, {prefix})"))
            }
            SkRange::LessThan(bound) if bound.is_empty() => return Ok(Page::default()),
            SkRange::LessThan(bound) => {
                let sk = exprs.name(SK);
                let bound = exprs.value(AttributeValue::S(bound.clone()));
                Some(format!("{sk} < {bound}"))
            }
            SkRange::Between(low, high) if high.is_empty() || low > high => {
                return Ok(Page::default());
            }
            SkRange::Between(low, high) if low.is_empty() => {
                let sk = exprs.name(SK);
                let high = exprs.value(AttributeValue::S(high.clone()));
                Some(format!("{sk} <= {high}"))
            }
            SkRange::Between(low, high) => {
                let sk = exprs.name(SK);
                let low = exprs.value(AttributeValue::S(low.clone()));
                let high = exprs.value(AttributeValue::S(high.clone()));
                Some(format!("{sk} BETWEEN {low} AND {high}"))
            }
            SkRange::From(low) if low.is_empty() => None,
            SkRange::From(low) => {
                let sk = exprs.name(SK);
                let low = exprs.value(AttributeValue::S(low.clone()));
                Some(format!("{sk} >= {low}"))
            }
        };
        let key_condition = match sk_condition {
            Some(sk_condition) => format!("{pk} = {pk_value} AND {sk_condition}"),
            None => format!("{pk} = {pk_value}"),
        };
        let is_after = |sk: &str| match &query.start_after {
            None => true,
            Some(after) if query.descending => sk < after.as_str(),
            Some(after) => sk > after.as_str(),
        };
        let mut page = Page::default();
        let mut bytes = 0usize;
        let mut start = query.start_after.clone();
        loop {
            // One more than the page holds, to tell whether more items follow it.
            let wanted = limit + 1 - page.items.len();
            let response = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&key_condition)
                .set_expression_attribute_names(exprs.names())
                .set_expression_attribute_values(exprs.values())
                .scan_index_forward(!query.descending)
                .consistent_read(true)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(
                    start
                        .as_ref()
                        .map(|sk| key_map(&Key::new(query.pk.clone(), sk.clone()))),
                )
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            for raw in response.items() {
                let item = decode_item(raw)?;
                if !is_after(&item.key.sk) {
                    continue;
                }
                let size = item.size_bytes();
                if page.items.len() == limit
                    || (!page.items.is_empty() && bytes + size > MAX_QUERY_PAGE_BYTES)
                {
                    page.last_evaluated = page.items.last().map(|i| i.key.sk.clone());
                    return Ok(page);
                }
                bytes += size;
                page.items.push(item);
            }
            match response.last_evaluated_key() {
                None => return Ok(page),
                Some(last) => match last.get(SK) {
                    Some(AttributeValue::S(sk)) => start = Some(sk.clone()),
                    _ => {
                        return Err(TableError::Unavailable(invalid_answer(
                            "Query",
                            "a LastEvaluatedKey without a string SK",
                        )));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn consumed_capacity_is_summed_over_tables_and_absent_when_not_reported() {
        let on = |table: &str, units: f64| {
            ConsumedCapacity::builder()
                .table_name(table)
                .capacity_units(units)
                .build()
        };
        assert_eq!(capacity_units(&[on("t", 12.0)]), Some(12.0));
        assert_eq!(capacity_units(&[on("t", 12.0), on("u", 2.0)]), Some(14.0));
        let writes_only = ConsumedCapacity::builder()
            .write_capacity_units(10.0)
            .build();
        assert_eq!(capacity_units(&[writes_only]), Some(10.0));
        assert_eq!(capacity_units(&[]), None);
        assert_eq!(capacity_units(&[ConsumedCapacity::builder().build()]), None);
    }

    #[test]
    fn values_round_trip() {
        let value =
            json!({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null, "l": [1, "two", {"m": []}]});
        assert_eq!(from_attribute(&to_attribute(&value)).unwrap(), value);
    }

    #[test]
    fn numbers_parse_as_integers_when_integral() {
        assert_eq!(parse_number("5").unwrap(), json!(5));
        assert_eq!(parse_number("5.0").unwrap(), json!(5));
        assert_eq!(parse_number("1E+3").unwrap(), json!(1000));
        assert_eq!(parse_number("0.25").unwrap(), json!(0.25));
        assert_eq!(
            parse_number("18446744073709551615").unwrap(),
            json!(u64::MAX)
        );
        assert!(parse_number("nope").is_err());
    }

    #[test]
    fn conditions_use_placeholders() {
        let mut exprs = Expressions::default();
        let text = exprs.condition(&Condition::Or(vec![
            Condition::NotExists,
            Condition::And(vec![
                Condition::equals("round", 2),
                Condition::NotEquals("state".into(), json!("done")),
                Condition::less_than("round", 3),
            ]),
        ]));
        assert_eq!(
            text,
            "(attribute_not_exists(#n0) OR (#n1 = :v0 AND (attribute_not_exists(#n2) OR #n2 <> :v1) AND #n1 < :v2))"
        );
        assert_eq!(exprs.names().unwrap().len(), 3);
        assert_eq!(exprs.values().unwrap().len(), 3);
    }

    #[test]
    fn updates_fold_overlapping_actions() {
        let mut exprs = Expressions::default();
        let update = Update::default()
            .set("a", 1)
            .add("a", 2)
            .add("b", 1)
            .remove("c")
            .remove("d")
            .add("d", 4)
            .remove("a");
        let text = exprs.update(&update);
        assert_eq!(text, "SET #n0 = :v0, #n1 = :v1 ADD #n2 :v2 REMOVE #n3");
        let names = exprs.names().unwrap();
        assert_eq!(names["#n0"], "a");
        assert_eq!(names["#n1"], "d");
        assert_eq!(names["#n2"], "b");
        assert_eq!(names["#n3"], "c");
        let values = exprs.values().unwrap();
        assert_eq!(values[":v0"], AttributeValue::N("3".into()));
        assert_eq!(values[":v1"], AttributeValue::N("4".into()));
        assert_eq!(
            Expressions::default().update(&Update::default()),
            "REMOVE #n0"
        );
    }
}
