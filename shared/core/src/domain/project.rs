//! Projects: names, task types, label classes, settings and the stored project record.

use serde::{Deserialize, Serialize};

use super::errors::ValidationErrors;
use super::source::Source;

pub const MAX_CLASSES: usize = 500;
pub const MAX_CLASS_NAME_CHARS: usize = 256;
pub const MAX_PROJECT_NAME_CHARS: usize = 128;
pub const MAX_INSTRUCTIONS_CHARS: usize = 100_000;
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
    pub source: String,
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
    pub ml_assist: bool,
    pub members: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Optimistic concurrency: every update of the record checks and bumps it.
    pub version: u64,
}

impl ProjectRecord {
    pub fn class_by_name(&self, name: &str) -> Option<&LabelClass> {
        self.classes.iter().find(|c| c.name == name)
    }
    pub fn class_name(&self, id: u32) -> Option<&str> {
        self.classes
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }
    pub fn is_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| m == user)
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
    pub ml_assist: Option<bool>,
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
    pub ml_assist: bool,
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
        check_class_names(&self.labels, &[], "/labels", &mut errors);
        if self.labels.is_empty() {
            errors.push("/labels", "a project needs 1 to 500 label classes");
        }
        let instructions = self.instructions.unwrap_or_default();
        check_instructions(&instructions, &mut errors);
        let source = match Source::parse(self.source.trim(), allow_file_sources) {
            Ok(source) => Some(source),
            Err(error) => {
                errors.push("/source", error.to_string());
                None
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
        match (errors.into_result(), task_type, source) {
            (Ok(()), Some(task_type), Some(source)) => Ok(NewProject {
                name,
                task_type,
                labels: self.labels,
                instructions,
                source,
                page_size,
                lease_seconds,
                incremental_refresh: self.incremental_refresh.unwrap_or(false),
                ml_assist: self.ml_assist.unwrap_or(false),
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
    } else if trimmed.chars().any(char::is_control) {
        errors.push("/name", "a project name has no control characters");
    } else if trimmed.contains('/') {
        errors.push(
            "/name",
            "a project name has no '/' (it names export folders)",
        );
    }
    trimmed.to_owned()
}

/// Checks new class names, also against `existing` names.
pub fn check_class_names(
    names: &[String],
    existing: &[LabelClass],
    pointer: &str,
    errors: &mut ValidationErrors,
) {
    if names.len() + existing.len() > MAX_CLASSES {
        errors.push(
            pointer,
            format!("at most {MAX_CLASSES} label classes in a project"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (index, name) in names.iter().enumerate() {
        let chars = name.chars().count();
        let at = format!("{pointer}/{index}");
        if name.trim().is_empty() || chars > MAX_CLASS_NAME_CHARS {
            errors.push(at, "a label class is 1 to 256 characters, not blank");
        } else if name.chars().any(char::is_control) {
            errors.push(at, "a label class has no control characters");
        } else if !seen.insert(name.as_str()) || existing.iter().any(|c| &c.name == name) {
            errors.push(at, format!("label class {name:?} appears twice"));
        }
    }
}

pub fn check_instructions(instructions: &Instructions, errors: &mut ValidationErrors) {
    if let Some(text) = &instructions.text
        && text.chars().count() > MAX_INSTRUCTIONS_CHARS
    {
        errors.push(
            "/instructions/text",
            "instructions are at most 100,000 characters",
        );
    }
    if let Some(url) = &instructions.url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        errors.push("/instructions/url", "the instructions URL must be http(s)");
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
