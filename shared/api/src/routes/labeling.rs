//! Labeling: checkout, lease renewal and release, submission, review.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use labeling_core::domain::labeling::SubmissionInput;
use serde::Deserialize;

use super::extract::{Body, QueryParams};
use super::{AppState, domain};
use crate::auth::Caller;
use crate::problem::Problem;

pub(super) async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    match state
        .service
        .labeling()
        .checkout(&caller.0, &project_id)
        .await
        .map_err(domain)?
    {
        Some(task) => Ok(Json(task).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

pub(super) async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .labeling()
            .renew(&caller.0, &project_id, &task_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    state
        .service
        .labeling()
        .release(&caller.0, &project_id, &task_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
    Body(input): Body<SubmissionInput>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .labeling()
            .submit(&caller.0, &project_id, &task_id, input)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct ItemsQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    QueryParams(query): QueryParams<ItemsQuery>,
) -> Result<Response, Problem> {
    let page = state
        .service
        .review()
        .list_items(
            &caller.0,
            &project_id,
            query.state.as_deref(),
            query.cursor.as_deref(),
            query.limit,
        )
        .await
        .map_err(domain)?;
    Ok(Json(page).into_response())
}

pub(super) async fn reject_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, item_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let item_id: u64 = item_id.parse().map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no item {item_id}"),
        )
    })?;
    state
        .service
        .review()
        .reject_item(&caller.0, &project_id, item_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}
