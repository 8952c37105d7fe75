//! Refresh: object-created events, whose keys are looked up in the manifest and added as one
//! batch without listing the source.

use tracing::instrument;

use super::Refreshes;
use crate::access::Actor;
use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::jobs::Job;
use crate::keys::{self, attr};
use crate::manifest::ManifestRecord;
use crate::ports::table::MAX_TRANSACTION_WRITES;
use crate::ports::{Condition, Key, Query, SkRange, TableError, Write};
use crate::service::{UnserializableRecord, from_item, to_item};
use crate::usecases::ingest::JobError;

use super::merge::Merge;
use super::{
    EVENT_KEYS_PER_JOB, EVENT_WINDOW, LEASE_BUSY_RETRY, MAX_EVENT_KEY_BYTES, RefreshStatus,
    expiry_seconds,
};

impl Refreshes<'_> {
    /// Objects were created in buckets: each project with incremental refresh whose source
    /// admits some of them gets a job adding exactly those keys (looked up in its manifest, so
    /// a redelivered event or an object already listed is not added twice).
    #[instrument(skip(self, objects), fields(objects = objects.len()), err)]
    pub async fn objects_created(&self, objects: &[(String, String)]) -> Result<(), JobError> {
        if objects.is_empty() {
            return Ok(());
        }
        self.datasets().objects_created(objects).await?;
        for project in self
            .projects()
            .list_projects(&Actor::admin("system"))
            .await?
        {
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
                    .map(|key| {
                        let row = keys::row::EventKey {
                            key: key.clone(),
                            at: now,
                            ttl: expiry_seconds(now),
                        };
                        Ok(Write::Put {
                            item: to_item(
                                keys::event_key(&project.id, key),
                                keys::entity::EVENT_KEY,
                                &row,
                            )?,
                            condition: None,
                        })
                    })
                    .collect::<Result<Vec<_>, UnserializableRecord>>()?;
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
                let found = self
                    .item_keys()
                    .item_key(project_id, manifest, middle)
                    .await?;
                match found.as_str().cmp(key) {
                    std::cmp::Ordering::Equal => return Ok(true),
                    std::cmp::Ordering::Less => low = middle + 1,
                    std::cmp::Ordering::Greater => high = middle,
                }
            }
        }
        Ok(false)
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
                    .get(attr::KEY)
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
        let manifest = match self.reader().read_manifest(project_id).await? {
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
                    .statuses()
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
                self.statuses()
                    .write_refresh_status(project_id, &status)
                    .await?;
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
        let marker = to_item(
            keys::events_scheduled(project_id),
            keys::entity::EVENTS_SCHEDULED,
            &keys::row::EventsScheduled {
                at: now,
                ttl: expiry_seconds(now),
            },
        )?;
        // A marker older than any job's delay belongs to a job that died: replace it.
        let stale_before = now - (LEASE_BUSY_RETRY + EVENT_WINDOW).as_millis() as i64 * 4;
        let claimed = self
            .table
            .put(
                marker,
                Some(Condition::Or(vec![
                    Condition::NotExists,
                    Condition::less_than(attr::AT, stale_before),
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
}
