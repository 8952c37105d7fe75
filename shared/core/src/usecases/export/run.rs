//! Export: the job. A run claims the export, takes its multipart upload up again from the
//! latest checkpoint (or starts one), and writes step by step (a page of items) until the export
//! is done or the service's job time budget is spent; then it completes the upload, or saves a
//! checkpoint and sends its own continuation.
//!
//! The queue delivers at least once, so two messages of one export may run at once (a
//! continuation and a redelivered earlier message, one message twice). Three things keep that
//! harmless:
//! - a message carries the export's generation (continuations sent before it); one older than
//!   the record's is stale and dropped. A continuation is sent before the record moves to its
//!   generation, so a run killed between the two leaves a message that still runs;
//! - a run claims the export with a write conditioned on the claims it read and holds it until
//!   `held_until`; every later write of the run is conditioned on still holding it. Another
//!   message that finds the export held is sent again, delayed until the hold runs out, so it
//!   neither runs beside the holder nor is lost when the holder dies;
//! - the bytes depend only on the snapshot, so a run that took over from a checkpoint uploads
//!   the very parts a dead or late holder did (a part number uploaded twice gets the same bytes).

use std::time::Duration;

use tracing::instrument;

use super::Exports;
use crate::domain::project::ProjectRecord;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys::{self, attr};
use crate::ports::{BlobError, Condition, Item, TableError, Update};
use crate::service::{from_item, to_item};
use crate::usecases::ingest::JobError;

use super::checkpoint::{self, Position, WriterState};
use super::coco::UnlabeledWalk;
use super::part_writer::PartWriter;
use super::{ExportFormat, ExportRecord, ExportStatus, MAX_EXPORT_ATTEMPTS};

/// How long a run holds an export after its claim or its latest step: one step (a page of items,
/// a part of up to 128 MiB) and a checkpoint fit in it, so a holder that has not renewed its
/// hold by then has died.
const HOLD_MARGIN: Duration = Duration::from_secs(5 * 60);
/// SQS's longest delivery delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// Another run holds the export now: this one stops without writing anything more.
#[derive(Debug, thiserror::Error)]
#[error("another run holds this export now")]
struct LostClaim;

/// What one run has in hand.
struct RunState<'w> {
    id: String,
    /// Whether the upload was taken up from a checkpoint (it may be gone since).
    resumed: bool,
    writer: PartWriter<'w>,
    state: WriterState,
    unlabeled: Option<UnlabeledWalk>,
    /// This run's checkpoint object, once written.
    checkpoint_key: String,
}

/// How a run's work ended.
enum Worked {
    Finished,
    OutOfTime,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn record_item(record: &ExportRecord) -> Result<Item, JobError> {
    Ok(to_item(
        keys::export(&record.project_id, &record.id),
        keys::entity::EXPORT,
        record,
    )?)
}

fn lost_claim() -> JobError {
    JobError::Unavailable(Box::new(LostClaim))
}

fn held_by(run_id: &str) -> Condition {
    Condition::equals(attr::HOLDER, run_id)
}

impl Exports<'_> {
    /// The export job, message of generation `generation`.
    #[instrument(skip(self), err)]
    pub(crate) async fn run_export(
        &self,
        project_id: &str,
        export_id: &str,
        generation: u64,
    ) -> Result<(), JobError> {
        let key = keys::export(project_id, export_id);
        let Some(item) = self.table.get(&key).await? else {
            tracing::warn!("export record is gone; dropping the job");
            return Ok(());
        };
        // Records written before claims existed lack the count: their claim cannot be
        // conditioned on it (only exports in flight across the upgrade).
        let claims_stored = item.attrs.contains_key(attr::CLAIMS);
        let mut record: ExportRecord = from_item(&item).map_err(JobError::Unavailable)?;
        if matches!(
            record.status,
            ExportStatus::Succeeded | ExportStatus::Failed
        ) {
            return Ok(());
        }
        if generation < record.generation {
            tracing::info!(
                generation,
                latest = record.generation,
                "a later continuation of this export was sent; dropping this message"
            );
            return Ok(());
        }
        let Some(project_item) = self.table.get(&keys::project(project_id)).await? else {
            return Ok(());
        };
        let project: ProjectRecord = from_item(&project_item).map_err(JobError::Unavailable)?;
        let now = self.clock.now();
        if let (Some(holder), Some(until)) = (&record.holder, record.held_until)
            && until > now
        {
            tracing::info!(%holder, "another run holds this export; trying again when its hold ends");
            return self
                .park(project_id, export_id, generation, until - now)
                .await;
        }
        if record.holder.take().is_some() {
            // The run that held it neither finished, nor continued, nor recorded a failure.
            record.attempts += 1;
            record.error = Some(format!(
                "a run stopped without finishing (a crash or a timeout); resuming from its last checkpoint (try {} of {MAX_EXPORT_ATTEMPTS})",
                record.attempts
            ));
        }
        if record.attempts >= MAX_EXPORT_ATTEMPTS {
            record.error = Some(format!(
                "the export stopped without finishing {} times; gave up",
                record.attempts
            ));
            let unclaimed = if claims_stored {
                Condition::equals(attr::CLAIMS, record.claims)
            } else {
                Condition::Exists
            };
            return self.mark_failed(record, now, None, Some(unclaimed)).await;
        }

        // Claim it.
        let run_id = new_id("r");
        let observed_claims = record.claims;
        record.claims += 1;
        record.holder = Some(run_id.clone());
        record.held_until = Some(now + millis(HOLD_MARGIN));
        record.generation = generation.max(record.generation);
        record.status = ExportStatus::Running;
        record.started_at.get_or_insert(now);
        let claim = if claims_stored {
            Condition::equals(attr::CLAIMS, observed_claims)
        } else {
            Condition::Exists
        };
        match self.table.put(record_item(&record)?, Some(claim)).await {
            Ok(()) => {}
            Err(TableError::ConditionFailed { .. }) => {
                tracing::info!("another run claimed this export first; trying again later");
                return self
                    .park(project_id, export_id, generation, millis(HOLD_MARGIN))
                    .await;
            }
            Err(error) => return Err(error.into()),
        }

        let deadline = now + millis(self.config.job_time_budget);
        let mut run = None;
        let outcome = self
            .work(&project, &mut record, &run_id, deadline, &mut run)
            .await;
        match outcome {
            Ok(Worked::Finished) => self.succeed(record).await,
            Ok(Worked::OutOfTime) => match run {
                // A continuation that could not be sent or recorded is a failed run: it lets
                // go, and the retry resumes from the checkpoint.
                Some(run) => match self.continue_later(record.clone(), run).await {
                    Ok(()) => Ok(()),
                    Err(error) => self.fail(record, &run_id, None, error).await,
                },
                None => Err(lost_claim()),
            },
            Err(error) => self.fail(record, &run_id, run, error).await,
        }
    }

    /// Opens the upload (from the latest checkpoint, or a fresh one) and writes until the
    /// export is done (its upload completed) or the deadline has passed. An upload that is gone
    /// (the local server removes the uploads it finds at start-up; S3's lifecycle rule those
    /// older than a day) makes the run start over once, with a fresh one.
    async fn work<'w>(
        &'w self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        run_id: &str,
        deadline: i64,
        run: &mut Option<RunState<'w>>,
    ) -> Result<Worked, JobError> {
        let opened = self.open(project, record, run_id).await?;
        let mut state = run.insert(opened);
        let mut started_over = false;
        loop {
            match self.advance(project, record, run_id, deadline, state).await {
                Err(error) if state.writer.refused() && state.resumed && !started_over => {
                    tracing::warn!(%error, "the export's upload is gone; starting over");
                    started_over = true;
                    if let Some(gone) = record.checkpoint.take() {
                        self.forget_checkpoint(&gone).await;
                    }
                    let fresh = self.open(project, record, run_id).await?;
                    state = run.insert(fresh);
                }
                outcome => return outcome,
            }
        }
    }

    async fn advance(
        &self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        run_id: &str,
        deadline: i64,
        run: &mut RunState<'_>,
    ) -> Result<Worked, JobError> {
        // Class names and categories as they were when the export began.
        let project = ProjectRecord {
            classes: run.state.classes.clone(),
            ..project.clone()
        };
        loop {
            if run.state.position == Position::End {
                run.writer.finish().await?;
                return Ok(Worked::Finished);
            }
            match record.format {
                ExportFormat::Coco => {
                    self.coco_step(
                        &project,
                        record,
                        &mut run.state,
                        &mut run.unlabeled,
                        &mut run.writer,
                    )
                    .await?
                }
                ExportFormat::Jsonl => {
                    self.jsonl_step(&project, record, &mut run.state, &mut run.writer)
                        .await?
                }
            }
            record.items_written = run.state.items_written;
            record.annotations_written = run.state.annotations_written;
            if run.state.position == Position::End {
                continue;
            }
            if self.clock.now() >= deadline {
                return Ok(Worked::OutOfTime);
            }
            if run.writer.take_uploaded() {
                // Everything written so far is in parts now (a part takes the whole buffer):
                // a failed run resumes here.
                self.save_checkpoint(run).await?;
                self.save_progress(record, run_id, Some(&run.checkpoint_key))
                    .await?;
                self.adopt_checkpoint(record, &run.checkpoint_key).await;
            } else {
                self.save_progress(record, run_id, None).await?;
            }
        }
    }

    /// The run's upload and writer state: from the record's checkpoint, or from the start.
    async fn open<'w>(
        &'w self,
        project: &ProjectRecord,
        record: &mut ExportRecord,
        run_id: &str,
    ) -> Result<RunState<'w>, JobError> {
        let checkpoint_key = keys::export_checkpoint(&record.project_id, &record.id, run_id);
        if let Some(latest) = &record.checkpoint {
            match self
                .blobs
                .get(&self.config.system_bucket, latest, None)
                .await
            {
                Ok(bytes) => {
                    let saved = checkpoint::decode(bytes)
                        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
                    tracing::info!(
                        parts = saved.parts.len(),
                        items_written = saved.state.items_written,
                        "resuming the export from its checkpoint"
                    );
                    let writer = PartWriter::resume(
                        self,
                        &record.bucket,
                        &record.key,
                        saved.upload_id,
                        saved.parts,
                        saved.buffered,
                    );
                    return Ok(RunState {
                        id: run_id.to_owned(),
                        resumed: true,
                        writer,
                        state: saved.state,
                        unlabeled: None,
                        checkpoint_key,
                    });
                }
                Err(BlobError::NotFound { .. }) => {
                    tracing::warn!("the export's checkpoint is gone; starting over");
                }
                Err(error) => return Err(error.into()),
            }
        }
        record.items_written = 0;
        record.annotations_written = 0;
        record.items_total = self.count_export_items(project, record).await?;
        let writer = PartWriter::start(
            self,
            &record.bucket,
            &record.key,
            record.format.content_type(),
        )
        .await?;
        Ok(RunState {
            id: run_id.to_owned(),
            resumed: false,
            writer,
            state: WriterState {
                position: Position::Begin,
                items_written: 0,
                annotations_written: 0,
                classes: project.classes.clone(),
            },
            unlabeled: None,
            checkpoint_key,
        })
    }

    async fn save_checkpoint(&self, run: &RunState<'_>) -> Result<(), JobError> {
        let bytes = checkpoint::encode(
            run.writer.upload_id(),
            run.writer.parts(),
            run.writer.buffered(),
            &run.state,
        )
        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        self.blobs
            .put(
                &self.config.system_bucket,
                &run.checkpoint_key,
                bytes,
                "application/octet-stream",
            )
            .await?;
        Ok(())
    }

    /// Once the record names this run's checkpoint, the one it named before is not needed.
    async fn adopt_checkpoint(&self, record: &mut ExportRecord, key: &str) {
        if let Some(previous) = record.checkpoint.replace(key.to_owned())
            && previous != key
        {
            self.forget_checkpoint(&previous).await;
        }
    }

    /// Removes every checkpoint of a finished export, those of runs that died before the record
    /// named them included.
    async fn forget_checkpoints(&self, record: &ExportRecord) {
        let prefix = keys::export_checkpoints(&record.project_id, &record.id);
        let bucket = &self.config.system_bucket;
        let mut start_after: Option<String> = None;
        loop {
            let page = match self
                .blobs
                .list(bucket, &prefix, start_after.as_deref(), 1000)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "could not list the export's checkpoints");
                    return;
                }
            };
            for object in &page.objects {
                self.forget_checkpoint(&object.key).await;
            }
            match (page.objects.last(), page.truncated) {
                (Some(last), true) => start_after = Some(last.key.clone()),
                _ => return,
            }
        }
    }

    async fn forget_checkpoint(&self, key: &str) {
        if let Err(error) = self.blobs.delete(&self.config.system_bucket, key).await {
            tracing::warn!(%error, key, "could not remove an export checkpoint");
        }
    }

    /// Progress for the dashboard (and the checkpoint, when one was just written), while this
    /// run still holds the export; the hold is renewed, since a step just ended.
    async fn save_progress(
        &self,
        record: &ExportRecord,
        run_id: &str,
        checkpoint: Option<&str>,
    ) -> Result<(), JobError> {
        let mut update = Update::default()
            .set(attr::HELD_UNTIL, self.clock.now() + millis(HOLD_MARGIN))
            .set(attr::ITEMS_TOTAL, record.items_total)
            .set(attr::ITEMS_WRITTEN, record.items_written)
            .set(attr::ANNOTATIONS_WRITTEN, record.annotations_written);
        if let Some(checkpoint) = checkpoint {
            update = update.set(attr::CHECKPOINT, checkpoint);
        }
        match self
            .table
            .update(
                &keys::export(&record.project_id, &record.id),
                update,
                Some(held_by(run_id)),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(TableError::ConditionFailed { .. }) => Err(lost_claim()),
            Err(error) => Err(error.into()),
        }
    }

    /// Out of time: the checkpoint, then the continuation, then the record moves to the
    /// continuation's generation and lets go. In that order a run killed anywhere leaves the
    /// export either held by it (the next message waits for the hold to end, then resumes) or
    /// with a message of its latest generation on the queue.
    async fn continue_later(
        &self,
        mut record: ExportRecord,
        run: RunState<'_>,
    ) -> Result<(), JobError> {
        self.save_checkpoint(&run).await?;
        let next = record.generation + 1;
        Job::Export {
            project_id: record.project_id.clone(),
            export_id: record.id.clone(),
            generation: next,
        }
        .send(
            self.queue.as_ref(),
            &self.config.exports_queue,
            Duration::ZERO,
        )
        .await
        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        record.generation = next;
        record.holder = None;
        record.held_until = None;
        let previous = record.checkpoint.replace(run.checkpoint_key.clone());
        match self
            .table
            .put(record_item(&record)?, Some(held_by(&run.id)))
            .await
        {
            Ok(()) => {
                if let Some(previous) = previous.filter(|key| key != &run.checkpoint_key) {
                    self.forget_checkpoint(&previous).await;
                }
                tracing::info!(
                    generation = next,
                    items_written = record.items_written,
                    parts = run.writer.parts().len(),
                    "export continues in a new message"
                );
                Ok(())
            }
            Err(TableError::ConditionFailed { .. }) => {
                // The run that took over goes on; the continuation sent finds it holding.
                tracing::warn!("another run took this export over; leaving it to that one");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn succeed(&self, mut record: ExportRecord) -> Result<(), JobError> {
        let now = self.clock.now();
        record.checkpoint = None;
        record.status = ExportStatus::Succeeded;
        record.items_total = record.items_written;
        record.error = None;
        record.finished_at = Some(now);
        record.holder = None;
        record.held_until = None;
        // Unconditional: the object is complete, whoever holds the export now.
        self.table.put(record_item(&record)?, None).await?;
        self.forget_checkpoints(&record).await;
        tracing::info!(
            items = record.items_written,
            annotations = record.annotations_written,
            generation = record.generation,
            "export finished"
        );
        Ok(())
    }

    /// A failed run: shown at once in the export's error; the last allowed failure marks the
    /// export failed and ends the job, earlier ones leave it to the queue to retry from the
    /// latest checkpoint.
    async fn fail(
        &self,
        mut record: ExportRecord,
        run_id: &str,
        run: Option<RunState<'_>>,
        error: JobError,
    ) -> Result<(), JobError> {
        if let JobError::Unavailable(source) = &error
            && source.is::<LostClaim>()
        {
            return Err(error);
        }
        record.attempts += 1;
        record.holder = None;
        record.held_until = None;
        let last = record.attempts >= MAX_EXPORT_ATTEMPTS;
        if last {
            record.error = Some(format!("{error} (gave up after {} tries)", record.attempts));
            let upload = run.map(|run| run.writer.upload_id().to_owned());
            let now = self.clock.now();
            tracing::error!(%error, attempts = record.attempts, "export failed");
            // Written only while this run still holds it.
            return match self.give_up_held(record, now, upload, run_id).await {
                Ok(()) => Ok(()),
                Err(_) => Err(error),
            };
        }
        record.error = Some(format!(
            "{error} (try {} of {MAX_EXPORT_ATTEMPTS}; retrying)",
            record.attempts
        ));
        if let Err(put_error) = self
            .table
            .put(record_item(&record)?, Some(held_by(run_id)))
            .await
        {
            tracing::warn!(%put_error, "could not record the export's failure");
        }
        Err(error)
    }

    async fn give_up_held(
        &self,
        record: ExportRecord,
        now: i64,
        upload: Option<String>,
        run_id: &str,
    ) -> Result<(), JobError> {
        self.mark_failed(record, now, upload, Some(held_by(run_id)))
            .await
    }

    /// Marks the export failed on `condition`, aborting its upload and removing its checkpoint.
    async fn mark_failed(
        &self,
        mut record: ExportRecord,
        now: i64,
        upload: Option<String>,
        condition: Option<Condition>,
    ) -> Result<(), JobError> {
        let checkpoint = record.checkpoint.take();
        let upload = match (upload, &checkpoint) {
            (Some(upload), _) => Some(upload),
            (None, Some(key)) => {
                match self.blobs.get(&self.config.system_bucket, key, None).await {
                    Ok(bytes) => checkpoint::decode(bytes).ok().map(|saved| saved.upload_id),
                    Err(_) => None,
                }
            }
            (None, None) => None,
        };
        record.status = ExportStatus::Failed;
        record.finished_at = Some(now);
        record.holder = None;
        record.held_until = None;
        match self.table.put(record_item(&record)?, condition).await {
            Ok(()) => {}
            // Claims moved, or the holder changed: another run decides now.
            Err(TableError::ConditionFailed { .. }) => return Err(lost_claim()),
            Err(error) => return Err(error.into()),
        }
        if let Some(upload) = upload
            && let Err(error) = self
                .blobs
                .abort_multipart(&record.bucket, &record.key, &upload)
                .await
        {
            tracing::warn!(%error, "could not abort the failed export's upload");
        }
        if checkpoint.is_some() {
            self.forget_checkpoints(&record).await;
        }
        Ok(())
    }

    /// Sends this message again, to run after `wait_ms` (at most SQS's longest delay; it
    /// waits again if the export is still held then).
    async fn park(
        &self,
        project_id: &str,
        export_id: &str,
        generation: u64,
        wait_ms: i64,
    ) -> Result<(), JobError> {
        let delay = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))
            .saturating_add(Duration::from_secs(1))
            .min(MAX_QUEUE_DELAY);
        Job::Export {
            project_id: project_id.to_owned(),
            export_id: export_id.to_owned(),
            generation,
        }
        .send(self.queue.as_ref(), &self.config.exports_queue, delay)
        .await
        .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        Ok(())
    }

    /// Runs an export job now, without the queue (tests, benchmarks and the CLI); a long
    /// export still continues through the queue.
    pub async fn run_export_now(&self, project_id: &str, export_id: &str) -> Result<(), JobError> {
        let generation = match self.table.get(&keys::export(project_id, export_id)).await? {
            Some(item) => {
                from_item::<ExportRecord>(&item)
                    .map_err(JobError::Unavailable)?
                    .generation
            }
            None => 0,
        };
        self.run_export(project_id, export_id, generation).await
    }
}
