//! Project management: create, read, edit, pause and resume, label classes, members, delete.
//!
//! One flow a file: `create`, `read`, `change` (the versioned write, patch, delete), `status`
//! (pause, resume, retry, fail), `labels`, `members`; this file holds the error, the view, access
//! checks and the reads the other use cases share.

use serde::Serialize;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::project::{Instructions, LabelClass, ProjectRecord, ProjectStatus};
use crate::keys;
use crate::manifest::ManifestRecord;
use crate::ports::{BoxError, TableError};
use crate::service::{ProjectReader, from_item};
use crate::time::rfc3339;

mod change;
mod create;
mod labels;
mod members;
mod read;
mod status;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("the project name {0:?} is taken (names are never reused)")]
    NameTaken(String),
    #[error("no project {0}")]
    NotFound(String),
    #[error("only admins may do this")]
    Forbidden,
    #[error("the project is {status}; {action} needs it {needed}")]
    WrongStatus {
        status: &'static str,
        action: &'static str,
        needed: &'static str,
    },
    #[error("the project changed while this request ran; retry")]
    Conflict,
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
}

impl DomainError for ProjectError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProjectError::Invalid(_) => ErrorKind::Invalid,
            ProjectError::NameTaken(_)
            | ProjectError::WrongStatus { .. }
            | ProjectError::Conflict => ErrorKind::Conflict,
            ProjectError::NotFound(_) => ErrorKind::NotFound,
            ProjectError::Forbidden => ErrorKind::Forbidden,
            ProjectError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn field_errors(&self) -> &[FieldError] {
        match self {
            ProjectError::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
    fn problem_type(&self) -> Option<&'static str> {
        match self {
            ProjectError::NameTaken(_) => Some("name-taken"),
            // "resume needs it paused" on a running project is no paused project.
            ProjectError::WrongStatus { status, .. } if *status == "paused" => {
                Some("project-paused")
            }
            ProjectError::WrongStatus { .. } => Some("wrong-project-status"),
            _ => None,
        }
    }
}

impl From<crate::service::UnserializableRecord> for ProjectError {
    fn from(error: crate::service::UnserializableRecord) -> Self {
        ProjectError::Unavailable(Box::new(error))
    }
}

impl From<TableError> for ProjectError {
    fn from(error: TableError) -> Self {
        ProjectError::Unavailable(Box::new(error))
    }
}

/// A project as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub task_type: &'static str,
    pub labels: Vec<LabelClass>,
    pub instructions: Instructions,
    pub page_size: u32,
    pub lease_seconds: u32,
    pub source: String,
    pub status: &'static str,
    pub failure: Option<String>,
    pub round: u32,
    pub incremental_refresh: bool,
    pub ml_assist: crate::domain::ml_settings::MlAssist,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// The last refresh and the next scheduled one (admins, on `GET /projects/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<crate::usecases::refresh::RefreshView>,
}

impl ProjectView {
    pub fn of(record: &ProjectRecord, actor: &Actor) -> Self {
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            task_type: record.task_type.as_str(),
            labels: record.classes.clone(),
            instructions: record.instructions.clone(),
            page_size: record.page_size,
            lease_seconds: record.lease_seconds,
            source: record.source.uri().to_owned(),
            status: record.status.as_str(),
            failure: record.failure.clone(),
            round: record.round,
            incremental_refresh: record.incremental_refresh,
            ml_assist: record.ml_assist.clone(),
            members: actor.is_admin().then(|| record.members.clone()),
            created_by: record.created_by.clone(),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            refresh: None,
        }
    }
}

/// Labelers see only projects they are members of; to them any other project does not exist.
fn authorize(actor: &Actor, record: ProjectRecord) -> Result<ProjectRecord, ProjectError> {
    if record.status == ProjectStatus::Deleted
        || !(actor.is_admin() || record.is_member(&actor.user))
    {
        return Err(ProjectError::NotFound(record.id));
    }
    Ok(record)
}

/// Admin-only use cases start here (a labeler gets 403).
pub(crate) fn require_admin(actor: &Actor) -> Result<(), ProjectError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ProjectError::Forbidden)
    }
}

impl ProjectReader<'_> {
    /// Loads a live project. Labelers see only projects they are members of; to them any
    /// other project does not exist.
    pub(crate) async fn load_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectRecord, ProjectError> {
        let item = self
            .table
            .get(&keys::project(project_id))
            .await?
            .ok_or_else(|| ProjectError::NotFound(project_id.to_owned()))?;
        let record: ProjectRecord = from_item(&item).map_err(ProjectError::Unavailable)?;
        self.projects.remember(&record, self.clock.now());
        authorize(actor, record)
    }

    /// Like [`ProjectReader::load_project`], but may answer from the warm process's copy (at most
    /// [`crate::service::PROJECT_CACHE_TTL`] old). Only for paths whose writes re-check what
    /// matters (status and round) in their own conditions.
    pub(crate) async fn load_project_cached(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectRecord, ProjectError> {
        match self.projects.get(project_id, self.clock.now()) {
            Some(record) => authorize(actor, record),
            None => self.load_project(actor, project_id).await,
        }
    }

    pub(crate) async fn read_manifest(
        &self,
        project_id: &str,
    ) -> Result<Option<ManifestRecord>, ProjectError> {
        match self.table.get(&keys::manifest(project_id)).await? {
            None => Ok(None),
            Some(item) => Ok(Some(from_item(&item).map_err(ProjectError::Unavailable)?)),
        }
    }
}

/// Project administration: create, read, change, members, labels, status. Holds only the ports this area touches.
pub struct Projects<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
    pub(crate) cursors: &'a crate::usecases::labeling::CursorHints,
}
