//! Routes and handlers. A handler parses the request, calls one use case and shapes the
//! response; persistence and rules live in `labeling-core`.

pub(crate) mod datasets;
mod extract;
pub(crate) mod labeling;
pub(crate) mod ml;
pub(crate) mod projects;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use labeling_core::Service;
use labeling_core::domain::errors::DomainError;

pub use extract::{Body, MaybeBody, QueryParams, problem_for_every_error};

use crate::auth::{Authenticator, Caller};
use crate::dto::{Health, Me};
use crate::openapi::Unauthorized;
use crate::problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// Who is calling, and (where it can tell) which users exist.
    pub authenticator: Arc<dyn Authenticator>,
    /// How the web app signs users in (`/app/config.json`).
    pub sign_in: Arc<crate::web::SignIn>,
}

/// Every route of the shared API, path and handlers: the router is built from this list and
/// the tests compare its paths with the OpenAPI document (the local server merges `/users` and
/// `/blobs`).
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(healthz)),
        ("/openapi.json", get(openapi)),
        ("/me", get(me)),
        (
            "/projects",
            post(projects::create_project).get(projects::list_projects),
        ),
        (
            "/projects/{project_id}",
            get(projects::get_project)
                .patch(projects::update_project)
                .delete(projects::delete_project),
        ),
        (
            "/projects/{project_id}/pause",
            post(projects::pause_project),
        ),
        (
            "/projects/{project_id}/resume",
            post(projects::resume_project),
        ),
        ("/projects/{project_id}/labels", post(projects::add_labels)),
        ("/projects/{project_id}/members", post(projects::add_member)),
        (
            "/projects/{project_id}/members/{user}",
            delete(projects::remove_member),
        ),
        ("/projects/{project_id}/dashboard", get(projects::dashboard)),
        (
            "/projects/{project_id}/tasks/checkout",
            post(labeling::checkout),
        ),
        (
            "/projects/{project_id}/tasks/{task_id}/renew",
            post(labeling::renew),
        ),
        (
            "/projects/{project_id}/tasks/{task_id}/release",
            post(labeling::release),
        ),
        (
            "/projects/{project_id}/tasks/{task_id}/submit",
            post(labeling::submit),
        ),
        ("/projects/{project_id}/items", get(labeling::list_items)),
        (
            "/projects/{project_id}/items/{item_id}/reject",
            post(labeling::reject_item),
        ),
        (
            "/projects/{project_id}/refresh",
            post(projects::refresh_project),
        ),
        ("/projects/{project_id}/ml", get(ml::get_ml)),
        ("/projects/{project_id}/ml/runs", post(ml::start_ml_run)),
        (
            "/datasets",
            post(datasets::create_dataset).get(datasets::list_datasets),
        ),
        ("/datasets/{name}", get(datasets::get_dataset)),
        ("/datasets/{name}/uploads", post(datasets::request_uploads)),
        (
            "/projects/{project_id}/exports",
            post(datasets::start_export).get(datasets::list_exports),
        ),
        (
            "/projects/{project_id}/exports/{export_id}",
            get(datasets::get_export),
        ),
    ]
}

/// The path templates the shared router serves.
pub fn paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .merge(crate::web::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::map_response(problem_for_every_error))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The largest request body the extractors buffer (axum's default, stated so the 413 can say
/// it).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

pub(crate) fn domain<E: DomainError + 'static>(error: E) -> Problem {
    Problem::from_domain(&error)
}

/// Local user management is outside the use cases (on AWS the identity provider owns users);
/// every other role rule lives in `labeling-core`.
pub fn admin_only(caller: &Caller) -> Result<(), Problem> {
    if caller.0.is_admin() {
        Ok(())
    } else {
        Err(Problem::forbidden("only admins may do this"))
    }
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

async fn method_not_allowed(method: Method) -> Problem {
    Problem::method_not_allowed(method.as_str())
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    operation_id = "health",
    summary = "Liveness check.",
    security(),
    responses(
        (status = 200, description = "The service is up.", body = Health),
    )
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health::ok())
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    operation_id = "getOpenApi",
    summary = "This OpenAPI document.",
    security(),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "users",
    operation_id = "getMe",
    summary = "Who the bearer token belongs to.",
    responses(
        (status = 200, description = "The caller.", body = Me),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(Me::from(&caller.0))
}
