//! The stage messages of a run and their bookkeeping: which message is current (a stale or
//! duplicated one does nothing), the run's record of each step, failures counted and retried
//! up to [`MAX_JOB_ATTEMPTS`], continuations of a stage that outgrew one message's time, the
//! next stage sent when one ends, and the ML row released when the run ends.

use std::time::Duration;

use tracing::instrument;

use super::{Ml, MlError, MlState, RunPurpose, RunRecord, RunStatus, Stage};
use crate::access::Actor;
use crate::domain::project::ProjectRecord;
use crate::jobs::{Job, MAX_JOB_ATTEMPTS};
use crate::keys::{self, attr};
use crate::ports::Condition;
use crate::service::{from_item, to_item};
use crate::usecases::ingest::JobError;
use crate::usecases::projects::ProjectError;

/// How a stage's run ended.
pub(super) enum StageOutcome {
    /// The stage is done.
    Done,
    /// It used its time; the next message continues where it stopped.
    Continue,
}

/// The step names a stage reports under.
fn steps_of(stage: Stage) -> &'static [&'static str] {
    match stage {
        Stage::Featurize => &["featurization"],
        Stage::Train => &["training", "validation"],
        Stage::Infer => &["inference", "clustering"],
    }
}

/// The stage after `stage` in a run for `purpose`.
fn next_stage(purpose: RunPurpose, stage: Stage) -> Option<Stage> {
    match (purpose, stage) {
        (RunPurpose::Train, Stage::Featurize) => Some(Stage::Train),
        (RunPurpose::Train, Stage::Train) => Some(Stage::Infer),
        (RunPurpose::Refill, Stage::Featurize) => Some(Stage::Infer),
        _ => None,
    }
}

impl Ml<'_> {
    /// Runs one stage message of a run. Safe to run twice: a message for a stage or step the
    /// run has passed, or for a run that ended or was replaced, does nothing.
    #[instrument(skip(self), err)]
    pub(crate) async fn run_stage(
        &self,
        project_id: &str,
        run_id: &str,
        stage: Stage,
        step: u64,
    ) -> Result<(), JobError> {
        let Some(mut run) = self.find_run(project_id, run_id).await? else {
            return Ok(());
        };
        if run.status.is_final() || run.stage != stage || run.step != step {
            tracing::info!(run_id, ?stage, step, "a stale ML message: nothing to do");
            return Ok(());
        }
        let project = match self
            .reader()
            .load_project(&Actor::admin("system"), project_id)
            .await
        {
            Ok(project) => project,
            Err(ProjectError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let state = self.state(project_id).await?;
        if state.active_run.as_deref() != Some(run_id) {
            self.end_run(
                &project,
                &mut run,
                Some("replaced by a later run".to_owned()),
            )
            .await?;
            return Ok(());
        }
        let now = self.clock.now();
        run.status = RunStatus::Running;
        run.attempts += 1;
        for name in steps_of(stage) {
            if let Some(record) = run.step_mut(name) {
                record.status = RunStatus::Running;
                record.started_at.get_or_insert(now);
                record.error = None;
            }
        }
        self.save_run(&project.id, &run).await?;
        self.touch(&project.id, run_id).await?;
        let outcome = match stage {
            Stage::Featurize => self.featurize(&project, &mut run).await,
            Stage::Train => self.train(&project, &mut run).await,
            Stage::Infer => self.infer(&project, &mut run).await,
        };
        match outcome {
            Ok(StageOutcome::Continue) => {
                run.step += 1;
                run.attempts = 0;
                self.save_run(&project.id, &run).await?;
                self.send_stage(&project.id, &run).await
            }
            Ok(StageOutcome::Done) => {
                let finished = self.clock.now();
                for name in steps_of(stage) {
                    if let Some(record) = run.step_mut(name)
                        && record.status == RunStatus::Running
                    {
                        record.status = RunStatus::Succeeded;
                        record.finished_at = Some(finished);
                    }
                }
                match next_stage(run.purpose, stage) {
                    Some(next) => {
                        run.stage = next;
                        run.step = 0;
                        run.attempts = 0;
                        self.save_run(&project.id, &run).await?;
                        self.send_stage(&project.id, &run).await
                    }
                    None => Ok(self.end_run(&project, &mut run, None).await?),
                }
            }
            Err(error) => {
                let reason = crate::usecases::ingest::causes(&error);
                let failed_at = self.clock.now();
                let last_try = run.attempts >= MAX_JOB_ATTEMPTS;
                for name in steps_of(stage) {
                    if let Some(record) = run.step_mut(name)
                        && record.status == RunStatus::Running
                    {
                        record.error = Some(reason.clone());
                        if last_try {
                            record.status = RunStatus::Failed;
                            record.finished_at = Some(failed_at);
                        }
                    }
                }
                if last_try {
                    tracing::error!(%error, run_id, ?stage, "ML run failed for good");
                    self.end_run(&project, &mut run, Some(reason)).await?;
                    Ok(())
                } else {
                    self.save_run(&project.id, &run).await?;
                    Err(JobError::Unavailable(Box::new(error)))
                }
            }
        }
    }

    async fn send_stage(&self, project_id: &str, run: &RunRecord) -> Result<(), JobError> {
        Job::MlStage {
            project_id: project_id.to_owned(),
            run_id: run.id.clone(),
            stage: run.stage,
            step: run.step,
        }
        .send(self.queue.as_ref(), &self.config.ml_queue, Duration::ZERO)
        .await
        .map(|_| ())
        .map_err(|error| JobError::Unavailable(Box::new(error)))
    }

    /// Ends the run (failed with `error`, else succeeded) and releases the ML row if the run
    /// still holds it.
    async fn end_run(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
        error: Option<String>,
    ) -> Result<(), MlError> {
        run.status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        run.finished_at = Some(self.clock.now());
        run.error = error;
        for record in &mut run.steps {
            if !record.status.is_final() {
                record.status = run.status;
                record.finished_at.get_or_insert(self.clock.now());
            }
        }
        self.save_run(&project.id, run).await?;
        let state = self.state(&project.id).await?;
        if state.active_run.as_deref() == Some(run.id.as_str()) {
            let released = MlState {
                active_run: None,
                active_since: None,
                version: state.version + 1,
                ..state.clone()
            };
            self.put_state(&project.id, &state, &released).await?;
        }
        tracing::info!(project_id = %project.id, run_id = %run.id, status = ?run.status, "ML run ended");
        Ok(())
    }

    /// Marks the run as making progress, so no check takes it for dead.
    async fn touch(&self, project_id: &str, run_id: &str) -> Result<(), MlError> {
        let result = self
            .table
            .update(
                &keys::ml_state(project_id),
                crate::ports::Update::default().set("active_since", self.clock.now()),
                Some(Condition::equals("active_run", run_id)),
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn state(&self, project_id: &str) -> Result<MlState, MlError> {
        match self.table.get(&keys::ml_state(project_id)).await? {
            Some(item) => from_item(&item).map_err(MlError::Unavailable),
            None => Ok(MlState::default()),
        }
    }

    /// Replaces the ML row on the version `before` carried; false when another writer won.
    pub(super) async fn put_state(
        &self,
        project_id: &str,
        before: &MlState,
        after: &MlState,
    ) -> Result<bool, MlError> {
        let condition = unchanged_since(before);
        let written = self
            .table
            .put(
                to_item(keys::ml_state(project_id), keys::entity::ML_STATE, after)?,
                Some(condition),
            )
            .await;
        match written {
            Ok(()) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn save_run(&self, project_id: &str, run: &RunRecord) -> Result<(), MlError> {
        self.table
            .put(
                to_item(keys::ml_run(project_id, &run.id), keys::entity::ML_RUN, run)?,
                None,
            )
            .await?;
        Ok(())
    }

    pub(super) async fn find_run(
        &self,
        project_id: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, MlError> {
        match self.table.get(&keys::ml_run(project_id, run_id)).await? {
            Some(item) => Ok(Some(from_item(&item).map_err(MlError::Unavailable)?)),
            None => Ok(None),
        }
    }

    pub(super) async fn load_run(
        &self,
        project_id: &str,
        run_id: &str,
    ) -> Result<RunRecord, MlError> {
        self.find_run(project_id, run_id)
            .await?
            .ok_or_else(|| MlError::RunNotFound(run_id.to_owned()))
    }
}

/// The ML row is still as `seen` left it (a row never written reads as version 0).
pub(super) fn unchanged_since(seen: &MlState) -> Condition {
    if seen.version == 0 {
        Condition::Or(vec![
            Condition::NotExists,
            Condition::equals(attr::VERSION, 0),
        ])
    } else {
        Condition::equals(attr::VERSION, seen.version)
    }
}

impl From<MlError> for JobError {
    fn from(error: MlError) -> Self {
        JobError::Unavailable(Box::new(error))
    }
}
