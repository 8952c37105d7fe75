//! The manifest: the sorted image keys of a project, stored as fixed-size chunks in the blob
//! store instead of one table row per image. Item ids are positions in the manifest; it only
//! ever grows (each ingest appends a batch), so a cached chunk stays valid for every item it
//! holds.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub start: u64,
    pub len: u64,
}

/// The stored manifest index (`P#<pid>` / `MANIFEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub total: u64,
    pub batches: Vec<Batch>,
    /// Images matched by the source but left out by the item cap.
    pub dropped: u64,
    pub last_refresh_at: Option<i64>,
    pub last_refresh_trigger: Option<String>,
    pub last_refresh_added: u64,
}

impl ManifestRecord {
    /// The item handed out at `position` in `round`.
    pub fn item_at(&self, project_seed: u64, round: u32, position: u64) -> Option<u64> {
        let (index, batch) = self
            .batches
            .iter()
            .enumerate()
            .find(|(_, b)| position >= b.start && position < b.start + b.len)?;
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

/// Cached chunks by (project id, chunk index).
type ChunkMap = HashMap<(String, u64), Arc<Vec<String>>>;

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
        item: u64,
    ) -> Result<String, BlobError> {
        let chunk = item / CHUNK_KEYS;
        let offset = (item % CHUNK_KEYS) as usize;
        let cache_key = (project_id.to_owned(), chunk);
        let cached = self.lock().get(&cache_key).cloned();
        if let Some(keys) = cached
            && let Some(key) = keys.get(offset)
        {
            return Ok(key.clone());
        }
        let body = blobs
            .get(bucket, &chunk_key(project_id, chunk), None)
            .await?;
        let keys = Arc::new(decode_chunk(&body));
        let key = keys.get(offset).cloned().ok_or_else(|| {
            BlobError::Invalid(format!("manifest chunk {chunk} has no item {item}"))
        })?;
        let mut chunks = self.lock();
        if chunks.len() >= CACHED_CHUNKS {
            chunks.clear();
        }
        chunks.insert(cache_key, keys);
        Ok(key)
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
