//! Ingest: list a project's source once, keep image files, cap at 500,000, write the manifest
//! chunks and flip the project to running. Table writes are a constant handful however many
//! images there are.

use tracing::instrument;

use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::domain::source::Source;
use crate::jobs::{Job, MAX_JOB_ATTEMPTS};
use crate::keys::{self, attr};
use crate::manifest::{Batch, CHUNK_KEYS, ManifestRecord, chunk_key, encode_chunk};
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
pub(crate) fn causes(error: &JobError) -> String {
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
}

impl Jobs<'_> {
    /// Runs one job from the jobs queue. Safe to run twice.
    #[instrument(skip(self, body), err)]
    pub async fn run_job(&self, body: &str) -> Result<(), JobError> {
        let job = Job::from_body(body).map_err(|error| JobError::Malformed(error.to_string()))?;
        match job {
            Job::Ingest { project_id } => self.ingest(&project_id).await,
            Job::Refresh {
                project_id,
                trigger,
                request_id,
            } => {
                self.refreshes()
                    .refresh(&project_id, parse_trigger(&trigger)?, &request_id)
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
            Job::Export {
                project_id,
                export_id,
                generation,
            } => {
                self.exports()
                    .run_export(&project_id, &export_id, generation)
                    .await
            }
        }
    }

    /// The ingest job. Each run counts itself on the project (as export runs do); the last
    /// allowed run that fails, or a run after that many that died, moves the project to
    /// `failed` with the reason, so it never stays `initializing` for ever.
    #[instrument(skip(self), err)]
    async fn ingest(&self, project_id: &str) -> Result<(), JobError> {
        let Some(item) = self.table.get(&keys::project(project_id)).await? else {
            tracing::warn!(
                project_id,
                "ingest for a project that does not exist; dropped"
            );
            return Ok(());
        };
        let project: ProjectRecord = from_item(&item).map_err(JobError::Unavailable)?;
        if project.status != ProjectStatus::Initializing {
            return Ok(());
        }
        let attempts = u32::try_from(number(&item.attrs, INGEST_ATTEMPTS)).unwrap_or(0);
        if attempts >= MAX_JOB_ATTEMPTS {
            // The earlier runs died without recording an outcome (a crash or a timeout).
            self.projects().fail_project(
                project_id,
                &format!(
                    "the first listing of the source stopped without finishing {attempts} times; \
                     gave up. Refresh the project once the cause is fixed"
                ),
            )
            .await?;
            return Ok(());
        }
        // Not a new version of the project: an edit meanwhile still succeeds (and its write,
        // of the whole record, starts the count again).
        let counted = self
            .table
            .update(
                &keys::project(project_id),
                Update::default().set(INGEST_ATTEMPTS, attempts + 1),
                Some(Condition::equals(attr::VERSION, project.version)),
            )
            .await;
        match counted {
            Ok(_) => {}
            Err(TableError::ConditionFailed { .. }) => {
                return Err(JobError::Unavailable(
                    "the project changed during ingest".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        let attempts = attempts + 1;
        match self.ingest_source(project_id, &project, attempts > 1).await {
            Err(error @ JobError::Unavailable(_)) if attempts >= MAX_JOB_ATTEMPTS => {
                let reason = format!(
                    "the first listing of the source failed: {} (gave up after {attempts} \
                     tries). Refresh the project once the cause is fixed",
                    causes(&error)
                );
                tracing::error!(project_id, %reason, "ingest failed");
                self.projects().fail_project(project_id, &reason).await?;
                Ok(())
            }
            outcome => outcome,
        }
    }

    /// One run of the ingest job: lists the source, writes the manifest, starts the project.
    async fn ingest_source(
        &self,
        project_id: &str,
        project: &ProjectRecord,
        retried: bool,
    ) -> Result<(), JobError> {
        let source = match project.source.allowed(self.config.allow_file_sources) {
            Ok(source) => source,
            Err(error) => {
                self.projects()
                    .fail_project(project_id, &error.to_string())
                    .await?;
                return Ok(());
            }
        };
        let started = std::time::Instant::now();
        let listing = match self.list_source(source, MAX_ITEMS).await {
            Ok(listing) => listing,
            Err(BlobError::NoSuchBucket(bucket)) => {
                self.projects()
                    .fail_project(project_id, &format!("bucket {bucket} does not exist"))
                    .await?;
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        self.write_chunks(project_id, 0, &listing.keys).await?;
        let total = listing.keys.len() as u64;
        let now = self.clock.now();
        // The refresh block shows what the listing left out. Written before the commit, so a
        // running project always has it, and by a retry anyway (an earlier try may have left
        // one). Otherwise the manifest tells the same, without an S3 request more.
        if listing.unreadable > 0 || retried {
            let status = RefreshStatus {
                at: now,
                trigger: RefreshTrigger::Create,
                added: total,
                dropped: listing.dropped,
                unreadable: listing.unreadable,
                listed: total + listing.dropped,
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
            dropped: listing.dropped,
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
            dropped = listing.dropped,
            unreadable = listing.unreadable,
            list_calls = listing.list_calls,
            elapsed_ms = started.elapsed().as_millis() as u64,
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
            for object in &page.objects {
                if !source.admits(&object.key) {
                    continue;
                }
                if (listing.keys.len() as u64) < cap {
                    listing.keys.push(object.key.clone());
                } else {
                    listing.dropped += 1;
                }
            }
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => start_after = Some(last.key.clone()),
                _ => break,
            }
        }
        Ok(listing)
    }

    /// Writes `keys` as manifest items `first_item..`, chunk by chunk, several at a time.
    async fn write_chunks(
        &self,
        project_id: &str,
        first_item: u64,
        keys: &[String],
    ) -> Result<(), BlobError> {
        let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut item = first_item;
        let mut rest = keys;
        while !rest.is_empty() {
            let room = (CHUNK_KEYS - item % CHUNK_KEYS) as usize;
            let (this, next) = rest.split_at(room.min(rest.len()));
            chunks.push((item / CHUNK_KEYS, encode_chunk(this)));
            item += this.len() as u64;
            rest = next;
        }
        let bucket = self.config.system_bucket.clone();
        for group in chunks.chunks(8) {
            let writes = group.iter().map(|(chunk, body)| {
                let key = chunk_key(project_id, *chunk);
                let bucket = bucket.clone();
                let body = body.clone();
                async move { self.blobs.put(&bucket, &key, body, "text/plain").await }
            });
            futures::future::try_join_all(writes).await?;
        }
        Ok(())
    }

    /// Test and bench hook: ingest synchronously as the job would.
    pub async fn ingest_now(&self, project_id: &str) -> Result<(), JobError> {
        self.ingest(project_id).await
    }
}
