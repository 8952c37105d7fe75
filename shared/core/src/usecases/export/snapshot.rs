//! Export: the snapshot, which items an export holds and with which labels, read a page at a
//! time so memory stays flat.

use super::Exports;
use crate::domain::labeling::ItemRecord;
use crate::domain::project::ProjectRecord;
use crate::keys;
use crate::ports::{Query, SkRange};
use crate::service::from_item_owned;
use crate::usecases::ingest::JobError;

use super::ExportRecord;

/// Which records an export holds: labeled in the export's round by its snapshot time (with
/// the labels they had then, even when rejected or relabeled since), and not before `since`.
#[derive(Clone, Copy)]
pub(super) struct Selection {
    round: u32,
    snapshot_at: i64,
    since: Option<i64>,
}

impl Selection {
    pub(super) fn of(record: &ExportRecord) -> Self {
        Self {
            round: record.round,
            snapshot_at: record.snapshot_at,
            since: record.since,
        }
    }

    /// The item as the snapshot saw it, when the export holds it.
    pub(super) fn snapshot(&self, item: ItemRecord) -> Option<ItemRecord> {
        let item = item.as_labeled_at(self.round, self.snapshot_at)?;
        let labeled_at = item.labeled_at?;
        self.since
            .is_none_or(|since| labeled_at >= since)
            .then_some(item)
    }
}

/// A project's item records in item order, a query page at a time, so memory stays flat.
pub(super) struct ItemPages {
    pk: String,
    start_after: Option<String>,
    done: bool,
}

impl ItemPages {
    pub(super) fn new(project_id: &str) -> Self {
        Self::after(project_id, None)
    }

    /// The records after sort key `after` (from the start when `None`): where a checkpoint left
    /// the walk. Any sort key will do, a record's or not.
    pub(super) fn after(project_id: &str, after: Option<String>) -> Self {
        Self {
            pk: keys::project_pk(project_id),
            start_after: after,
            done: false,
        }
    }

    /// The sort key the next page starts after; `None` once every page was read.
    pub(super) fn position(&self) -> Option<String> {
        if self.done {
            None
        } else {
            self.start_after.clone()
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    pub(super) async fn next(
        &mut self,
        service: &Exports<'_>,
    ) -> Result<Option<Vec<ItemRecord>>, JobError> {
        if self.done {
            return Ok(None);
        }
        let mut query = Query::new(
            self.pk.clone(),
            SkRange::BeginsWith(keys::ITEM_SK_PREFIX.to_owned()),
            5000,
        );
        query.start_after = self.start_after.take();
        let page = service.table.query(query).await?;
        self.start_after = page.last_evaluated;
        self.done = self.start_after.is_none();
        page.items
            .into_iter()
            .map(|item| from_item_owned(item).map_err(JobError::Unavailable))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

impl Exports<'_> {
    /// Streams item records in item order, page by page, calling `visit` on each.
    async fn for_each_record<F>(&self, project_id: &str, mut visit: F) -> Result<(), JobError>
    where
        F: FnMut(ItemRecord) -> Result<(), JobError>,
    {
        let mut pages = ItemPages::new(project_id);
        while let Some(page) = pages.next(self).await? {
            page.into_iter().try_for_each(&mut visit)?;
        }
        Ok(())
    }

    pub(super) async fn count_export_items(
        &self,
        project: &ProjectRecord,
        record: &ExportRecord,
    ) -> Result<u64, JobError> {
        if record.include_unlabeled {
            let total = self
                .reader()
                .read_manifest(&project.id)
                .await?
                .map_or(0, |m| m.total);
            return Ok(record.snapshot_items.map_or(total, |n| n.min(total)));
        }
        if record.since.is_none() {
            // The round's counter, without a pass over the items: labels made after the
            // snapshot make it an upper bound, and the final count replaces it.
            let stats = crate::usecases::labeling::stats::round_stats(
                self.table.as_ref(),
                &project.id,
                record.round,
            )
            .await?;
            return Ok(crate::service::number(&stats, crate::keys::counter::LABELED).max(0) as u64);
        }
        let selection = Selection::of(record);
        let mut count = 0;
        self.for_each_record(&project.id, |item| {
            if selection.snapshot(item).is_some() {
                count += 1;
            }
            Ok(())
        })
        .await?;
        Ok(count)
    }
}
