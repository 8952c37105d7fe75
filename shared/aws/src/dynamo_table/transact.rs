//! `transact`: TransactWriteItems, reading which write failed from the cancellation reasons,
//! and logging the capacity each transaction consumed.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, ConsumedCapacity, Delete, Put, ReturnConsumedCapacity, TransactWriteItem,
    Update as UpdateAction,
};
use labeling_core::ports::table::check_transaction;
use labeling_core::ports::{TableError, Write};

use super::DynamoTable;
use super::errors::{cancellation, check_update_size, transient, unavailable};
use super::expressions::Expressions;
use super::values::{encode_item, key_map};

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
    pub(super) async fn transact_writes(&self, writes: Vec<Write>) -> Result<(), TableError> {
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
            let reasons = cancelled.cancellation_reasons().iter().map(|r| r.code());
            if let Some(refusal) = cancellation(reasons) {
                return Err(refusal);
            }
        }
        if let Some(refusal) = transient(error.code()) {
            return Err(refusal);
        }
        Err(unavailable("TransactWriteItems", error))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
}
