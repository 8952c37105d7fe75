//! Deciding that a run is due and starting it. A check reads the round's counters (one
//! query) and the ML row; a run starts by claiming the ML row (conditional on its version), so
//! two checks at once start one run.

use std::time::Duration;

use tracing::instrument;

use super::{
    MIN_LABELS_PER_CLASS, Ml, MlError, MlState, REFILL_BELOW, RETRAIN_GROWTH, RunPurpose,
    RunRecord, RunStatus, STALE_RUN_MILLIS, Stage, StepRecord,
};
use crate::access::Actor;
use crate::domain::labeling::TaskKind;
use crate::domain::project::{ProjectRecord, ProjectStatus, TaskType};
use crate::jobs::Job;
use crate::keys::{self, attr, counter};
use crate::ports::{Attrs, Condition, Write};
use crate::service::{from_item, number, to_item};
use crate::usecases::ingest::JobError;

/// What the counters say about a project's labels, for deciding and for the runs page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelCounts {
    pub labeled: u64,
    /// Labeled items of each class that has any, by class id.
    pub per_class: Vec<(u32, u64)>,
    /// Prelabeled and clustered items waiting in the queues.
    pub waiting_assisted: u64,
}

impl LabelCounts {
    pub(crate) fn of(project: &ProjectRecord, stats: &Attrs) -> Self {
        let count = |name: &str| number(stats, name).max(0) as u64;
        Self {
            labeled: count(counter::LABELED),
            per_class: project
                .classes
                .iter()
                .map(|class| (class.id, count(&counter::class(class.id))))
                .filter(|(_, labels)| *labels > 0)
                .collect(),
            waiting_assisted: count(TaskKind::Prelabeled.queue_counter())
                + count(TaskKind::Clustered.queue_counter()),
        }
    }
}

/// What a project's ML assist waits for, or which run is due.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Due {
    Run(RunPurpose, &'static str),
    /// Nothing to do; why, for the runs page.
    Waiting(String),
}

/// Whether ML assist trains a model for this kind of project (and prelabels with it).
pub(crate) fn trains(task_type: TaskType) -> bool {
    matches!(
        task_type,
        TaskType::ImageClassificationMulticlass
            | TaskType::ImageClassificationMultilabel
            | TaskType::ObjectDetection
    )
}

/// The labeled count at which the next training is due.
pub fn next_training_at(project: &ProjectRecord, state: &MlState) -> u64 {
    if state.model_run.is_some() && state.model_round == project.round {
        ((state.labels_at_training as f64) * RETRAIN_GROWTH).ceil() as u64
    } else {
        u64::from(project.ml_assist.min_labels)
    }
}

/// Decides what a project's ML assist should do now. `unhanded` is how many positions of the
/// round's order were never handed out (a refill needs some).
pub(crate) fn decide(
    project: &ProjectRecord,
    state: &MlState,
    counts: &LabelCounts,
    unhanded: u64,
    total: u64,
) -> Due {
    if !project.ml_assist.enabled {
        return Due::Waiting("ML assist is off".to_owned());
    }
    if project.status != ProjectStatus::Running {
        return Due::Waiting(format!("the project is {}", project.status.as_str()));
    }
    if !trains(project.task_type) {
        return if state.featurized_total < total {
            Due::Run(RunPurpose::Featurize, "new_items")
        } else {
            Due::Waiting(
                "every item is featurized; polygons are labeled by hand (no polygon prelabels)"
                    .to_owned(),
            )
        };
    }
    let next = next_training_at(project, state);
    let short: Vec<String> = counts
        .per_class
        .iter()
        .filter(|(_, labels)| *labels < MIN_LABELS_PER_CLASS)
        .map(|(id, labels)| {
            format!(
                "{:?} has {labels} of {MIN_LABELS_PER_CLASS}",
                project.class_name(*id).unwrap_or("?")
            )
        })
        .collect();
    if counts.labeled >= next && short.is_empty() {
        return Due::Run(RunPurpose::Train, "labels");
    }
    let has_model = state.model_run.is_some() && state.model_round == project.round;
    if has_model && counts.waiting_assisted < REFILL_BELOW && unhanded > 0 {
        return Due::Run(RunPurpose::Refill, "refill");
    }
    let mut waiting = if counts.labeled < next {
        format!(
            "{} more labels until the next training (at {next})",
            next - counts.labeled
        )
    } else {
        "every class with labels needs 10 before a training".to_owned()
    };
    if !short.is_empty() {
        waiting.push_str(&format!("; {}", short.join(", ")));
    }
    Due::Waiting(waiting)
}

impl Ml<'_> {
    /// The schedule's check: starts the runs that are due in every project with ML assist on.
    /// One project's failure does not stop the others; it is logged and the job retried.
    #[instrument(skip(self), err)]
    pub async fn check_all(&self) -> Result<(), JobError> {
        let projects = self
            .projects()
            .list_projects(&Actor::admin("system"))
            .await?;
        let mut failed = None;
        for project in projects {
            if !project.ml_assist.enabled || project.status != "running" {
                continue;
            }
            if let Err(error) = self.check_project(&project.id).await {
                tracing::warn!(%error, project_id = %project.id, "ML check failed");
                failed = Some(error);
            }
        }
        match failed {
            Some(error) => Err(JobError::Unavailable(Box::new(error))),
            None => Ok(()),
        }
    }

    /// Starts the run that is due in this project, if any; returns it.
    pub(crate) async fn check_project(&self, project_id: &str) -> Result<Option<String>, MlError> {
        let project = self
            .reader()
            .load_project(&Actor::admin("system"), project_id)
            .await?;
        let (state, counts, unhanded, total) = self.situation(&project).await?;
        match decide(&project, &state, &counts, unhanded, total) {
            Due::Run(purpose, trigger) => {
                self.start(&project, &state, &counts, purpose, trigger)
                    .await
            }
            Due::Waiting(_) => Ok(None),
        }
    }

    /// An admin's "run now": featurize, train, validate and infer whatever the counts say
    /// (still at least 10 labels for each class with labels).
    #[instrument(skip(self), err)]
    pub async fn start_run_now(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<RunRecord, MlError> {
        crate::usecases::projects::require_admin(actor)?;
        let project = self.reader().load_project(actor, project_id).await?;
        if !project.ml_assist.enabled {
            return Err(MlError::Off);
        }
        if project.status != ProjectStatus::Running {
            return Err(MlError::NotRunning(project.status.as_str()));
        }
        let (state, counts, _, _) = self.situation(&project).await?;
        let purpose = if trains(project.task_type) {
            RunPurpose::Train
        } else {
            RunPurpose::Featurize
        };
        match self
            .start(&project, &state, &counts, purpose, "admin")
            .await?
        {
            Some(run_id) => self.load_run(project_id, &run_id).await,
            None => Err(MlError::RunUnderWay(state.active_run.unwrap_or_default())),
        }
    }

    /// The ML row, the counters, positions never handed out, and the manifest's total.
    pub(super) async fn situation(
        &self,
        project: &ProjectRecord,
    ) -> Result<(MlState, LabelCounts, u64, u64), MlError> {
        let wanted = [
            keys::ml_state(&project.id),
            keys::cursor(&project.id, project.round),
        ];
        let (found, stats) = futures::future::try_join(
            self.table.batch_get(&wanted),
            crate::usecases::labeling::stats::round_stats(
                self.table.as_ref(),
                &project.id,
                project.round,
            ),
        )
        .await?;
        let state = match found.iter().find(|item| item.key == wanted[0]) {
            Some(item) => from_item(item).map_err(MlError::Unavailable)?,
            None => MlState::default(),
        };
        let (next, total) = found
            .iter()
            .find(|item| item.key == wanted[1])
            .map(|item| {
                (
                    number(&item.attrs, attr::NEXT).max(0) as u64,
                    number(&item.attrs, attr::TOTAL).max(0) as u64,
                )
            })
            .unwrap_or((0, 0));
        Ok((
            state,
            LabelCounts::of(project, &stats),
            total.saturating_sub(next),
            total,
        ))
    }

    /// Claims the ML row for a new run (unless a live run holds it), writes the run and sends
    /// its first stage. `None` when a live run holds the row or another check won the claim.
    async fn start(
        &self,
        project: &ProjectRecord,
        state: &MlState,
        counts: &LabelCounts,
        purpose: RunPurpose,
        trigger: &str,
    ) -> Result<Option<String>, MlError> {
        let now = self.clock.now();
        if state.active_run.is_some()
            && state
                .active_since
                .is_some_and(|since| now - since < STALE_RUN_MILLIS)
        {
            return Ok(None);
        }
        let run_id = format!("r_{now:013}_{}", &crate::ids::new_id("x")[2..10]);
        let mut steps = vec![StepRecord::waiting("featurization")];
        if purpose == RunPurpose::Train {
            steps.push(StepRecord::waiting("training"));
            steps.push(StepRecord::waiting("validation"));
        }
        if purpose != RunPurpose::Featurize {
            steps.push(StepRecord::waiting("inference"));
            steps.push(StepRecord::waiting("clustering"));
        }
        let run = RunRecord {
            id: run_id.clone(),
            purpose,
            trigger: trigger.to_owned(),
            status: RunStatus::Queued,
            round: project.round,
            labels: counts.labeled,
            created_at: now,
            finished_at: None,
            steps,
            stage: Stage::Featurize,
            attempts: 0,
            step: 0,
            window: None,
            backbone: None,
            model_run: None,
            error: None,
        };
        let next_state = MlState {
            active_run: Some(run_id.clone()),
            active_since: Some(now),
            version: state.version + 1,
            ..state.clone()
        };
        let claimed = self
            .table
            .transact(vec![
                Write::Put {
                    item: to_item(
                        keys::ml_state(&project.id),
                        keys::entity::ML_STATE,
                        &next_state,
                    )?,
                    condition: Some(super::stages::unchanged_since(state)),
                },
                Write::Put {
                    item: to_item(
                        keys::ml_run(&project.id, &run_id),
                        keys::entity::ML_RUN,
                        &run,
                    )?,
                    condition: Some(Condition::NotExists),
                },
            ])
            .await;
        match claimed {
            Ok(()) => {}
            Err(error) if error.is_condition_failed() => return Ok(None),
            Err(error) => return Err(error.into()),
        }
        tracing::info!(project_id = %project.id, %run_id, ?purpose, trigger, "ML run started");
        // A run whose first message is lost is taken over once it is stale.
        Job::MlStage {
            project_id: project.id.clone(),
            run_id: run_id.clone(),
            stage: Stage::Featurize,
            step: 0,
        }
        .send(self.queue.as_ref(), &self.config.ml_queue, Duration::ZERO)
        .await
        .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        Ok(Some(run_id))
    }
}
