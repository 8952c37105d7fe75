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

pub(super) fn unavailable(
    operation: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TableError {
    TableError::Unavailable(failure(operation, error))
}
