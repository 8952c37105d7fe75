//! Refresh: pick up only what is new in a project's source. The sorted listing is merged with
//! the manifest's keys in one pass; new keys become a new batch (shuffled within itself, written
//! under its own path), so nothing already handed out moves. A refresh that finds nothing new
//! writes nothing to the table. Triggers: on demand, the daily schedule, the queue of never
//! handed out items running low, and object-created events.

use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::access::Actor;
use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys;
use crate::manifest::{Batch, CHUNK_KEYS, ManifestRecord, encode_chunk};
use crate::ports::table::MAX_TRANSACTION_WRITES;
use crate::ports::{Condition, Item, Key, Query, SkRange, TableError, Update, Write};
use crate::service::{Service, from_item, number, to_item, to_json_bytes};
use crate::time::rfc3339;
use crate::usecases::ingest::JobError;
use crate::usecases::projects::ProjectError;

/// How long a refresh holds its project's refresh lease.
const LEASE_MILLIS: i64 = 15 * 60 * 1000;
/// New objects' keys one event job adds at most; more wait for the next job.
const EVENT_KEYS_PER_JOB: usize = 5000;
/// Events within this window after the first share one job, and so one manifest batch.
const EVENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// When a listing refresh holds the lease, the event job comes back after this long.
const LEASE_BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// Sort keys are at most 1,024 bytes: longer object keys are left to the daily listing.
const MAX_EVENT_KEY_BYTES: usize = 1000;
/// Commits tried while checkouts keep moving the cursor, before the job is retried later.
const CURSOR_ATTEMPTS: usize = 20;
/// Rows that only coordinate refreshes are useless a day after they stop mattering.
const COORDINATION_ROW_LIFETIME_MILLIS: i64 = 24 * 3600 * 1000;

/// The table's `ttl` attribute (epoch seconds, as DynamoDB's time to live reads it) of a
/// coordination row that stops mattering at `millis`: DynamoDB deletes it a day later, should
/// the job that would have deleted it have died.
fn expiry_seconds(millis: i64) -> i64 {
    (millis + COORDINATION_ROW_LIFETIME_MILLIS) / 1000
}

/// The daily refresh runs at this hour (UTC), locally and on the AWS schedule.
pub const DAILY_REFRESH_HOUR_UTC: i64 = 2;

/// What the last refresh of a project did (kept in the blob store, so that a refresh which finds
/// nothing new writes nothing to the table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    pub at: i64,
    pub trigger: RefreshTrigger,
    pub added: u64,
    pub dropped: u64,
    pub removed: u64,
    /// Entries of the source the last listing could not read (left out, like files removed).
    #[serde(default)]
    pub unreadable: u64,
    pub listed: u64,
    /// Why nothing was looked at, when the project is full.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshView {
    pub last_refresh_at: Option<String>,
    pub last_refresh_trigger: Option<String>,
    pub items_added: u64,
    pub items_dropped: u64,
    pub files_removed: u64,
    /// Entries of the source the last listing left out because they could not be read:
    /// dangling links, FIFOs, sockets, devices, folders it may not open.
    pub files_unreadable: u64,
    pub next_scheduled_at: Option<String>,
    pub note: Option<String>,
}

/// What merging the listing with the manifest found.
#[derive(Debug, Default)]
struct Merge {
    new_keys: Vec<String>,
    removed: u64,
    unreadable: u64,
    listed: u64,
}

fn status_key(project_id: &str) -> String {
    format!("manifests/{project_id}/refresh-status.json")
}

/// The next daily run after `now`.
pub fn next_daily_run(now: i64) -> i64 {
    let day = 86_400_000;
    let at = now.div_euclid(day) * day + DAILY_REFRESH_HOUR_UTC * 3_600_000;
    if at > now { at } else { at + day }
}

impl Service {
    /// `POST /projects/{id}/refresh`: queues a refresh now; on a failed project, retries it
    /// (see [`Service::retry_project`]).
    #[instrument(skip(self))]
    pub async fn request_refresh(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<RefreshView, ProjectError> {
        if !actor.is_admin() {
            return Err(ProjectError::Forbidden);
        }
        let project = self.load_project(actor, project_id).await?;
        if project.status == ProjectStatus::Failed {
            self.retry_project(actor, project_id).await?;
            let project = self.load_project(actor, project_id).await?;
            return self.refresh_view(&project).await;
        }
        if !matches!(
            project.status,
            ProjectStatus::Running | ProjectStatus::Paused
        ) {
            return Err(ProjectError::WrongStatus {
                status: project.status.as_str(),
                action: "refresh",
                needed: "running, paused or failed",
            });
        }
        self.enqueue_refresh(
            project_id,
            RefreshTrigger::OnDemand,
            std::time::Duration::ZERO,
        )
        .await
        .map_err(|e| ProjectError::Unavailable(Box::new(e)))?;
        self.refresh_view(&project).await
    }

    pub(crate) async fn enqueue_refresh(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        delay: std::time::Duration,
    ) -> Result<(), crate::ports::QueueError> {
        let job = Job::Refresh {
            project_id: project_id.to_owned(),
            trigger: trigger.as_str().to_owned(),
            request_id: new_id("r"),
        };
        job.send(self.queue.as_ref(), &self.config.jobs_queue, delay)
            .await
            .map(|_| ())
    }

    /// What the project page and dashboard show about refreshes.
    pub(crate) async fn refresh_view(
        &self,
        project: &ProjectRecord,
    ) -> Result<RefreshView, ProjectError> {
        let status = self.read_refresh_status(&project.id).await;
        let manifest = self.read_manifest(&project.id).await?;
        Ok(self.refresh_view_with(project, status, manifest.as_ref()))
    }

    /// `status` must be read before `manifest`: a refresh commits the manifest, then writes
    /// its status, so a view never pairs a new status with the counts from before it.
    pub(crate) fn refresh_view_with(
        &self,
        project: &ProjectRecord,
        status: Option<RefreshStatus>,
        manifest: Option<&ManifestRecord>,
    ) -> RefreshView {
        let (at, trigger, added, dropped, removed, note) = match (&status, manifest) {
            (Some(status), _) => (
                Some(status.at),
                Some(status.trigger.as_str().to_owned()),
                status.added,
                status.dropped,
                status.removed,
                status.note.clone(),
            ),
            (None, Some(m)) => (
                m.last_refresh_at,
                m.last_refresh_trigger
                    .map(|trigger| trigger.as_str().to_owned()),
                m.last_refresh_added,
                m.dropped,
                m.removed,
                None,
            ),
            (None, None) => (None, None, 0, 0, 0, None),
        };
        let unreadable = status.as_ref().map_or(0, |status| status.unreadable);
        RefreshView {
            last_refresh_at: at.map(rfc3339),
            last_refresh_trigger: trigger,
            items_added: added,
            items_dropped: dropped,
            files_removed: removed,
            files_unreadable: unreadable,
            next_scheduled_at: project
                .incremental_refresh
                .then(|| rfc3339(next_daily_run(self.clock.now()))),
            note,
        }
    }

    pub(crate) async fn read_refresh_status(&self, project_id: &str) -> Option<RefreshStatus> {
        let body = self
            .blobs
            .get(&self.config.system_bucket, &status_key(project_id), None)
            .await
            .ok()?;
        serde_json::from_slice(&body).ok()
    }

    pub(crate) async fn write_refresh_status(
        &self,
        project_id: &str,
        status: &RefreshStatus,
    ) -> Result<(), JobError> {
        let body = to_json_bytes("refresh status", status)?;
        Ok(self
            .blobs
            .put(
                &self.config.system_bucket,
                &status_key(project_id),
                body,
                "application/json",
            )
            .await?)
    }

    /// Every project with incremental refresh on gets a refresh job (the daily schedule).
    #[instrument(skip(self), err)]
    pub(crate) async fn refresh_all(&self, trigger: RefreshTrigger) -> Result<(), JobError> {
        for project in self.list_projects(&Actor::admin("system")).await? {
            if project.incremental_refresh && matches!(project.status, "running" | "paused") {
                self.enqueue_refresh(&project.id, trigger, std::time::Duration::ZERO)
                    .await
                    .map_err(|e| JobError::Unavailable(Box::new(e)))?;
            }
        }
        Ok(())
    }

    /// Objects were created in buckets: each project with incremental refresh whose source
    /// admits some of them gets a job adding exactly those keys (looked up in its manifest, so
    /// a redelivered event or an object already listed is not added twice).
    #[instrument(skip(self, objects), fields(objects = objects.len()), err)]
    pub async fn objects_created(&self, objects: &[(String, String)]) -> Result<(), JobError> {
        if objects.is_empty() {
            return Ok(());
        }
        for project in self.list_projects(&Actor::admin("system")).await? {
            if !project.incremental_refresh || !matches!(project.status, "running" | "paused") {
                continue;
            }
            let Ok(source) = Source::parse(&project.source, self.config.allow_file_sources) else {
                continue;
            };
            let mut keys: Vec<String> = objects
                .iter()
                .filter(|(bucket, key)| {
                    bucket == source.bucket()
                        && source.admits(key)
                        && key.len() <= MAX_EVENT_KEY_BYTES
                })
                .map(|(_, key)| key.clone())
                .collect();
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                continue;
            }
            let now = self.clock.now();
            for chunk in keys.chunks(MAX_TRANSACTION_WRITES) {
                let writes = chunk
                    .iter()
                    .map(|key| Write::Put {
                        item: Item::new(
                            keys::event_key(&project.id, key),
                            serde_json::json!({ "entity": "event_key", "key": key, "at": now, "ttl": expiry_seconds(now) })
                                .as_object()
                                .cloned()
                                .unwrap_or_default(),
                        ),
                        condition: None,
                    })
                    .collect();
                self.table.transact(writes).await?;
            }
            self.schedule_event_keys(&project.id, EVENT_WINDOW).await?;
        }
        Ok(())
    }

    /// The event keys the source admits that the manifest does not hold yet.
    async fn new_event_keys(
        &self,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
        keys: &[String],
    ) -> Result<Merge, JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let mut candidates: Vec<String> = keys
            .iter()
            .filter(|key| source.admits(key))
            .cloned()
            .collect();
        candidates.sort();
        candidates.dedup();
        let mut new_keys = Vec::with_capacity(candidates.len());
        for key in candidates {
            if !self.manifest_holds(&project.id, manifest, &key).await? {
                new_keys.push(key);
            }
        }
        Ok(Merge {
            new_keys,
            removed: manifest.removed,
            unreadable: 0,
            listed: 0,
        })
    }

    /// Binary search of each batch (its keys are sorted by item id); chunks read on the way
    /// stay cached, so a few lookups cost a few small reads, whatever the project's size.
    async fn manifest_holds(
        &self,
        project_id: &str,
        manifest: &ManifestRecord,
        key: &str,
    ) -> Result<bool, JobError> {
        for batch in &manifest.batches {
            let (mut low, mut high) = (batch.start, batch.start + batch.len);
            while low < high {
                let middle = low + (high - low) / 2;
                let found = self.item_key(project_id, manifest, middle).await?;
                match found.as_str().cmp(key) {
                    std::cmp::Ordering::Equal => return Ok(true),
                    std::cmp::Ordering::Less => low = middle + 1,
                    std::cmp::Ordering::Greater => high = middle,
                }
            }
        }
        Ok(false)
    }

    /// Lists the source and merges it with the manifest's keys.
    async fn merge_with_source(
        &self,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
    ) -> Result<Merge, JobError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|e| JobError::Unavailable(Box::new(e)))?;
        let listing = self.list_source(source, u64::MAX).await?;
        let mut existing = Vec::with_capacity(manifest.total as usize);
        for batch in &manifest.batches {
            existing.extend(
                self.manifests
                    .batch_keys(
                        self.blobs.as_ref(),
                        &self.config.system_bucket,
                        &project.id,
                        batch,
                    )
                    .await?,
            );
        }
        // Each batch is sorted: a stable sort merges the runs in linear time.
        existing.sort();
        let mut merge = Merge {
            listed: listing.keys.len() as u64,
            unreadable: listing.unreadable,
            ..Merge::default()
        };
        let (mut listed, mut known) = (
            listing.keys.into_iter().peekable(),
            existing.iter().peekable(),
        );
        loop {
            match (listed.peek(), known.peek()) {
                (Some(l), Some(k)) if l.as_str() == k.as_str() => {
                    listed.next();
                    known.next();
                }
                (Some(l), Some(k)) if l.as_str() < k.as_str() => {
                    merge.new_keys.extend(listed.next())
                }
                (Some(_), Some(_)) | (None, Some(_)) => {
                    known.next();
                    merge.removed += 1;
                }
                (Some(_), None) => merge.new_keys.extend(listed.next()),
                (None, None) => break,
            }
        }
        Ok(merge)
    }

    #[instrument(skip(self), err)]
    /// Lists the source and adds what the manifest lacks.
    pub(crate) async fn refresh(
        &self,
        project_id: &str,
        trigger: RefreshTrigger,
        request_id: &str,
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
        let Some(manifest) = self.read_manifest(project_id).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        if manifest.total >= MAX_ITEMS {
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
            self.write_refresh_status(project_id, &status).await?;
            return Ok(());
        }
        let merge = self.merge_with_source(&project, &manifest).await?;
        if merge.new_keys.is_empty() {
            let status = RefreshStatus {
                at: now,
                trigger,
                removed: merge.removed,
                unreadable: merge.unreadable,
                listed: merge.listed,
                ..RefreshStatus::default()
            };
            self.write_refresh_status(project_id, &status).await?;
            tracing::info!(
                project_id,
                removed = merge.removed,
                unreadable = merge.unreadable,
                "refresh found nothing new"
            );
            return Ok(());
        }
        // Something to add: one refresh of a project at a time. A redelivery of this same job
        // (after a crash) holds the same request id and may take its own lease back.
        if !self.take_refresh_lease(project_id, request_id, now).await? {
            tracing::info!(
                project_id,
                "another refresh is running; it covers these files"
            );
            return Ok(());
        }
        let under_lease: Result<_, JobError> = async {
            // Under the lease: if another refresh changed the manifest since the first look, merge again.
            let current = self
                .read_manifest(project_id)
                .await?
                .unwrap_or_else(|| manifest.clone());
            let (manifest, merge) = if current == manifest {
                (manifest, merge)
            } else {
                let merge = self.merge_with_source(&project, &current).await?;
                (current, merge)
            };
            let grown = self
                .append_under_lease(&project, &manifest, &merge, trigger, request_id, now)
                .await?;
            Ok((grown.last_refresh_added as usize, grown.dropped, merge))
        }
        .await;
        if under_lease.is_err() {
            self.give_refresh_lease_back(project_id, request_id).await;
        }
        let (take, dropped, merge) = under_lease?;
        let status = RefreshStatus {
            at: now,
            trigger,
            added: take as u64,
            dropped,
            removed: merge.removed,
            unreadable: merge.unreadable,
            listed: merge.listed,
            note: None,
        };
        self.write_refresh_status(project_id, &status).await?;
        tracing::info!(
            project_id,
            added = take,
            dropped,
            removed = merge.removed,
            "refresh added items"
        );
        Ok(())
    }
    /// Appends `merge`'s new keys (as many as the cap allows) to the manifest as one batch:
    /// writes its chunks, then publishes it and gives the refresh lease back in one commit.
    /// Returns the published manifest.
    async fn append_under_lease(
        &self,
        project: &ProjectRecord,
        manifest: &ManifestRecord,
        merge: &Merge,
        trigger: RefreshTrigger,
        request_id: &str,
        now: i64,
    ) -> Result<ManifestRecord, JobError> {
        let project_id = project.id.as_str();
        let room = MAX_ITEMS.saturating_sub(manifest.total) as usize;
        let take = merge.new_keys.len().min(room);
        let added = &merge.new_keys[..take];
        let mut next = manifest.clone();
        if take > 0 {
            // A tag of its own for every grow: a retry of a job whose earlier grow was
            // committed (its status write failed, say) must not rewrite that batch's chunks.
            let batch = Batch {
                start: manifest.total,
                len: take as u64,
                tag: Some(format!("{request_id}-{}", new_id("b"))),
            };
            for (chunk, keys) in added.chunks(CHUNK_KEYS as usize).enumerate() {
                self.blobs
                    .put(
                        &self.config.system_bucket,
                        &batch.chunk_key(project_id, chunk as u64),
                        encode_chunk(keys),
                        "text/plain",
                    )
                    .await?;
            }
            next.batches.push(batch);
            next.total += take as u64;
        }
        next.dropped = (merge.new_keys.len() - take) as u64;
        next.removed = merge.removed;
        next.last_refresh_at = Some(now);
        next.last_refresh_trigger = Some(trigger);
        next.last_refresh_added = take as u64;
        self.commit_refresh(project_id, project.round, manifest, &next, request_id)
            .await?;
        Ok(next)
    }

    /// Takes the project's refresh lease; false when another refresh holds it. A redelivery
    /// of the same job (after a crash) holds the same request id and takes its own lease back.
    async fn take_refresh_lease(
        &self,
        project_id: &str,
        request_id: &str,
        now: i64,
    ) -> Result<bool, JobError> {
        let lease = Item::new(
            keys::refresh_lease(project_id),
            serde_json::json!({ "entity": "refresh_lease", "holder": request_id, "expires_at": now + LEASE_MILLIS, "ttl": expiry_seconds(now + LEASE_MILLIS) })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let acquired = self
            .table
            .put(
                lease,
                Some(Condition::Or(vec![
                    Condition::NotExists,
                    Condition::less_than("expires_at", now),
                    Condition::equals("holder", request_id),
                ])),
            )
            .await;
        match acquired {
            Ok(()) => Ok(true),
            Err(TableError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Gives the lease up at once (after a failure, or when there was nothing to add), so other
    /// refreshes need not wait for it to expire.
    async fn give_refresh_lease_back(&self, project_id: &str, request_id: &str) {
        let released = self
            .table
            .delete(
                &keys::refresh_lease(project_id),
                Some(Condition::equals("holder", request_id)),
            )
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, project_id, "could not give the refresh lease back");
        }
    }

    /// Adds the keys that object-created events recorded for the project: looks each up in the
    /// manifest and appends, as one batch, those it lacks, without listing the source. Runs
    /// under the refresh lease; while a listing refresh holds it, tries again a little later.
    #[instrument(skip(self), err)]
    pub(crate) async fn add_event_keys(
        &self,
        project_id: &str,
        request_id: &str,
    ) -> Result<(), JobError> {
        // Events from now on schedule the next job; the rows read below are this one's.
        self.table
            .delete(&keys::events_scheduled(project_id), None)
            .await?;
        let Some(item) = self.table.get(&keys::project(project_id)).await? else {
            return Ok(());
        };
        let project: ProjectRecord = from_item(&item).map_err(JobError::Unavailable)?;
        let query = Query::new(
            keys::project_pk(project_id),
            SkRange::BeginsWith(keys::EVENT_SK_PREFIX.to_owned()),
            EVENT_KEYS_PER_JOB,
        );
        let page = self.table.query(query).await?;
        let rows: Vec<Key> = page.items.iter().map(|item| item.key.clone()).collect();
        let keys: Vec<String> = page
            .items
            .iter()
            .filter_map(|item| {
                item.attrs
                    .get("key")
                    .and_then(|k| k.as_str())
                    .map(str::to_owned)
            })
            .collect();
        if page.last_evaluated.is_some() {
            // More than one job's worth: the next job takes the rest.
            self.schedule_event_keys(project_id, EVENT_WINDOW).await?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let manifest = match self.read_manifest(project_id).await? {
            Some(manifest)
                if matches!(
                    project.status,
                    ProjectStatus::Running | ProjectStatus::Paused
                ) && manifest.total < MAX_ITEMS =>
            {
                manifest
            }
            // Deleted, not ingested yet (the ingest lists these files), or full: nothing to add.
            _ => {
                self.forget_event_keys(&rows).await;
                return Ok(());
            }
        };
        let now = self.clock.now();
        if !self.take_refresh_lease(project_id, request_id, now).await? {
            tracing::info!(
                project_id,
                "a refresh is running; adding the new objects a little later"
            );
            self.schedule_event_keys(project_id, LEASE_BUSY_RETRY)
                .await?;
            return Ok(());
        }
        let under_lease: Result<_, JobError> = async {
            let merge = self.new_event_keys(&project, &manifest, &keys).await?;
            if merge.new_keys.is_empty() {
                return Ok(None);
            }
            let grown = self
                .append_under_lease(
                    &project,
                    &manifest,
                    &merge,
                    RefreshTrigger::ObjectCreated,
                    request_id,
                    now,
                )
                .await?;
            Ok(Some(grown))
        }
        .await;
        match under_lease {
            Err(error) => {
                self.give_refresh_lease_back(project_id, request_id).await;
                Err(error)
            }
            Ok(None) => {
                self.give_refresh_lease_back(project_id, request_id).await;
                self.forget_event_keys(&rows).await;
                tracing::info!(project_id, "the new objects are in the project already");
                Ok(())
            }
            Ok(Some(grown)) => {
                // Events list nothing: what the last listing found unreadable still stands.
                let unreadable = self
                    .read_refresh_status(project_id)
                    .await
                    .map_or(0, |status| status.unreadable);
                let status = RefreshStatus {
                    at: now,
                    trigger: RefreshTrigger::ObjectCreated,
                    added: grown.last_refresh_added,
                    dropped: grown.dropped,
                    removed: grown.removed,
                    unreadable,
                    listed: 0,
                    note: None,
                };
                self.write_refresh_status(project_id, &status).await?;
                self.forget_event_keys(&rows).await;
                tracing::info!(
                    project_id,
                    added = grown.last_refresh_added,
                    "objects from events added"
                );
                Ok(())
            }
        }
    }

    /// Queues an event-keys job after `delay`, unless one is queued already.
    async fn schedule_event_keys(
        &self,
        project_id: &str,
        delay: std::time::Duration,
    ) -> Result<(), JobError> {
        let now = self.clock.now();
        let marker = Item::new(
            keys::events_scheduled(project_id),
            serde_json::json!({ "entity": "events_scheduled", "at": now, "ttl": expiry_seconds(now) })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        // A marker older than any job's delay belongs to a job that died: replace it.
        let stale_before = now - (LEASE_BUSY_RETRY + EVENT_WINDOW).as_millis() as i64 * 4;
        let claimed = self
            .table
            .put(
                marker,
                Some(Condition::Or(vec![
                    Condition::NotExists,
                    Condition::less_than("at", stale_before),
                ])),
            )
            .await;
        match claimed {
            Ok(()) => {
                let job = Job::AddEventKeys {
                    project_id: project_id.to_owned(),
                    request_id: new_id("r"),
                };
                job.send(self.queue.as_ref(), &self.config.jobs_queue, delay)
                    .await
                    .map(|_| ())
                    .map_err(|e| JobError::Unavailable(Box::new(e)))
            }
            Err(TableError::ConditionFailed { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes handled event rows (best effort: a row left behind is looked up again and found).
    async fn forget_event_keys(&self, rows: &[Key]) {
        for chunk in rows.chunks(MAX_TRANSACTION_WRITES) {
            let writes = chunk
                .iter()
                .map(|key| Write::Delete {
                    key: key.clone(),
                    condition: None,
                })
                .collect();
            if let Err(error) = self.table.transact(writes).await {
                tracing::warn!(%error, "could not delete handled event keys");
            }
        }
    }

    /// Publishes the grown manifest and the round's larger total, and deletes the refresh lease
    /// held by `lease_holder`, in one transaction. Checkouts
    /// that ran past the old end reserved positions that did not exist yet; the cursor goes
    /// back to the old end in the same write, so the new items at those positions are handed
    /// out instead of skipped. The cursor is compared as read, so a checkout moving it in
    /// between makes this write retry rather than lose its reservation.
    async fn commit_refresh(
        &self,
        project_id: &str,
        round: u32,
        manifest: &ManifestRecord,
        grown: &ManifestRecord,
        lease_holder: &str,
    ) -> Result<(), JobError> {
        let added = grown.total.saturating_sub(manifest.total) as i64;
        let cursor_key = keys::cursor(project_id, round);
        for _ in 0..CURSOR_ATTEMPTS {
            let Some(cursor) = self.table.get(&cursor_key).await? else {
                return Err(JobError::Unavailable(
                    "the labeling round has no cursor yet; retrying".into(),
                ));
            };
            let next = number(&cursor.attrs, "next");
            let total = number(&cursor.attrs, "total");
            let mut update = Update::default().set("total", total + added);
            // A cursor past the end is wound back, so this write must see it exactly as read;
            // otherwise checkouts may move it meanwhile, as long as none runs past the end
            // (that one's give-back would then be lost to the new total).
            let cursor_as_read = if next > total {
                update = update.set("next", total);
                Condition::equals("next", next)
            } else {
                Condition::less_than("next", total + 1)
            };
            let writes = vec![
                Write::Put {
                    item: to_item(keys::manifest(project_id), "manifest", grown)?,
                    condition: Some(Condition::equals("total", manifest.total)),
                },
                Write::Update {
                    key: cursor_key.clone(),
                    update,
                    condition: Some(Condition::And(vec![
                        cursor_as_read,
                        Condition::equals("total", total),
                    ])),
                },
                Write::Check {
                    key: keys::project(project_id),
                    condition: Condition::equals("round", round),
                },
                Write::Delete {
                    key: keys::refresh_lease(project_id),
                    condition: Some(Condition::equals("holder", lease_holder)),
                },
            ];
            match self.table.transact(writes).await {
                Ok(()) => return Ok(()),
                Err(TableError::ConditionFailed { index: 1 } | TableError::TransactionConflict) => {
                    continue;
                }
                Err(TableError::ConditionFailed { index }) => {
                    return Err(JobError::Unavailable(
                        format!("the project changed during the refresh (write {index}); retrying")
                            .into(),
                    ));
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(JobError::Unavailable(
            "labelers kept moving the cursor during the refresh; retrying".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_rows_expire_a_day_late_in_epoch_seconds() {
        let midnight = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(expiry_seconds(midnight), 1_767_225_600 + 86_400);
    }

    #[test]
    fn the_daily_run_is_the_next_two_oclock() {
        let midnight = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(next_daily_run(midnight), midnight + 2 * 3_600_000);
        assert_eq!(
            next_daily_run(midnight + 3 * 3_600_000),
            midnight + 26 * 3_600_000
        );
    }
}
