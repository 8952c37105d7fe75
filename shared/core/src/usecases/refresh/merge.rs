//! Refresh: the listing merge, which lists the source in key order page by page and merges it
//! with the manifest's keys (a k-way merge over its sorted batches, read chunk by chunk),
//! writing new keys into the new batch's chunks as they are found; then commits the new batch
//! with the round's larger total. A merge that outgrows one run's time budget saves its place
//! in a checkpoint and continues in a new message (see
//! [`checkpoint`](crate::usecases::ingest::checkpoint)).

use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::Refreshes;
use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys::{self, attr};
use crate::manifest::{Batch, ChunkWriter, KnownKeys, ManifestRecord};
use crate::ports::blobs::MAX_LIST_KEYS;
use crate::ports::{Condition, Update, Write};
use crate::service::{from_item, number, to_item};
use crate::transaction::{Rejected, Transaction};
use crate::usecases::ingest::JobError;
use crate::usecases::ingest::checkpoint::{
    self, CONTINUATION_DELAY, Checkpoints, Claimed, Deadline,
};

use super::{CURSOR_ATTEMPTS, RefreshStatus};

/// What merging keys with the manifest found (the event job's keys, in memory: at most
/// [`super::EVENT_KEYS_PER_JOB`]).
#[derive(Debug, Default)]
pub(super) struct Merge {
    pub(super) new_keys: Vec<String>,
    pub(super) removed: u64,
}

/// How far a listing refresh has come, saved in its checkpoint between steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RefreshProgress {
    /// The refresh request this is the progress of.
    request_id: String,
    /// The manifest's total as merged against: a manifest grown since (by a refresh that
    /// held the lease while this one did not) starts the merge again.
    manifest_total: u64,
    /// Where the new batch's chunks are written.
    tag: String,
    /// The last key listed: the next step lists after it, and every manifest key up to it
    /// has been merged.
    after: Option<String>,
    /// Keys merged in each batch of the manifest.
    known: Vec<u64>,
    listed: u64,
    unreadable: u64,
    removed: u64,
    /// New keys found; those past the item cap are counted, not written.
    found: u64,
    /// New keys written to the new batch.
    added: u64,
    list_calls: u64,
}

impl RefreshProgress {
    fn fresh(request_id: &str, manifest: &ManifestRecord) -> Self {
        Self {
            request_id: request_id.to_owned(),
            manifest_total: manifest.total,
            // A tag of its own for every merge: a retry of a job whose earlier grow was
            // committed (its status write failed, say) must not rewrite that batch's chunks.
            tag: format!("{request_id}-{}", new_id("b")),
            ..Self::default()
        }
    }

    fn batch(&self, manifest: &ManifestRecord) -> Batch {
        Batch {
            start: manifest.total,
            len: self.added,
            tag: Some(self.tag.clone()),
        }
    }
}

/// The step of the checkpoint a run holds, once it has one.
struct Held {
    generation: u64,
    token: String,
}

/// One run of a listing refresh.
struct MergeRun {
    manifest: ManifestRecord,
    progress: RefreshProgress,
    /// None while the run has written nothing (a refresh that finds nothing new writes
    /// nothing to the table).
    held: Option<Held>,
}

/// How a run of the merge ended.
enum Flow {
    /// The listing ended.
    Finished,
    /// The budget ran out; the checkpoint is committed and the continuation sent.
    Continued,
    /// The manifest changed before the lease was taken: merge again from the start.
    Restart,
    /// Another refresh holds the lease and covers these files.
    Yielded,
}

/// What taking the refresh lease and a checkpoint found.
enum Hold {
    Held,
    Restart,
    Yielded,
}

/// Statistics a merge keeps of the keys it held in memory (the bound tests read).
#[derive(Debug, Default, Clone, Copy)]
pub struct MergeMemory {
    /// The most keys held at once: manifest chunks, the new batch's chunk and a page.
    pub most_keys_held: usize,
}

impl Refreshes<'_> {
    fn refresh_checkpoints<'b>(&'b self, project_id: &'b str) -> Checkpoints<'b> {
        Checkpoints {
            table: self.table,
            clock: self.clock,
            budget: self.config.job_time_budget,
            project_id,
            kind: keys::checkpoint::REFRESH,
        }
    }

    /// Lists the source and adds what the manifest lacks; `step` 0 is the request's first
    /// message, later steps continue a merge that outgrew a run.
    pub(crate) async fn refresh(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        request_id: &str,
        step: u64,
    ) -> Result<(), JobError> {
        self.refresh_measured(
            project_id,
            trigger,
            request_id,
            step,
            &mut MergeMemory::default(),
        )
        .await
    }

    /// [`Self::refresh`], counting the keys it holds in `memory`.
    #[instrument(skip(self, memory), err)]
    pub(crate) async fn refresh_measured(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        request_id: &str,
        step: u64,
        memory: &mut MergeMemory,
    ) -> Result<(), JobError> {
        let Some(item) = self.table.get(&keys::project(project_id)).await? else {
            return Ok(());
        };
        let project: ProjectRecord = from_item(&item).map_err(JobError::Unavailable)?;
        if !matches!(
            project.status,
            ProjectStatus::Running | ProjectStatus::Paused
        ) {
            return Ok(());
        }
        let Some(manifest) = self.reader().read_manifest(project_id).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        if step == 0 && manifest.total >= MAX_ITEMS {
            let status = RefreshStatus {
                at: now,
                trigger,
                dropped: manifest.dropped,
                removed: manifest.removed,
                note: Some(format!(
                    "the project holds {MAX_ITEMS} items, the most it can; the source was not listed"
                )),
                ..RefreshStatus::default()
            };
            self.statuses()
                .write_refresh_status(project_id, &status)
                .await?;
            return Ok(());
        }
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let mut run = if step == 0 {
            MergeRun {
                progress: RefreshProgress::fresh(request_id, &manifest),
                manifest,
                held: None,
            }
        } else {
            match self
                .resume_refresh(project_id, trigger, request_id, step, manifest, now)
                .await?
            {
                Some(run) => run,
                None => return Ok(()),
            }
        };
        let deadline = Deadline::start(self.clock, self.config.job_time_budget);
        let outcome = loop {
            let flow = self
                .merge_pages(&project, source, &mut run, trigger, &deadline, memory)
                .await;
            match flow {
                Ok(Flow::Restart) => {
                    run.progress = RefreshProgress::fresh(request_id, &run.manifest);
                }
                Ok(Flow::Finished) => {
                    break self.finish_refresh(&project, &run, trigger, now).await;
                }
                Ok(Flow::Continued | Flow::Yielded) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        // After a failure the step is free again and so is the lease, so other refreshes
        // need not wait for it to expire; the retry takes both back if nobody else has.
        if let (Err(_), Some(held)) = (&outcome, &run.held) {
            self.refresh_checkpoints(project_id)
                .release(&held.token)
                .await;
            self.give_refresh_lease_back(project_id, request_id).await;
        }
        outcome
    }

    /// A continuation's run: the checkpoint's step claimed and the lease taken back, or None
    /// when the message is stale or another refresh holds the lease.
    async fn resume_refresh(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        request_id: &str,
        step: u64,
        manifest: ManifestRecord,
        now: i64,
    ) -> Result<Option<MergeRun>, JobError> {
        let checkpoints = self.refresh_checkpoints(project_id);
        let claimed = checkpoints
            .claim(
                step,
                || RefreshProgress::fresh(request_id, &manifest),
                |progress: &RefreshProgress| progress.request_id == request_id,
            )
            .await?;
        let (generation, token, progress) = match claimed {
            Claimed::Run {
                generation,
                token,
                state,
            } => (generation, token, state),
            Claimed::Stale => {
                tracing::info!(project_id, step, "a stale refresh message; dropped");
                return Ok(None);
            }
            Claimed::Wait { until } => {
                tracing::info!(
                    project_id,
                    step,
                    "the refresh step is busy; coming back later"
                );
                let job = Job::ContinueRefresh {
                    project_id: project_id.to_owned(),
                    trigger: trigger.as_str().to_owned(),
                    request_id: request_id.to_owned(),
                    step,
                };
                checkpoint::come_back(
                    &job,
                    self.queue.as_ref(),
                    &self.config.jobs_queue,
                    now,
                    until,
                )
                .await?;
                return Ok(None);
            }
        };
        if !self.take_refresh_lease(project_id, request_id, now).await? {
            tracing::info!(
                project_id,
                "another refresh took the lease meanwhile; it covers these files"
            );
            if let Err(error) = self
                .table
                .transact(vec![checkpoints.finish_write(&token)])
                .await
            {
                tracing::warn!(%error, project_id, "could not drop a refresh checkpoint");
            }
            return Ok(None);
        }
        // Another refresh grew the manifest while this one did not hold the lease: what was
        // merged is against keys that are no longer all there is.
        let progress = if progress.manifest_total == manifest.total {
            progress
        } else {
            RefreshProgress::fresh(request_id, &manifest)
        };
        Ok(Some(MergeRun {
            manifest,
            progress,
            held: Some(Held { generation, token }),
        }))
    }

    /// Takes the refresh lease and a checkpoint for a run that is about to write (it found a
    /// new key, or must continue in a new message). Under the lease, a manifest grown since
    /// the run read it means merging again.
    async fn hold(&self, project_id: &str, run: &mut MergeRun) -> Result<Hold, JobError> {
        let now = self.clock.now();
        let request_id = run.progress.request_id.clone();
        // One refresh of a project at a time. A redelivery of this same job (after a crash)
        // holds the same request id and may take its own lease back.
        if !self
            .take_refresh_lease(project_id, &request_id, now)
            .await?
        {
            tracing::info!(
                project_id,
                "another refresh is running; it covers these files"
            );
            return Ok(Hold::Yielded);
        }
        let current = self
            .reader()
            .read_manifest(project_id)
            .await?
            .unwrap_or_else(|| run.manifest.clone());
        let changed = current != run.manifest;
        run.manifest = current;
        if changed {
            run.progress = RefreshProgress::fresh(&request_id, &run.manifest);
        }
        let claimed = self
            .refresh_checkpoints(project_id)
            .claim(0, || run.progress.clone(), |_| true)
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                self.give_refresh_lease_back(project_id, &request_id).await;
                return Err(error);
            }
        };
        match claimed {
            Claimed::Run {
                generation, token, ..
            } => {
                run.held = Some(Held { generation, token });
                Ok(if changed { Hold::Restart } else { Hold::Held })
            }
            // A run of this same request holds the checkpoint: it keeps the lease too.
            Claimed::Stale | Claimed::Wait { .. } => Err(JobError::Unavailable(
                "another run of this refresh holds its checkpoint; retrying".into(),
            )),
        }
    }

    /// Merges the listing with the manifest page by page from where the run's progress
    /// stands, until the listing ends or the budget is spent. Holds one chunk of each
    /// manifest batch, one chunk of the new batch and one page of the listing.
    async fn merge_pages(
        &self,
        project: &ProjectRecord,
        source: &Source,
        run: &mut MergeRun,
        trigger: RefreshTrigger,
        deadline: &Deadline,
        memory: &mut MergeMemory,
    ) -> Result<Flow, JobError> {
        let project_id = project.id.as_str();
        let blobs = self.blobs.as_ref();
        let bucket = &self.config.system_bucket;
        let mut known = KnownKeys::open(
            blobs,
            bucket,
            project_id,
            &run.manifest.batches,
            &run.progress.known,
        )
        .await?;
        let mut chunks = ChunkWriter::resume(
            blobs,
            bucket,
            project_id,
            run.progress.batch(&run.manifest),
            run.progress.added,
        )
        .await?;
        let room = MAX_ITEMS.saturating_sub(run.manifest.total);
        loop {
            let page = self
                .blobs
                .list(
                    source.bucket(),
                    source.list_prefix(),
                    run.progress.after.as_deref(),
                    MAX_LIST_KEYS,
                )
                .await?;
            let progress = &mut run.progress;
            progress.list_calls += 1;
            progress.unreadable += page.unreadable;
            memory.most_keys_held = memory
                .most_keys_held
                .max(known.keys_held() + chunks.keys_held() + page.objects.len());
            for object in &page.objects {
                let key = object.key.as_str();
                if !source.admits(key) {
                    continue;
                }
                run.progress.listed += 1;
                let mut is_known = false;
                while let Some(next) = known.peek() {
                    if next < key {
                        run.progress.removed += 1;
                    } else {
                        is_known = next == key;
                        if is_known {
                            known.advance(blobs).await?;
                        }
                        break;
                    }
                    known.advance(blobs).await?;
                }
                if is_known {
                    continue;
                }
                if run.held.is_none() {
                    match self.hold(project_id, run).await? {
                        Hold::Held => {}
                        Hold::Restart => return Ok(Flow::Restart),
                        Hold::Yielded => return Ok(Flow::Yielded),
                    }
                }
                run.progress.found += 1;
                if chunks.len() < room {
                    chunks.push(blobs, object.key.clone()).await?;
                    run.progress.added = chunks.len();
                }
            }
            let last = match (page.truncated, page.objects.last()) {
                (true, Some(last)) => last.key.as_str(),
                _ => {
                    // Whatever the manifest holds past the listing's end is gone.
                    while known.peek().is_some() {
                        run.progress.removed += 1;
                        known.advance(blobs).await?;
                    }
                    chunks.flush(blobs).await?;
                    run.progress.known = known.positions();
                    return Ok(Flow::Finished);
                }
            };
            // Manifest keys up to the page's last key that the page did not list are gone.
            while known.peek().is_some_and(|next| next <= last) {
                run.progress.removed += 1;
                known.advance(blobs).await?;
            }
            run.progress.after = Some(last.to_owned());
            run.progress.known = known.positions();
            if deadline.spent() {
                if run.held.is_none() {
                    match self.hold(project_id, run).await? {
                        Hold::Held => {}
                        Hold::Restart => return Ok(Flow::Restart),
                        Hold::Yielded => return Ok(Flow::Yielded),
                    }
                }
                chunks.flush(blobs).await?;
                self.continue_refresh(project_id, run, trigger).await?;
                return Ok(Flow::Continued);
            }
        }
    }

    /// Commits a step of the refresh and sends the next (before the commit: see
    /// [`checkpoint`](crate::usecases::ingest::checkpoint)).
    async fn continue_refresh(
        &self,
        project_id: &str,
        run: &MergeRun,
        trigger: RefreshTrigger,
    ) -> Result<(), JobError> {
        let Some(held) = &run.held else {
            return Err(JobError::Unavailable(
                "a refresh continued without a checkpoint".into(),
            ));
        };
        let next = Job::ContinueRefresh {
            project_id: project_id.to_owned(),
            trigger: trigger.as_str().to_owned(),
            request_id: run.progress.request_id.clone(),
            step: held.generation + 1,
        };
        next.send(
            self.queue.as_ref(),
            &self.config.jobs_queue,
            CONTINUATION_DELAY,
        )
        .await
        .map_err(|error| JobError::Unavailable(Box::new(error)))?;
        let commit = self.refresh_checkpoints(project_id).commit_write(
            held.generation,
            &held.token,
            run.progress.clone(),
        )?;
        self.table.transact(vec![commit]).await.map_err(|error| {
            JobError::Unavailable(
                format!("the refresh's checkpoint changed during its step: {error}").into(),
            )
        })?;
        tracing::info!(
            project_id,
            step = held.generation,
            listed = run.progress.listed,
            added = run.progress.added,
            "refresh continues in a new message"
        );
        Ok(())
    }

    /// The listing ended: publishes the new batch (if any) and the refresh's status.
    async fn finish_refresh(
        &self,
        project: &ProjectRecord,
        run: &MergeRun,
        trigger: RefreshTrigger,
        now: i64,
    ) -> Result<(), JobError> {
        let project_id = project.id.as_str();
        let progress = &run.progress;
        let checkpoints = self.refresh_checkpoints(project_id);
        if progress.found == 0 {
            if let Some(held) = &run.held {
                self.table
                    .transact(vec![checkpoints.finish_write(&held.token)])
                    .await?;
                self.give_refresh_lease_back(project_id, &progress.request_id)
                    .await;
            }
            let status = RefreshStatus {
                at: now,
                trigger,
                removed: progress.removed,
                unreadable: progress.unreadable,
                listed: progress.listed,
                ..RefreshStatus::default()
            };
            self.statuses()
                .write_refresh_status(project_id, &status)
                .await?;
            tracing::info!(
                project_id,
                removed = progress.removed,
                unreadable = progress.unreadable,
                "refresh found nothing new"
            );
            return Ok(());
        }
        let Some(held) = &run.held else {
            return Err(JobError::Unavailable(
                "a refresh found new keys without a checkpoint".into(),
            ));
        };
        let manifest = &run.manifest;
        let mut grown = manifest.clone();
        if progress.added > 0 {
            grown.batches.push(progress.batch(manifest));
            grown.total += progress.added;
        }
        grown.dropped = progress.found - progress.added;
        grown.removed = progress.removed;
        grown.last_refresh_at = Some(now);
        grown.last_refresh_trigger = Some(trigger);
        grown.last_refresh_added = progress.added;
        self.commit_refresh(
            project_id,
            project.round,
            manifest,
            &grown,
            &progress.request_id,
            Some(checkpoints.finish_write(&held.token)),
        )
        .await?;
        let status = RefreshStatus {
            at: now,
            trigger,
            added: progress.added,
            dropped: grown.dropped,
            removed: progress.removed,
            unreadable: progress.unreadable,
            listed: progress.listed,
            note: None,
        };
        self.statuses()
            .write_refresh_status(project_id, &status)
            .await?;
        tracing::info!(
            project_id,
            added = progress.added,
            dropped = grown.dropped,
            removed = progress.removed,
            steps = held.generation + 1,
            "refresh added items"
        );
        Ok(())
    }

    /// Publishes the grown manifest and the round's larger total, and deletes the refresh lease
    /// held by `lease_holder`, in one transaction. Checkouts
    /// that ran past the old end reserved positions that did not exist yet; the cursor goes
    /// back to the old end in the same write, so the new items at those positions are handed
    /// out instead of skipped. The cursor is compared as read, so a checkout moving it in
    /// between makes this write retry rather than lose its reservation.
    pub(super) async fn commit_refresh(
        &self,
        project_id: &str,
        round: u32,
        manifest: &ManifestRecord,
        grown: &ManifestRecord,
        lease_holder: &str,
        checkpoint: Option<Write>,
    ) -> Result<(), JobError> {
        let added = grown.total.saturating_sub(manifest.total) as i64;
        let cursor_key = keys::cursor(project_id, round);
        for _ in 0..CURSOR_ATTEMPTS {
            let Some(cursor) = self.table.get(&cursor_key).await? else {
                return Err(JobError::Unavailable(
                    "the labeling round has no cursor yet; retrying".into(),
                ));
            };
            let next = number(&cursor.attrs, attr::NEXT);
            let total = number(&cursor.attrs, attr::TOTAL);
            let mut update = Update::default().set(attr::TOTAL, total + added);
            // A cursor past the end is wound back, so this write must see it exactly as read;
            // otherwise checkouts may move it meanwhile, as long as none runs past the end
            // (that one's give-back would then be lost to the new total).
            let cursor_as_read = if next > total {
                update = update.set(attr::NEXT, total);
                Condition::equals(attr::NEXT, next)
            } else {
                Condition::less_than(attr::NEXT, total + 1)
            };
            let mut writes = Transaction::new();
            writes.push(
                RefreshWrite::Manifest,
                Write::Put {
                    item: to_item(keys::manifest(project_id), keys::entity::MANIFEST, grown)?,
                    condition: Some(Condition::equals(attr::TOTAL, manifest.total)),
                },
            );
            writes.push(
                RefreshWrite::Cursor,
                Write::Update {
                    key: cursor_key.clone(),
                    update,
                    condition: Some(Condition::And(vec![
                        cursor_as_read,
                        Condition::equals(attr::TOTAL, total),
                    ])),
                },
            );
            writes.push(
                RefreshWrite::ProjectRound,
                Write::Check {
                    key: keys::project(project_id),
                    condition: Condition::equals(attr::ROUND, round),
                },
            );
            writes.push(
                RefreshWrite::Lease,
                Write::Delete {
                    key: keys::refresh_lease(project_id),
                    condition: Some(Condition::equals(attr::HOLDER, lease_holder)),
                },
            );
            if let Some(write) = &checkpoint {
                writes.push(RefreshWrite::Checkpoint, write.clone());
            }
            match writes.commit(self.table.as_ref()).await {
                Ok(()) => return Ok(()),
                Err(Rejected::Condition(RefreshWrite::Cursor) | Rejected::Conflict) => continue,
                Err(Rejected::Condition(write)) => {
                    return Err(JobError::Unavailable(
                        format!(
                            "the project changed during the refresh ({}); retrying",
                            write.what_changed()
                        )
                        .into(),
                    ));
                }
                Err(Rejected::Table(error)) => return Err(error.into()),
            }
        }
        Err(JobError::Unavailable(
            "labelers kept moving the cursor during the refresh; retrying".into(),
        ))
    }
}

/// The writes of the transaction that commits a refresh, named so that a failed condition
/// reads as what changed under the refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshWrite {
    /// The grown manifest, over the manifest as the refresh read it.
    Manifest,
    /// The round's cursor, over its total (and position) as read.
    Cursor,
    /// The project is still in the round whose cursor grows.
    ProjectRound,
    /// The refresh lease, still held by this refresh.
    Lease,
    /// The refresh's checkpoint, still held by this run.
    Checkpoint,
}

impl RefreshWrite {
    fn what_changed(self) -> &'static str {
        match self {
            RefreshWrite::Manifest => "another refresh grew the manifest",
            RefreshWrite::Cursor => "labelers moved the cursor",
            RefreshWrite::ProjectRound => "the project started another round",
            RefreshWrite::Lease => "the refresh lease passed to another refresh",
            RefreshWrite::Checkpoint => "another run took the refresh's checkpoint",
        }
    }
}
