//! Datasets (image uploads) and exports.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use labeling_core::usecases::datasets::{NewDatasetInput, UploadsInput};

use serde_json::{Value, json};

use super::extract::Body;
use super::{AppState, domain};
use crate::auth::Caller;
use crate::dto::ExportRequest;
use crate::problem::Problem;

pub(super) async fn create_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewDatasetInput>,
) -> Result<Response, Problem> {
    let dataset = state
        .service
        .datasets()
        .create_dataset(&caller.0, input)
        .await
        .map_err(domain)?;
    Ok((StatusCode::CREATED, Json(dataset)).into_response())
}

pub(super) async fn list_datasets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let datasets = state
        .service
        .datasets()
        .list_datasets(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "datasets": datasets })))
}

pub(super) async fn get_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .datasets()
            .get_dataset(&caller.0, &name)
            .await
            .map_err(domain)?,
    )
    .into_response())
}

pub(super) async fn request_uploads(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(input): Body<UploadsInput>,
) -> Result<Json<Value>, Problem> {
    let uploads = state
        .service
        .datasets()
        .request_uploads(&caller.0, &name, input)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "uploads": uploads })))
}

pub(super) async fn start_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(request): Body<ExportRequest>,
) -> Result<Response, Problem> {
    let export = state
        .service
        .exports()
        .start_export(&caller.0, &project_id, request.into())
        .await
        .map_err(domain)?;
    let location = format!("/projects/{project_id}/exports/{}", export.id);
    let mut response = (StatusCode::ACCEPTED, Json(export)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub(super) async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let exports = state
        .service
        .exports()
        .list_exports(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok(Json(json!({ "exports": exports })))
}

pub(super) async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, export_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(
        state
            .service
            .exports()
            .get_export(&caller.0, &project_id, &export_id)
            .await
            .map_err(domain)?,
    )
    .into_response())
}
