//! Checkpoints of long jobs (ingest, listing refresh) that continue in new messages.
//!
//! The row `CHECKPOINT#<kind>` holds the job's progress and a generation: a run works on the
//! step whose number its message carries, claims it (a token and an expiry, so a duplicate of
//! the same message running at the same time waits instead of writing the same chunks), and
//! commits the next generation with its progress. A message for a generation the row has
//! passed is stale and does nothing; one for a generation not reached yet is early and is
//! retried. The continuation is sent *before* the commit: a run killed between the two leaves
//! its own message to be delivered again (it redoes the step), and the early continuation
//! waits for it; a run killed after the commit has already sent it.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::new_id;
use crate::keys::checkpoint::{self, attr as cp};
use crate::ports::{Clock, Condition, Table, TableError, Update, Write};
use crate::service::{from_item, to_item};

use super::JobError;

/// A claim outlives any run: Lambda stops a run at 15 minutes, and a run stops stepping once
/// its budget is spent, which is shorter.
const MIN_CLAIM_MILLIS: i64 = 15 * 60 * 1000;
/// Slack past the budget for the step under way when it runs out.
const CLAIM_SLACK_MILLIS: i64 = 5 * 60 * 1000;
/// A checkpoint row nobody continues (its project deleted mid-job) is deleted by the table's
/// time to live this long after its last write.
const ROW_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
/// Continuations wait this long before they are delivered, so that the commit of the step
/// that sent them (sent first, see above) is in place when they run.
pub(crate) const CONTINUATION_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
struct Row<S> {
    generation: u64,
    claim: String,
    claim_until: i64,
    ttl: i64,
    state: S,
}

/// What a run may do with the step its message names.
pub(crate) enum Claimed<S> {
    /// Work on `generation` from `state`; commit with `token`.
    Run {
        generation: u64,
        token: String,
        state: S,
    },
    /// The row has passed this step (or belongs to another request): nothing to do.
    Stale,
    /// The step that sent this message has not committed yet, or another run holds the step:
    /// come back at `until` (see [`come_back`]).
    Wait { until: i64 },
}

/// When a step's row is not claimed, an early message looks again this much later.
const EARLY_RETRY_MILLIS: i64 = 30 * 1000;
/// SQS delays a message at most 15 minutes.
const MAX_DELAY_MILLIS: i64 = 15 * 60 * 1000;

/// Sends `job` again to arrive at `until` (within SQS's longest delay) instead of failing it:
/// a failure counts toward the dead-letter queue, and a run killed holding a step keeps its
/// claim longer than the queue's retries of a failed message last.
pub(crate) async fn come_back(
    job: &crate::jobs::Job,
    queue: &dyn crate::ports::Queue,
    queue_name: &str,
    now: i64,
    until: i64,
) -> Result<(), JobError> {
    let wait = (until - now + 1000).clamp(1000, MAX_DELAY_MILLIS);
    job.send(queue, queue_name, Duration::from_millis(wait as u64))
        .await
        .map_err(|error| JobError::Unavailable(Box::new(error)))?;
    Ok(())
}

/// Reads and writes one kind of checkpoint row of a project.
pub(crate) struct Checkpoints<'a> {
    pub(crate) table: &'a Arc<dyn Table>,
    pub(crate) clock: &'a Arc<dyn Clock>,
    pub(crate) budget: Duration,
    pub(crate) project_id: &'a str,
    pub(crate) kind: &'static str,
}

impl Checkpoints<'_> {
    fn claim_until(&self, now: i64) -> i64 {
        let budget = i64::try_from(self.budget.as_millis()).unwrap_or(i64::MAX / 2);
        now + MIN_CLAIM_MILLIS.max(budget.saturating_add(CLAIM_SLACK_MILLIS))
    }

    fn row_item<S: Serialize>(&self, row: &Row<S>) -> Result<crate::ports::Item, JobError> {
        Ok(to_item(
            checkpoint::key(self.project_id, self.kind),
            checkpoint::ENTITY,
            row,
        )?)
    }

    /// The row's key.
    pub(crate) fn key(&self) -> crate::ports::Key {
        checkpoint::key(self.project_id, self.kind)
    }

    /// Claims step `step`, reading the row and writing the claim on its own.
    pub(crate) async fn claim<S: Serialize + DeserializeOwned>(
        &self,
        step: u64,
        fresh: impl FnOnce() -> S,
        accept: impl FnOnce(&S) -> bool,
    ) -> Result<Claimed<S>, JobError> {
        let row = self.table.get(&self.key()).await?;
        let (claimed, write) = self.plan(row.as_ref(), step, fresh, accept)?;
        let Some(write) = write else {
            return Ok(claimed);
        };
        match self.table.transact(vec![write]).await {
            Ok(()) => Ok(claimed),
            Err(TableError::ConditionFailed { .. }) => Ok(Claimed::Wait {
                until: self.clock.now() + EARLY_RETRY_MILLIS,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// What a run of step `step` may do given the row as read (`row`), and the write that
    /// claims the step (to commit, alone or with the caller's writes, before working: a
    /// failed condition means another run claimed it first). Step 0 (the job's first message)
    /// always starts afresh from `fresh`, at a generation past any row left behind, so a
    /// leftover chain stops; a later step continues from the row's state when `accept` takes
    /// it as this job's.
    pub(crate) fn plan<S: Serialize + DeserializeOwned>(
        &self,
        row: Option<&crate::ports::Item>,
        step: u64,
        fresh: impl FnOnce() -> S,
        accept: impl FnOnce(&S) -> bool,
    ) -> Result<(Claimed<S>, Option<Write>), JobError> {
        let now = self.clock.now();
        let token = new_id("c");
        let row: Option<Row<S>> = match row {
            Some(item) => Some(from_item(item).map_err(JobError::Unavailable)?),
            None => None,
        };
        if step == 0 {
            let (generation, condition) = match &row {
                None => (0, Condition::NotExists),
                Some(row) if row.claim_until >= now => {
                    return Ok((
                        Claimed::Wait {
                            until: row.claim_until,
                        },
                        None,
                    ));
                }
                Some(row) => (
                    row.generation + 1,
                    Condition::And(vec![
                        Condition::equals(cp::GENERATION, row.generation),
                        Condition::less_than(cp::CLAIM_UNTIL, now),
                    ]),
                ),
            };
            let claimed = Row {
                generation,
                claim: token.clone(),
                claim_until: self.claim_until(now),
                ttl: now / 1000 + ROW_LIFETIME_SECONDS,
                state: fresh(),
            };
            let write = Write::Put {
                item: self.row_item(&claimed)?,
                condition: Some(condition),
            };
            return Ok((
                Claimed::Run {
                    generation,
                    token,
                    state: claimed.state,
                },
                Some(write),
            ));
        }
        let Some(row) = row else {
            return Ok((Claimed::Stale, None));
        };
        if row.generation > step || !accept(&row.state) {
            return Ok((Claimed::Stale, None));
        }
        if row.claim_until >= now {
            return Ok((
                Claimed::Wait {
                    until: row.claim_until,
                },
                None,
            ));
        }
        if row.generation < step {
            return Ok((
                Claimed::Wait {
                    until: now + EARLY_RETRY_MILLIS,
                },
                None,
            ));
        }
        let write = Write::Update {
            key: self.key(),
            update: Update::default()
                .set(cp::CLAIM, token.clone())
                .set(cp::CLAIM_UNTIL, self.claim_until(now)),
            condition: Some(Condition::And(vec![
                Condition::equals(cp::GENERATION, step),
                Condition::less_than(cp::CLAIM_UNTIL, now),
            ])),
        };
        Ok((
            Claimed::Run {
                generation: step,
                token,
                state: row.state,
            },
            Some(write),
        ))
    }

    /// The write that commits step `generation` with `state` and frees the row for the next.
    pub(crate) fn commit_write<S: Serialize>(
        &self,
        generation: u64,
        token: &str,
        state: S,
    ) -> Result<Write, JobError> {
        let row = Row {
            generation: generation + 1,
            claim: String::new(),
            claim_until: 0,
            ttl: self.clock.now() / 1000 + ROW_LIFETIME_SECONDS,
            state,
        };
        Ok(Write::Put {
            item: self.row_item(&row)?,
            condition: Some(Condition::And(vec![
                Condition::equals(cp::GENERATION, generation),
                Condition::equals(cp::CLAIM, token),
            ])),
        })
    }

    /// The write that deletes the row as the job finishes, while `token` still holds it.
    pub(crate) fn finish_write(&self, token: &str) -> Write {
        Write::Delete {
            key: checkpoint::key(self.project_id, self.kind),
            condition: Some(Condition::equals(cp::CLAIM, token)),
        }
    }

    /// Frees the step after a failed run, so the retry need not wait for the claim to expire.
    pub(crate) async fn release(&self, token: &str) {
        let released = self
            .table
            .update(
                &checkpoint::key(self.project_id, self.kind),
                Update::default().set(cp::CLAIM_UNTIL, 0),
                Some(Condition::equals(cp::CLAIM, token)),
            )
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, project_id = self.project_id, "could not free a job's checkpoint");
        }
    }

    /// Deletes the row whoever holds it (the job gives up).
    pub(crate) async fn delete(&self) -> Result<(), JobError> {
        self.table
            .delete(&checkpoint::key(self.project_id, self.kind), None)
            .await?;
        Ok(())
    }
}

/// How long a run may keep stepping, read off the service's clock.
pub(crate) struct Deadline {
    clock: Arc<dyn Clock>,
    ends_at: i64,
}

impl Deadline {
    pub(crate) fn start(clock: &Arc<dyn Clock>, budget: Duration) -> Self {
        let budget = i64::try_from(budget.as_millis()).unwrap_or(i64::MAX / 2);
        Self {
            clock: clock.clone(),
            ends_at: clock.now().saturating_add(budget),
        }
    }

    /// Whether the run has used its budget (always, after one step, with a zero budget).
    pub(crate) fn spent(&self) -> bool {
        self.clock.now() >= self.ends_at
    }
}
