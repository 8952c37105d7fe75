//! Projects: create, read, edit, pause and resume, label classes and members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use labeling_core::domain::project::NewProjectInput;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Body, MaybeBody};
use super::{AppState, admin_only, domain};
use crate::auth::{Caller, UserLookup};
use crate::dto::ProjectPatch;
use crate::problem::Problem;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::usecases::projects::ProjectError;

pub(super) async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewProjectInput>,
) -> Result<Response, Problem> {
    let project = state
        .service
        .projects()
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

pub(super) async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let projects = state
        .service
        .projects()
        .list_projects(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "projects": projects })))
}

pub(super) async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .projects()
            .get_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    MaybeBody(patch): MaybeBody<ProjectPatch>,
) -> Result<Response, Problem> {
    admin_only(&caller)?;
    let patch = patch
        .ok_or_else(|| Problem::invalid("", "send the settings to change as a JSON object"))?;
    let changes =
        ProjectChanges::try_from(patch).map_err(|errors| domain(ProjectError::Invalid(errors)))?;
    Ok(Json(
        state
            .service
            .projects()
            .update_project(&caller.0, &project_id, changes)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn delete_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<StatusCode, Problem> {
    state
        .service
        .projects()
        .delete_project(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn pause_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .projects()
            .pause_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn resume_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .projects()
            .resume_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct NewLabels {
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
}

pub(super) async fn add_labels(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<NewLabels>,
) -> Result<Response, Problem> {
    let project = state
        .service
        .projects()
        .add_labels(&caller.0, &project_id, input.labels, input.mode)
        .await
        .map_err(domain)?;
    Ok(Json(project).into_response())
}

#[derive(Deserialize)]
pub(super) struct NewMember {
    #[serde(default)]
    user: String,
}

pub(super) async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<NewMember>,
) -> Result<Response, Problem> {
    // Where this service keeps the users, a member must be one of them (stored under the
    // user's own spelling); on AWS the identity provider owns users and cannot be asked.
    let user = if caller.0.is_admin() && !input.user.trim().is_empty() {
        match state.authenticator.find_user(&input.user) {
            UserLookup::Found(stored) => stored,
            UserLookup::Missing => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no user named {:?}", input.user.trim()),
                ));
            }
            UserLookup::Unknowable => input.user,
        }
    } else {
        input.user
    };
    Ok(Json(
        state
            .service
            .projects()
            .add_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, user)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .projects()
            .remove_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .dashboard()
            .dashboard(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn refresh_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    let view = state
        .service
        .refreshes()
        .request_refresh(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
