//! The generated OpenAPI document holds together on its own (every reference resolves, every
//! operation is named and answers something, every path parameter is declared), and it is
//! strict enough that a response drifting from the DTOs is caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};

use labeling_tests::openapi::check;
use serde_json::{Value, json};

fn document() -> Value {
    serde_json::from_str(labeling_api::openapi_json()).expect("the document is JSON")
}

/// Every `$ref` anywhere under `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                all.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    all
}

#[test]
fn the_document_is_openapi_3_1_with_a_title_a_version_and_the_bearer_scheme() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "Labeling service API");
    assert!(document["info"]["version"].is_string());
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(document["security"], json!([{ "bearerAuth": [] }]));
}

#[test]
fn every_reference_of_the_document_resolves_to_a_component() {
    let document = document();
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 100, "only {} references", found.len());
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not a local reference"));
        assert!(
            pointer.starts_with("/components/") && document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
}

#[test]
fn every_operation_has_a_unique_id_a_success_response_and_problem_errors() {
    let document = document();
    let mut ids = HashSet::new();
    let all = operations(&document);
    assert!(all.len() >= 31, "only {} operations", all.len());
    for (method, path, operation) in all {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "{id} is used twice");
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} documents no success"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let name = response["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} {status} is not a shared problem"));
                let shared = document.pointer(name.trim_start_matches('#')).unwrap();
                assert_eq!(
                    shared["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[test]
fn every_path_parameter_of_a_template_is_declared_and_every_declared_one_is_in_the_template() {
    let document = document();
    for (method, path, operation) in operations(&document) {
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|parameters| {
                parameters
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| {
                        assert_eq!(p["required"], true, "{method} {path}: {p}");
                        p["name"].as_str().unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(in_template, declared, "{method} {path}");
    }
}

/// A project as `GET /projects/{id}` answers it.
fn project() -> Value {
    json!({
        "id": "p_1", "name": "cats", "task_type": "object_detection",
        "labels": [{ "id": 1, "name": "cat" }],
        "instructions": { "text": null, "url": null },
        "page_size": 1, "lease_seconds": 3600, "source": "s3://photos/cats/**",
        "status": "running", "failure": null, "round": 0,
        "incremental_refresh": false,
        "ml_assist": { "enabled": false, "target_precision": 0.95, "min_labels": 100 },
        "members": [],
        "created_by": "admin",
        "created_at": "2024-01-31T12:00:00.000Z", "updated_at": "2024-01-31T12:00:00.000Z"
    })
}

#[test]
fn a_project_as_the_server_answers_it_validates() {
    check("GET", "/projects/p_1", 200, &project()).unwrap();
}

#[test]
fn a_project_that_drifts_from_the_dto_is_refused() {
    /// What the drift is, and how to make it.
    type Drift = (&'static str, fn(&mut Value));
    let drifts: [Drift; 6] = [
        ("a field renamed", |p| {
            let kind = p.as_object_mut().unwrap().remove("task_type").unwrap();
            p["taskType"] = kind;
        }),
        ("an enum spelled otherwise", |p| {
            p["task_type"] = json!("objectDetection")
        }),
        ("a status the server never answers", |p| {
            p["status"] = json!("deleted")
        }),
        ("a field of the wrong type", |p| p["round"] = json!("0")),
        ("a page size no task type allows", |p| {
            p["page_size"] = json!(2)
        }),
        ("a time that is not RFC 3339", |p| {
            p["created_at"] = json!("yesterday")
        }),
    ];
    for (drift, apply) in drifts {
        let mut body = project();
        apply(&mut body);
        assert!(
            check("GET", "/projects/p_1", 200, &body).is_err(),
            "{drift} passed: {body}"
        );
    }
}

#[test]
fn a_problem_without_its_type_is_refused_on_every_error_status() {
    let problem = json!({ "title": "Not Found", "status": 404, "detail": "no project p_1" });
    let refused = check("GET", "/projects/p_1", 404, &problem).unwrap_err();
    assert!(refused.contains("type"), "{refused}");
}
