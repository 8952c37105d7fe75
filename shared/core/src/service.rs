//! The service: the ports it runs on, its configuration, and helpers the use cases share.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::project::ProjectRecord;
use crate::keys::{SCHEMA_VERSION, attr};
use crate::manifest::ManifestCache;
use crate::ports::{Attrs, Blobs, BoxError, Clock, Item, Key, Queue, Table};
use crate::usecases::dashboard::Dashboards;
use crate::usecases::datasets::Datasets;
use crate::usecases::export::Exports;
use crate::usecases::ingest::Jobs;
use crate::usecases::labeling::Labeling;
use crate::usecases::ml::Ml;
use crate::usecases::projects::Projects;
use crate::usecases::refresh::{RefreshStatuses, Refreshes};
use crate::usecases::review::Review;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the service keeps its own objects (manifests, exports' temporary parts).
    pub system_bucket: String,
    /// The queue of background jobs (ingest, refresh).
    pub jobs_queue: String,
    /// The queue of export jobs (the same as `jobs_queue` where one worker runs everything).
    pub exports_queue: String,
    /// The queue of ML jobs (featurize, train, infer): the GPU worker's on AWS, the jobs queue
    /// where one process runs everything.
    pub ml_queue: String,
    /// How long a signed image URL handed out at checkout stays valid.
    pub image_url_ttl: Duration,
    /// Whether `file://` sources are allowed (the embedded deployment only).
    pub allow_file_sources: bool,
    /// How long one run of a long job (ingest, refresh, export) works before it saves its
    /// progress and continues in a new message: a Lambda invocation ends at 15 minutes, so the
    /// rest of a job that outgrows one must fit the next. Zero means one step a message (tests).
    pub job_time_budget: Duration,
}

/// The default [`ServiceConfig::job_time_budget`]: 10 of Lambda's 15 minutes, leaving 5 for the
/// step under way when it runs out and for saving the checkpoint.
pub const JOB_TIME_BUDGET: Duration = Duration::from_secs(10 * 60);

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            system_bucket: "labeling-system".to_owned(),
            jobs_queue: "labeling-jobs".to_owned(),
            exports_queue: "labeling-jobs".to_owned(),
            ml_queue: "labeling-jobs".to_owned(),
            image_url_ttl: Duration::from_secs(15 * 60),
            allow_file_sources: true,
            job_time_budget: JOB_TIME_BUDGET,
        }
    }
}

/// How long a warm process may answer labeling requests from its copy of a project.
pub const PROJECT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Project records recently read or written by this process. Writes through this process
/// replace the copy at once; other processes' writes show within [`PROJECT_CACHE_TTL`]. Ages
/// are read off the service's clock (milliseconds), so tests control them.
#[derive(Default)]
pub(crate) struct ProjectCache {
    records: std::sync::Mutex<std::collections::HashMap<String, (i64, ProjectRecord)>>,
}

impl ProjectCache {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (i64, ProjectRecord)>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, project_id: &str, now: i64) -> Option<ProjectRecord> {
        let records = self.lock();
        let (fetched, record) = records.get(project_id)?;
        let age = now.saturating_sub(*fetched);
        (age < PROJECT_CACHE_TTL.as_millis() as i64).then(|| record.clone())
    }

    pub(crate) fn remember(&self, record: &ProjectRecord, now: i64) {
        let mut records = self.lock();
        if records.len() > 4096 {
            records.clear();
        }
        records.insert(record.id.clone(), (now, record.clone()));
    }

    pub(crate) fn forget(&self, project_id: &str) {
        self.lock().remove(project_id);
    }
}

/// Owns the ports, the configuration and the caches; every use case is a method of one of
/// the narrower views it lends out (`service.labeling().checkout(..)`), and each view holds
/// only the ports its area touches.
pub struct Service {
    pub(crate) table: Arc<dyn Table>,
    pub(crate) blobs: Arc<dyn Blobs>,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ServiceConfig,
    pub(crate) manifests: ManifestCache,
    pub(crate) projects: ProjectCache,
    pub(crate) cursors: crate::usecases::labeling::CursorHints,
    pub(crate) embedder: EmbedderSlot,
}

/// The backbone this process embeds images with, or why it has none (ONNX Runtime or the
/// model missing, still being prepared). Set after start: the local server prepares the
/// backbone in the background and serves meanwhile.
/// Projects' own backbones stay open too (a few: each holds a model in memory).
pub struct EmbedderSlot {
    default: std::sync::RwLock<Result<Arc<dyn crate::ports::Embedder>, String>>,
    loader: std::sync::RwLock<Option<Arc<dyn crate::ports::BackboneLoader>>>,
    custom: std::sync::Mutex<Vec<(String, Arc<dyn crate::ports::Embedder>)>>,
    /// The detection backbone (box prelabels), or why there is none.
    features: std::sync::RwLock<Result<Arc<dyn crate::ports::FeatureExtractor>, String>>,
}

/// Projects' own backbones kept open at once; the oldest is closed first.
const OPEN_CUSTOM_BACKBONES: usize = 4;

impl Default for EmbedderSlot {
    fn default() -> Self {
        Self {
            default: std::sync::RwLock::new(Err(
                "this process has no ONNX backbone configured".to_owned()
            )),
            loader: std::sync::RwLock::new(None),
            custom: std::sync::Mutex::new(Vec::new()),
            features: std::sync::RwLock::new(Err(
                "this process has no detection backbone configured".to_owned(),
            )),
        }
    }
}

impl EmbedderSlot {
    pub(crate) fn get(&self) -> Result<Arc<dyn crate::ports::Embedder>, String> {
        match self.default.read() {
            Ok(slot) => slot.clone(),
            Err(_) => Err("the embedder slot was poisoned".to_owned()),
        }
    }

    fn set(&self, embedder: Result<Arc<dyn crate::ports::Embedder>, String>) {
        if let Ok(mut slot) = self.default.write() {
            *slot = embedder;
        }
    }

    pub(crate) fn features(&self) -> Result<Arc<dyn crate::ports::FeatureExtractor>, String> {
        match self.features.read() {
            Ok(slot) => slot.clone(),
            Err(_) => Err("the feature-extractor slot was poisoned".to_owned()),
        }
    }

    pub(crate) fn loader(&self) -> Option<Arc<dyn crate::ports::BackboneLoader>> {
        self.loader.read().ok()?.clone()
    }

    pub(crate) fn custom(&self, id: &str) -> Option<Arc<dyn crate::ports::Embedder>> {
        let open = self.custom.lock().ok()?;
        open.iter()
            .find(|(open_id, _)| open_id == id)
            .map(|(_, embedder)| embedder.clone())
    }

    pub(crate) fn remember_custom(&self, id: &str, embedder: Arc<dyn crate::ports::Embedder>) {
        if let Ok(mut open) = self.custom.lock() {
            open.retain(|(open_id, _)| open_id != id);
            if open.len() >= OPEN_CUSTOM_BACKBONES {
                open.remove(0);
            }
            open.push((id.to_owned(), embedder));
        }
    }
}

impl Service {
    pub fn new(
        table: Arc<dyn Table>,
        blobs: Arc<dyn Blobs>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Self {
        Self {
            table,
            blobs,
            queue,
            clock,
            config,
            manifests: ManifestCache::default(),
            projects: ProjectCache::default(),
            cursors: Default::default(),
            embedder: EmbedderSlot::default(),
        }
    }

    /// Lets this process open projects' own backbones (ONNX models in a bucket).
    pub fn set_backbone_loader(&self, loader: Arc<dyn crate::ports::BackboneLoader>) {
        if let Ok(mut slot) = self.embedder.loader.write() {
            *slot = Some(loader);
        }
    }

    /// Gives this process its backbone (or says why it has none, for the runs page and logs).
    pub fn set_embedder(&self, embedder: Result<Arc<dyn crate::ports::Embedder>, String>) {
        match &embedder {
            Ok(embedder) => tracing::info!(
                backbone = %embedder.backbone().id,
                provider = %embedder.backbone().execution_provider,
                "ML assist can embed images"
            ),
            Err(reason) => tracing::warn!(%reason, "ML assist is unavailable in this process"),
        }
        self.embedder.set(embedder);
    }

    /// Gives this process its detection backbone (or says why it has none): object detection
    /// projects get box prelabels only where one is set.
    pub fn set_feature_extractor(
        &self,
        extractor: Result<Arc<dyn crate::ports::FeatureExtractor>, String>,
    ) {
        match &extractor {
            Ok(extractor) => tracing::info!(
                backbone = %extractor.id(),
                provider = %extractor.execution_provider(),
                "ML assist can detect objects"
            ),
            Err(reason) => tracing::warn!(%reason, "box prelabels are unavailable in this process"),
        }
        if let Ok(mut slot) = self.embedder.features.write() {
            *slot = extractor;
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn projects(&self) -> Projects<'_> {
        view!(Projects from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub fn labeling(&self) -> Labeling<'_> {
        view!(Labeling from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub fn review(&self) -> Review<'_> {
        view!(Review from self; table, blobs, clock, config, manifests, projects)
    }

    pub fn dashboard(&self) -> Dashboards<'_> {
        view!(Dashboards from self; table, blobs, clock, config, projects)
    }

    pub fn datasets(&self) -> Datasets<'_> {
        view!(Datasets from self; table, blobs, queue, clock, config)
    }

    pub fn exports(&self) -> Exports<'_> {
        view!(Exports from self; table, blobs, queue, clock, config, manifests, projects)
    }

    pub fn refreshes(&self) -> Refreshes<'_> {
        view!(Refreshes from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    /// Background jobs: ingest, and the dispatch of every queued job to its area.
    pub fn jobs(&self) -> Jobs<'_> {
        view!(Jobs from self; table, blobs, queue, clock, config, manifests, projects, cursors, embedder)
    }

    pub fn ml(&self) -> Ml<'_> {
        view!(Ml from self; table, blobs, queue, clock, config, manifests, projects, cursors, embedder)
    }
}

impl Jobs<'_> {
    pub(crate) fn ml(&self) -> Ml<'_> {
        view!(Ml from self; table, blobs, queue, clock, config, manifests, projects, cursors, embedder)
    }
}

impl Ml<'_> {
    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn item_keys(&self) -> ItemKeys<'_> {
        view!(ItemKeys from self; blobs, config, manifests)
    }

    pub(crate) fn projects(&self) -> Projects<'_> {
        view!(Projects from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub(crate) fn labeling(&self) -> Labeling<'_> {
        view!(Labeling from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }
}

/// Builds a view from the same-named fields of the service or of a wider view, so each view
/// states in one line which ports it is lent.
macro_rules! view {
    ($view:ident from $source:expr; $($field:ident),+) => {
        $view { $($field: &$source.$field),+ }
    };
}
pub(crate) use view;

// What each view lends on to the areas it calls into, built from its own references.

impl Projects<'_> {
    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn refreshes(&self) -> Refreshes<'_> {
        view!(Refreshes from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub(crate) fn datasets(&self) -> Datasets<'_> {
        view!(Datasets from self; table, blobs, queue, clock, config)
    }

    pub(crate) fn labeling(&self) -> Labeling<'_> {
        view!(Labeling from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }
}

impl Labeling<'_> {
    pub(crate) fn refreshes(&self) -> Refreshes<'_> {
        view!(Refreshes from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn item_keys(&self) -> ItemKeys<'_> {
        view!(ItemKeys from self; blobs, config, manifests)
    }
}

impl Review<'_> {
    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn item_keys(&self) -> ItemKeys<'_> {
        view!(ItemKeys from self; blobs, config, manifests)
    }
}

impl Dashboards<'_> {
    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn statuses(&self) -> RefreshStatuses<'_> {
        view!(RefreshStatuses from self; blobs, clock, config)
    }
}

impl Exports<'_> {
    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn item_keys(&self) -> ItemKeys<'_> {
        view!(ItemKeys from self; blobs, config, manifests)
    }
}

impl Refreshes<'_> {
    pub(crate) fn statuses(&self) -> RefreshStatuses<'_> {
        view!(RefreshStatuses from self; blobs, clock, config)
    }

    pub(crate) fn reader(&self) -> ProjectReader<'_> {
        view!(ProjectReader from self; table, clock, projects)
    }

    pub(crate) fn item_keys(&self) -> ItemKeys<'_> {
        view!(ItemKeys from self; blobs, config, manifests)
    }

    pub(crate) fn projects(&self) -> Projects<'_> {
        view!(Projects from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub(crate) fn datasets(&self) -> Datasets<'_> {
        view!(Datasets from self; table, blobs, queue, clock, config)
    }
}

impl Jobs<'_> {
    pub(crate) fn datasets(&self) -> Datasets<'_> {
        view!(Datasets from self; table, blobs, queue, clock, config)
    }

    pub(crate) fn statuses(&self) -> RefreshStatuses<'_> {
        view!(RefreshStatuses from self; blobs, clock, config)
    }

    pub(crate) fn refreshes(&self) -> Refreshes<'_> {
        view!(Refreshes from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }

    pub(crate) fn exports(&self) -> Exports<'_> {
        view!(Exports from self; table, blobs, queue, clock, config, manifests, projects)
    }

    pub(crate) fn projects(&self) -> Projects<'_> {
        view!(Projects from self; table, blobs, queue, clock, config, manifests, projects, cursors)
    }
}

/// Reads project records and manifests for any area (with the warm copy's cache).
pub(crate) struct ProjectReader<'a> {
    pub(crate) table: &'a Arc<dyn Table>,
    pub(crate) clock: &'a Arc<dyn Clock>,
    pub(crate) projects: &'a ProjectCache,
}

/// Finds the object key of an item from its project's manifest chunks (cached).
pub(crate) struct ItemKeys<'a> {
    pub(crate) blobs: &'a Arc<dyn Blobs>,
    pub(crate) config: &'a ServiceConfig,
    pub(crate) manifests: &'a ManifestCache,
}

impl ItemKeys<'_> {
    /// The object key of item `item` of the project, from its manifest's chunks (cached).
    pub(crate) async fn item_key(
        &self,
        project_id: &str,
        manifest: &crate::manifest::ManifestRecord,
        item: u64,
    ) -> Result<String, crate::ports::BlobError> {
        self.manifests
            .key_of(
                self.blobs.as_ref(),
                &self.config.system_bucket,
                project_id,
                manifest,
                item,
            )
            .await
    }
}

/// A stored record was not what this code expects (a bug or a foreign write).
#[derive(Debug, thiserror::Error)]
#[error("stored item {pk}/{sk} is malformed: {reason}")]
pub struct MalformedRecord {
    pub pk: String,
    pub sk: String,
    pub reason: String,
}

/// A record could not become table attributes: a bug in its type (a map with keys that are
/// not strings, a record that is not a struct). Writing empty attributes instead would
/// silently lose data, so it is an error like any other.
#[derive(Debug, thiserror::Error)]
#[error("a {what} could not be serialized: {reason}")]
pub struct UnserializableRecord {
    pub what: &'static str,
    pub reason: String,
}

/// Serializes a record into table attributes, stamped with its entity and schema version.
pub(crate) fn to_item<T: Serialize>(
    key: Key,
    entity: &'static str,
    record: &T,
) -> Result<Item, UnserializableRecord> {
    let mut attrs = to_attrs_of(entity, record)?;
    attrs.insert(attr::ENTITY.to_owned(), entity.into());
    attrs.insert(attr::SCHEMA_VERSION.to_owned(), SCHEMA_VERSION.into());
    Ok(Item::new(key, attrs))
}

/// Serializes a record that is stored without an entity stamp (work entries, job rows).
pub(crate) fn to_attrs<T: Serialize>(record: &T) -> Result<Attrs, UnserializableRecord> {
    to_attrs_of(std::any::type_name::<T>(), record)
}

fn to_attrs_of<T: Serialize>(
    what: &'static str,
    record: &T,
) -> Result<Attrs, UnserializableRecord> {
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(UnserializableRecord {
            what,
            reason: format!("it is not a map but {other}"),
        }),
        Err(error) => Err(UnserializableRecord {
            what,
            reason: error.to_string(),
        }),
    }
}

/// Serializes one attribute's value.
pub(crate) fn to_json<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<serde_json::Value, UnserializableRecord> {
    serde_json::to_value(value).map_err(|error| UnserializableRecord {
        what,
        reason: error.to_string(),
    })
}

/// Serializes a document written to the blob store.
pub(crate) fn to_json_bytes<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, UnserializableRecord> {
    serde_json::to_vec(value).map_err(|error| UnserializableRecord {
        what,
        reason: error.to_string(),
    })
}

pub(crate) fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T, BoxError> {
    serde_json::from_value(serde_json::Value::Object(item.attrs.clone())).map_err(|error| {
        Box::new(MalformedRecord {
            pk: item.key.pk.clone(),
            sk: item.key.sk.clone(),
            reason: error.to_string(),
        }) as BoxError
    })
}

/// Like [`from_item`], without copying the attributes.
pub(crate) fn from_item_owned<T: DeserializeOwned>(item: Item) -> Result<T, BoxError> {
    let Item { key, attrs } = item;
    serde_json::from_value(serde_json::Value::Object(attrs)).map_err(|error| {
        Box::new(MalformedRecord {
            pk: key.pk,
            sk: key.sk,
            reason: error.to_string(),
        }) as BoxError
    })
}

pub(crate) fn number(attrs: &Attrs, name: &str) -> i64 {
    attrs
        .get(name)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// The `.rs` files under `src/usecases`, with their text.
    fn use_case_sources() -> Vec<(std::path::PathBuf, String)> {
        let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/usecases"));
        let mut found = Vec::new();
        let mut folders = vec![root];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    let source = std::fs::read_to_string(&path).unwrap();
                    found.push((path, source));
                }
            }
        }
        found
    }

    /// A use case on `Service` could reach every port; on its area's view it reaches only the
    /// ports that view holds, which is what a reader of its signature is promised.
    #[test]
    fn no_use_case_is_a_method_of_the_whole_service() {
        let sources = use_case_sources();
        assert!(sources.len() > 20, "the use cases were not found");
        let offenders: Vec<_> = sources
            .iter()
            .filter(|(_, source)| source.contains("impl Service"))
            .map(|(path, _)| path.display().to_string())
            .collect();
        assert!(
            offenders.is_empty(),
            "use cases on Service in {offenders:?}"
        );
    }
}
