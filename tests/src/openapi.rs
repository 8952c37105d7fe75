//! Every response the harness receives is checked against the OpenAPI document the server
//! serves: its status must be documented for the route, and its JSON body must match the
//! schema documented for that status. The document and the code cannot drift apart unseen.
//!
//! Schemas are checked by Python's `jsonschema` (draft 2020-12, as OpenAPI 3.1 uses) in one
//! child process per test binary: the moto environment the suite needs has it already, and the
//! Rust validators would pull features into shared dependencies that rebuild the AWS SDK.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

/// The document, as `labeling-api` serves it.
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::from_str(labeling_api::openapi_json()).expect("the OpenAPI document is JSON")
    })
}

/// The validating child: reads `{"key", "schema"?, "instance"}` lines, answers a JSON list
/// of error messages per line. A schema is sent once per key and kept there.
const VALIDATOR: &str = r#"
import json, sys
from jsonschema import Draft202012Validator, FormatChecker
validators = {}
for line in sys.stdin:
    request = json.loads(line)
    key = request["key"]
    if "schema" in request:
        validators[key] = Draft202012Validator(request["schema"], format_checker=FormatChecker())
    errors = [
        "at %s: %s" % ("/" + "/".join(str(p) for p in e.absolute_path), e.message)
        for e in validators[key].iter_errors(request["instance"])
    ]
    print(json.dumps(errors), flush=True)
"#;

struct Validator {
    _child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    sent: HashSet<String>,
}

/// The Python to run: `LABELING_SCHEMA_PYTHON`, else the one next to `LABELING_MOTO_SERVER`.
fn python() -> String {
    if let Ok(python) = std::env::var("LABELING_SCHEMA_PYTHON") {
        return python;
    }
    std::env::var("LABELING_MOTO_SERVER")
        .ok()
        .and_then(|server| {
            let bin = std::path::Path::new(&server).parent()?.join("python");
            bin.exists().then(|| bin.display().to_string())
        })
        .unwrap_or_else(|| "python3".to_owned())
}

fn validator() -> &'static Mutex<Validator> {
    static VALIDATOR_PROCESS: OnceLock<Mutex<Validator>> = OnceLock::new();
    VALIDATOR_PROCESS.get_or_init(|| {
        let python = python();
        let mut child = Command::new(&python)
            .args(["-c", VALIDATOR])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} does not start ({e}): set LABELING_SCHEMA_PYTHON to a Python with jsonschema 4"));
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Mutex::new(Validator {
            _child: child,
            input,
            output,
            sent: HashSet::new(),
        })
    })
}

/// The errors of `instance` against the schema known as `key` (built by `schema` the first
/// time the key is seen).
fn validate(key: &str, schema: impl FnOnce() -> Value, instance: &Value) -> Vec<String> {
    let mut validator = validator().lock().unwrap_or_else(|e| e.into_inner());
    let mut request = json!({ "key": key, "instance": instance });
    if !validator.sent.contains(key) {
        request["schema"] = schema();
    }
    let mut line = serde_json::to_string(&request).expect("JSON");
    line.push('\n');
    let mut answer = String::new();
    let answered = validator
        .input
        .write_all(line.as_bytes())
        .and_then(|()| validator.input.flush())
        .and_then(|()| validator.output.read_line(&mut answer));
    match answered {
        Ok(n) if n > 0 => {
            validator.sent.insert(key.to_owned());
            serde_json::from_str(&answer).unwrap_or_else(|_| vec![answer])
        }
        _ => panic!(
            "the schema validator ({}) stopped: does it have jsonschema 4? set LABELING_SCHEMA_PYTHON",
            python()
        ),
    }
}

/// A schema of the document, with the document's components beside it so `$ref`s resolve.
fn rooted(schema: &Value) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "allOf": [schema],
    })
}

/// The documented template a concrete path belongs to: the one with the most literal segments
/// among those that match (`/projects/{id}/tasks/checkout` before `/projects/{id}/tasks/{t}`).
/// A template's last parameter named `key` takes the rest of the path (blob keys hold `/`).
pub fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for template in document()["paths"].as_object()?.keys() {
        let parts: Vec<&str> = template.split('/').collect();
        let rest_key = parts.last() == Some(&"{key}");
        let fits = if rest_key {
            segments.len() >= parts.len()
        } else {
            segments.len() == parts.len()
        };
        if !fits {
            continue;
        }
        let mut literal = 0;
        let matches = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                !segment.is_empty()
            } else {
                literal += 1;
                part == segment
            }
        });
        if matches && best.is_none_or(|(_, most)| literal > most) {
            best = Some((template.as_str(), literal));
        }
    }
    best.map(|(template, _)| template)
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => document()
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or(&Value::Null),
        None => value,
    }
}

/// Checks one response; `Err` names the route, the status and what is wrong.
pub fn check(method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
    let method = method.to_lowercase();
    let Some(template) = template_of(path) else {
        // An unknown path: the router's own 404, which must still be a problem.
        return check_problem(method.as_str(), path, status, body);
    };
    let route = format!("{} {template}", method.to_uppercase());
    let Some(operation) = document()["paths"][template].get(&method) else {
        // A method the route does not have: the router's 405, a problem too.
        if status != 405 {
            return Err(format!("{route} is not documented, yet answered {status}"));
        }
        return check_problem(method.as_str(), path, status, body);
    };
    let response = operation["responses"]
        .get(status.to_string())
        .or_else(|| operation["responses"].get("default"))
        .ok_or_else(|| format!("{route} answered {status}, which it does not document"))?;
    let response = resolve(response);
    let schema = response
        .get("content")
        .and_then(Value::as_object)
        .and_then(|content| {
            content
                .get("application/json")
                .or_else(|| content.get("application/problem+json"))
        })
        .and_then(|media| media.get("schema"));
    match schema {
        None if body.is_null() => Ok(()),
        // A documented non-JSON body (an image): the harness reads it as null.
        None if response.get("content").is_some() => Ok(()),
        None => Err(format!(
            "{route} answered {status} with a body where the document has none: {body}"
        )),
        Some(schema) => describe(&route, status, body, &format!("{route} {status}"), schema),
    }
}

fn describe(
    route: &str,
    status: u16,
    body: &Value,
    key: &str,
    schema: &Value,
) -> Result<(), String> {
    let errors = validate(key, || rooted(schema), body);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{route} answered {status} with a body its schema refuses: {}\nbody: {body}",
            errors.join("; ")
        ))
    }
}

/// Responses made outside any documented operation are problems.
fn check_problem(method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
    let route = format!("{} {path}", method.to_uppercase());
    match document()["components"]["schemas"].get("Problem") {
        Some(schema) => describe(&route, status, body, "problem", schema),
        None => Ok(()),
    }
}
