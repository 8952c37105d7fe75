//! ML assist: the runs page and starting a run now.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AppState, domain};
use crate::auth::Caller;
use crate::dto::{MlRun, MlStatus};
use crate::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable};
use crate::problem::Problem;

#[utoipa::path(
    get,
    path = "/projects/{project_id}/ml",
    tag = "ml",
    operation_id = "getMlAssist",
    summary = "ML assist of a project: what it waits for, its runs, and per class the held-out curve and threshold (admin).",
    description = "A classification project with ML assist on trains once it has `min_labels` labels (and 10 for each class that has any), and again each time the labeled count grows by a quarter (`next_training_at`). Each run featurizes new images, trains a head on the labels, validates it on held-out labels (5 folds of 20% below 5,000 labels, one 10% holdout above), and turns the next window of unlabeled items into prelabeled tasks (classes whose threshold was met) and clustered ones.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The project's ML assist.", body = MlStatus),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_ml(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(MlStatus::from(
        state
            .service
            .ml()
            .ml_view(&caller.0, &project_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/ml/runs",
    tag = "ml",
    operation_id = "startMlRun",
    summary = "Start an ML run now instead of at the next check (admin).",
    description = "Queues featurization, training, validation and inference (classification) or featurization (detection, segmentation). 409 when ML assist is off, the project is not running, or a run is under way (`ml-run-under-way`).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 202, description = "Queued.", body = MlRun),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn start_ml_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Response, Problem> {
    let run = state
        .service
        .ml()
        .start_run_now(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MlRun::from(labeling_core::usecases::ml::MlRunView::from(
            &run,
        ))),
    )
        .into_response())
}
