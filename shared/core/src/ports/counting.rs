//! `Table` and `Blobs` wrappers that count what the service asks of them: the request budgets
//! in tests, the benchmarks, "a refresh with nothing new writes nothing" and "a resumed upload
//! reads no object".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    BlobError, Blobs, ByteRange, CompletedPart, Condition, Item, Key, ListPage, ObjectChecksum,
    ObjectMeta, Page, PresignedPut, Query, Table, TableError, Update, Write,
};

/// What a [`CountingTable`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Items written: one per put, update or delete, and one per write of a transaction.
    pub writes: u64,
    /// Calls of any kind (reads, writes, transactions, queries).
    pub round_trips: u64,
}

impl TableCounts {
    pub fn since(self, before: TableCounts) -> TableCounts {
        TableCounts {
            writes: self.writes - before.writes,
            round_trips: self.round_trips - before.round_trips,
        }
    }
}

/// A `Table` that delegates every call and counts writes and round trips.
pub struct CountingTable {
    inner: Arc<dyn Table>,
    writes: AtomicU64,
    round_trips: AtomicU64,
}

impl CountingTable {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        Self {
            inner,
            writes: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> TableCounts {
        TableCounts {
            writes: self.writes.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
        }
    }

    fn trip(&self, writes: u64) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.trip(0);
        self.inner.get(key).await
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.trip(0);
        self.inner.batch_get(keys).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.trip(1);
        self.inner.put(item, condition).await
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.trip(1);
        self.inner.update(key, update, condition).await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.trip(1);
        self.inner.delete(key, condition).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        self.trip(writes.len() as u64);
        self.inner.transact(writes).await
    }

    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.trip(0);
        self.inner.query(query).await
    }
}

/// What a [`CountingBlobs`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCounts {
    /// Reads of whole objects or ranges.
    pub gets: u64,
    pub lists: u64,
    pub puts: u64,
}

impl BlobCounts {
    pub fn since(self, before: BlobCounts) -> BlobCounts {
        BlobCounts {
            gets: self.gets - before.gets,
            lists: self.lists - before.lists,
            puts: self.puts - before.puts,
        }
    }
}

/// A `Blobs` that delegates every call and counts reads, listings and puts.
pub struct CountingBlobs {
    inner: Arc<dyn Blobs>,
    gets: AtomicU64,
    lists: AtomicU64,
    puts: AtomicU64,
}

impl CountingBlobs {
    pub fn new(inner: Arc<dyn Blobs>) -> Self {
        Self {
            inner,
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> BlobCounts {
        BlobCounts {
            gets: self.gets.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl Blobs for CountingBlobs {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Vec<u8>, BlobError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(bucket, key, range).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put(bucket, key, body, content_type).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        self.inner.head(bucket, key).await
    }

    async fn head_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectChecksum>, BlobError> {
        self.inner.head_checksum(bucket, key).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        self.inner.delete(bucket, key).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, BlobError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(bucket, prefix, start_after, max_keys).await
    }

    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, BlobError> {
        self.inner.start_multipart(bucket, key, content_type).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Vec<u8>,
    ) -> Result<String, BlobError> {
        self.inner
            .upload_part(bucket, key, upload_id, part_number, body)
            .await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.inner
            .complete_multipart(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError> {
        self.inner.abort_multipart(bucket, key, upload_id).await
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        self.inner.presign_get(bucket, key, expires_in).await
    }

    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        sha256: Option<[u8; 32]>,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError> {
        self.inner
            .presign_put(bucket, key, content_type, sha256, expires_in)
            .await
    }
}
