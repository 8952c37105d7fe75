//! Members: add and remove the labelers who may see a project.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::names::same_name;
use crate::domain::project::{MAX_MEMBERS, check_member_name};

use super::{ProjectError, ProjectView, require_admin};

impl Projects<'_> {
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
            .labeling()
            .give_back_tasks_of(&record, user)
            .await
            .map_err(|error| ProjectError::Unavailable(Box::new(error)))?;
        tracing::info!(project_id, user, given_back, "member removed");
        Ok(ProjectView::of(&record, actor))
    }
}
