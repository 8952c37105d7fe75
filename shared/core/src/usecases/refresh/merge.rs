//! Refresh: the listing merge, which lists the source in key order and merges it with the
//! manifest's keys in one pass, then commits the new batch with the round's larger total.

use tracing::instrument;

use super::Refreshes;
use crate::domain::project::{MAX_ITEMS, ProjectRecord, ProjectStatus};
use crate::domain::refresh::RefreshTrigger;
use crate::keys::{self, attr};
use crate::manifest::ManifestRecord;
use crate::ports::{Condition, Update, Write};
use crate::service::{from_item, number, to_item};
use crate::transaction::{Rejected, Transaction};
use crate::usecases::ingest::JobError;

use super::{CURSOR_ATTEMPTS, RefreshStatus};

/// What merging the listing with the manifest found.
#[derive(Debug, Default)]
pub(super) struct Merge {
    pub(super) new_keys: Vec<String>,
    pub(super) removed: u64,
    pub(super) unreadable: u64,
    pub(super) listed: u64,
}

impl Refreshes<'_> {
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
        let listing = self.jobs().list_source(source, u64::MAX).await?;
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
        let Some(manifest) = self.reader().read_manifest(project_id).await? else {
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
            self.statuses()
                .write_refresh_status(project_id, &status)
                .await?;
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
            self.statuses()
                .write_refresh_status(project_id, &status)
                .await?;
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
                .reader()
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
        self.statuses()
            .write_refresh_status(project_id, &status)
            .await?;
        tracing::info!(
            project_id,
            added = take,
            dropped,
            removed = merge.removed,
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
}

impl RefreshWrite {
    fn what_changed(self) -> &'static str {
        match self {
            RefreshWrite::Manifest => "another refresh grew the manifest",
            RefreshWrite::Cursor => "labelers moved the cursor",
            RefreshWrite::ProjectRound => "the project started another round",
            RefreshWrite::Lease => "the refresh lease passed to another refresh",
        }
    }
}
