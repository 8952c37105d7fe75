//! Port wrappers that delegate to a real adapter and count what the service asks of it:
//! table writes and round trips, blob listings and puts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use labeling_core::ports::{
    BlobError, Blobs, ByteRange, CompletedPart, ListPage, ObjectChecksum, ObjectMeta, PresignedPut,
};

pub use labeling_core::ports::counting::CountingTable;

/// What a [`CountingBlobs`] has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCounts {
    pub lists: u64,
    pub puts: u64,
}

impl BlobCounts {
    pub fn since(self, before: BlobCounts) -> BlobCounts {
        BlobCounts {
            lists: self.lists - before.lists,
            puts: self.puts - before.puts,
        }
    }
}

/// A `Blobs` that delegates every call and counts listings and puts.
pub struct CountingBlobs {
    inner: Arc<dyn Blobs>,
    lists: AtomicU64,
    puts: AtomicU64,
}

impl CountingBlobs {
    pub fn new(inner: Arc<dyn Blobs>) -> Self {
        Self {
            inner,
            lists: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    pub fn counts(&self) -> BlobCounts {
        BlobCounts {
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
