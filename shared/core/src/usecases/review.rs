//! Review: list items by state with cursor pagination, and reject a labeled item (its labels
//! are removed and it goes back to the front of the queue).

use serde::Serialize;
use serde_json::Value;
use tracing::instrument;

use crate::access::Actor;
use crate::domain::errors::{DomainError, ErrorKind, FieldError, ValidationErrors};
use crate::domain::labeling::{
    BoxOutcome, ItemRecord, ItemState, TaskItem, TaskKind, WorkEntry, judge_boxes,
};
use crate::domain::presented::{LabelView, label_views};
use crate::domain::project::ProjectRecord;
use crate::domain::source::Source;
use crate::ids::new_id;
use crate::keys::{self, attr, counter};
use crate::ports::{
    BlobError, BoxError, Condition, Item, Query, SkRange, TableError, Update, Write,
};
use crate::service::{from_item, to_attrs, to_json};
use crate::time::rfc3339;
use crate::usecases::projects::ProjectError;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;
/// Item records one listing request reads at most (in queries of [`RECORDS_A_QUERY`]): a
/// rare state among 500,000 items is found over several requests, each well inside API
/// Gateway's 30 seconds, rather than by one request that scans the whole project.
pub const MAX_RECORDS_SCANNED: usize = 2_000;
const RECORDS_A_QUERY: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no project {0}")]
    NotFound(String),
    #[error("no item {0} in this project")]
    ItemNotFound(u64),
    #[error("only admins may do this")]
    Forbidden,
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("item {0} is not labeled in the current round, so there is nothing to reject")]
    NotLabeled(u64),
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
}

impl DomainError for ReviewError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReviewError::NotFound(_) | ReviewError::ItemNotFound(_) => ErrorKind::NotFound,
            ReviewError::Forbidden => ErrorKind::Forbidden,
            ReviewError::Invalid(_) => ErrorKind::Invalid,
            ReviewError::NotLabeled(_) => ErrorKind::Conflict,
            ReviewError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn field_errors(&self) -> &[FieldError] {
        match self {
            ReviewError::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
    fn problem_type(&self) -> Option<&'static str> {
        match self {
            ReviewError::NotLabeled(_) => Some("item-not-labeled"),
            _ => None,
        }
    }
}

impl From<crate::service::UnserializableRecord> for ReviewError {
    fn from(error: crate::service::UnserializableRecord) -> Self {
        ReviewError::Unavailable(Box::new(error))
    }
}

impl From<TableError> for ReviewError {
    fn from(error: TableError) -> Self {
        ReviewError::Unavailable(Box::new(error))
    }
}

impl From<BlobError> for ReviewError {
    fn from(error: BlobError) -> Self {
        ReviewError::Unavailable(Box::new(error))
    }
}

impl From<ProjectError> for ReviewError {
    fn from(error: ProjectError) -> Self {
        match error {
            ProjectError::NotFound(id) => ReviewError::NotFound(id),
            ProjectError::Forbidden => ReviewError::Forbidden,
            other => ReviewError::Unavailable(Box::new(other)),
        }
    }
}

/// Which items to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFilter {
    /// Not labeled, skipped, leased, queued or missing in the current round.
    Unlabeled,
    State(ItemState),
}

impl ItemFilter {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "unlabeled" => Some(Self::Unlabeled),
            other => ItemState::parse(other).map(Self::State),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub item_id: u64,
    pub key: String,
    pub uri: String,
    /// A signed URL of the image, valid as long as a checkout's.
    pub image_url: String,
    pub state: &'static str,
    pub labels: Vec<LabelView>,
    pub labeled_by: Option<String>,
    pub labeled_at: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemPage {
    pub items: Vec<ItemView>,
    /// Pass as `cursor` for the next page; absent on the last page. A page may hold fewer
    /// items than asked for, even none, and still have a next one: each request reads at most
    /// [`MAX_RECORDS_SCANNED`] item records.
    pub next_cursor: Option<String>,
}

fn require_admin(actor: &Actor) -> Result<(), ReviewError> {
    Ok(crate::usecases::projects::require_admin(actor)?)
}

/// Reviewing submitted items. Holds only the ports this area touches.
pub struct Review<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) manifests: &'a crate::manifest::ManifestCache,
    pub(crate) projects: &'a crate::service::ProjectCache,
}

impl Review<'_> {
    #[instrument(skip(self))]
    pub async fn list_items(
        &self,
        actor: &Actor,
        project_id: &str,
        state: Option<&str>,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ItemPage, ReviewError> {
        require_admin(actor)?;
        let project = self.reader().load_project(actor, project_id).await?;
        let filter = match state {
            None => ItemFilter::State(ItemState::Labeled),
            Some(value) => ItemFilter::parse(value).ok_or_else(|| {
                ReviewError::Invalid(ValidationErrors::single(
                    "/state",
                    "state is labeled, unlabeled, in_task, skipped, queued or missing",
                ))
            })?,
        };
        let after: u64 = match cursor {
            None | Some("") => 0,
            Some(text) => text.parse().map_err(|_| {
                ReviewError::Invalid(ValidationErrors::single(
                    "/cursor",
                    "not a cursor from this API",
                ))
            })?,
        };
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| ReviewError::Unavailable(Box::new(error)))?;
        let mut page = match filter {
            ItemFilter::State(state) => {
                self.list_by_state(&project, source, state, after, limit)
                    .await
            }
            ItemFilter::Unlabeled => self.list_unlabeled(&project, source, after, limit).await,
        }?;
        // Signed URLs of the images, so a reviewer sees them (the web app's data page): signing
        // is a local computation, no request per item.
        for item in &mut page.items {
            item.image_url = self
                .blobs
                .presign_get(source.bucket(), &item.key, self.config.image_url_ttl)
                .await
                .map_err(|error| ReviewError::Unavailable(Box::new(error)))?;
        }
        Ok(page)
    }

    /// Item records in id order from `after`, as they are stored.
    async fn records_from(
        &self,
        project_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<ItemRecord>, bool), ReviewError> {
        let mut query = Query::new(
            keys::project_pk(project_id),
            SkRange::Between(keys::item_sk(after), keys::item_sk(999_999_999)),
            limit,
        );
        query.start_after = None;
        let page = self.table.query(query).await?;
        let records = page
            .items
            .iter()
            .map(|item| from_item::<ItemRecord>(item).map_err(ReviewError::Unavailable))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, page.last_evaluated.is_some()))
    }

    async fn list_by_state(
        &self,
        project: &ProjectRecord,
        source: &Source,
        state: ItemState,
        after: u64,
        limit: usize,
    ) -> Result<ItemPage, ReviewError> {
        let mut views = Vec::new();
        let mut from = after;
        let mut scanned = 0;
        loop {
            let (records, more) = self
                .records_from(&project.id, from, RECORDS_A_QUERY)
                .await?;
            scanned += records.len();
            for record in &records {
                from = record.item + 1;
                if record.round == project.round && record.state == state {
                    views.push(self.view(project, source, record));
                    if views.len() == limit {
                        return Ok(ItemPage {
                            items: views,
                            next_cursor: Some(from.to_string()),
                        });
                    }
                }
            }
            if !more {
                return Ok(ItemPage {
                    items: views,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_RECORDS_SCANNED {
                return Ok(ItemPage {
                    items: views,
                    next_cursor: Some(from.to_string()),
                });
            }
        }
    }

    async fn list_unlabeled(
        &self,
        project: &ProjectRecord,
        source: &Source,
        after: u64,
        limit: usize,
    ) -> Result<ItemPage, ReviewError> {
        let manifest = self
            .reader()
            .read_manifest(&project.id)
            .await?
            .unwrap_or_default();
        let total = manifest.total;
        let mut views = Vec::new();
        let mut next = after;
        let mut scanned = 0;
        while next < total && views.len() < limit && scanned < MAX_RECORDS_SCANNED {
            let (records, _) = self
                .records_from(&project.id, next, RECORDS_A_QUERY)
                .await?;
            scanned += records.len().max(1);
            let window_end = records.last().map_or(total, |r| {
                if records.len() == RECORDS_A_QUERY {
                    r.item + 1
                } else {
                    total
                }
            });
            let busy: std::collections::HashSet<u64> = records
                .iter()
                .filter(|r| r.round == project.round)
                .map(|r| r.item)
                .collect();
            let mut earlier: std::collections::HashMap<u64, &ItemRecord> = records
                .iter()
                .filter(|r| r.round != project.round)
                .map(|r| (r.item, r))
                .collect();
            while next < window_end && views.len() < limit {
                if !busy.contains(&next) {
                    let key = self
                        .item_keys()
                        .item_key(&project.id, &manifest, next)
                        .await?;
                    let (width, height) = earlier
                        .remove(&next)
                        .map_or((None, None), |r| (r.width, r.height));
                    views.push(ItemView {
                        item_id: next,
                        uri: source.object_uri(&key),
                        image_url: String::new(),
                        key,
                        state: "unlabeled",
                        labels: Vec::new(),
                        labeled_by: None,
                        labeled_at: None,
                        width,
                        height,
                    });
                }
                next += 1;
            }
        }
        Ok(ItemPage {
            items: views,
            next_cursor: (next < total).then(|| next.to_string()),
        })
    }

    fn view(&self, project: &ProjectRecord, source: &Source, record: &ItemRecord) -> ItemView {
        ItemView {
            item_id: record.item,
            key: record.key.clone(),
            uri: source.object_uri(&record.key),
            image_url: String::new(),
            state: record.state.as_str(),
            labels: label_views(project, &record.labels),
            labeled_by: record.labeled_by.clone(),
            labeled_at: record.labeled_at.map(rfc3339),
            width: record.width,
            height: record.height,
        }
    }

    /// Removes a labeled item's labels and puts it at the front of the queue.
    #[instrument(skip(self))]
    pub async fn reject_item(
        &self,
        actor: &Actor,
        project_id: &str,
        item_id: u64,
    ) -> Result<(), ReviewError> {
        require_admin(actor)?;
        let project = self.reader().load_project(actor, project_id).await?;
        let record: ItemRecord = match self.table.get(&keys::item(project_id, item_id)).await? {
            Some(item) => from_item(&item).map_err(ReviewError::Unavailable)?,
            None => return Err(self.missing_or_unlabeled(project_id, item_id).await?),
        };
        if record.round != project.round || record.state != ItemState::Labeled {
            return Err(ReviewError::NotLabeled(item_id));
        }
        let now = self.clock.now();
        let kind = TaskKind::Requeued;
        let task_id = new_id("t");
        let entry = WorkEntry {
            task_id: task_id.clone(),
            kind,
            items: vec![TaskItem {
                item: item_id,
                key: record.key.clone(),
                width: record.width,
                height: record.height,
                prelabels: Vec::new(),
            }],
            lease_version: 0,
            labeler: None,
        };
        let mut stats = Update::default()
            .add(counter::LABELED, -1)
            .add(counter::QUEUED, 1)
            .add(kind.queue_counter(), 1);
        for label in &record.labels {
            stats = stats.add(&counter::class(label.class_id), -1);
        }
        // The labels the acceptance counted are gone: so is the count, or a rejected
        // "accepted" prelabel would stay on the dashboard as labour saved.
        if let Some(outcome) = record.prelabel {
            let classes: std::collections::BTreeSet<u32> =
                record.prelabels.iter().map(|p| p.class_id).collect();
            for class_id in classes {
                stats = stats.add(&counter::prelabel(outcome.as_str(), class_id), -1);
            }
            // The same judgement the submit counted, from the same prelabels and labels.
            let boxes = judge_boxes(&record.prelabels, &record.labels);
            let mut box_counts: std::collections::BTreeMap<(BoxOutcome, u32), i64> =
                Default::default();
            for counted in boxes.counted(&record.prelabels, &record.labels) {
                *box_counts.entry(counted).or_default() += 1;
            }
            for ((outcome, class_id), count) in box_counts {
                stats = stats.add(&counter::prelabel_box(outcome.as_str(), class_id), -count);
            }
        }
        let writes = vec![
            Write::Update {
                key: keys::item(project_id, item_id),
                update: Update::default()
                    .set(attr::STATE, ItemState::Queued.as_str())
                    .set(attr::LABELS, Value::Array(Vec::new()))
                    .set(attr::REJECTED_AT, now)
                    .set(
                        attr::SUPERSEDED,
                        to_json("label history", &record.history_after_replacing(now))?,
                    )
                    .remove(attr::LABELED_BY)
                    .remove(attr::LABELED_AT)
                    .remove(attr::PRELABEL),
                condition: Some(Condition::And(vec![
                    Condition::equals(attr::ROUND, project.round),
                    Condition::equals(attr::STATE, ItemState::Labeled.as_str()),
                    Condition::equals(attr::LABELED_AT, record.labeled_at.unwrap_or_default()),
                ])),
            },
            Write::Put {
                item: Item::new(
                    keys::waiting_entry(project_id, project.round, kind.priority(), now, &task_id),
                    to_attrs(&entry)?,
                ),
                condition: None,
            },
            // One random shard, as the labeling transactions do (see `labeling::stats`).
            Write::Update {
                key: keys::stats_shard(
                    project_id,
                    project.round,
                    crate::usecases::labeling::stats::random_shard(),
                ),
                update: stats,
                condition: None,
            },
        ];
        match self.table.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TableError::ConditionFailed { .. } | TableError::TransactionConflict) => {
                Err(ReviewError::NotLabeled(item_id))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn missing_or_unlabeled(
        &self,
        project_id: &str,
        item_id: u64,
    ) -> Result<ReviewError, ReviewError> {
        let total = self
            .reader()
            .read_manifest(project_id)
            .await?
            .map_or(0, |m| m.total);
        Ok(if item_id < total {
            ReviewError::NotLabeled(item_id)
        } else {
            ReviewError::ItemNotFound(item_id)
        })
    }
}
