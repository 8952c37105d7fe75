//! Request shapes of the HTTP API and their one conversion each into the use cases' typed
//! inputs. Field-by-field shape errors point at the field, as the use cases' own checks do.

use labeling_core::domain::ValidationErrors;
use labeling_core::domain::presented::ProjectChanges;
use labeling_core::domain::project::Instructions;
use labeling_core::time::parse_rfc3339;
use labeling_core::usecases::export::{ExportInput, Since};
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

/// The body of `POST /projects/{id}/exports`. `since` is RFC 3339 or epoch milliseconds, read
/// here so the use case is given a time; the use case reports one that is not, with the other
/// fields' problems.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExportRequest {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub since: Option<Value>,
    #[serde(default)]
    pub include_unlabeled: Option<bool>,
}

impl From<ExportRequest> for ExportInput {
    fn from(request: ExportRequest) -> Self {
        Self {
            format: request.format,
            since: request.since.as_ref().and_then(read_since),
            include_unlabeled: request.include_unlabeled,
        }
    }
}

/// `null` is no `since` at all, as an absent field is.
fn read_since(value: &Value) -> Option<Since> {
    if value.is_null() {
        return None;
    }
    let ms = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => parse_rfc3339(text),
        _ => None,
    };
    Some(ms.map_or(Since::NotATime, Since::At))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn since_of(body: Value) -> Option<Since> {
        let request: ExportRequest = serde_json::from_value(body).unwrap_or_default();
        ExportInput::from(request).since
    }

    #[test]
    fn since_is_read_from_rfc3339_or_epoch_millis() {
        assert_eq!(
            since_of(json!({ "since": "1970-01-01T00:00:00Z" })),
            Some(Since::At(0))
        );
        assert_eq!(
            since_of(json!({ "since": "2024-02-29T12:34:56.789Z" })),
            Some(Since::At(1_709_210_096_789))
        );
        assert_eq!(
            since_of(json!({ "since": "2024-02-29T14:34:56.789+02:00" })),
            Some(Since::At(1_709_210_096_789))
        );
        assert_eq!(
            since_of(json!({ "since": "9999-12-31T23:59:59.999Z" })),
            Some(Since::At(253_402_300_799_999))
        );
        assert_eq!(since_of(json!({ "since": 1234 })), Some(Since::At(1234)));
    }

    #[test]
    fn a_since_that_is_not_a_time_reaches_the_use_case_as_not_a_time() {
        for since in [
            json!("yesterday"),
            json!("2024-13-01T00:00:00Z"),
            json!("400902-01-01T00:00:00Z"),
            json!(1.5),
            json!(true),
            json!([1]),
        ] {
            assert_eq!(
                since_of(json!({ "since": since })),
                Some(Since::NotATime),
                "{since}"
            );
        }
    }

    #[test]
    fn an_absent_or_null_since_exports_every_label() {
        assert_eq!(since_of(json!({})), None);
        assert_eq!(since_of(json!({ "since": null })), None);
    }
}
