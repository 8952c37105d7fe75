//! Routes and handlers. A handler parses the request, calls one use case and shapes the
//! response; persistence and rules live in `labeling-core`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use labeling_core::Service;
use labeling_core::access::Role;
use labeling_core::domain::errors::DomainError;
use labeling_core::domain::labeling::SubmissionInput;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::ports::{UserError, Users};
use labeling_core::usecases::datasets::{NewDatasetInput, UploadsInput};
use labeling_core::usecases::export::ExportInput;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{Authenticator, Caller};
use crate::problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub authenticator: Arc<dyn Authenticator>,
    /// Present where users are managed by this service (locally); on AWS the identity
    /// provider owns users.
    pub users: Option<Arc<dyn Users>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/me", get(me))
        .route("/users", post(create_user))
        .route("/projects", post(create_project).get(list_projects))
        .route(
            "/projects/{project_id}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/projects/{project_id}/pause", post(pause_project))
        .route("/projects/{project_id}/resume", post(resume_project))
        .route("/projects/{project_id}/labels", post(add_labels))
        .route("/projects/{project_id}/members", post(add_member))
        .route(
            "/projects/{project_id}/members/{user}",
            delete(remove_member),
        )
        .route("/projects/{project_id}/dashboard", get(dashboard))
        .route("/projects/{project_id}/tasks/checkout", post(checkout))
        .route("/projects/{project_id}/tasks/{task_id}/renew", post(renew))
        .route(
            "/projects/{project_id}/tasks/{task_id}/release",
            post(release),
        )
        .route(
            "/projects/{project_id}/tasks/{task_id}/submit",
            post(submit),
        )
        .route("/projects/{project_id}/items", get(list_items))
        .route(
            "/projects/{project_id}/items/{item_id}/reject",
            post(reject_item),
        )
        .route("/projects/{project_id}/refresh", post(refresh_project))
        .route("/datasets", post(create_dataset).get(list_datasets))
        .route("/datasets/{name}", get(get_dataset))
        .route("/datasets/{name}/uploads", post(request_uploads))
        .route(
            "/projects/{project_id}/exports",
            post(start_export).get(list_exports),
        )
        .route(
            "/projects/{project_id}/exports/{export_id}",
            get(get_export),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::map_response(problem_for_every_error))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The largest request body the extractors buffer (axum's default, stated so the 413 can say
/// it).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

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
/// 413 over [`BODY_LIMIT`], 400 for malformed JSON, 422 for JSON of the wrong shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(BODY_LIMIT),
                    _ => Problem::new(StatusCode::BAD_REQUEST, "bad-body", rejection.body_text()),
                })?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|error| match error.classify() {
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
}

fn domain<E: DomainError + 'static>(error: E) -> Problem {
    Problem::from_domain(&error)
}

/// Local user management is outside the use cases (on AWS the identity provider owns users);
/// every other role rule lives in `labeling-core`.
fn admin_only(caller: &Caller) -> Result<(), Problem> {
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

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI_JSON,
    )
        .into_response()
}

async fn me(caller: Caller) -> Json<Value> {
    Json(json!({ "user": caller.0.user, "role": caller.0.role.as_str() }))
}

#[derive(Deserialize)]
struct NewUser {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewUser>,
) -> Result<Response, Problem> {
    admin_only(&caller)?;
    let users = state.users.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "users come from the identity provider in this deployment",
        )
    })?;
    let role = Role::parse(&input.role)
        .ok_or_else(|| Problem::invalid("/role", "role is admin or labeler"))?;
    match users.create_user(&input.name, role) {
        Ok(token) => Ok((
            StatusCode::CREATED,
            Json(json!({ "name": input.name, "role": role.as_str(), "token": token })),
        )
            .into_response()),
        Err(UserError::Exists(name)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a user named {name:?} exists"),
        )),
        Err(UserError::InvalidName) => Err(Problem::invalid(
            "/name",
            UserError::InvalidName.to_string(),
        )),
        Err(error) => {
            tracing::error!(%error, "could not create a user");
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the user store is unavailable",
            ))
        }
    }
}

async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewProjectInput>,
) -> Result<Response, Problem> {
    let project = state
        .service
        .create_project(&caller.0, input)
        .await
        .map_err(domain)?;
    let location = format!("/projects/{}", project.id);
    let mut response = (StatusCode::ACCEPTED, Json(project)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let projects = state
        .service
        .list_projects(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "projects": projects })))
}

async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .get_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(patch): Body<Value>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .update_project(&caller.0, &project_id, patch)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn delete_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<StatusCode, Problem> {
    state
        .service
        .delete_project(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .pause_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn resume_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .resume_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

#[derive(Deserialize)]
struct NewLabels {
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
}

async fn add_labels(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<NewLabels>,
) -> Result<Response, Problem> {
    let project = state
        .service
        .add_labels(&caller.0, &project_id, input.labels, input.mode)
        .await
        .map_err(domain)?;
    Ok(Json(project).into_response())
}

#[derive(Deserialize)]
struct NewMember {
    #[serde(default)]
    user: String,
}

async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<NewMember>,
) -> Result<Response, Problem> {
    // Where this service keeps the users, a member must be one of them (stored under the
    // user's own spelling); on AWS the identity provider owns users and cannot be asked.
    let user = match &state.users {
        Some(users) if caller.0.is_admin() && !input.user.trim().is_empty() => {
            users.find_user(&input.user).ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no user named {:?}", input.user.trim()),
                )
            })?
        }
        _ => input.user,
    };
    Ok(Json(
        state
            .service
            .add_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, user)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .remove_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .dashboard(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    match state
        .service
        .checkout(&caller.0, &project_id)
        .await
        .map_err(domain)?
    {
        Some(task) => Ok(Json(task).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .renew(&caller.0, &project_id, &task_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    state
        .service
        .release(&caller.0, &project_id, &task_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, task_id)): Path<(String, String)>,
    Body(input): Body<SubmissionInput>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .submit(&caller.0, &project_id, &task_id, input)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

#[derive(Deserialize)]
struct ItemsQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    QueryParams(query): QueryParams<ItemsQuery>,
) -> Result<Response, Problem> {
    let page = state
        .service
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

async fn reject_item(
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
        .reject_item(&caller.0, &project_id, item_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn refresh_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    let view = state
        .service
        .request_refresh(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

async fn create_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewDatasetInput>,
) -> Result<Response, Problem> {
    let dataset = state
        .service
        .create_dataset(&caller.0, input)
        .await
        .map_err(domain)?;
    Ok((StatusCode::CREATED, Json(dataset)).into_response())
}

async fn list_datasets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let datasets = state
        .service
        .list_datasets(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "datasets": datasets })))
}

async fn get_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .get_dataset(&caller.0, &name)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

async fn request_uploads(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(input): Body<UploadsInput>,
) -> Result<Json<Value>, Problem> {
    let uploads = state
        .service
        .request_uploads(&caller.0, &name, input)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "uploads": uploads })))
}

async fn start_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<ExportInput>,
) -> Result<Response, Problem> {
    let export = state
        .service
        .start_export(&caller.0, &project_id, input)
        .await
        .map_err(domain)?;
    let location = format!("/projects/{project_id}/exports/{}", export.id);
    let mut response = (StatusCode::ACCEPTED, Json(export)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let exports = state
        .service
        .list_exports(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "exports": exports })))
}

async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, export_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .get_export(&caller.0, &project_id, &export_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}
