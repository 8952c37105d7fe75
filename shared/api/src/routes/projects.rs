//! Projects: create, read, edit, pause and resume, label classes and members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::{Body, MaybeBody};
use super::{AppState, admin_only, domain};
use crate::auth::{Caller, UserLookup};
use crate::dto::{
    AddLabels, AddMember, Dashboard, NewProject, Project, ProjectList, ProjectPatch, RefreshView,
};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable, Unprocessable,
};
use crate::problem::Problem;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::usecases::projects::ProjectError;

#[utoipa::path(
    post,
    path = "/projects",
    tag = "projects",
    operation_id = "createProject",
    summary = "Create a project; its images are listed in the background (admin).",
    description = "Answers 202 with the project in status `initializing`; it turns `running` once the source is listed, or `failed` with a `failure` reason. Project names are unique (case-insensitive) and never reused, even after deletion (409).",
    request_body = NewProject,
    responses(
        (status = 202, description = "Accepted; ingest is queued.", body = Project, headers(("Location" = String, description = "Where the new resource is read."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewProject>,
) -> Result<Response, Problem> {
    let project = state
        .service
        .projects()
        .create_project(&caller.0, input.into())
        .await
        .map_err(domain)?;
    let location = format!("/projects/{}", project.id);
    let mut response = (StatusCode::ACCEPTED, Json(Project::from(project))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/projects",
    tag = "projects",
    operation_id = "listProjects",
    summary = "List the projects the caller can see, oldest first.",
    responses(
        (status = 200, description = "Projects (labelers: only those they are members of).", body = ProjectList),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProjectList>, Problem> {
    let projects = state
        .service
        .projects()
        .list_projects(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(ProjectList {
        projects: projects.into_iter().map(Project::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/projects/{project_id}",
    tag = "projects",
    operation_id = "getProject",
    summary = "Read a project.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The project after the change.", body = Project),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .get_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    patch,
    path = "/projects/{project_id}",
    tag = "projects",
    operation_id = "updateProject",
    summary = "Change instructions, lease time or the switches (admin).",
    description = "Only the fields given change. Any other field (name, task_type, source, page_size, labels, or unknown) is a 422 with a pointer to it; label classes are added with POST /projects/{project_id}/labels.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    request_body = ProjectPatch,
    responses(
        (status = 200, description = "The project after the change.", body = Project),
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
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .update_project(&caller.0, &project_id, changes)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    delete,
    path = "/projects/{project_id}",
    tag = "projects",
    operation_id = "deleteProject",
    summary = "Delete a project; its name stays reserved (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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

#[utoipa::path(
    post,
    path = "/projects/{project_id}/pause",
    tag = "projects",
    operation_id = "pauseProject",
    summary = "Pause a running project; checkouts stop (admin).",
    description = "Pausing a paused project is a no-op; any status other than running or paused is a 409.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The project after the change.", body = Project),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn pause_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .pause_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/resume",
    tag = "projects",
    operation_id = "resumeProject",
    summary = "Resume a paused project (admin).",
    description = "Resuming a running project is a no-op; any status other than paused or running is a 409.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The project after the change.", body = Project),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn resume_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .resume_project(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/labels",
    tag = "projects",
    operation_id = "addLabels",
    summary = "Add label classes, choosing what happens to the labels made so far (admin).",
    description = "New classes get fresh ids (ids are never reused). `start_over_*` modes begin a new labeling round: every item is unlabeled again and live tasks of the old round are cancelled.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    request_body = AddLabels,
    responses(
        (status = 200, description = "The project after the change.", body = Project),
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
pub(super) async fn add_labels(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<AddLabels>,
) -> Result<Response, Problem> {
    let (labels, mode) = input.into_domain();
    let project = state
        .service
        .projects()
        .add_labels(&caller.0, &project_id, labels, mode)
        .await
        .map_err(domain)?;
    Ok(Json(Project::from(project)).into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/members",
    tag = "projects",
    operation_id = "addMember",
    summary = "Let a labeler work on the project (admin; idempotent).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    request_body = AddMember,
    responses(
        (status = 200, description = "The project after the change.", body = Project),
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
pub(super) async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(input): Body<AddMember>,
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
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .add_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    delete,
    path = "/projects/{project_id}/members/{user}",
    tag = "projects",
    operation_id = "removeMember",
    summary = "Remove a member from the project (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("user" = String, Path, description = "The member's user name."),
    ),
    responses(
        (status = 200, description = "The project after the change.", body = Project),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, user)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(Project::from(
        state
            .service
            .projects()
            .remove_member(&caller.0, &project_id, &user)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/projects/{project_id}/dashboard",
    tag = "projects",
    operation_id = "getDashboard",
    summary = "Progress, queues and label distribution of the current round (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The dashboard.", body = Dashboard),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(Dashboard::from(
        state
            .service
            .dashboard()
            .dashboard(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/refresh",
    tag = "projects",
    operation_id = "refreshProject",
    summary = "Look for new images in the project's source now (admin); runs as a queued job.",
    description = "On a running or paused project, queues a refresh. On a failed project (its ingest gave up after 4 tries, or its source could not be read at all; `failure` says why), retries it once the cause is fixed: the failure is cleared, a project without items goes back to `initializing` and lists its source afresh, one whose first listing had finished goes back to `running` with a refresh (trigger `retry`), which adds only keys it lacks, so a retry never duplicates items. Any other status (initializing, deleted) is a 409.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 202, description = "Queued; the last refresh's outcome.", body = RefreshView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
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
    Ok((StatusCode::ACCEPTED, Json(RefreshView::from(view))).into_response())
}
