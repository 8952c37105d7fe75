//! The manifest: the image keys of a project, stored as fixed-size chunks in the blob store
//! instead of one table row per image. Item ids are positions in the manifest. It only ever
//! grows: each ingest or refresh appends a batch of new keys (sorted within the batch) written
//! under a path of its own, so chunk files are never rewritten and a cached chunk is valid
//! forever.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

/// Writes one batch's keys chunk by chunk as they come, holding at most one chunk. A job that
/// stops mid-chunk writes the partial chunk ([`ChunkWriter::flush`]) and the next run reads it
/// back ([`ChunkWriter::resume`]): nothing reads a batch's chunks before the batch is
/// committed, so rewriting the last one while it fills is safe.
pub struct ChunkWriter {
    bucket: String,
    project_id: String,
    batch: Batch,
    /// Keys in the chunks written whole.
    whole: u64,
    /// The chunk being filled.
    buffer: Vec<String>,
}

impl ChunkWriter {
    /// A writer of `batch` that has written `written` keys so far (a partial last chunk
    /// included, which is read back and cut to what the checkpoint counted).
    pub async fn resume(
        blobs: &dyn Blobs,
        bucket: &str,
        project_id: &str,
        batch: Batch,
        written: u64,
    ) -> Result<Self, BlobError> {
        let whole = written - written % CHUNK_KEYS;
        let mut writer = Self {
            bucket: bucket.to_owned(),
            project_id: project_id.to_owned(),
            batch,
            whole,
            buffer: Vec::new(),
        };
        let partial = (written - whole) as usize;
        if partial > 0 {
            let path = writer.batch.chunk_key(project_id, whole / CHUNK_KEYS);
            let mut keys = decode_chunk(&blobs.get(bucket, &path, None).await?);
            if keys.len() < partial {
                return Err(BlobError::Invalid(format!(
                    "manifest chunk {path} holds {} keys, the checkpoint counted {partial}",
                    keys.len()
                )));
            }
            keys.truncate(partial);
            writer.buffer = keys;
        }
        Ok(writer)
    }

    /// Keys written so far, the chunk being filled included.
    pub fn len(&self) -> u64 {
        self.whole + self.buffer.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys this writer holds in memory.
    pub fn keys_held(&self) -> usize {
        self.buffer.len()
    }

    /// Adds a key; a chunk that fills is written at once.
    pub async fn push(&mut self, blobs: &dyn Blobs, key: String) -> Result<(), BlobError> {
        self.buffer.push(key);
        if self.buffer.len() as u64 == CHUNK_KEYS {
            self.write_buffer(blobs).await?;
            self.whole += CHUNK_KEYS;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the partial chunk, if any, so the keys counted so far are all stored.
    pub async fn flush(&self, blobs: &dyn Blobs) -> Result<(), BlobError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.write_buffer(blobs).await
    }

    async fn write_buffer(&self, blobs: &dyn Blobs) -> Result<(), BlobError> {
        let path = self
            .batch
            .chunk_key(&self.project_id, self.whole / CHUNK_KEYS);
        blobs
            .put(
                &self.bucket,
                &path,
                encode_chunk(&self.buffer),
                "text/plain",
            )
            .await
    }
}

/// One batch's place in a [`KnownKeys`] merge: keys consumed, and the chunk holding the next.
struct BatchCursor {
    batch: Batch,
    position: u64,
    /// The chunk (counted from the batch's start) in `keys`, once read.
    chunk: Option<u64>,
    keys: Vec<String>,
}

/// The manifest's keys in key order, read chunk by chunk: each batch is sorted, so a k-way
/// merge of the batches needs only the current chunk of each, never every key. Its place is
/// a position in each batch ([`KnownKeys::positions`]), which a checkpoint saves.
pub struct KnownKeys {
    bucket: String,
    project_id: String,
    cursors: Vec<BatchCursor>,
    /// The next key of every batch not yet exhausted, smallest first.
    heads: BinaryHeap<Reverse<(String, usize)>>,
}

impl KnownKeys {
    /// The keys of `batches`, each from the position given (all from the start when
    /// `positions` is empty).
    pub async fn open(
        blobs: &dyn Blobs,
        bucket: &str,
        project_id: &str,
        batches: &[Batch],
        positions: &[u64],
    ) -> Result<Self, BlobError> {
        let mut known = Self {
            bucket: bucket.to_owned(),
            project_id: project_id.to_owned(),
            cursors: batches
                .iter()
                .enumerate()
                .map(|(index, batch)| BatchCursor {
                    batch: batch.clone(),
                    position: positions.get(index).copied().unwrap_or(0),
                    chunk: None,
                    keys: Vec::new(),
                })
                .collect(),
            heads: BinaryHeap::new(),
        };
        for index in 0..known.cursors.len() {
            known.push_head(blobs, index).await?;
        }
        Ok(known)
    }

    /// The smallest key not consumed yet.
    pub fn peek(&self) -> Option<&str> {
        self.heads.peek().map(|Reverse((key, _))| key.as_str())
    }

    /// Consumes the smallest key.
    pub async fn advance(&mut self, blobs: &dyn Blobs) -> Result<(), BlobError> {
        if let Some(Reverse((_, index))) = self.heads.pop() {
            self.cursors[index].position += 1;
            self.push_head(blobs, index).await?;
        }
        Ok(())
    }

    /// Keys consumed in each batch, in the manifest's batch order.
    pub fn positions(&self) -> Vec<u64> {
        self.cursors.iter().map(|cursor| cursor.position).collect()
    }

    /// Keys this merge holds in memory: at most one chunk a batch.
    pub fn keys_held(&self) -> usize {
        self.cursors.iter().map(|c| c.keys.len()).sum::<usize>() + self.heads.len()
    }

    /// Puts batch `index`'s next key among the heads, reading its chunk if needed.
    async fn push_head(&mut self, blobs: &dyn Blobs, index: usize) -> Result<(), BlobError> {
        let cursor = &mut self.cursors[index];
        if cursor.position >= cursor.batch.len {
            cursor.keys = Vec::new();
            cursor.chunk = None;
            return Ok(());
        }
        let chunk = cursor.position / CHUNK_KEYS;
        if cursor.chunk != Some(chunk) {
            let path = cursor.batch.chunk_key(&self.project_id, chunk);
            cursor.keys = Vec::new();
            cursor.keys = decode_chunk(&blobs.get(&self.bucket, &path, None).await?);
            cursor.chunk = Some(chunk);
        }
        let key = cursor
            .keys
            .get((cursor.position % CHUNK_KEYS) as usize)
            .cloned()
            .ok_or_else(|| {
                BlobError::Invalid(format!(
                    "manifest chunk {chunk} of a batch at {} is short",
                    cursor.batch.start
                ))
            })?;
        self.heads.push(Reverse((key, index)));
        Ok(())
    }
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
