//! What every use-case error has in common: a kind the HTTP layer maps to a status, and
//! field-level validation errors with JSON pointers.

use std::fmt;

/// The coarse outcome class of an error; the HTTP layer maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    Conflict,
    Invalid,
    Unavailable,
}

/// Implemented by every use-case error enum.
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// Field errors, for `Invalid`.
    fn field_errors(&self) -> &[FieldError] {
        &[]
    }
    /// A problem type more precise than the kind's, for outcomes a client acts on
    /// differently (a task submitted twice, a lease another labeler took over).
    fn problem_type(&self) -> Option<&'static str> {
        None
    }
}

/// The problem type of a request the project's status refuses: a client tells a project an
/// admin paused (wait, or ask) from one not running for another reason (initializing, failed,
/// finished).
pub fn not_running_problem(status: &str) -> &'static str {
    if status == "paused" {
        "project-paused"
    } else {
        "project-not-running"
    }
}

/// One offending field: a JSON pointer into the request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// A non-empty list of field errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError::new(pointer, detail));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn single(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self(vec![FieldError::new(pointer, detail)])
    }
    /// `Ok(())` when nothing was pushed.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.detail))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}
