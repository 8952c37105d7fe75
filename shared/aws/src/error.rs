//! Turns SDK errors into readable boxed errors for the ports' `Unavailable` variants: the
//! message is the whole cause chain as the SDK renders it (service code and message included),
//! and the SDK error stays attached as the source.

use std::error::Error;
use std::fmt;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use labeling_core::ports::BoxError;

/// An SDK call that failed, with the operation that was attempted.
#[derive(Debug)]
pub(crate) struct SdkFailure {
    operation: &'static str,
    message: String,
    source: Option<BoxError>,
}

impl fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.message)
    }
}

impl Error for SdkFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Wraps `error` from `operation` (an SDK error, a build error, a body read error).
pub(crate) fn failure(
    operation: &'static str,
    error: impl Error + Send + Sync + 'static,
) -> BoxError {
    Box::new(SdkFailure {
        operation,
        message: DisplayErrorContext(&error).to_string(),
        source: Some(Box::new(error)),
    })
}

/// A failure without an SDK error behind it (an answer the adapter cannot use).
pub(crate) fn invalid_answer(operation: &'static str, message: impl Into<String>) -> BoxError {
    Box::new(SdkFailure {
        operation,
        message: message.into(),
        source: None,
    })
}
