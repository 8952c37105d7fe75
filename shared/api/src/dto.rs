//! Request shapes of the HTTP API and their one conversion each into the use cases' typed
//! inputs. Field-by-field shape errors point at the field, as the use cases' own checks do.

use labeling_core::domain::ValidationErrors;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::domain::project::Instructions;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The body of `PATCH /projects/{id}`: only the fields given change. Kept as a JSON object
/// until converted, so that every wrong field (a fixed one, an unknown one, a wrong type) is
/// named with its pointer in one answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct ProjectPatch(pub Map<String, Value>);

impl TryFrom<ProjectPatch> for ProjectChanges {
    type Error = ValidationErrors;

    fn try_from(patch: ProjectPatch) -> Result<Self, Self::Error> {
        let mut errors = ValidationErrors::default();
        let mut changes = ProjectChanges::default();
        for (name, value) in patch.0 {
            let pointer = format!("/{name}");
            match name.as_str() {
                "instructions" => match serde_json::from_value::<Instructions>(value) {
                    Ok(parsed) => changes.instructions = Some(parsed),
                    Err(_) => errors.push(pointer, "expected {\"text\": ..., \"url\": ...}"),
                },
                "lease_seconds" => match value.as_u64().and_then(|v| u32::try_from(v).ok()) {
                    Some(seconds) => changes.lease_seconds = Some(seconds),
                    None => errors.push(pointer, "expected a whole number of seconds"),
                },
                "incremental_refresh" => match value.as_bool() {
                    Some(on) => changes.incremental_refresh = Some(on),
                    None => errors.push(pointer, "expected true or false"),
                },
                "ml_assist" => match value.as_bool() {
                    Some(on) => changes.ml_assist = Some(on),
                    None => errors.push(pointer, "expected true or false"),
                },
                "task_type" | "source" | "page_size" | "name" => {
                    errors.push(pointer, format!("{name} cannot change after creation"));
                }
                "labels" => errors.push(
                    pointer,
                    "add label classes with POST /projects/{id}/labels and a mode",
                ),
                _ => errors.push(pointer, "unknown field"),
            }
        }
        errors.into_result().map(|()| changes)
    }
}
