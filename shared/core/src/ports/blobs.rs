//! The `Blobs` port: an S3-shaped object store.
//!
//! An adapter MUST guarantee:
//! - keys list in lexicographic byte order, as S3 does, `max_keys` at most 1000 a page, and a
//!   listing resumes strictly after `start_after`;
//! - one entry that cannot be read never fails a listing: it is left out and counted in
//!   [`ListPage::unreadable`];
//! - `get` with a range returns exactly those bytes (clipped at the end of the object);
//! - a multipart upload is invisible until `complete_multipart`, then appears whole; every part
//!   but the last is at least [`MIN_PART_BYTES`] (S3's rule, enforced everywhere);
//! - presigned URLs work without credentials until they expire;
//! - a presigned PUT answers every header its request must carry, with the exact value
//!   ([`PresignedPut::headers`]): the content type always, and `x-amz-checksum-sha256` when a
//!   SHA-256 was given, in which case the store refuses a body with another digest and writes
//!   nothing;
//! - [`Blobs::head_checksum`] answers the object's stored SHA-256 without the service reading
//!   the object: S3 keeps the checksum a PUT carried; a store that has none answers `None`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::BoxError;

pub const MAX_LIST_KEYS: usize = 1000;
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Changes whenever the content changes.
    pub etag: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// True when more keys follow the last one of this page.
    pub truncated: bool,
    /// Entries in this page's key range that cannot be objects and were left out: on a folder,
    /// dangling links, FIFOs, sockets, devices, folders it may not read, names that are not
    /// UTF-8. Each is counted on exactly one page. S3 lists only objects: always 0 there.
    pub unreadable: u64,
}

/// An object with the SHA-256 of its content, when the store keeps one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChecksum {
    pub meta: ObjectMeta,
    /// Absent where the object was stored without a checksum (on S3: put by a request that
    /// carried none).
    pub sha256: Option<[u8; 32]>,
}

/// A signed PUT: where to send the body, and the headers the request must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    /// Lower-case header name -> the exact value the PUT must send: these were signed, so any
    /// other value (or none) is refused.
    pub headers: BTreeMap<String, String>,
}

/// The header that carries a PUT's SHA-256 (base64 of the digest), as S3 names it.
pub const CHECKSUM_SHA256_HEADER: &str = "x-amz-checksum-sha256";

/// Bytes `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no object {bucket}/{key}")]
    NotFound { bucket: String, key: String },
    #[error("no bucket {0}")]
    NoSuchBucket(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the blob store is unavailable")]
    Unavailable(#[source] BoxError),
}

#[async_trait]
pub trait Blobs: Send + Sync {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Vec<u8>, BlobError>;
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError>;
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, BlobError>;
    /// The object's metadata and stored SHA-256, `None` when there is no such object. The
    /// caller never reads the object for this: an upload resumed over thousands of files must
    /// answer within API Gateway's 30 seconds.
    async fn head_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectChecksum>, BlobError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError>;
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, BlobError>;
    /// Returns the upload id.
    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, BlobError>;
    /// Returns the part's etag. Part numbers start at 1.
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Vec<u8>,
    ) -> Result<String, BlobError>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError>;
    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError>;
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError>;
    /// A PUT URL signed for this content type and, when given, this SHA-256 of the body: the
    /// store then refuses a body with another digest and keeps the checksum for
    /// [`Blobs::head_checksum`].
    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        sha256: Option<[u8; 32]>,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError>;
}
