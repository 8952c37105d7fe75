//! The OpenAPI 3.1 document, generated from the DTOs (`crate::dto`) and the handlers'
//! `#[utoipa::path]` attributes, built once and served at `/openapi.json`.

mod local;
mod responses;

use local::BlobContent;
use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::problem::Problem;
use crate::routes::{datasets, labeling, ml, projects};
pub use responses::{
    BadQuery, BadRequest, Conflict, Forbidden, MethodNotAllowed, NotFound, TooLarge, Unauthorized,
    Unavailable, Unprocessable,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Labeling service API",
        version = "0.1.0",
        description = "Image labeling: projects over a bucket of images, leased tasks for labelers, review and a dashboard. All bodies are JSON; every 4xx/5xx response is application/problem+json (RFC 9457), including a method a route does not serve (405, with an `Allow` header), a body over 2 MiB (413) and a query string or path that does not parse (400). Timestamps are RFC 3339 UTC with milliseconds (`2024-01-31T12:00:00.000Z`). Admins may do everything; labelers see only projects they are members of (any other project answers 404) and may read them, check out, renew, release and submit."
    ),
    servers((url = "/")),
    security(("bearerAuth" = [])),
    tags(
        (name = "system", description = "Health and this document."),
        (name = "users", description = "Callers and their roles."),
        (name = "projects", description = "Project management (admin, except reads)."),
        (name = "labeling", description = "Leased tasks: check out, renew, release, submit."),
        (name = "review", description = "Listing items and rejecting labels (admin)."),
        (name = "blobs", description = "Signed image URLs of the local deployment."),
        (name = "exports", description = "COCO and JSON Lines exports."),
        (name = "ml", description = "ML assist: runs, curves and thresholds (admin)."),
        (name = "datasets", description = "Uploads of local images."),
    ),
    paths(
        crate::routes::healthz,
        crate::routes::openapi,
        crate::routes::me,
        local::create_user,
        local::get_blob,
        local::put_blob,
        projects::create_project,
        projects::list_projects,
        projects::get_project,
        projects::update_project,
        projects::delete_project,
        projects::pause_project,
        projects::resume_project,
        projects::add_labels,
        projects::add_member,
        projects::remove_member,
        projects::dashboard,
        projects::refresh_project,
        ml::get_ml,
        ml::start_ml_run,
        labeling::checkout,
        labeling::renew,
        labeling::release,
        labeling::submit,
        labeling::list_items,
        labeling::reject_item,
        datasets::create_dataset,
        datasets::list_datasets,
        datasets::get_dataset,
        datasets::request_uploads,
        datasets::start_export,
        datasets::list_exports,
        datasets::get_export,
    ),
    components(
        schemas(Problem, dto::FieldError, dto::Role, dto::TaskType, dto::ProjectStatus, dto::LabelMode, dto::ItemState),
        responses(
            BadRequest, BadQuery, Unauthorized, Forbidden, NotFound, Conflict, TooLarge,
            Unprocessable, Unavailable, MethodNotAllowed,
        ),
    ),
    modifiers(&BearerAuth, &BlobContent),
)]
struct ApiDoc;

/// `Authorization: Bearer <token>` on every operation that does not say otherwise.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        scheme.description = Some(
            "`Authorization: Bearer <token>`; tokens are issued by POST /users (local) or the deployment's identity provider."
                .to_owned(),
        );
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(scheme));
    }
}

/// The generated document.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The generated document as JSON, as `/openapi.json` serves it.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a document of strings, numbers and maps cannot fail; should it ever, the
        // route answers an empty object rather than panicking.
        document().to_json().unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document does not serialize");
            "{}".to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use labeling_core::domain::project::{Instructions, LabelClass};
    use labeling_core::usecases::projects::ProjectView;
    use labeling_core::usecases::refresh::RefreshView;
    use serde_json::Value;

    use crate::dto::Project;

    fn schema(name: &str) -> Value {
        let document: Value = serde_json::from_str(super::openapi_json()).unwrap();
        document["components"]["schemas"][name].clone()
    }

    fn names(value: &Value) -> BTreeSet<String> {
        match value {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    fn project_view(admin_on_get: bool) -> ProjectView {
        ProjectView {
            id: "p_1".into(),
            name: "cats".into(),
            task_type: "object_detection",
            labels: vec![LabelClass {
                id: 1,
                name: "cat".into(),
            }],
            instructions: Instructions::default(),
            page_size: 1,
            lease_seconds: 3600,
            source: "s3://photos/cats/**".into(),
            status: "running",
            failure: None,
            round: 0,
            incremental_refresh: false,
            ml_assist: labeling_core::domain::ml_settings::MlAssist::default(),
            members: admin_on_get.then(Vec::new),
            created_by: "admin".into(),
            created_at: "2024-01-31T12:00:00.000Z".into(),
            updated_at: "2024-01-31T12:00:00.000Z".into(),
            refresh: admin_on_get.then_some(RefreshView {
                last_refresh_at: None,
                last_refresh_trigger: None,
                items_added: 0,
                items_dropped: 0,
                files_removed: 0,
                files_unreadable: 0,
                next_scheduled_at: None,
                note: None,
            }),
        }
    }

    #[test]
    fn the_project_schema_names_exactly_the_fields_a_project_is_sent_with() {
        let schema = schema("Project");
        let everything = serde_json::to_value(Project::from(project_view(true))).unwrap();
        assert_eq!(names(&schema["properties"]), names(&everything));

        // What a labeler is sent leaves out only what the schema does not require.
        let least = serde_json::to_value(Project::from(project_view(false))).unwrap();
        assert_eq!(names(&schema["required"]), names(&least));
    }
}
