//! The `Blobs` port on a folder: bucket `B` is `<root>/buckets/B`, and a `file:///path`
//! bucket is that folder itself. Listings come in S3's lexicographic key order; presigned URLs
//! point at the local server, signed with HMAC-SHA256 and an expiry.
//!
//! This module holds the store and its single-object operations; `listing` walks folders in
//! key order, `multipart` assembles uploads, `signing` makes and checks signed URLs, and
//! `files` opens and writes object files safely.

mod files;
mod listing;
mod multipart;
mod signing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use labeling_core::ports::blobs::MAX_LIST_KEYS;
use labeling_core::ports::{
    BlobError, Blobs, ByteRange, Clock, CompletedPart, ListPage, ObjectChecksum, ObjectMeta,
    PresignedPut,
};

pub use files::PendingObject;
use files::{create_pending, open_regular, write_atomically};
use listing::DirectoryListing;
pub use signing::{SignedHeaders, SignedMethod, sha256_header_value};

pub struct FolderBlobs {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    secret: Vec<u8>,
    /// The base URL of the server that serves signed URLs, e.g. `http://127.0.0.1:8080`.
    public_base: RwLock<String>,
    /// Sorted directory entries, reused while the directory is unchanged, so paging through a
    /// folder of half a million files sorts it once.
    listings: Mutex<HashMap<PathBuf, DirectoryListing>>,
}

pub(super) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Unavailable(Box::new(error))
}

impl FolderBlobs {
    pub fn new(root: impl Into<PathBuf>, clock: Arc<dyn Clock>, secret: Vec<u8>) -> Self {
        Self {
            root: root.into(),
            clock,
            secret,
            public_base: RwLock::new("http://127.0.0.1:8080".to_owned()),
            listings: Mutex::new(HashMap::new()),
        }
    }

    /// Where signed URLs point; set once the server knows its address.
    pub fn set_public_base(&self, base: &str) {
        *self
            .public_base
            .write()
            .unwrap_or_else(PoisonError::into_inner) = base.trim_end_matches('/').to_owned();
    }

    pub fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, BlobError> {
        if let Some(path) = bucket.strip_prefix("file://") {
            return Ok(PathBuf::from(path));
        }
        if bucket.is_empty() || bucket.contains(['/', '\\']) || bucket.starts_with('.') {
            return Err(BlobError::Invalid(format!("bad bucket name {bucket:?}")));
        }
        Ok(self.root.join("buckets").join(bucket))
    }

    pub(super) fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, BlobError> {
        if key.is_empty()
            || key.starts_with('/')
            || key.ends_with('/')
            || key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            || key.contains(['\\', '\0'])
        {
            return Err(BlobError::Invalid(format!(
                "key {key:?} cannot be stored in a folder"
            )));
        }
        Ok(self.bucket_dir(bucket)?.join(key))
    }

    /// Opens an object for a streamed read (the local server's signed GET): the file and its
    /// size. Only regular files are objects.
    pub async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(std::fs::File, u64), BlobError> {
        let path = self.object_path(bucket, key)?;
        let bucket_dir = self.bucket_dir(bucket)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        off_the_workers(move || open_regular(&path, &bucket_dir, &bucket, &key)).await
    }

    /// Starts a streamed write of an object (the local server's signed PUT).
    pub async fn create_object(&self, bucket: &str, key: &str) -> Result<PendingObject, BlobError> {
        let path = self.object_path(bucket, key)?;
        off_the_workers(move || create_pending(path).map_err(unavailable)).await
    }
}

pub(super) fn etag(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", modified, metadata.len())
}

/// Runs blocking file-system work on tokio's blocking pool, so a slow disk, a network mount or a
/// huge read never stalls the async workers that serve every other request.
pub(super) async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BlobError::Unavailable(Box::new(error)))?
}

/// Runs file-system work that borrows the store (walks that use its listing cache) without
/// stalling the other tasks of an async worker: on a multi-threaded runtime the worker hands
/// them to another thread while this one blocks. (A current-thread runtime, in some tests, has
/// no other worker to hand them to.)
pub(super) fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[async_trait]
impl Blobs for FolderBlobs {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Vec<u8>, BlobError> {
        let path = self.object_path(bucket, key)?;
        let bucket_dir = self.bucket_dir(bucket)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        off_the_workers(move || {
            let (file, _) = open_regular(&path, &bucket_dir, &bucket, &key)?;
            let mut body = Vec::new();
            match range {
                None => {
                    (&file).read_to_end(&mut body).map_err(unavailable)?;
                }
                Some(range) => {
                    let mut file = file;
                    file.seek(SeekFrom::Start(range.start))
                        .map_err(unavailable)?;
                    file.take(range.end.saturating_sub(range.start))
                        .read_to_end(&mut body)
                        .map_err(unavailable)?;
                }
            }
            Ok(body)
        })
        .await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        let path = self.object_path(bucket, key)?;
        off_the_workers(move || write_atomically(&path, &body).map_err(unavailable)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        let path = self.object_path(bucket, key)?;
        let key = key.to_owned();
        off_the_workers(move || match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some(ObjectMeta {
                key,
                size: metadata.len(),
                etag: etag(&metadata),
            })),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        })
        .await
    }

    /// Hashes the file: the folder store keeps no checksums, and reading a local disk has no
    /// 30-second gateway to finish within.
    async fn head_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectChecksum>, BlobError> {
        use sha2::Digest as _;
        let path = self.object_path(bucket, key)?;
        let bucket_dir = self.bucket_dir(bucket)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        off_the_workers(move || {
            let (mut file, size) = match open_regular(&path, &bucket_dir, &bucket, &key) {
                Ok(opened) => opened,
                Err(BlobError::NotFound { .. } | BlobError::NoSuchBucket(_)) => return Ok(None),
                Err(error) => return Err(error),
            };
            let metadata = file.metadata().map_err(unavailable)?;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut file, &mut hasher).map_err(unavailable)?;
            Ok(Some(ObjectChecksum {
                meta: ObjectMeta {
                    key,
                    size,
                    etag: etag(&metadata),
                },
                sha256: Some(hasher.finalize().into()),
            }))
        })
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let path = self.object_path(bucket, key)?;
        off_the_workers(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable(error)),
        })
        .await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, BlobError> {
        let dir = self.bucket_dir(bucket)?;
        if !dir.is_dir() {
            return Err(BlobError::NoSuchBucket(bucket.to_owned()));
        }
        let max = max_keys.clamp(1, MAX_LIST_KEYS);
        let mut objects = Vec::with_capacity(max);
        let mut unreadable = 0;
        let truncated = in_place(|| {
            self.walk(
                &dir,
                "",
                prefix,
                start_after.unwrap_or(""),
                max,
                &mut objects,
                &mut unreadable,
            )
        });
        Ok(ListPage {
            objects,
            truncated,
            unreadable,
        })
    }

    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        _content_type: &str,
    ) -> Result<String, BlobError> {
        self.start_upload(bucket, key)
    }

    async fn upload_part(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        part_number: u32,
        body: Vec<u8>,
    ) -> Result<String, BlobError> {
        self.store_part(upload_id, part_number, body).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.complete_upload(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError> {
        self.abort_upload(upload_id).await
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        self.object_path(bucket, key)?;
        Ok(self.presign(
            SignedMethod::Get,
            bucket,
            key,
            SignedHeaders::default(),
            expires_in,
        ))
    }

    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        sha256: Option<[u8; 32]>,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError> {
        self.object_path(bucket, key)?;
        let sha256 = sha256.map(|digest| sha256_header_value(&digest));
        let headers = SignedHeaders {
            content_type: Some(content_type),
            sha256: sha256.as_deref(),
        };
        Ok(PresignedPut {
            url: self.presign(SignedMethod::Put, bucket, key, headers, expires_in),
            headers: Self::put_headers(headers),
        })
    }
}
