//! Project management: create, read, edit, pause and resume, label classes, members, delete.

use serde::Serialize;
use tracing::instrument;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::names::same_name;
use crate::domain::presented::ProjectChanges;
use crate::domain::project::{
    Instructions, LabelClass, LabelMode, MAX_MEMBERS, NewProjectInput, ProjectRecord,
    ProjectStatus, check_class_names, check_instructions, check_lease, check_member_name,
};
use crate::ids::{new_id, new_seed};
use crate::jobs::Job;
use crate::keys;
use crate::manifest::ManifestRecord;
use crate::ports::{BoxError, Condition, Query, SkRange, TableError, Write};
use crate::service::{Service, from_item, to_item};
use crate::time::rfc3339;

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
    pub ml_assist: bool,
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
            ml_assist: record.ml_assist,
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

impl Service {
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

    /// Like [`Service::load_project`], but may answer from the warm process's copy (at most
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

    /// Reads, changes and writes the project record under its version, retrying on races.
    async fn change_project<F>(
        &self,
        actor: &Actor,
        project_id: &str,
        mut change: F,
    ) -> Result<ProjectRecord, ProjectError>
    where
        F: FnMut(&mut ProjectRecord) -> Result<Vec<Write>, ProjectError>,
    {
        for _ in 0..5 {
            if let Some(record) = self
                .try_change_project(actor, project_id, &mut change)
                .await?
            {
                return Ok(record);
            }
        }
        Err(ProjectError::Conflict)
    }

    /// One optimistic attempt: `None` when the project (or a row the change checks) moved
    /// since it was read.
    async fn try_change_project<F>(
        &self,
        actor: &Actor,
        project_id: &str,
        change: &mut F,
    ) -> Result<Option<ProjectRecord>, ProjectError>
    where
        F: FnMut(&mut ProjectRecord) -> Result<Vec<Write>, ProjectError>,
    {
        let mut record = self.load_project(actor, project_id).await?;
        let version = record.version;
        let mut extra = change(&mut record)?;
        record.version += 1;
        record.updated_at = self.clock.now();
        let mut writes = vec![Write::Put {
            item: to_item(keys::project(project_id), "project", &record)?,
            condition: Some(Condition::equals("version", version)),
        }];
        writes.append(&mut extra);
        let outcome = if writes.len() == 1 {
            let Some(Write::Put { item, condition }) = writes.pop() else {
                return Err(ProjectError::Conflict);
            };
            self.table.put(item, condition).await
        } else {
            self.table.transact(writes).await
        };
        match outcome {
            Ok(()) => {
                self.projects.remember(&record, self.clock.now());
                Ok(Some(record))
            }
            Err(TableError::ConditionFailed { .. } | TableError::TransactionConflict) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    #[instrument(skip(self, input), fields(project_name = %input.name))]
    pub async fn create_project(
        &self,
        actor: &Actor,
        input: NewProjectInput,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let mut input = input;
        if let Some(dataset) = input.source.trim().strip_prefix("dataset:") {
            let dataset = dataset.trim().to_owned();
            if !crate::usecases::datasets::valid_dataset_name(&dataset)
                || !self.dataset_exists(&dataset).await?
            {
                return Err(ProjectError::Invalid(ValidationErrors::single(
                    "/source",
                    format!("there is no dataset {dataset:?}; create the dataset first"),
                )));
            }
            input.source = format!(
                "s3://{}/{}**",
                self.config.system_bucket,
                crate::usecases::datasets::dataset_prefix(&dataset)
            );
        }
        let new = input
            .validate(self.config.allow_file_sources)
            .map_err(ProjectError::Invalid)?;
        let now = self.clock.now();
        let id = new_id("p");
        let classes: Vec<LabelClass> = new
            .labels
            .iter()
            .enumerate()
            .map(|(index, name)| LabelClass {
                id: index as u32 + 1,
                name: name.clone(),
            })
            .collect();
        let record = ProjectRecord {
            id: id.clone(),
            name: new.name.clone(),
            task_type: new.task_type,
            next_class_id: classes.len() as u32 + 1,
            classes,
            instructions: new.instructions,
            page_size: new.page_size,
            lease_seconds: new.lease_seconds,
            source: new.source,
            status: ProjectStatus::Initializing,
            failure: None,
            round: 0,
            keep_prelabels: false,
            seed: new_seed(),
            incremental_refresh: new.incremental_refresh,
            ml_assist: new.ml_assist,
            members: Vec::new(),
            created_by: actor.user.clone(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let lower_name = new.name.to_lowercase();
        let reservation = to_item(
            keys::name_reservation(&lower_name),
            "name",
            &serde_json::json!({ "project_id": id, "name": new.name }),
        )?;
        let index = to_item(
            keys::project_index(&id),
            "project_index",
            &serde_json::json!({ "project_id": id }),
        )?;
        let writes = vec![
            Write::Put {
                item: reservation,
                condition: Some(Condition::NotExists),
            },
            Write::Put {
                item: to_item(keys::project(&id), "project", &record)?,
                condition: Some(Condition::NotExists),
            },
            Write::Put {
                item: index,
                condition: None,
            },
        ];
        match self.table.transact(writes).await {
            Ok(()) => {}
            Err(TableError::ConditionFailed { index: 0 }) => {
                return Err(ProjectError::NameTaken(new.name));
            }
            Err(error) => return Err(error.into()),
        }
        let job = Job::Ingest {
            project_id: id.clone(),
        };
        if let Err(error) = job
            .send(
                self.queue.as_ref(),
                &self.config.jobs_queue,
                std::time::Duration::ZERO,
            )
            .await
        {
            tracing::error!(%error, project_id = %id, "could not queue the ingest job");
            let _ = self
                .fail_project(
                    &id,
                    "the ingest job could not be queued; refresh the project to try again",
                )
                .await;
            return Err(ProjectError::Unavailable(Box::new(error)));
        }
        tracing::info!(project_id = %id, "project created");
        Ok(ProjectView::of(&record, actor))
    }

    #[instrument(skip(self))]
    pub async fn list_projects(&self, actor: &Actor) -> Result<Vec<ProjectView>, ProjectError> {
        let mut ids = Vec::new();
        let mut start_after = None;
        loop {
            let mut query = Query::new(keys::PROJECT_INDEX_PK, SkRange::All, 1000);
            query.start_after = start_after.take();
            let page = self.table.query(query).await?;
            ids.extend(page.items.iter().map(|item| item.key.sk.clone()));
            match page.last_evaluated {
                Some(last) => start_after = Some(last),
                None => break,
            }
        }
        let mut views = Vec::new();
        for chunk in ids.chunks(crate::ports::table::MAX_BATCH_GET) {
            let keys: Vec<_> = chunk
                .iter()
                .filter_map(|sk| keys::project_id_from_index_sk(sk))
                .map(keys::project)
                .collect();
            for item in self.table.batch_get(&keys).await? {
                let record: ProjectRecord = from_item(&item).map_err(ProjectError::Unavailable)?;
                if record.status != ProjectStatus::Deleted
                    && (actor.is_admin() || record.is_member(&actor.user))
                {
                    views.push(ProjectView::of(&record, actor));
                }
            }
        }
        views.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(views)
    }

    #[instrument(skip(self))]
    pub async fn get_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        let record = self.load_project(actor, project_id).await?;
        let mut view = ProjectView::of(&record, actor);
        if actor.is_admin() {
            view.refresh = Some(self.refresh_view(&record).await?);
        }
        Ok(view)
    }

    /// Edits instructions, lease time and the switches. Task type, source and page size are
    /// fixed at creation; label classes are added through [`Service::add_labels`].
    #[instrument(skip(self, changes))]
    pub async fn update_project(
        &self,
        actor: &Actor,
        project_id: &str,
        changes: ProjectChanges,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let ProjectChanges {
            instructions,
            lease_seconds,
            incremental_refresh,
            ml_assist,
        } = changes;
        let mut errors = ValidationErrors::default();
        if let Some(instructions) = &instructions {
            check_instructions(instructions, &mut errors);
        }
        if let Some(seconds) = lease_seconds {
            check_lease(seconds, &mut errors);
        }
        errors.into_result().map_err(ProjectError::Invalid)?;
        let record = self
            .change_project(actor, project_id, |record| {
                if let Some(instructions) = &instructions {
                    record.instructions = instructions.clone();
                }
                if let Some(seconds) = lease_seconds {
                    record.lease_seconds = seconds;
                }
                if let Some(on) = incremental_refresh {
                    record.incremental_refresh = on;
                }
                if let Some(on) = ml_assist {
                    record.ml_assist = on;
                }
                Ok(Vec::new())
            })
            .await?;
        Ok(ProjectView::of(&record, actor))
    }

    #[instrument(skip(self))]
    pub async fn pause_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        self.switch_status(
            actor,
            project_id,
            ProjectStatus::Running,
            ProjectStatus::Paused,
            "pause",
        )
        .await
    }

    #[instrument(skip(self))]
    pub async fn resume_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        self.switch_status(
            actor,
            project_id,
            ProjectStatus::Paused,
            ProjectStatus::Running,
            "resume",
        )
        .await
    }

    async fn switch_status(
        &self,
        actor: &Actor,
        project_id: &str,
        from: ProjectStatus,
        to: ProjectStatus,
        action: &'static str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let record = self
            .change_project(actor, project_id, |record| {
                if record.status == to {
                    return Ok(Vec::new());
                }
                if record.status != from {
                    return Err(ProjectError::WrongStatus {
                        status: record.status.as_str(),
                        action,
                        needed: from.as_str(),
                    });
                }
                record.status = to;
                Ok(Vec::new())
            })
            .await?;
        Ok(ProjectView::of(&record, actor))
    }

    /// Deletes a project. Its name stays reserved forever.
    #[instrument(skip(self))]
    pub async fn delete_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<(), ProjectError> {
        require_admin(actor)?;
        self.change_project(actor, project_id, |record| {
            record.status = ProjectStatus::Deleted;
            Ok(vec![Write::Delete {
                key: keys::project_index(project_id),
                condition: None,
            }])
        })
        .await?;
        Ok(())
    }

    /// Adds label classes. Ids continue from the highest ever given, so they are never reused.
    #[instrument(skip(self, names))]
    pub async fn add_labels(
        &self,
        actor: &Actor,
        project_id: &str,
        names: Vec<String>,
        mode: Option<String>,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let mode = match mode.as_deref() {
            None => Err(ValidationErrors::single(
                "/mode",
                "choose start_over_remove, start_over_keep or continue",
            )),
            Some(value) => LabelMode::parse(value).ok_or_else(|| {
                ValidationErrors::single(
                    "/mode",
                    "must be start_over_remove, start_over_keep or continue",
                )
            }),
        }
        .map_err(ProjectError::Invalid)?;
        if names.is_empty() {
            return Err(ProjectError::Invalid(ValidationErrors::single(
                "/labels",
                "give at least one new label class",
            )));
        }
        let now = self.clock.now();
        let mut changed = None;
        for _ in 0..5 {
            // Read inside the loop: a refresh growing the manifest between this read and the
            // commit fails the check below, and the new round starts over the grown total.
            let manifest = self.read_manifest(project_id).await?;
            changed = self
                .try_change_project(actor, project_id, &mut |record: &mut ProjectRecord| {
                    let mut errors = ValidationErrors::default();
                    let names = check_class_names(&names, &record.classes, "/labels", &mut errors);
                    errors.into_result().map_err(ProjectError::Invalid)?;
                    for name in names {
                        record.classes.push(LabelClass {
                            id: record.next_class_id,
                            name,
                        });
                        record.next_class_id += 1;
                    }
                    if mode == LabelMode::Continue {
                        return Ok(Vec::new());
                    }
                    record.round += 1;
                    record.keep_prelabels = mode == LabelMode::StartOverKeep;
                    let Some(manifest) = &manifest else {
                        return Ok(Vec::new());
                    };
                    let mut writes = vec![Write::Check {
                        key: keys::manifest(project_id),
                        condition: Condition::equals("total", manifest.total),
                    }];
                    writes.extend(crate::usecases::ingest::start_round(
                        project_id,
                        record.round,
                        manifest.total,
                        now,
                    ));
                    Ok(writes)
                })
                .await?;
            if changed.is_some() {
                break;
            }
        }
        let record = changed.ok_or(ProjectError::Conflict)?;
        tracing::info!(
            project_id,
            ?mode,
            round = record.round,
            "label classes added"
        );
        Ok(ProjectView::of(&record, actor))
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

    #[instrument(skip(self))]
    pub async fn add_member(
        &self,
        actor: &Actor,
        project_id: &str,
        user: &str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let user = check_member_name(user).map_err(ProjectError::Invalid)?;
        let record = self
            .change_project(actor, project_id, |record| {
                if !record.is_member(&user) {
                    if record.members.len() >= MAX_MEMBERS {
                        return Err(ProjectError::Invalid(ValidationErrors::single(
                            "/user",
                            format!("a project has at most {MAX_MEMBERS} members"),
                        )));
                    }
                    record.members.push(user.clone());
                }
                Ok(Vec::new())
            })
            .await?;
        Ok(ProjectView::of(&record, actor))
    }

    #[instrument(skip(self))]
    pub async fn remove_member(
        &self,
        actor: &Actor,
        project_id: &str,
        user: &str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let record = self
            .change_project(actor, project_id, |record| {
                let before = record.members.len();
                record.members.retain(|m| !same_name(m, user));
                if record.members.len() == before {
                    return Err(ProjectError::NotFound(format!("member {user}")));
                }
                Ok(Vec::new())
            })
            .await?;
        // Their tasks go back to the queue now rather than when the leases expire.
        let given_back = self
            .give_back_tasks_of(&record, user)
            .await
            .map_err(|error| ProjectError::Unavailable(Box::new(error)))?;
        tracing::info!(project_id, user, given_back, "member removed");
        Ok(ProjectView::of(&record, actor))
    }

    /// A failed project tries again (`POST /projects/{id}/refresh` on a failed project). One that has no items yet
    /// goes back to `initializing` and lists its source afresh; one that has them (its first
    /// listing finished) goes back to `running` with a refresh, which adds only keys it lacks,
    /// so a retry never duplicates items.
    #[instrument(skip(self))]
    pub async fn retry_project(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<ProjectView, ProjectError> {
        require_admin(actor)?;
        let has_items = self.read_manifest(project_id).await?.is_some();
        let record = self
            .change_project(actor, project_id, |record| {
                if record.status != ProjectStatus::Failed {
                    return Err(ProjectError::WrongStatus {
                        status: record.status.as_str(),
                        action: "retry",
                        needed: ProjectStatus::Failed.as_str(),
                    });
                }
                record.status = if has_items {
                    ProjectStatus::Running
                } else {
                    ProjectStatus::Initializing
                };
                record.failure = None;
                Ok(Vec::new())
            })
            .await?;
        let queued = if has_items {
            self.enqueue_refresh(
                project_id,
                crate::domain::refresh::RefreshTrigger::Retry,
                std::time::Duration::ZERO,
            )
            .await
        } else {
            let job = Job::Ingest {
                project_id: project_id.to_owned(),
            };
            job.send(
                self.queue.as_ref(),
                &self.config.jobs_queue,
                std::time::Duration::ZERO,
            )
            .await
            .map(|_| ())
        };
        if let Err(error) = queued {
            tracing::error!(%error, project_id, "could not queue the retry");
            let _ = self
                .fail_project(project_id, "the retry could not be queued; retry again")
                .await;
            return Err(ProjectError::Unavailable(Box::new(error)));
        }
        tracing::info!(project_id, has_items, "failed project retried");
        Ok(ProjectView::of(&record, actor))
    }

    /// Marks a project failed with a reason a user can act on.
    pub(crate) async fn fail_project(
        &self,
        project_id: &str,
        reason: &str,
    ) -> Result<(), ProjectError> {
        let system = Actor::admin("system");
        self.change_project(&system, project_id, |record| {
            record.status = ProjectStatus::Failed;
            record.failure = Some(reason.to_owned());
            Ok(Vec::new())
        })
        .await
        .map(|_| ())
    }
}
