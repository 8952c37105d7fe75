//! Label classes: add them, with ids that are never reused.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::project::{LabelClass, LabelMode, ProjectRecord, check_class_names};
use crate::keys::{self, attr};
use crate::ports::{Condition, Write};

use super::{ProjectError, ProjectView, require_admin};

impl Projects<'_> {
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
            let manifest = self.reader().read_manifest(project_id).await?;
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
                        condition: Condition::equals(attr::TOTAL, manifest.total),
                    }];
                    writes.extend(crate::usecases::ingest::start_round(
                        project_id,
                        record.round,
                        manifest.total,
                        now,
                    )?);
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
}
