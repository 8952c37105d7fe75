//! Read: list the projects an actor may see, get one.

use tracing::instrument;

use super::Projects;
use crate::access::Actor;
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::keys;
use crate::ports::{Query, SkRange};
use crate::service::from_item;

use super::{ProjectError, ProjectView};

impl Projects<'_> {
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
        let record = self.reader().load_project(actor, project_id).await?;
        let mut view = ProjectView::of(&record, actor);
        if actor.is_admin() {
            view.refresh = Some(self.refreshes().refresh_view(&record).await?);
        }
        Ok(view)
    }
}
