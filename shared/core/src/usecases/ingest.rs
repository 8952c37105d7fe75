//! Ingest: list a project's source once, keep image files, cap at 500,000, write the manifest
//! chunks and flip the project to running. Table writes are a constant handful however many
//! images there are.

pub(crate) mod checkpoint;

use serde::{Deserialize, Serialize};
use tracing::instrument;

use checkpoint::{Checkpoints, Claimed, Deadline};

use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::domain::source::Source;
use crate::jobs::{Job, MAX_JOB_ATTEMPTS};
use crate::keys::{self, attr};
use crate::manifest::{Batch, ChunkWriter, ManifestRecord};
use crate::ports::blobs::MAX_LIST_KEYS;
use crate::ports::{BlobError, BoxError, Condition, TableError, Update, Write};
use crate::service::{UnserializableRecord, from_item, number, to_item};
use crate::usecases::refresh::RefreshStatus;

/// The project's count of ingest runs started (an attribute of its record that only ingest
/// writes; any other write of the record starts the count again).
const INGEST_ATTEMPTS: &str = "ingest_attempts";

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job message is not understood: {0}")]
    Malformed(String),
    #[error("storage is unavailable; the job will be retried")]
    Unavailable(#[source] BoxError),
}

impl From<crate::service::UnserializableRecord> for JobError {
    fn from(error: crate::service::UnserializableRecord) -> Self {
        JobError::Unavailable(Box::new(error))
    }
}

impl From<TableError> for JobError {
    fn from(error: TableError) -> Self {
        JobError::Unavailable(Box::new(error))
    }
}

impl From<BlobError> for JobError {
    fn from(error: BlobError) -> Self {
        JobError::Unavailable(Box::new(error))
    }
}

impl From<crate::usecases::projects::ProjectError> for JobError {
    fn from(error: crate::usecases::projects::ProjectError) -> Self {
        JobError::Unavailable(Box::new(error))
    }
}

/// The counter rows a labeling round starts with: its cursor over `total` positions and its
/// statistics (ingest starts round 0; starting over starts the next).
pub(crate) fn start_round(
    project_id: &str,
    round: u32,
    total: u64,
    now: i64,
) -> Result<[Write; 2], UnserializableRecord> {
    Ok([
        Write::Put {
            item: to_item(
                keys::cursor(project_id, round),
                keys::entity::CURSOR,
                &keys::row::Cursor { next: 0, total },
            )?,
            condition: None,
        },
        Write::Put {
            item: to_item(
                keys::stats(project_id, round),
                keys::entity::STATS,
                &keys::row::Stats { started_at: now },
            )?,
            condition: None,
        },
    ])
}

fn step_busy() -> JobError {
    JobError::Unavailable(
        "another run holds this step of the ingest, or the step before has not finished; \
         retrying"
            .into(),
    )
}

/// How far an ingest has come, saved in its checkpoint between steps.
#[derive(Debug, Default, Serialize, Deserialize)]
struct IngestProgress {
    /// The source listed (an edit of it starts the listing again).
    source: Option<Source>,
    /// The last key listed: the next step lists after it.
    after: Option<String>,
    /// Keys written to the manifest's chunks.
    items: u64,
    dropped: u64,
    unreadable: u64,
    list_calls: u64,
}

impl IngestProgress {
    fn of(source: &Source) -> Self {
        Self {
            source: Some(source.clone()),
            ..Self::default()
        }
    }
}

/// The step a run of the ingest holds.
struct IngestRun<'a> {
    project: &'a ProjectRecord,
    generation: u64,
    token: &'a str,
    /// An earlier try of this step failed.
    retried: bool,
}

/// The keys of a listing page that the source admits, in key order, at most `room` of them
/// (a project's cap on items), and how many admitted keys were past it: ingest and the listing
/// hook keep and drop by this one rule.
fn admit_page<'a>(
    source: &Source,
    page: &'a crate::ports::ListPage,
    room: u64,
) -> (Vec<&'a str>, u64) {
    let mut admitted = page
        .objects
        .iter()
        .map(|object| object.key.as_str())
        .filter(|key| source.admits(key));
    let kept: Vec<&str> = admitted
        .by_ref()
        .take(usize::try_from(room).unwrap_or(usize::MAX))
        .collect();
    (kept, admitted.count() as u64)
}

/// What one listing found.
#[derive(Debug, Default)]
pub struct Listing {
    pub keys: Vec<String>,
    pub dropped: u64,
    /// Entries of the source that could not be read (dangling links, FIFOs, folders it may
    /// not read): left out, as files removed are.
    pub unreadable: u64,
    pub list_calls: u64,
}

/// What went wrong below a job error, cause after cause ("the blob store is unavailable: Not
/// a directory"), for a reason a user can act on.
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// A job's refresh trigger, parsed where the job arrives.
fn parse_trigger(name: &str) -> Result<RefreshTrigger, JobError> {
    RefreshTrigger::parse(name)
        .ok_or_else(|| JobError::Malformed(format!("{name:?} is not a refresh trigger")))
}

/// Background jobs: ingest, and the dispatch of each queued job to its area. Holds only the ports this area touches.
pub struct Jobs<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
    pub(crate) cursors: &'a crate::usecases::labeling::CursorHints,
    pub(crate) embedder: &'a crate::service::EmbedderSlot,
}

impl Jobs<'_> {
    /// Runs one job from the jobs queue. Safe to run twice.
    #[instrument(skip(self, body), err)]
    pub async fn run_job(&self, body: &str) -> Result<(), JobError> {
        let job = Job::from_body(body).map_err(|error| JobError::Malformed(error.to_string()))?;
        match job {
            Job::Ingest { project_id } => self.ingest(&project_id, 0).await,
            Job::ContinueIngest { project_id, step } => self.ingest(&project_id, step).await,
            Job::Refresh {
                project_id,
                trigger,
                request_id,
            } => {
                self.refreshes()
                    .refresh(&project_id, parse_trigger(&trigger)?, &request_id, 0)
                    .await
            }
            Job::ContinueRefresh {
                project_id,
                trigger,
                request_id,
                step,
            } => {
                self.refreshes()
                    .refresh(&project_id, parse_trigger(&trigger)?, &request_id, step)
                    .await
            }
            Job::AddEventKeys {
                project_id,
                request_id,
            } => {
                self.refreshes()
                    .add_event_keys(&project_id, &request_id)
                    .await
            }
            Job::RefreshAll { trigger } => {
                self.refreshes().refresh_all(parse_trigger(&trigger)?).await
            }
            Job::CountDataset { dataset } => self
                .datasets()
                .count_dataset(&dataset)
                .await
                .map_err(JobError::from),
            Job::Export {
                project_id,
                export_id,
                generation,
            } => {
                self.exports()
                    .run_export(&project_id, &export_id, generation)
                    .await
            }
            Job::MlCheckAll => self.ml().check_all().await,
            Job::MlStage {
                project_id,
                run_id,
                stage,
                step,
            } => self.ml().run_stage(&project_id, &run_id, stage, step).await,
        }
    }

    /// The checkpoints of this project's ingest.
    fn ingest_checkpoints<'b>(&'b self, project_id: &'b str) -> Checkpoints<'b> {
        Checkpoints {
            table: self.table,
            clock: self.clock,
            budget: self.config.job_time_budget,
            project_id,
            kind: keys::checkpoint::INGEST,
        }
    }

    /// The ingest job, step `step` (0 for the job's first message). Each run counts itself
    /// on the project (as export runs do) and each committed step starts the count again, so
    /// the count is of failures, not of continuations; the last allowed run that fails, or a
    /// run after that many that died, moves the project to `failed` with the reason, so it
    /// never stays `initializing` for ever.
    #[instrument(skip(self), err)]
    async fn ingest(&self, project_id: &str, step: u64) -> Result<(), JobError> {
        let checkpoints = self.ingest_checkpoints(project_id);
        // The project and the checkpoint in one round trip.
        let project_key = keys::project(project_id);
        let rows = self
            .table
            .batch_get(&[project_key.clone(), checkpoints.key()])
            .await?;
        let Some(item) = rows.iter().find(|row| row.key == project_key) else {
            tracing::warn!(
                project_id,
                "ingest for a project that does not exist; dropped"
            );
            return Ok(());
        };
        let project: ProjectRecord = from_item(item).map_err(JobError::Unavailable)?;
        if project.status != ProjectStatus::Initializing {
            return Ok(());
        }
        let row = rows.iter().find(|row| row.key == checkpoints.key());
        let fresh = || IngestProgress::of(&project.source);
        let (claimed, claim) = checkpoints.plan(row, step, fresh, |_| true)?;
        let (generation, token, progress) = match claimed {
            Claimed::Run {
                generation,
                token,
                state,
            } => (generation, token, state),
            Claimed::Stale => {
                tracing::info!(project_id, step, "a stale ingest message; dropped");
                return Ok(());
            }
            Claimed::Wait { until } => {
                let project_id = project_id.to_owned();
                let job = match step {
                    0 => Job::Ingest { project_id },
                    step => Job::ContinueIngest { project_id, step },
                };
                tracing::info!(step, "the ingest step is busy; coming back later");
                let now = self.clock.now();
                return checkpoint::come_back(
                    &job,
                    self.queue.as_ref(),
                    &self.config.jobs_queue,
                    now,
                    until,
                )
                .await;
            }
        };
        let attempts = u32::try_from(number(&item.attrs, INGEST_ATTEMPTS)).unwrap_or(0);
        // The step is claimed and the run counted in one write. Not a new version of the
        // project: an edit meanwhile still succeeds (and its write, of the whole record,
        // starts the count again).
        let mut writes: Vec<Write> = claim.into_iter().collect();
        writes.push(Write::Update {
            key: project_key.clone(),
            update: Update::default().set(INGEST_ATTEMPTS, attempts + 1),
            condition: Some(Condition::equals(attr::VERSION, project.version)),
        });
        match self.table.transact(writes).await {
            Ok(()) => {}
            Err(TableError::ConditionFailed { index: 0 }) => return Err(step_busy()),
            Err(TableError::ConditionFailed { .. }) => {
                return Err(JobError::Unavailable(
                    "the project changed during ingest".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        if attempts >= MAX_JOB_ATTEMPTS {
            // The earlier runs died without recording an outcome (a crash or a timeout).
            self.give_up(
                project_id,
                &format!(
                    "the first listing of the source stopped without finishing {attempts} times; \
                     gave up. Refresh the project once the cause is fixed"
                ),
            )
            .await?;
            return Ok(());
        }
        let attempts = attempts + 1;
        let run = IngestRun {
            project: &project,
            generation,
            token: &token,
            retried: attempts > 1,
        };
        let outcome = self.ingest_source(&run, progress).await;
        if outcome.is_err() {
            checkpoints.release(&token).await;
        }
        match outcome {
            Err(error @ JobError::Unavailable(_)) if attempts >= MAX_JOB_ATTEMPTS => {
                let reason = format!(
                    "the first listing of the source failed: {} (gave up after {attempts} \
                     tries). Refresh the project once the cause is fixed",
                    causes(&error)
                );
                tracing::error!(project_id, %reason, "ingest failed");
                self.give_up(project_id, &reason).await?;
                Ok(())
            }
            outcome => outcome,
        }
    }

    /// Fails the project and drops the ingest's checkpoint, so a retry starts afresh.
    async fn give_up(&self, project_id: &str, reason: &str) -> Result<(), JobError> {
        self.ingest_checkpoints(project_id).delete().await?;
        self.projects().fail_project(project_id, reason).await?;
        Ok(())
    }

    /// One run of the ingest job: lists the source page by page from where the last step
    /// stopped, writing manifest chunks as they fill, until the listing ends (the manifest is
    /// committed and the project starts) or the run's budget is spent (the progress is
    /// committed and the job continues in a new message). Holds one chunk and one page.
    async fn ingest_source(
        &self,
        run: &IngestRun<'_>,
        progress: IngestProgress,
    ) -> Result<(), JobError> {
        let project = run.project;
        let project_id = project.id.as_str();
        let source = match project.source.allowed(self.config.allow_file_sources) {
            Ok(source) => source,
            Err(error) => {
                self.give_up(project_id, &error.to_string()).await?;
                return Ok(());
            }
        };
        // The source was edited since the last step: what was listed is of another source.
        let mut progress = if progress.source.as_ref() == Some(&project.source) {
            progress
        } else {
            IngestProgress::of(&project.source)
        };
        let deadline = Deadline::start(self.clock, self.config.job_time_budget);
        let first = Batch {
            start: 0,
            len: 0,
            tag: None,
        };
        let mut chunks = ChunkWriter::resume(
            self.blobs.as_ref(),
            &self.config.system_bucket,
            project_id,
            first,
            progress.items,
        )
        .await?;
        loop {
            let page = match self
                .blobs
                .list(
                    source.bucket(),
                    source.list_prefix(),
                    progress.after.as_deref(),
                    MAX_LIST_KEYS,
                )
                .await
            {
                Ok(page) => page,
                Err(BlobError::NoSuchBucket(bucket)) => {
                    self.give_up(project_id, &format!("bucket {bucket} does not exist"))
                        .await?;
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            };
            progress.list_calls += 1;
            progress.unreadable += page.unreadable;
            let (kept, dropped) = admit_page(source, &page, MAX_ITEMS.saturating_sub(chunks.len()));
            for key in kept {
                chunks.push(self.blobs.as_ref(), key.to_owned()).await?;
            }
            progress.dropped += dropped;
            progress.items = chunks.len();
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => progress.after = Some(last.key.clone()),
                _ => break,
            }
            if deadline.spent() {
                chunks.flush(self.blobs.as_ref()).await?;
                return self.continue_ingest(run, progress).await;
            }
        }
        chunks.flush(self.blobs.as_ref()).await?;
        self.start_project(run, &progress).await
    }

    /// Commits a step of the ingest and sends the next (before the commit: see
    /// [`checkpoint`]).
    async fn continue_ingest(
        &self,
        run: &IngestRun<'_>,
        progress: IngestProgress,
    ) -> Result<(), JobError> {
        let project_id = run.project.id.as_str();
        let next = Job::ContinueIngest {
            project_id: project_id.to_owned(),
            step: run.generation + 1,
        };
        next.send(
            self.queue.as_ref(),
            &self.config.jobs_queue,
            checkpoint::CONTINUATION_DELAY,
        )
        .await
        .map_err(|error| JobError::Unavailable(Box::new(error)))?;
        let items = progress.items;
        let writes = vec![
            self.ingest_checkpoints(project_id).commit_write(
                run.generation,
                run.token,
                progress,
            )?,
            // A committed step is progress: the failures counted start again.
            Write::Update {
                key: keys::project(project_id),
                update: Update::default().set(INGEST_ATTEMPTS, 0),
                condition: Some(Condition::equals(attr::VERSION, run.project.version)),
            },
        ];
        match self.table.transact(writes).await {
            Ok(()) => {}
            Err(TableError::ConditionFailed { .. }) => {
                return Err(JobError::Unavailable(
                    "the project or the ingest's checkpoint changed during the step".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(
            project_id,
            step = run.generation,
            items,
            "ingest continues in a new message"
        );
        Ok(())
    }

    /// The last step of the ingest: publishes the manifest and starts the project.
    async fn start_project(
        &self,
        run: &IngestRun<'_>,
        progress: &IngestProgress,
    ) -> Result<(), JobError> {
        let project = run.project;
        let project_id = project.id.as_str();
        let total = progress.items;
        let now = self.clock.now();
        // The refresh block shows what the listing left out. Written before the commit, so a
        // running project always has it, and by a retry anyway (an earlier try may have left
        // one). Otherwise the manifest tells the same, without an S3 request more.
        if progress.unreadable > 0 || run.retried {
            let status = RefreshStatus {
                at: now,
                trigger: RefreshTrigger::Create,
                added: total,
                dropped: progress.dropped,
                unreadable: progress.unreadable,
                listed: total + progress.dropped,
                ..RefreshStatus::default()
            };
            self.statuses()
                .write_refresh_status(project_id, &status)
                .await?;
        }
        let manifest = ManifestRecord {
            total,
            batches: if total > 0 {
                vec![Batch {
                    start: 0,
                    len: total,
                    tag: None,
                }]
            } else {
                Vec::new()
            },
            dropped: progress.dropped,
            last_refresh_at: Some(now),
            last_refresh_trigger: Some(RefreshTrigger::Create),
            last_refresh_added: total,
            removed: 0,
        };
        let round = project.round;
        let mut writes = vec![
            Write::Update {
                key: keys::project(project_id),
                update: Update::default()
                    .set(attr::STATUS, ProjectStatus::Running.as_str())
                    .set(attr::UPDATED_AT, now)
                    .set(attr::VERSION, project.version + 1),
                condition: Some(Condition::equals(attr::VERSION, project.version)),
            },
            Write::Put {
                item: to_item(
                    keys::manifest(project_id),
                    keys::entity::MANIFEST,
                    &manifest,
                )?,
                condition: None,
            },
            self.ingest_checkpoints(project_id).finish_write(run.token),
        ];
        writes.extend(start_round(project_id, round, total, now)?);
        let outcome = self.table.transact(writes).await;
        self.projects.forget(project_id);
        match outcome {
            Ok(()) => {}
            // The project changed (edited, or another delivery finished first): run again.
            Err(TableError::ConditionFailed { .. }) => {
                return Err(JobError::Unavailable(
                    "the project changed during ingest".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(
            project_id,
            items = total,
            dropped = progress.dropped,
            unreadable = progress.unreadable,
            list_calls = progress.list_calls,
            steps = run.generation + 1,
            "ingest finished"
        );
        Ok(())
    }

    /// Lists every key under the source's prefix in key order, keeping the first `cap` images
    /// and counting the rest as dropped.
    pub async fn list_source(&self, source: &Source, cap: u64) -> Result<Listing, BlobError> {
        let mut listing = Listing::default();
        let mut start_after: Option<String> = None;
        loop {
            let page = self
                .blobs
                .list(
                    source.bucket(),
                    source.list_prefix(),
                    start_after.as_deref(),
                    MAX_LIST_KEYS,
                )
                .await?;
            listing.list_calls += 1;
            listing.unreadable += page.unreadable;
            let (kept, dropped) =
                admit_page(source, &page, cap.saturating_sub(listing.keys.len() as u64));
            listing.keys.extend(kept.into_iter().map(str::to_owned));
            listing.dropped += dropped;
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => start_after = Some(last.key.clone()),
                _ => break,
            }
        }
        Ok(listing)
    }

    /// Test and bench hook: one run of a listing refresh of `project_id` as its first message
    /// would run it; the most keys it held in memory at once.
    pub async fn refresh_now(
        &self,
        project_id: &str,
    ) -> Result<crate::usecases::refresh::MergeMemory, JobError> {
        let mut memory = crate::usecases::refresh::MergeMemory::default();
        self.refreshes()
            .refresh_measured(
                project_id,
                RefreshTrigger::OnDemand,
                &crate::ids::new_id("r"),
                0,
                &mut memory,
            )
            .await?;
        Ok(memory)
    }

    /// Test and bench hook: ingest synchronously as the job would.
    pub async fn ingest_now(&self, project_id: &str) -> Result<(), JobError> {
        self.ingest(project_id, 0).await
    }
}
