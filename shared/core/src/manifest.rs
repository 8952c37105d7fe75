//! The manifest: the image keys of a project, stored as fixed-size chunks in the blob store
//! instead of one table row per image. Item ids are positions in the manifest. It only ever
//! grows: each ingest or refresh appends a batch of new keys (sorted within the batch) written
//! under a path of its own, so chunk files are never rewritten and a cached chunk is valid
//! forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::domain::shuffle::{Permutation, derive_seed};
use crate::ports::{BlobError, Blobs};

/// Keys a chunk holds.
pub const CHUNK_KEYS: u64 = 10_000;

/// Chunks the process keeps in memory (10,000 keys each).
const CACHED_CHUNKS: usize = 128;

/// One ingest's items: positions `start..start + len`, shuffled among themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub start: u64,
    pub len: u64,
    /// Where the batch's chunks live (`manifests/<pid>/<tag>/`); the first ingest's batch has
    /// none and lives in `manifests/<pid>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Batch {
    /// The blob key of chunk `chunk` of this batch (counted from the batch's start).
    pub fn chunk_key(&self, project_id: &str, chunk: u64) -> String {
        match &self.tag {
            None => chunk_key(project_id, chunk),
            Some(tag) => format!("manifests/{project_id}/{tag}/{chunk:06}.keys"),
        }
    }
}

/// The stored manifest index (`P#<pid>` / `MANIFEST`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub total: u64,
    pub batches: Vec<Batch>,
    /// Images matched by the source but left out by the item cap.
    pub dropped: u64,
    pub last_refresh_at: Option<i64>,
    pub last_refresh_trigger: Option<crate::domain::refresh::RefreshTrigger>,
    pub last_refresh_added: u64,
    /// Keys of the manifest no longer found in the source at the last refresh.
    #[serde(default)]
    pub removed: u64,
}

impl ManifestRecord {
    pub fn batch_of(&self, item: u64) -> Option<&Batch> {
        self.batches
            .iter()
            .find(|b| item >= b.start && item < b.start + b.len)
    }

    /// The item handed out at `position` in `round`.
    pub fn item_at(&self, project_seed: u64, round: u32, position: u64) -> Option<u64> {
        let (index, batch) = self
            .batches
            .iter()
            .enumerate()
            .find(|(_, b)| position >= b.start && position < b.start + b.len)?;
        // Positions and items share each batch's range: a batch permutes only its own items.
        let seed = derive_seed(project_seed, u64::from(round), index as u64);
        Some(batch.start + Permutation::new(batch.len, seed).apply(position - batch.start))
    }
}

pub fn chunk_key(project_id: &str, chunk: u64) -> String {
    format!("manifests/{project_id}/{chunk:06}.keys")
}

/// Serializes keys one per line. Keys holding a line break are refused at ingest.
pub fn encode_chunk(keys: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(keys.iter().map(|k| k.len() + 1).sum());
    for key in keys {
        body.extend_from_slice(key.as_bytes());
        body.push(b'\n');
    }
    body
}

fn decode_chunk(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Cached chunks by blob key (chunk files are immutable).
type ChunkMap = HashMap<String, Arc<Vec<String>>>;

/// Chunks read so far, shared by every request of a warm process.
#[derive(Default)]
pub struct ManifestCache {
    chunks: Mutex<ChunkMap>,
    /// The manifest index by project: valid for every position below its `total`, because
    /// batches are only ever appended.
    records: Mutex<HashMap<String, ManifestRecord>>,
}

impl ManifestCache {
    /// The key of `item`, reading its chunk from `bucket` unless cached.
    pub async fn key_of(
        &self,
        blobs: &dyn Blobs,
        bucket: &str,
        project_id: &str,
        manifest: &ManifestRecord,
        item: u64,
    ) -> Result<String, BlobError> {
        let batch = manifest
            .batch_of(item)
            .ok_or_else(|| BlobError::Invalid(format!("the manifest has no item {item}")))?;
        let relative = item - batch.start;
        let keys = self
            .chunk(
                blobs,
                bucket,
                &batch.chunk_key(project_id, relative / CHUNK_KEYS),
            )
            .await?;
        keys.get((relative % CHUNK_KEYS) as usize)
            .cloned()
            .ok_or_else(|| BlobError::Invalid(format!("manifest chunk of item {item} is short")))
    }

    /// Every key of a batch, in the batch's (sorted) order.
    pub async fn batch_keys(
        &self,
        blobs: &dyn Blobs,
        bucket: &str,
        project_id: &str,
        batch: &Batch,
    ) -> Result<Vec<String>, BlobError> {
        let mut keys = Vec::with_capacity(batch.len as usize);
        for chunk in 0..batch.len.div_ceil(CHUNK_KEYS) {
            let body = blobs
                .get(bucket, &batch.chunk_key(project_id, chunk), None)
                .await?;
            keys.extend(decode_chunk(&body));
        }
        keys.truncate(batch.len as usize);
        Ok(keys)
    }

    async fn chunk(
        &self,
        blobs: &dyn Blobs,
        bucket: &str,
        path: &str,
    ) -> Result<Arc<Vec<String>>, BlobError> {
        if let Some(keys) = self.lock().get(path).cloned() {
            return Ok(keys);
        }
        let body = blobs.get(bucket, path, None).await?;
        let keys = Arc::new(decode_chunk(&body));
        let mut chunks = self.lock();
        if chunks.len() >= CACHED_CHUNKS {
            chunks.clear();
        }
        chunks.insert(path.to_owned(), keys.clone());
        Ok(keys)
    }

    /// The cached index, if it covers `total` positions.
    pub fn record_covering(&self, project_id: &str, total: u64) -> Option<ManifestRecord> {
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        records
            .get(project_id)
            .filter(|r| r.total >= total)
            .cloned()
    }

    pub fn remember_record(&self, project_id: &str, record: &ManifestRecord) {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() >= 1024 {
            records.clear();
        }
        records.insert(project_id.to_owned(), record.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChunkMap> {
        self.chunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
