//! Labeling: checkout, lease renewal and release, submission, review.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::extract::{Body, QueryParams};
use super::{AppState, domain};
use crate::auth::Caller;
use crate::dto::{CheckedOutTask, ItemPage, ItemsQuery, Lease, Submission, SubmissionReceipt};
use crate::openapi::{
    BadQuery, BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use crate::problem::Problem;

#[utoipa::path(
    post,
    path = "/projects/{project_id}/tasks/checkout",
    tag = "labeling",
    operation_id = "checkoutTask",
    summary = "Lease the next page of work.",
    description = "Released, rejected and expired work comes first, then fresh items in the project's shuffled order. The lease lasts the project's `lease_seconds`; renew it to keep the task.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "A leased task.", body = CheckedOutTask),
        (status = 204, description = "Nothing is left to label right now."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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
        Some(task) => Ok(Json(CheckedOutTask::from(task)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/tasks/{task_id}/renew",
    tag = "labeling",
    operation_id = "renewTask",
    summary = "Extend the lease by the project's lease time from now.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("task_id" = String, Path, description = "Task id from a checkout."),
    ),
    responses(
        (status = 200, description = "The new expiry.", body = Lease),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(Lease::from(
        state
            .service
            .labeling()
            .renew(&caller.0, &project_id, &task_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/tasks/{task_id}/release",
    tag = "labeling",
    operation_id = "releaseTask",
    summary = "Give the task back; its items wait at the front of the queue.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("task_id" = String, Path, description = "Task id from a checkout."),
    ),
    responses(
        (status = 204, description = "Released."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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

#[utoipa::path(
    post,
    path = "/projects/{project_id}/tasks/{task_id}/submit",
    tag = "labeling",
    operation_id = "submitTask",
    summary = "Label or skip every item of the task, all or nothing.",
    description = "Every item of the task must appear exactly once. All problems are reported together in a 422 with pointers such as `/items/0/annotations/2/bbox`. An expired lease not yet handed to someone else is still accepted; a lost lease or a new labeling round is a 409, and so is a task that has ended, with a problem type saying how: `task-already-submitted` (a second submit), `lease-taken-over` (its lease expired and another labeler's checkout took it), `task-released` or `task-revoked` (its labeler was removed from the project).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("task_id" = String, Path, description = "Task id from a checkout."),
    ),
    request_body = Submission,
    responses(
        (status = 200, description = "Recorded.", body = SubmissionReceipt),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
    Body(input): Body<Submission>,
) -> Result<Response, Problem> {
    Ok(Json(SubmissionReceipt::from(
        state
            .service
            .labeling()
            .submit(&caller.0, &project_id, &task_id, input.into())
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/projects/{project_id}/items",
    tag = "review",
    operation_id = "listItems",
    summary = "List items of the current round by state, in item-id order (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        crate::dto::ItemsQuery,
    ),
    responses(
        (status = 200, description = "A page of items.", body = ItemPage),
        (status = 400, response = BadQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
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
    Ok(Json(ItemPage::from(page)).into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/items/{item_id}/reject",
    tag = "review",
    operation_id = "rejectItem",
    summary = "Drop a labeled item's labels and queue it again at the front (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("item_id" = u64, Path, description = "Item id (position in the project's image listing); a non-number is a 404."),
    ),
    responses(
        (status = 204, description = "Rejected; the item is queued."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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
