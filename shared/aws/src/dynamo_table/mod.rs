//! The `Table` port on DynamoDB: one table, string key attributes `PK` (hash) and `SK` (range).
//!
//! Item attributes are JSON values mapped one to one onto DynamoDB types (string → S,
//! number → N, bool → BOOL, null → NULL, array → L, object → M). Conditions and updates become
//! condition and update expressions with `#name`/`:value` placeholders, so DynamoDB evaluates
//! them atomically with the write. Reads are strongly consistent, as the embedded store's are:
//! a use case that writes and then reads sees its write. Attributes named `PK` or `SK` are the
//! key and are not kept among an item's attributes.

mod batch_get;
mod errors;
mod expressions;
mod query;
mod transact;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use labeling_core::ports::table::check_item_size;
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Page, Query, Table, TableError, Update, Write,
};

use errors::{check_update_size, read_error, write_error};
use expressions::Expressions;
use values::{decode_item, encode_item, from_attribute, key_map};

/// The hash key attribute.
pub const PK: &str = "PK";
/// The range key attribute.
pub const SK: &str = "SK";

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

    pub fn client(&self) -> &Client {
        &self.client
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
            .map_err(|e| read_error("GetItem", e))?;
        response.item().map(decode_item).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, keys = keys.len()))]
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.batch_get_items(keys).await
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
        self.transact_writes(writes).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.table, pk = %query.pk, limit = query.limit))]
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.query_page(query).await
    }
}
