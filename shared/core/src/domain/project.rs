//! Projects: names, task types, label classes, settings and the stored project record.

use serde::{Deserialize, Serialize};

use super::errors::ValidationErrors;
use super::ml_settings::{MlAssist, MlAssistInput};
use super::names::{forbidden_characters, name_key, same_name};
use super::source::Source;

// The project row holds the name, classes, instructions, source and members, and must stay
// under the table's 400 KB item limit whatever a request within these limits holds: the
// byte limits below keep its worst case near 310 KB (`the_largest_project_fits_in_a_row`).
pub const MAX_CLASSES: usize = 500;
pub const MAX_CLASS_NAME_CHARS: usize = 256;
/// All class names of a project together, in UTF-8 bytes (500 names of 256 four-byte
/// characters would be 512 KB).
pub const MAX_CLASS_NAMES_BYTES: usize = 64 * 1024;
pub const MAX_PROJECT_NAME_CHARS: usize = 128;
/// Instructions text, in UTF-8 bytes.
pub const MAX_INSTRUCTIONS_BYTES: usize = 100_000;
pub const MAX_INSTRUCTIONS_URL_BYTES: usize = 2048;
pub const MAX_SOURCE_BYTES: usize = 2048;
pub const MAX_MEMBERS: usize = 1000;
/// A member's user name, in UTF-8 bytes.
pub const MAX_MEMBER_NAME_BYTES: usize = 128;
pub const MAX_ITEMS: u64 = 500_000;
pub const DEFAULT_LEASE_SECONDS: u32 = 3600;
pub const MIN_LEASE_SECONDS: u32 = 30;
pub const MAX_LEASE_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    ImageClassificationMulticlass,
    ImageClassificationMultilabel,
    ObjectDetection,
    InstanceSegmentation,
}

impl TaskType {
    pub const ALL: [TaskType; 4] = [
        TaskType::ImageClassificationMulticlass,
        TaskType::ImageClassificationMultilabel,
        TaskType::ObjectDetection,
        TaskType::InstanceSegmentation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::ImageClassificationMulticlass => "image_classification_multiclass",
            TaskType::ImageClassificationMultilabel => "image_classification_multilabel",
            TaskType::ObjectDetection => "object_detection",
            TaskType::InstanceSegmentation => "instance_segmentation",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    pub fn is_classification(self) -> bool {
        matches!(
            self,
            TaskType::ImageClassificationMulticlass | TaskType::ImageClassificationMultilabel
        )
    }

    pub fn allowed_page_sizes(self) -> &'static [u32] {
        if self.is_classification() {
            &[1, 4, 6, 9]
        } else {
            &[1]
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    Initializing,
    Running,
    Paused,
    Failed,
    Deleted,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Initializing => "initializing",
            ProjectStatus::Running => "running",
            ProjectStatus::Paused => "paused",
            ProjectStatus::Failed => "failed",
            ProjectStatus::Deleted => "deleted",
        }
    }
}

/// A label class; its id is stable and never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelClass {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instructions {
    pub text: Option<String>,
    pub url: Option<String>,
}

/// How adding label classes treats the labels made so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    /// Every item back to unlabeled; the labels are dropped.
    StartOverRemove,
    /// Every item back to unlabeled; the labels are shown to the labeler as prelabels.
    StartOverKeep,
    /// Labeled items stay as they are.
    Continue,
}

impl LabelMode {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "start_over_remove" => Some(Self::StartOverRemove),
            "start_over_keep" => Some(Self::StartOverKeep),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }
}

/// The stored project (`P#<pid>` / `META`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub task_type: TaskType,
    pub classes: Vec<LabelClass>,
    pub next_class_id: u32,
    pub instructions: Instructions,
    pub page_size: u32,
    pub lease_seconds: u32,
    /// Parsed once when the record is read, not on every checkout.
    pub source: Source,
    pub status: ProjectStatus,
    #[serde(default)]
    pub failure: Option<String>,
    /// Labeling round: starting over begins a new round; records of older rounds count as
    /// unlabeled.
    pub round: u32,
    /// Whether labels of older rounds are shown as prelabels in this round.
    pub keep_prelabels: bool,
    pub seed: u64,
    pub incremental_refresh: bool,
    /// Stored as a plain boolean before ML assist had settings; both read.
    #[serde(default)]
    pub ml_assist: MlAssist,
    pub members: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Optimistic concurrency: every update of the record checks and bumps it.
    pub version: u64,
}

impl ProjectRecord {
    /// Classes compare like every name: trimmed and case-insensitively.
    pub fn class_by_name(&self, name: &str) -> Option<&LabelClass> {
        self.classes
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.classes.iter().find(|c| same_name(&c.name, name)))
    }
    pub fn class_name(&self, id: u32) -> Option<&str> {
        self.classes
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }
    pub fn is_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| same_name(m, user))
    }
}

/// What the API hands in to create a project, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewProjectInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub task_type: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub instructions: Option<Instructions>,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub lease_seconds: Option<u32>,
    #[serde(default)]
    pub incremental_refresh: Option<bool>,
    #[serde(default)]
    pub ml_assist: Option<MlAssistInput>,
}

/// A validated new project.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub task_type: TaskType,
    pub labels: Vec<String>,
    pub instructions: Instructions,
    pub source: Source,
    pub page_size: u32,
    pub lease_seconds: u32,
    pub incremental_refresh: bool,
    pub ml_assist: MlAssist,
}

impl NewProjectInput {
    pub fn validate(self, allow_file_sources: bool) -> Result<NewProject, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = check_project_name(&self.name, &mut errors);
        let task_type = TaskType::parse(&self.task_type);
        if task_type.is_none() {
            errors.push(
                "/task_type",
                "must be one of image_classification_multiclass, image_classification_multilabel, object_detection, instance_segmentation",
            );
        }
        let labels = check_class_names(&self.labels, &[], "/labels", &mut errors);
        if self.labels.is_empty() {
            errors.push("/labels", "a project needs 1 to 500 label classes");
        }
        let instructions = self.instructions.unwrap_or_default();
        check_instructions(&instructions, &mut errors);
        let source = if self.source.trim().len() > MAX_SOURCE_BYTES {
            errors.push(
                "/source",
                format!("a source is at most {MAX_SOURCE_BYTES} bytes"),
            );
            None
        } else {
            match Source::parse(self.source.trim(), allow_file_sources) {
                Ok(source) => Some(source),
                Err(error) => {
                    errors.push("/source", error.to_string());
                    None
                }
            }
        };
        let page_size = self.page_size.unwrap_or(1);
        if let Some(task_type) = task_type
            && !task_type.allowed_page_sizes().contains(&page_size)
        {
            errors.push(
                "/page_size",
                format!(
                    "{} allows page sizes {:?}",
                    task_type.as_str(),
                    task_type.allowed_page_sizes()
                ),
            );
        }
        let lease_seconds = self.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
        check_lease(lease_seconds, &mut errors);
        let ml_assist = self.ml_assist.unwrap_or_default();
        ml_assist.check("/ml_assist", &mut errors);
        match (errors.into_result(), task_type, source) {
            (Ok(()), Some(task_type), Some(source)) => Ok(NewProject {
                name,
                task_type,
                labels,
                instructions,
                source,
                page_size,
                lease_seconds,
                incremental_refresh: self.incremental_refresh.unwrap_or(false),
                ml_assist: MlAssist::default().with(&ml_assist),
            }),
            (Err(errors), _, _) => Err(errors),
            _ => Err(ValidationErrors::single("", "invalid project")),
        }
    }
}

fn check_project_name(name: &str, errors: &mut ValidationErrors) -> String {
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_PROJECT_NAME_CHARS {
        errors.push("/name", "a project name is 1 to 128 characters");
    } else if let Some(rule) = forbidden_characters(trimmed) {
        errors.push("/name", format!("a project name has {rule}"));
    } else if trimmed.contains(['/', '\\']) {
        errors.push(
            "/name",
            "a project name has no '/' or '\\' (it names export folders)",
        );
    } else if trimmed == "." || trimmed == ".." {
        errors.push(
            "/name",
            "a project name cannot be '.' or '..' (it names export folders)",
        );
    }
    trimmed.to_owned()
}

/// Checks new class names, also against `existing` names, and returns them trimmed. Names
/// compare trimmed and case-insensitively: `Cat` and `cat` cannot both be classes.
pub fn check_class_names(
    names: &[String],
    existing: &[LabelClass],
    pointer: &str,
    errors: &mut ValidationErrors,
) -> Vec<String> {
    if names.len() + existing.len() > MAX_CLASSES {
        errors.push(
            pointer,
            format!("at most {MAX_CLASSES} label classes in a project"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (index, name) in names.iter().enumerate() {
        let trimmed = name.trim();
        let chars = trimmed.chars().count();
        let at = format!("{pointer}/{index}");
        if chars == 0 || chars > MAX_CLASS_NAME_CHARS {
            errors.push(at, "a label class is 1 to 256 characters, not blank");
        } else if let Some(rule) = forbidden_characters(trimmed) {
            errors.push(at, format!("a label class has {rule}"));
        } else if !seen.insert(name_key(trimmed))
            || existing.iter().any(|c| same_name(&c.name, trimmed))
        {
            errors.push(
                at,
                format!("label class {trimmed:?} appears twice (names ignore case)"),
            );
        }
    }
    let bytes: usize = existing.iter().map(|c| c.name.len()).sum::<usize>()
        + names.iter().map(|n| n.trim().len()).sum::<usize>();
    if bytes > MAX_CLASS_NAMES_BYTES {
        errors.push(
            pointer,
            format!(
                "the class names of a project are at most {MAX_CLASS_NAMES_BYTES} bytes (UTF-8) together, got {bytes}"
            ),
        );
    }
    names.iter().map(|n| n.trim().to_owned()).collect()
}

/// Checks a member's user name and returns it trimmed.
pub fn check_member_name(user: &str) -> Result<String, ValidationErrors> {
    let user = user.trim();
    if user.is_empty() || user.len() > MAX_MEMBER_NAME_BYTES {
        return Err(ValidationErrors::single(
            "/user",
            format!("a user name is 1 to {MAX_MEMBER_NAME_BYTES} bytes (UTF-8)"),
        ));
    }
    if let Some(rule) = forbidden_characters(user) {
        return Err(ValidationErrors::single(
            "/user",
            format!("a user name has {rule}"),
        ));
    }
    Ok(user.to_owned())
}

pub fn check_instructions(instructions: &Instructions, errors: &mut ValidationErrors) {
    if let Some(text) = &instructions.text
        && text.len() > MAX_INSTRUCTIONS_BYTES
    {
        errors.push(
            "/instructions/text",
            format!(
                "instructions are at most {MAX_INSTRUCTIONS_BYTES} bytes (UTF-8), got {}",
                text.len()
            ),
        );
    }
    if let Some(url) = &instructions.url {
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .unwrap_or_default();
        // A scheme alone (`http://`) is no address: the URL needs a host.
        if host.is_empty() || url.chars().any(char::is_whitespace) {
            errors.push(
                "/instructions/url",
                "the instructions URL must be an http(s) URL with a host",
            );
        } else if url.len() > MAX_INSTRUCTIONS_URL_BYTES {
            errors.push(
                "/instructions/url",
                format!("the instructions URL is at most {MAX_INSTRUCTIONS_URL_BYTES} bytes"),
            );
        }
    }
}

pub fn check_lease(lease_seconds: u32, errors: &mut ValidationErrors) {
    if !(MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&lease_seconds) {
        errors.push(
            "/lease_seconds",
            format!("a lease lasts {MIN_LEASE_SECONDS} seconds to 7 days"),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A string of `bytes` UTF-8 bytes made of four-byte characters (and a few ASCII ones).
    fn wide(bytes: usize) -> String {
        let mut text = "𝄞".repeat(bytes / 4);
        text.push_str(&"x".repeat(bytes % 4));
        text
    }

    #[test]
    fn the_largest_project_fits_in_a_row() {
        let per_class = MAX_CLASS_NAMES_BYTES / MAX_CLASSES;
        let classes: Vec<LabelClass> = (0..MAX_CLASSES as u32)
            .map(|id| LabelClass {
                id: id + 1_000_000,
                name: format!("{id:03}{}", wide(per_class - 3)),
            })
            .collect();
        let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
        let mut errors = ValidationErrors::default();
        check_class_names(&names, &[], "/labels", &mut errors);
        assert!(errors.is_empty(), "{errors}");
        let instructions = Instructions {
            text: Some(wide(MAX_INSTRUCTIONS_BYTES)),
            url: Some(format!(
                "https://{}",
                "u".repeat(MAX_INSTRUCTIONS_URL_BYTES - 8)
            )),
        };
        check_instructions(&instructions, &mut errors);
        assert!(errors.is_empty(), "{errors}");
        let record = ProjectRecord {
            id: "p_01JDZ8Q3M7X9V2K4N6P8R0S2T4".to_owned(),
            name: "𝄞".repeat(MAX_PROJECT_NAME_CHARS),
            task_type: TaskType::InstanceSegmentation,
            classes,
            next_class_id: u32::MAX,
            instructions,
            page_size: 9,
            lease_seconds: MAX_LEASE_SECONDS,
            source: Source::parse(
                &format!("s3://bucket/{}", "s".repeat(MAX_SOURCE_BYTES - 12)),
                false,
            )
            .unwrap(),
            status: ProjectStatus::Failed,
            failure: Some("f".repeat(2048)),
            round: u32::MAX,
            keep_prelabels: true,
            seed: u64::MAX,
            incremental_refresh: true,
            ml_assist: MlAssist {
                enabled: true,
                target_precision: 0.123_456_789_012_345_67,
                min_labels: u32::MAX,
                backbone: Some(crate::domain::ml_settings::CustomBackbone {
                    model: format!("s3://{}/{}.onnx", "b".repeat(63), "k".repeat(1019)),
                    input_size: u32::MAX,
                    crop: -1.234_567_9e-38,
                    mean: [-1.234_567_9e-38; 3],
                    std: [-1.234_567_9e-38; 3],
                    embedding_output: "e".repeat(256),
                }),
            },
            members: (0..MAX_MEMBERS)
                .map(|i| format!("{i:0width$}", width = MAX_MEMBER_NAME_BYTES))
                .collect(),
            created_by: "c".repeat(MAX_MEMBER_NAME_BYTES),
            created_at: i64::MAX,
            updated_at: i64::MAX,
            version: u64::MAX,
        };
        let bytes = crate::service::to_item(
            crate::keys::project(&record.id),
            crate::keys::entity::PROJECT,
            &record,
        )
        .unwrap()
        .size_bytes();
        assert!(
            bytes + 40 * 1024 <= crate::ports::table::MAX_ITEM_BYTES,
            "{bytes} bytes"
        );
    }

    #[test]
    fn class_names_over_their_byte_allowance_are_refused_even_if_each_is_short_enough() {
        let names: Vec<String> = (0..MAX_CLASSES)
            .map(|i| format!("{i:03}{}", "𝄞".repeat(MAX_CLASS_NAME_CHARS - 3)))
            .collect();
        let mut errors = ValidationErrors::default();
        check_class_names(&names, &[], "/labels", &mut errors);
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].pointer, "/labels");
    }

    #[test]
    fn member_names_refuse_bidirectional_overrides_and_keep_their_spelling_trimmed() {
        assert!(check_member_name("ann\u{202E}").is_err());
        assert!(check_member_name(&"a".repeat(129)).is_err());
        assert_eq!(check_member_name(" Ann ").unwrap(), "Ann");
    }
}
