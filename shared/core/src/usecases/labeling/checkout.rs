//! Checkout: hand out the next page of work, retrying after lost races; waiting tasks and expired leases before fresh items.

use tracing::instrument;

use super::Labeling;
use crate::access::Actor;
use crate::domain::project::{ProjectRecord, ProjectStatus};
use crate::keys::{self};
use crate::ports::{Query, SkRange};

use super::{CHECKOUT_ATTEMPTS, CheckedOutTask, Claim, LabelingError};

/// Pages a checkout may pass over without finding anything to hand out (items held already,
/// images missing) before such pages count as failed attempts: an ML job queues windows of
/// upcoming items, and once their tasks are all leased a checkout walks past them.
const UNUSABLE_PAGES: usize = 64;

impl Labeling<'_> {
    /// Hands out the next page of work: waiting tasks and expired leases first, then fresh
    /// items in the project's shuffled order. `None` when nothing is left right now.
    #[instrument(skip(self), fields(user = %actor.user))]
    pub async fn checkout(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Option<CheckedOutTask>, LabelingError> {
        let project = self.project_for_labeling(actor, project_id).await?;
        match self.checkout_from(actor, &project).await {
            // The copy of the project was stale (another process changed it): read it again.
            Err(LabelingError::RoundChanged) | Err(LabelingError::NotRunning(_)) => {
                let fresh = self.reader().load_project(actor, project_id).await?;
                self.checkout_from(actor, &fresh).await
            }
            outcome => outcome,
        }
    }

    async fn checkout_from(
        &self,
        actor: &Actor,
        project: &ProjectRecord,
    ) -> Result<Option<CheckedOutTask>, LabelingError> {
        let project_id = project.id.as_str();
        if project.status != ProjectStatus::Running {
            return Err(LabelingError::NotRunning(project.status.as_str()));
        }
        let mut fresh_exhausted = false;
        let mut attempt = 0;
        let mut unusable_pages = 0;
        while attempt < CHECKOUT_ATTEMPTS {
            let now = self.clock.now();
            let waiting = self
                .table
                .query(Query::new(
                    keys::work_pk(project_id, project.round),
                    SkRange::LessThan(keys::available_work_bound(now)),
                    16,
                ))
                .await?;
            if !waiting.items.is_empty() {
                let start = (attempt + actor.user.len()) % waiting.items.len();
                for offset in 0..waiting.items.len() {
                    let candidate = &waiting.items[(start + offset) % waiting.items.len()];
                    if let Some(task) = self.take_over(actor, project, candidate, now).await? {
                        return Ok(Some(task));
                    }
                }
                attempt += 1;
                continue;
            }
            if fresh_exhausted {
                return Ok(None);
            }
            match self.claim_fresh(actor, project, now).await? {
                Some(Claim::Task(task)) => return Ok(Some(*task)),
                // The cursor moved past a page no one can use now (its items queued ahead by
                // an ML job and leased, or its images missing): progress, not a lost race, so
                // it spends no attempt, up to a bound that keeps one request short.
                Some(Claim::NothingUsable) => {
                    unusable_pages += 1;
                    if unusable_pages > UNUSABLE_PAGES {
                        attempt += 1;
                    }
                }
                // Nothing fresh left: look once more for work released meanwhile.
                None => {
                    fresh_exhausted = true;
                    attempt += 1;
                }
            }
        }
        if fresh_exhausted {
            return Ok(None);
        }
        Err(LabelingError::Contention)
    }
}
