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
                let sort_keys: Vec<&str> = waiting
                    .items
                    .iter()
                    .map(|item| item.key.sk.as_str())
                    .collect();
                let spread = attempt + actor.user.len();
                for index in candidate_order(&sort_keys, spread) {
                    let candidate = &waiting.items[index];
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

/// The order in which a checkout tries the waiting entries it read (sort keys ascending): the
/// entries of the first one's tier (its priority, or expired leases) starting at `spread`
/// modulo their count, so labelers arriving together try different entries first instead of
/// all conflicting on one; then every later entry in queue order. Spreading only within the
/// first tier keeps the tiers' order (prelabeled before clustered before manual) exact, even
/// for a lone labeler, whose spread is the same at every checkout.
fn candidate_order(sort_keys: &[&str], spread: usize) -> Vec<usize> {
    let Some(first) = sort_keys.first() else {
        return Vec::new();
    };
    let tier_of = |sk: &str| -> String {
        if keys::is_lease_sk(sk) {
            keys::LEASE_SK_PREFIX.to_owned()
        } else {
            // "A#<priority>#": the rest of a waiting entry's key orders within its tier.
            sk.split('#').take(2).collect::<Vec<_>>().join("#")
        }
    };
    let first_tier = tier_of(first);
    let in_tier = sort_keys
        .iter()
        .take_while(|sk| tier_of(sk) == first_tier)
        .count();
    let start = spread % in_tier;
    (0..in_tier)
        .map(|offset| (start + offset) % in_tier)
        .chain(in_tier..sort_keys.len())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelers_spread_over_the_first_tier_only_and_later_tiers_keep_their_order() {
        let keys = [
            "A#02#0000000000001#t1",
            "A#02#0000000000002#t2",
            "A#02#0000000000003#t3",
            "A#05#0000000000001#t4",
            "A#05#0000000000002#t5",
            "L#0000000000009#t6",
        ];
        assert_eq!(candidate_order(&keys, 0), [0, 1, 2, 3, 4, 5]);
        assert_eq!(candidate_order(&keys, 4), [1, 2, 0, 3, 4, 5]);
        assert_eq!(candidate_order(&keys[3..], 1), [1, 0, 2]);
        // Expired leases are a tier of their own.
        assert_eq!(candidate_order(&keys[5..], 7), [0]);
        assert!(candidate_order(&[], 3).is_empty());
    }
}
