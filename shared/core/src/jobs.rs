//! Background jobs carried by the jobs queue. Every handler is idempotent: the queue delivers
//! at least once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ports::{Queue, QueueError};

/// Runs of one job (an ingest, an export) before it gives up and records why: one fewer than
/// the queue's receives before dead-lettering (5 locally and in template.yaml), so that a run
/// after this many crashed ones still records the failure.
pub const MAX_JOB_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// First listing of a new project's source.
    Ingest { project_id: String },
    /// Looks for new images in a project's source; `request_id` makes redeliveries of one
    /// request recognizable (they may take back their own refresh lease).
    Refresh {
        project_id: String,
        trigger: String,
        request_id: String,
    },
    /// The next step of an ingest that outgrew one run's time budget; `step` must match the
    /// checkpoint row's generation, so a redelivered or duplicated message does nothing.
    ContinueIngest { project_id: String, step: u64 },
    /// The next step of a listing refresh that outgrew one run's time budget (see
    /// [`Job::ContinueIngest`]); it holds the refresh's request id and so its lease.
    ContinueRefresh {
        project_id: String,
        trigger: String,
        request_id: String,
        step: u64,
    },
    /// Adds the new objects that events recorded for the project (rows `EVENT#<key>`), those
    /// not in it yet, without listing its source.
    AddEventKeys {
        project_id: String,
        request_id: String,
    },
    /// Queues a refresh of every project with incremental refresh on (the daily schedule).
    RefreshAll { trigger: String },
    /// Counts the files and bytes of a dataset's folder and keeps them on its row.
    CountDataset { dataset: String },
    /// Writes an export into the project's bucket, or its next stretch: `generation` counts the
    /// continuations sent before this one (0 for the first message), so a message older than
    /// the export's latest continuation is recognized as stale and dropped.
    Export {
        project_id: String,
        export_id: String,
        #[serde(default)]
        generation: u64,
    },
    /// Starts the ML runs that are due in every project with ML assist on (the schedule).
    MlCheckAll,
    /// One stage of an ML run (on the ML queue); `step` counts the stage's continuations, as
    /// for ingest, so a stale or duplicated message is recognized.
    MlStage {
        project_id: String,
        run_id: String,
        stage: crate::usecases::ml::Stage,
        #[serde(default)]
        step: u64,
    },
}

/// A job that could not be written as a message body: nothing is sent rather than an empty or
/// partial body that a worker would drop as malformed.
#[derive(Debug, thiserror::Error)]
#[error("the job could not be encoded as a message: {0}")]
pub struct JobEncodingError(#[from] serde_json::Error);

/// A message body that is no job this code knows (its `type` is unknown, a field is missing).
/// Retrying cannot help: runners drop such a message with a log line.
#[derive(Debug, thiserror::Error)]
#[error("the message is not a job: {0}")]
pub struct MalformedJob(#[from] serde_json::Error);

impl Job {
    /// The message body that carries this job.
    pub fn to_body(&self) -> Result<String, JobEncodingError> {
        Ok(serde_json::to_string(self)?)
    }

    /// The job a message body carries; its kind is decided here, once.
    pub fn from_body(body: &str) -> Result<Self, MalformedJob> {
        Ok(serde_json::from_str(body)?)
    }

    /// Puts this job on `queue` after `delay`; returns the message id. A job that cannot be
    /// encoded is not sent: the caller gets the error, as for a queue that is down.
    pub async fn send(
        &self,
        queue: &dyn Queue,
        name: &str,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let body = self
            .to_body()
            .map_err(|error| QueueError::Unavailable(Box::new(error)))?;
        queue.send(name, &body, delay).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_comes_back_from_its_body_as_it_went_in() {
        let job = Job::Refresh {
            project_id: "p_1".to_owned(),
            trigger: "on_demand".to_owned(),
            request_id: "r_1".to_owned(),
        };
        let body = job.to_body().map_err(|e| e.to_string());
        assert_eq!(
            body.as_deref()
                .map(Job::from_body)
                .ok()
                .and_then(Result::ok),
            Some(job)
        );
    }

    #[test]
    fn an_export_message_from_before_continuations_is_its_first_generation() {
        let job = Job::from_body(r#"{"type":"export","project_id":"p_1","export_id":"x_1"}"#);
        assert_eq!(
            job.ok(),
            Some(Job::Export {
                project_id: "p_1".to_owned(),
                export_id: "x_1".to_owned(),
                generation: 0,
            })
        );
    }

    #[test]
    fn a_body_of_an_unknown_kind_is_malformed() {
        for body in [
            r#"{"type":"train"}"#,
            r#"{"type":"ingest"}"#,
            "",
            "{not json",
        ] {
            assert!(
                Job::from_body(body).is_err(),
                "{body:?} was taken for a job"
            );
        }
    }
}
