//! Refresh: the refresh lease, one refresh a project at a time, under which a new batch is
//! appended to the manifest.

use super::Refreshes;
use crate::domain::project::{MAX_ITEMS, ProjectRecord};
use crate::domain::refresh::RefreshTrigger;
use crate::ids::new_id;
use crate::keys::{self, attr};
use crate::manifest::{Batch, CHUNK_KEYS, ManifestRecord, encode_chunk};
use crate::ports::{Condition, TableError};
use crate::service::to_item;
use crate::usecases::ingest::JobError;

use super::merge::Merge;
use super::{LEASE_MILLIS, expiry_seconds};

impl Refreshes<'_> {
    /// Appends `merge`'s new keys (as many as the cap allows) to the manifest as one batch:
    /// writes its chunks, then publishes it and gives the refresh lease back in one commit.
    /// Returns the published manifest.
    pub(super) async fn append_under_lease(
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
        self.commit_refresh(project_id, project.round, manifest, &next, request_id, None)
            .await?;
        Ok(next)
    }

    /// Takes the project's refresh lease; false when another refresh holds it. A redelivery
    /// of the same job (after a crash) holds the same request id and takes its own lease back.
    pub(super) async fn take_refresh_lease(
        &self,
        project_id: &str,
        request_id: &str,
        now: i64,
    ) -> Result<bool, JobError> {
        let lease = to_item(
            keys::refresh_lease(project_id),
            keys::entity::REFRESH_LEASE,
            &keys::row::RefreshLease {
                holder: request_id,
                expires_at: now + LEASE_MILLIS,
                ttl: expiry_seconds(now + LEASE_MILLIS),
            },
        )?;
        let acquired = self
            .table
            .put(
                lease,
                Some(Condition::Or(vec![
                    Condition::NotExists,
                    Condition::less_than(attr::EXPIRES_AT, now),
                    Condition::equals(attr::HOLDER, request_id),
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
    pub(super) async fn give_refresh_lease_back(&self, project_id: &str, request_id: &str) {
        let released = self
            .table
            .delete(
                &keys::refresh_lease(project_id),
                Some(Condition::equals(attr::HOLDER, request_id)),
            )
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, project_id, "could not give the refresh lease back");
        }
    }
}
