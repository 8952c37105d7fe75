//! How DynamoDB's refusals read as `TableError`s, and the size check it would otherwise make
//! after the request was sent.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use labeling_core::ports::table::check_item_size;
use labeling_core::ports::{Item, Key, TableError, Update};

use crate::error::failure;

/// An update's SET values alone over the item limit make the item over it, whatever it held.
pub(super) fn check_update_size(key: &Key, update: &Update) -> Result<(), TableError> {
    check_item_size(&Item::new(key.clone(), update.set.clone()))
}

/// Maps the error of a single-item write: a failed condition, an item DynamoDB found too large,
/// or anything else (unavailable).
pub(super) fn write_error<E>(operation: &'static str, key: &Key, error: SdkError<E>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(transient) = transient(error.code()) {
        return transient;
    }
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

/// Maps the error of a read: throttled, or unavailable.
pub(super) fn read_error<E>(operation: &'static str, error: SdkError<E>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    transient(error.code()).unwrap_or_else(|| unavailable(operation, error))
}

/// Error codes of a request refused whole for going over a throughput limit (an item's or a
/// partition's, the table's provisioned capacity, the account's request rate).
const THROTTLING_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// A refusal that wrote nothing and may pass when retried: throttling, or a plain write to an
/// item an open transaction holds (`TransactionConflictException`).
pub(super) fn transient(code: Option<&str>) -> Option<TableError> {
    match code? {
        "TransactionConflictException" => Some(TableError::TransactionConflict),
        code if THROTTLING_CODES.contains(&code) => Some(TableError::Throttled),
        _ => None,
    }
}

/// What a cancelled transaction's reasons (one code per write, in order) say: the first failed
/// condition wins, as it is a domain outcome that a retry would not change; then a conflict
/// with another transaction; then throttling of one of its items.
pub(super) fn cancellation<'a>(
    reasons: impl IntoIterator<Item = Option<&'a str>>,
) -> Option<TableError> {
    let reasons: Vec<Option<&str>> = reasons.into_iter().collect();
    if let Some(index) = reasons
        .iter()
        .position(|code| *code == Some("ConditionalCheckFailed"))
    {
        return Some(TableError::ConditionFailed { index });
    }
    if reasons.contains(&Some("TransactionConflict")) {
        return Some(TableError::TransactionConflict);
    }
    if reasons.iter().any(|code| {
        matches!(
            code,
            Some("ThrottlingError" | "ProvisionedThroughputExceeded")
        )
    }) {
        return Some(TableError::Throttled);
    }
    None
}

pub(super) fn unavailable(
    operation: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TableError {
    TableError::Unavailable(failure(operation, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_a_plain_write_on_a_held_item_are_transient_refusals() {
        for code in THROTTLING_CODES {
            assert!(
                matches!(transient(Some(code)), Some(TableError::Throttled)),
                "{code}"
            );
        }
        assert!(matches!(
            transient(Some("TransactionConflictException")),
            Some(TableError::TransactionConflict)
        ));
        assert!(transient(Some("ValidationException")).is_none());
        assert!(transient(None).is_none());
    }

    #[test]
    fn a_cancelled_transaction_reads_as_its_failed_condition_then_conflict_then_throttling() {
        let failed = cancellation([
            Some("None"),
            Some("TransactionConflict"),
            Some("ConditionalCheckFailed"),
        ]);
        assert!(matches!(
            failed,
            Some(TableError::ConditionFailed { index: 2 })
        ));
        let conflict = cancellation([Some("ThrottlingError"), Some("TransactionConflict")]);
        assert!(matches!(conflict, Some(TableError::TransactionConflict)));
        for code in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            assert!(matches!(
                cancellation([Some("None"), Some(code)]),
                Some(TableError::Throttled)
            ));
        }
        assert!(cancellation([Some("None"), Some("ValidationError")]).is_none());
    }
}
