//! Featurization: every item of the manifest embedded once by the backbone, stored in parts
//! of [`PART_ITEMS`] items in the system bucket (`ml/<pid>/embeddings/<backbone>/`), each part
//! named by how many of its items it covers (`000003-1000.emb`). A part short of its items
//! (the manifest grew, a run stopped) is completed by the next featurization, which embeds
//! only the items it lacks: new items are embedded incrementally, and an interrupted run's
//! retry redoes at most the part it was writing. Images that cannot be embedded (missing,
//! not an image, truncated, too large) are recorded in the part with the reason and never
//! stop the job.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;

use super::stages::StageOutcome;
use super::{EMBED_BATCH, Ml, MlError, PART_ITEMS, RunRecord};
use crate::domain::ml::embeddings::{Part, decode_part, encode_part};
use crate::domain::ml_settings::CustomBackbone;
use crate::domain::project::ProjectRecord;
use crate::keys;
use crate::ports::{BlobError, Embedder};

/// Images fetched at once while the backbone embeds the previous batch.
const FETCH_CONCURRENCY: usize = 8;
/// The largest ONNX backbone a project may name (ResNet-152 is 240 MB, ViT-L/16 1.2 GB).
const MAX_MODEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// FNV-1a: a stable 64-bit hash (the standard library's changes between releases), for ids
/// that must be the same in every process and version.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Refused images the run's metrics name, with why (every refusal is kept in its part).
const REFUSED_SHOWN: usize = 10;
/// Bytes of the largest image fetched for embedding; a bigger object is refused as too large
/// before it is read (a camera photo is 3-10 MB).
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// The stored parts of a project's embeddings: for each part index, the key of the object
/// covering the most items and how many it covers.
pub(super) type PartIndex = BTreeMap<u64, (String, u64)>;

fn part_key(prefix: &str, part: u64, covered: u64) -> String {
    format!("{prefix}{part:06}-{covered:04}.emb")
}

/// `000003-1000.emb` → (3, 1000).
fn parse_part_key(prefix: &str, key: &str) -> Option<(u64, u64)> {
    let name = key.strip_prefix(prefix)?.strip_suffix(".emb")?;
    let (part, covered) = name.split_once('-')?;
    Some((part.parse().ok()?, covered.parse().ok()?))
}

impl Ml<'_> {
    pub(super) async fn featurize(
        &self,
        project: &ProjectRecord,
        run: &mut RunRecord,
    ) -> Result<StageOutcome, MlError> {
        let embedder = match &project.ml_assist.backbone {
            None => self.embedder.get().map_err(|reason| {
                MlError::Unavailable(format!("ML assist is unavailable: {reason}").into())
            })?,
            Some(custom) => self.custom_backbone(custom).await?,
        };
        let backbone = embedder.backbone().clone();
        run.backbone = Some(backbone.id.clone());
        let started = self.clock.now();
        let deadline =
            started + i64::try_from(self.config.job_time_budget.as_millis()).unwrap_or(i64::MAX);
        let manifest = self
            .reader()
            .read_manifest(&project.id)
            .await?
            .ok_or_else(|| MlError::NotRunning("initializing"))?;
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        let prefix = keys::ml_embeddings(&project.id, &backbone.id);
        let parts = self.part_index(&prefix).await?;
        let (mut embedded, mut rejected, mut seconds_embedding) = (0u64, 0u64, 0f64);
        let mut refused = Vec::new();
        let mut finished = true;
        for part in 0..manifest.total.div_ceil(PART_ITEMS) {
            let wanted = part * PART_ITEMS..((part + 1) * PART_ITEMS).min(manifest.total);
            let covered = wanted.end - wanted.start;
            let existing = parts.get(&part);
            if existing.is_some_and(|(_, have)| *have >= covered) {
                continue;
            }
            if self.clock.now() >= deadline && (embedded + rejected) > 0 {
                finished = false;
                break;
            }
            let mut entries: Vec<(u64, Result<Vec<f32>, String>)> = Vec::new();
            if let Some((key, _)) = existing {
                let bytes = self
                    .blobs
                    .get(&self.config.system_bucket, key, None)
                    .await?;
                let stored =
                    decode_part(&bytes).map_err(|error| MlError::Unavailable(Box::new(error)))?;
                entries.extend(part_entries(&stored));
            }
            let have: std::collections::HashSet<u64> =
                entries.iter().map(|(item, _)| *item).collect();
            let missing: Vec<u64> = wanted.filter(|item| !have.contains(item)).collect();
            let mut item_keys = Vec::with_capacity(missing.len());
            for item in &missing {
                item_keys.push((
                    *item,
                    self.item_keys()
                        .item_key(&project.id, &manifest, *item)
                        .await?,
                ));
            }
            // Wall time for the throughput figure (the service clock is for leases and
            // schedules, and stands still in tests).
            let embedding_started = std::time::Instant::now();
            let new_entries = self
                .embed_items(embedder.as_ref(), source.bucket(), &item_keys)
                .await?;
            seconds_embedding += embedding_started.elapsed().as_secs_f64();
            for (item, outcome) in &new_entries {
                match outcome {
                    Ok(_) => embedded += 1,
                    Err(reason) => {
                        rejected += 1;
                        if refused.len() < REFUSED_SHOWN
                            && let Some((_, key)) = item_keys.iter().find(|(i, _)| i == item)
                        {
                            refused.push(serde_json::json!({ "key": key, "reason": reason }));
                        }
                    }
                }
            }
            entries.extend(new_entries);
            entries.sort_by_key(|(item, _)| *item);
            let body = encode_part(backbone.dimensions, &entries)
                .map_err(|error| MlError::Unavailable(Box::new(error)))?;
            let key = part_key(&prefix, part, entries.len() as u64);
            self.blobs
                .put(
                    &self.config.system_bucket,
                    &key,
                    body,
                    "application/octet-stream",
                )
                .await?;
            if let Some((old, _)) = existing
                && *old != key
            {
                // Readers take the part covering the most items; the old one is only clutter.
                let _ = self.blobs.delete(&self.config.system_bucket, old).await;
            }
        }
        let metrics = &mut run
            .step_mut("featurization")
            .ok_or_else(|| MlError::Unavailable("the run has no featurization step".into()))?
            .metrics;
        let add = |metrics: &mut serde_json::Map<String, serde_json::Value>, name: &str, n: u64| {
            let before = metrics
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            metrics.insert(name.to_owned(), (before + n).into());
        };
        add(metrics, "embedded", embedded);
        add(metrics, "rejected", rejected);
        if !refused.is_empty() {
            let shown = metrics
                .entry("rejected_examples")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let Some(shown) = shown.as_array_mut() {
                shown.extend(refused);
                shown.truncate(REFUSED_SHOWN);
            }
        }
        metrics.insert("items".to_owned(), manifest.total.into());
        metrics.insert("backbone".to_owned(), backbone.id.clone().into());
        metrics.insert(
            "execution_provider".to_owned(),
            backbone.execution_provider.clone().into(),
        );
        if embedded + rejected > 0 && seconds_embedding > 0.0 {
            metrics.insert(
                "images_per_second".to_owned(),
                (((embedded + rejected) as f64 / seconds_embedding * 10.0).round() / 10.0).into(),
            );
        }
        if !finished {
            return Ok(StageOutcome::Continue);
        }
        let state = self.state(&project.id).await?;
        if state.active_run.as_deref() == Some(run.id.as_str()) {
            let after = super::MlState {
                featurized_total: manifest.total,
                version: state.version + 1,
                ..state.clone()
            };
            if !self.put_state(&project.id, &state, &after).await? {
                return Err(MlError::Unavailable("the ML row changed meanwhile".into()));
            }
        }
        Ok(StageOutcome::Done)
    }

    /// The project's own backbone, opened once a process per model version: its id names the
    /// model's location, its version (etag) and how it is fed, so a replaced model or changed
    /// settings embed afresh instead of mixing with old vectors.
    async fn custom_backbone(
        &self,
        custom: &CustomBackbone,
    ) -> Result<std::sync::Arc<dyn Embedder>, MlError> {
        let (bucket, key) = custom.location().ok_or_else(|| {
            MlError::Unavailable(format!("{} is no s3://bucket/key.onnx", custom.model).into())
        })?;
        let meta = self.blobs.head(bucket, key).await?.ok_or_else(|| {
            MlError::Unavailable(
                format!("the backbone {} is not in its bucket", custom.model).into(),
            )
        })?;
        if meta.size > MAX_MODEL_BYTES {
            return Err(MlError::Unavailable(
                format!(
                    "the backbone {} is {} MB; at most {} MB are loaded",
                    custom.model,
                    meta.size / (1024 * 1024),
                    MAX_MODEL_BYTES / (1024 * 1024)
                )
                .into(),
            ));
        }
        let described = serde_json::to_string(custom).unwrap_or_default();
        let id = format!(
            "custom-{:016x}",
            stable_hash(&format!("{described}|{}", meta.etag))
        );
        if let Some(open) = self.embedder.custom(&id) {
            return Ok(open);
        }
        let loader = self.embedder.loader().ok_or_else(|| {
            MlError::Unavailable("this process cannot open a project's own backbone".into())
        })?;
        let model = self.blobs.get(bucket, key, None).await?;
        let embedder = loader
            .load(&id, custom, model)
            .await
            .map_err(|error| MlError::Unavailable(Box::new(error)))?;
        self.embedder.remember_custom(&id, embedder.clone());
        Ok(embedder)
    }

    /// Fetches and embeds `items` (id, key) in batches, fetching the next batch while the
    /// backbone embeds the current one.
    async fn embed_items(
        &self,
        embedder: &dyn Embedder,
        bucket: &str,
        items: &[(u64, String)],
    ) -> Result<Vec<(u64, Result<Vec<f32>, String>)>, MlError> {
        let mut out = Vec::with_capacity(items.len());
        let mut batches = items.chunks(EMBED_BATCH);
        let mut fetched = match batches.next() {
            Some(batch) => self.fetch(bucket, batch).await?,
            None => return Ok(out),
        };
        loop {
            let next = batches.next();
            let (embedded, prefetched) = futures::join!(
                self.embed_fetched(embedder, std::mem::take(&mut fetched)),
                async {
                    match next {
                        Some(batch) => self.fetch(bucket, batch).await.map(Some),
                        None => Ok(None),
                    }
                }
            );
            out.extend(embedded?);
            match prefetched? {
                Some(batch) => fetched = batch,
                None => return Ok(out),
            }
        }
    }

    /// The bytes of each image, or why there are none.
    pub(super) async fn fetch(
        &self,
        bucket: &str,
        batch: &[(u64, String)],
    ) -> Result<Vec<(u64, Result<Vec<u8>, String>)>, MlError> {
        let results: Vec<_> = futures::stream::iter(batch.iter().cloned())
            .map(|(item, key)| async move {
                let fetched = match self.blobs.head(bucket, &key).await {
                    Ok(None) => Ok(Err("the image is no longer in the bucket".to_owned())),
                    Ok(Some(meta)) if meta.size > MAX_IMAGE_BYTES => Ok(Err(format!(
                        "the image is {} MB; at most {} MB are embedded",
                        meta.size / (1024 * 1024),
                        MAX_IMAGE_BYTES / (1024 * 1024)
                    ))),
                    Ok(Some(_)) => match self.blobs.get(bucket, &key, None).await {
                        Ok(bytes) => Ok(Ok(bytes)),
                        Err(BlobError::NotFound { .. }) => {
                            Ok(Err("the image is no longer in the bucket".to_owned()))
                        }
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                };
                fetched.map(|outcome| (item, outcome))
            })
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<_>, BlobError>>()
            .map_err(MlError::from)
    }

    async fn embed_fetched(
        &self,
        embedder: &dyn Embedder,
        fetched: Vec<(u64, Result<Vec<u8>, String>)>,
    ) -> Result<Vec<(u64, Result<Vec<f32>, String>)>, MlError> {
        let (mut out, image_items, images) = split_fetched::<Vec<f32>>(fetched);
        if !images.is_empty() {
            let dims = embedder.backbone().dimensions;
            let embeddings = embedder
                .embed(images)
                .await
                .map_err(|error| MlError::Unavailable(Box::new(error)))?;
            if embeddings.len() != image_items.len() {
                return Err(MlError::Unavailable(
                    "the backbone answered for another number of images".into(),
                ));
            }
            for (item, outcome) in image_items.into_iter().zip(embeddings) {
                out.push((
                    item,
                    match outcome {
                        Ok(values)
                            if values.len() == dims && values.iter().all(|v| v.is_finite()) =>
                        {
                            Ok(values)
                        }
                        Ok(_) => Err("the backbone gave no usable embedding".to_owned()),
                        Err(rejected) => Err(rejected.0),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// The stored parts under `prefix`: per part, the object covering the most items.
    pub(super) async fn part_index(&self, prefix: &str) -> Result<PartIndex, MlError> {
        let mut index = PartIndex::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .blobs
                .list(&self.config.system_bucket, prefix, after.as_deref(), 1000)
                .await?;
            for object in &page.objects {
                if let Some((part, covered)) = parse_part_key(prefix, &object.key)
                    && index.get(&part).is_none_or(|(_, have)| *have < covered)
                {
                    index.insert(part, (object.key.clone(), covered));
                }
            }
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => after = Some(last.key.clone()),
                _ => return Ok(index),
            }
        }
    }

    /// The embeddings of `items` stored for `backbone` (items without one are left out).
    pub(super) async fn load_embeddings(
        &self,
        project_id: &str,
        backbone: &str,
        items: &[u64],
    ) -> Result<HashMap<u64, Vec<f32>>, MlError> {
        let prefix = keys::ml_embeddings(project_id, backbone);
        let parts = self.part_index(&prefix).await?;
        let wanted: std::collections::HashSet<u64> = items.iter().copied().collect();
        let mut needed: Vec<u64> = items.iter().map(|item| item / PART_ITEMS).collect();
        needed.sort_unstable();
        needed.dedup();
        let mut found = HashMap::with_capacity(items.len());
        for part in needed {
            let Some((key, _)) = parts.get(&part) else {
                continue;
            };
            let bytes = self
                .blobs
                .get(&self.config.system_bucket, key, None)
                .await?;
            let stored =
                decode_part(&bytes).map_err(|error| MlError::Unavailable(Box::new(error)))?;
            for (item, values) in stored.embeddings() {
                if wanted.contains(&item) {
                    found.insert(item, values.to_vec());
                }
            }
        }
        Ok(found)
    }
}

/// Fetched images apart: the items whose fetch was refused, as outcomes with the reason, and
/// the others' ids and bytes, in order, for the backbone.
pub(super) type SplitFetched<T> = (Vec<(u64, Result<T, String>)>, Vec<u64>, Vec<Vec<u8>>);

pub(super) fn split_fetched<T>(fetched: Vec<(u64, Result<Vec<u8>, String>)>) -> SplitFetched<T> {
    let mut refused = Vec::with_capacity(fetched.len());
    let (mut image_items, mut images) = (Vec::new(), Vec::new());
    for (item, outcome) in fetched {
        match outcome {
            Ok(bytes) => {
                image_items.push(item);
                images.push(bytes);
            }
            Err(reason) => refused.push((item, Err(reason))),
        }
    }
    (refused, image_items, images)
}

/// A stored part as entries to write again with new ones.
fn part_entries(part: &Part) -> Vec<(u64, Result<Vec<f32>, String>)> {
    part.embeddings()
        .map(|(item, values)| (item, Ok(values.to_vec())))
        .chain(
            part.rejected()
                .iter()
                .map(|rejected| (rejected.item, Err(rejected.reason.clone()))),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_key_names_its_part_and_how_many_items_it_covers() {
        let prefix = "ml/p_1/embeddings/efficientnet-lite0/";
        let key = part_key(prefix, 3, 1000);
        assert_eq!(key, "ml/p_1/embeddings/efficientnet-lite0/000003-1000.emb");
        assert_eq!(parse_part_key(prefix, &key), Some((3, 1000)));
        assert_eq!(parse_part_key(prefix, "ml/p_1/other/000003-1000.emb"), None);
        assert_eq!(parse_part_key(prefix, &format!("{prefix}000003.emb")), None);
    }
}
