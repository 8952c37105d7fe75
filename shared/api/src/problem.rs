//! Errors as `application/problem+json` (RFC 9457): a stable `type`, a human `detail`, and for
//! validation the pointers of the offending fields. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use labeling_core::domain::errors::{DomainError, ErrorKind, FieldError};
use serde::Serialize;

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://labeling.dev/problems/validation",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "1 problem(s) in the request; see errors",
    "errors": [{ "pointer": "/items/0/labels/0", "detail": "\"dgo\" is not a label class of this project" }]
}))]
pub struct Problem {
    /// Stable problem kind: `https://labeling.dev/problems/<slug>`, slug one of unauthorized,
    /// forbidden, not-found, conflict (a concurrent change: retry), validation, bad-body,
    /// malformed-json, bad-query, too-large, method-not-allowed, bad-request, unavailable; and
    /// the conflicts (409) a client acts on differently: task-already-submitted,
    /// lease-taken-over (the lease was lost), task-released, task-revoked, round-started-over
    /// (label classes changed: fetch a fresh task), project-paused, project-not-running,
    /// wrong-project-status, name-taken, item-not-labeled, export-not-ready, ml-run-under-way, ml-assist-off,
    /// ml-not-supported.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: String,
    /// The status code's reason phrase.
    #[schema(value_type = String)]
    pub title: &'static str,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Validation problems only; absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<crate::dto::FieldError>>, min_items = 1)]
    pub errors: Vec<FieldError>,
    /// The query parameter at fault, where one is (an RFC 9457 extension member: `errors`
    /// point into the JSON body, this names a part of the URL); bad-query only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://labeling.dev/problems/{slug}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            parameter: None,
        }
    }

    /// A query string that does not parse into what the route expects.
    pub fn bad_query(parameter: Option<&str>, reason: impl std::fmt::Display) -> Self {
        let detail = match parameter {
            Some(name) => format!("query parameter `{name}`: {reason}"),
            None => format!("the query string is invalid: {reason}"),
        };
        let mut problem = Self::new(StatusCode::BAD_REQUEST, "bad-query", detail);
        problem.parameter = parameter.map(str::to_owned);
        problem
    }

    /// A request body over the size the route accepts.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the request body is over the limit of {limit_bytes} bytes"),
        )
    }

    /// A route that exists, asked with a method it does not serve (the response's `Allow`
    /// header lists the ones it does).
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("{method} is not allowed on this route; the Allow header lists what is"),
        )
    }

    /// Any other error status, for responses made outside the handlers (axum's own
    /// rejections): the type is named after the status. Server errors get a generic detail,
    /// since their text may describe internals.
    pub fn from_status(status: StatusCode, detail: &str) -> Self {
        let slug = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too-large".to_owned(),
            _ => status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "-"),
        };
        let detail = if status.is_server_error() {
            "the service could not complete the request; retry shortly".to_owned()
        } else if detail.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            detail.trim().to_owned()
        };
        Self::new(status, &slug, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid token as `Authorization: Bearer <token>`",
        )
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let mut problem = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            detail.clone(),
        );
        problem.errors.push(FieldError::new(pointer, detail));
        problem
    }

    /// Maps a use-case error; server-side failures are logged with their cause chain.
    pub fn from_domain<E: DomainError + 'static>(error: &E) -> Self {
        let (status, slug) = match error.kind() {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        log_failure(status, &chain);
        if error.kind() == ErrorKind::Unavailable {
            return Self::new(
                status,
                slug,
                "the service could not complete the request; retry shortly",
            );
        }
        let slug = error.problem_type().unwrap_or(slug);
        let mut problem = Self::new(status, slug, error.to_string());
        problem.errors = error.field_errors().to_vec();
        if !problem.errors.is_empty() {
            problem.detail = format!(
                "{} problem(s) in the request; see errors",
                problem.errors.len()
            );
        }
        problem
    }
}

/// What a 503 asks a client to wait, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// How loud a failed request is in the logs: a server error is an incident, a refused request
/// is the client's own (logged only for whoever turns on debug logs).
pub fn log_level(status: StatusCode) -> tracing::Level {
    if status.is_server_error() {
        tracing::Level::ERROR
    } else {
        tracing::Level::DEBUG
    }
}

/// Logs a failed request at [`log_level`] (tracing's macros take a level known when compiled).
pub fn log_failure(status: StatusCode, error: &str) {
    if log_level(status) == tracing::Level::ERROR {
        tracing::error!(%status, %error, "request failed");
    } else {
        tracing::debug!(%status, %error, "request refused");
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy and unavailable are transient: tell clients (and their retry libraries)
            // when to come back instead of leaving them to hammer a contended row.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_tells_when_to_retry_and_other_errors_do_not() {
        let busy = Problem::from_status(StatusCode::SERVICE_UNAVAILABLE, "").into_response();
        assert_eq!(
            busy.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static(RETRY_AFTER_SECONDS))
        );
        for status in [StatusCode::CONFLICT, StatusCode::INTERNAL_SERVER_ERROR] {
            let refused = Problem::from_status(status, "").into_response();
            assert_eq!(refused.headers().get(header::RETRY_AFTER), None, "{status}");
        }
    }

    #[test]
    fn only_server_errors_are_logged_as_errors() {
        for refused in [400, 401, 403, 404, 409, 413, 422] {
            let status = StatusCode::from_u16(refused).unwrap_or(StatusCode::BAD_REQUEST);
            assert_eq!(log_level(status), tracing::Level::DEBUG, "{status}");
        }
        for failed in [500, 502, 503] {
            let status = StatusCode::from_u16(failed).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(log_level(status), tracing::Level::ERROR, "{status}");
        }
    }
}
