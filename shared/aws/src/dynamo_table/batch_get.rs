//! `batch_get`: one BatchGetItem per call, asking again for the keys DynamoDB leaves
//! unprocessed.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use labeling_core::ports::table::MAX_BATCH_GET;
use labeling_core::ports::{Item, Key, TableError};

use super::errors::{read_error, unavailable};
use super::values::{decode_item, key_map};
use super::{AttributeMap, DynamoTable};
use crate::error::invalid_answer;

/// How often `batch_get` asks again for keys DynamoDB left unprocessed before giving up.
const BATCH_GET_RETRIES: u32 = 10;

impl DynamoTable {
    pub(super) async fn batch_get_items(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
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
                .map_err(|e| read_error("BatchGetItem", e))?;
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
}
