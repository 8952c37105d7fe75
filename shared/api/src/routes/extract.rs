//! Extractors and the response layer that keep every error in problem+json.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use crate::problem::Problem;

/// How much of a plain-text error body is kept as a problem's detail.
const PLAIN_ERROR_KEPT: usize = 4096;

/// axum answers its own rejections (a path parameter that does not decode, a body over the
/// limit in an extractor we do not wrap, ...) in text/plain, and a handler may return a bare
/// status: this turns every error response that is not problem+json yet into one, keeping its
/// status and headers (`Allow`, `Retry-After`).
pub async fn problem_for_every_error(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, PLAIN_ERROR_KEPT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    if status.is_server_error() {
        tracing::error!(%status, body = %text, "a response outside the handlers failed");
    }
    let mut problem = Problem::from_status(status, &text).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name, value.clone());
        }
    }
    problem
}

/// A query string parsed into `T`, refused with a 400 problem+json that names the parameter
/// at fault (axum's `Query` answers text/plain).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|error| {
                // The root path (a missing parameter, a wrong overall shape) prints as ".".
                let parameter = error.path().to_string();
                let parameter = (parameter != ".").then_some(parameter);
                Problem::bad_query(parameter.as_deref(), error.inner())
            })
    }
}

/// A JSON body, parsed whatever the content type says, with problem+json errors:
/// 413 over [`BODY_LIMIT`], 400 for malformed JSON, 422 for JSON of the wrong shape. An empty
/// body reads as `{}` (routes whose every field is optional).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        parse(&bytes).map(Body)
    }
}

/// A JSON body as [`Body`], but `None` when the request has none: for routes where an empty
/// body is a mistake the handler refuses (after checking who asks).
pub struct MaybeBody<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaybeBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        if bytes.is_empty() {
            return Ok(MaybeBody(None));
        }
        parse(&bytes).map(|value| MaybeBody(Some(value)))
    }
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(BODY_LIMIT),
            _ => Problem::new(StatusCode::BAD_REQUEST, "bad-body", rejection.body_text()),
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => Problem::invalid(
            "",
            format!("the body does not have the expected shape: {error}"),
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not valid JSON: {error}"),
        ),
    })
}
