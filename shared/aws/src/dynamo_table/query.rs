//! `query`: a key condition per sort-key range, paged by limit and by DynamoDB's 1 MB.

use aws_sdk_dynamodb::types::AttributeValue;
use labeling_core::ports::table::MAX_QUERY_PAGE_BYTES;
use labeling_core::ports::{Key, Page, Query, SkRange, TableError};

use super::errors::read_error;
use super::expressions::Expressions;
use super::values::{decode_item, key_map};
use super::{DynamoTable, PK, SK};
use crate::error::invalid_answer;

impl DynamoTable {
    pub(super) async fn query_page(&self, query: Query) -> Result<Page, TableError> {
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
        };
        let key_condition = match sk_condition {
            Some(sk_condition) => format!("{pk} = {pk_value} AND {sk_condition}"),
            None => format!("{pk} = {pk_value}"),
        };
        let is_after = |sk: &str| match &query.start_after {
            None => true,
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
                .consistent_read(true)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(
                    start
                        .as_ref()
                        .map(|sk| key_map(&Key::new(query.pk.clone(), sk.clone()))),
                )
                .send()
                .await
                .map_err(|e| read_error("Query", e))?;
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
