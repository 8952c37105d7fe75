//! Datasets (image uploads) and exports.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::Body;
use super::{AppState, domain};
use crate::auth::Caller;
use crate::dto::{
    Dataset, DatasetList, Export, ExportList, NewDataset, NewExport, UploadSlot, Uploads,
    UploadsRequest,
};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable, Unprocessable,
};
use crate::problem::Problem;

#[utoipa::path(
    post,
    path = "/datasets",
    tag = "datasets",
    operation_id = "createDataset",
    summary = "Create a dataset under datasets/<name>/ in the service's bucket (admin).",
    request_body = NewDataset,
    responses(
        (status = 201, description = "Created.", body = Dataset),
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
pub(super) async fn create_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Body(input): Body<NewDataset>,
) -> Result<Response, Problem> {
    let dataset = state
        .service
        .datasets()
        .create_dataset(&caller.0, input.into())
        .await
        .map_err(domain)?;
    Ok((StatusCode::CREATED, Json(Dataset::from(dataset))).into_response())
}

#[utoipa::path(
    get,
    path = "/datasets",
    tag = "datasets",
    operation_id = "listDatasets",
    summary = "Datasets with their file counts (admin).",
    responses(
        (status = 200, description = "The datasets.", body = DatasetList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list_datasets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DatasetList>, Problem> {
    let datasets = state
        .service
        .datasets()
        .list_datasets(&caller.0)
        .await
        .map_err(domain)?;
    Ok(Json(DatasetList {
        datasets: datasets.into_iter().map(Dataset::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/datasets/{name}",
    tag = "datasets",
    operation_id = "getDataset",
    summary = "A dataset with its file count and size (admin).",
    params(
        ("name" = String, Path, description = ""),
    ),
    responses(
        (status = 200, description = "The dataset.", body = Dataset),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(Dataset::from(
        state
            .service
            .datasets()
            .get_dataset(&caller.0, &name)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/datasets/{name}/uploads",
    tag = "datasets",
    operation_id = "requestUploads",
    summary = "Signed PUT URLs for files of a dataset (admin). Names are checked: no '..', no absolute paths, no control characters, images only; one bad name refuses the request (422 naming it).",
    params(
        ("name" = String, Path, description = ""),
    ),
    request_body = UploadsRequest,
    responses(
        (status = 200, description = "One slot per file.", body = Uploads),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn request_uploads(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(input): Body<UploadsRequest>,
) -> Result<Json<Uploads>, Problem> {
    let uploads = state
        .service
        .datasets()
        .request_uploads(&caller.0, &name, input.into())
        .await
        .map_err(domain)?;
    Ok(Json(Uploads {
        uploads: uploads.into_iter().map(UploadSlot::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/projects/{project_id}/exports",
    tag = "exports",
    operation_id = "startExport",
    summary = "Export labels as COCO or JSON Lines into the project's bucket (admin); runs as a queued job.",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    request_body = NewExport,
    responses(
        (status = 202, description = "Queued.", body = Export),
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
pub(super) async fn start_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(request): Body<NewExport>,
) -> Result<Response, Problem> {
    let export = state
        .service
        .exports()
        .start_export(&caller.0, &project_id, request.into())
        .await
        .map_err(domain)?;
    let location = format!("/projects/{project_id}/exports/{}", export.id);
    let mut response = (StatusCode::ACCEPTED, Json(Export::from(export))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/projects/{project_id}/exports",
    tag = "exports",
    operation_id = "listExports",
    summary = "Exports of a project, newest first (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
    ),
    responses(
        (status = 200, description = "The exports.", body = ExportList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<ExportList>, Problem> {
    let exports = state
        .service
        .exports()
        .list_exports(&caller.0, &project_id)
        .await
        .map_err(domain)?;
    Ok(Json(ExportList {
        exports: exports.into_iter().map(Export::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/projects/{project_id}/exports/{export_id}",
    tag = "exports",
    operation_id = "getExport",
    summary = "Status, progress, location and (when done) a signed download URL (admin).",
    params(
        ("project_id" = String, Path, description = "Project id, as returned in `id`."),
        ("export_id" = String, Path, description = ""),
    ),
    responses(
        (status = 200, description = "The export.", body = Export),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, export_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(Json(Export::from(
        state
            .service
            .exports()
            .get_export(&caller.0, &project_id, &export_id)
            .await
            .map_err(domain)?,
    ))
    .into_response())
}
