//! The `Blobs` port on a folder: bucket `B` is `<root>/buckets/B`, and a `file:///path`
//! bucket is that folder itself. Listings come in S3's lexicographic key order; presigned URLs
//! point at the local server, signed with HMAC-SHA256 and an expiry.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use labeling_core::ports::blobs::{MAX_LIST_KEYS, MIN_PART_BYTES};
use labeling_core::ports::{
    BlobError, Blobs, ByteRange, Clock, CompletedPart, ListPage, ObjectMeta,
};
use sha2::Sha256;

/// A folder unchanged for this long has a modification time that later changes will move.
const SETTLED_FOLDER_AGE: Duration = Duration::from_secs(2);

/// A folder's entries sorted as S3 would sort the keys below it: a directory sorts as its
/// name followed by `/`.
#[derive(Debug)]
struct DirectoryListing {
    modified: SystemTime,
    /// (name, is_dir), sorted by name + "/" for directories.
    entries: Arc<Vec<(String, bool)>>,
}

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

/// What a verified signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMethod {
    Get,
    Put,
}

impl SignedMethod {
    fn as_str(self) -> &'static str {
        match self {
            SignedMethod::Get => "GET",
            SignedMethod::Put => "PUT",
        }
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Unavailable(Box::new(error))
}

fn sort_name(name: &str, is_dir: bool) -> String {
    if is_dir {
        format!("{name}/")
    } else {
        name.to_owned()
    }
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
pub fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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

    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, BlobError> {
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

    fn signature(&self, method: SignedMethod, bucket: &str, key: &str, expires: i64) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(format!("{}\n{bucket}\n{key}\n{expires}", method.as_str()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn presign(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> String {
        let expires = self.clock.now() + i64::try_from(expires_in.as_millis()).unwrap_or(0);
        let signature = self.signature(method, bucket, key, expires);
        let base = self
            .public_base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        format!(
            "{base}/blobs/{}/{}?expires={expires}&signature={signature}",
            percent_encode(bucket, false),
            percent_encode(key, true)
        )
    }

    /// Checks a signed URL's signature and expiry (constant-time comparison).
    pub fn verify(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires: i64,
        signature: &str,
    ) -> bool {
        if expires < self.clock.now() {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(format!("{}\n{bucket}\n{key}\n{expires}", method.as_str()).as_bytes());
        mac.verify_slice(&given).is_ok()
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

    fn sorted_entries(&self, dir: &Path) -> std::io::Result<Arc<Vec<(String, bool)>>> {
        let modified = std::fs::metadata(dir)?.modified()?;
        let listings = self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listing) = listings.get(dir)
            && listing.modified == modified
        {
            return Ok(listing.entries.clone());
        }
        drop(listings);
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(".tmp-") {
                continue;
            }
            let is_dir = entry.file_type()?.is_dir();
            entries.push((sort_name(&name, is_dir), name, is_dir));
        }
        entries.sort_unstable();
        let entries: Vec<(String, bool)> = entries
            .into_iter()
            .map(|(_, name, is_dir)| (name, is_dir))
            .collect();
        let entries = Arc::new(entries);
        // A folder's modification time ticks coarsely: a change within the same tick as this
        // read would leave it unchanged. Only remember listings of folders that have been still
        // for a while (git's "racy timestamp" rule).
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age > SETTLED_FOLDER_AGE);
        if !settled {
            return Ok(entries);
        }
        let mut listings = self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        if listings.len() > 4096 {
            listings.clear();
        }
        listings.insert(
            dir.to_owned(),
            DirectoryListing {
                modified,
                entries: entries.clone(),
            },
        );
        Ok(entries)
    }

    /// Depth-first walk in key order. Returns true when it stopped because `out` was full
    /// and another key follows.
    fn walk(
        &self,
        dir: &Path,
        base: &str,
        prefix: &str,
        start_after: &str,
        max: usize,
        out: &mut Vec<ObjectMeta>,
    ) -> std::io::Result<bool> {
        let entries = self.sorted_entries(dir)?;
        // Skip straight to the first entry that can hold a key after `start_after` and
        // under `prefix`.
        let lower = if start_after > prefix {
            start_after
        } else {
            prefix
        };
        let mut first = entries.partition_point(|(name, is_dir)| {
            format!("{base}{}", sort_name(name, *is_dir)).as_str() < lower
        });
        if first > 0 {
            let (name, is_dir) = &entries[first - 1];
            if *is_dir && lower.starts_with(&format!("{base}{name}/")) {
                first -= 1;
            }
        }
        for (name, is_dir) in &entries[first..] {
            let key = format!("{base}{}", sort_name(name, *is_dir));
            if !key.starts_with(prefix) && !prefix.starts_with(&key) {
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            if *is_dir {
                if self.walk(&dir.join(name), &key, prefix, start_after, max, out)? {
                    return Ok(true);
                }
            } else if key.as_str() > start_after && key.starts_with(prefix) {
                if out.len() == max {
                    return Ok(true);
                }
                let metadata = std::fs::metadata(dir.join(name))?;
                out.push(ObjectMeta {
                    etag: etag(&metadata),
                    key,
                    size: metadata.len(),
                });
            }
        }
        Ok(false)
    }

    fn multipart_dir(&self, upload_id: &str) -> Result<PathBuf, BlobError> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BlobError::Invalid("unknown upload id".to_owned()));
        }
        Ok(self.root.join("multipart").join(upload_id))
    }
}

fn etag(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", modified, metadata.len())
}

/// Runs blocking file-system work on tokio's blocking pool, so a slow disk, a network mount or a
/// huge read never stalls the async workers that serve every other request.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BlobError::Unavailable(Box::new(error)))?
}

/// Opens an object's file for reading, and only if it is a regular file. The file is opened
/// non-blocking first: opening a FIFO for reading otherwise waits for a writer for ever (a FIFO
/// named `x.png` in a bucket froze whole servers), and a device or socket is no object either.
/// Anything but a regular file reads as a missing object, as S3 has no such thing.
fn open_regular(
    path: &Path,
    bucket_dir: &Path,
    bucket: &str,
    key: &str,
) -> Result<(std::fs::File, u64), BlobError> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_found = || BlobError::NotFound {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(if bucket_dir.is_dir() {
                not_found()
            } else {
                BlobError::NoSuchBucket(bucket.to_owned())
            });
        }
        // A path through a file ("a.png/b.png") is no object either.
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(not_found());
        }
        Err(error) => return Err(unavailable(error)),
    };
    let metadata = file.metadata().map_err(unavailable)?;
    if !metadata.is_file() {
        return Err(not_found());
    }
    Ok((file, metadata.len()))
}

/// An object being written: a temporary file beside its final path, renamed over it by
/// [`PendingObject::commit`] so readers never see half an object, and removed if dropped
/// uncommitted (a client that disconnects mid-upload leaves nothing behind).
pub struct PendingObject {
    file: Option<std::fs::File>,
    temporary: PathBuf,
    path: PathBuf,
}

impl PendingObject {
    /// The temporary file to write the body into.
    pub fn file(&mut self) -> std::io::Result<&mut std::fs::File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the object was already committed"))
    }

    /// Makes the written bytes the object, whole.
    pub fn commit(mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_data()?;
        }
        std::fs::rename(&self.temporary, &self.path)
    }
}

impl Drop for PendingObject {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn create_pending(path: PathBuf) -> std::io::Result<PendingObject> {
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let temporary = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::File::create(&temporary)?;
    Ok(PendingObject {
        file: Some(file),
        temporary,
        path,
    })
}

/// Writes through a temporary file and a rename, so readers never see half an object.
fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut pending = create_pending(path.to_owned())?;
    pending.file()?.write_all(body)?;
    pending.commit()
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
        let truncated = self
            .walk(
                &dir,
                "",
                prefix,
                start_after.unwrap_or(""),
                max,
                &mut objects,
            )
            .map_err(unavailable)?;
        Ok(ListPage { objects, truncated })
    }

    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        _content_type: &str,
    ) -> Result<String, BlobError> {
        self.object_path(bucket, key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        std::fs::create_dir_all(self.multipart_dir(&upload_id)?).map_err(unavailable)?;
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        part_number: u32,
        body: Vec<u8>,
    ) -> Result<String, BlobError> {
        let dir = self.multipart_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(BlobError::Invalid(format!("no upload {upload_id}")));
        }
        if !(1..=10_000).contains(&part_number) {
            return Err(BlobError::Invalid(
                "part numbers are 1 to 10,000".to_owned(),
            ));
        }
        let etag = format!("{:x}", md5_like(&body));
        write_atomically(&dir.join(format!("{part_number:05}")), &body).map_err(unavailable)?;
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        let dir = self.multipart_dir(upload_id)?;
        let path = self.object_path(bucket, key)?;
        if parts.is_empty()
            || parts
                .windows(2)
                .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(BlobError::Invalid(
                "parts must be given in ascending order".to_owned(),
            ));
        }
        let parent = path
            .parent()
            .ok_or_else(|| BlobError::Invalid("no parent".to_owned()))?;
        std::fs::create_dir_all(parent).map_err(unavailable)?;
        let temporary = parent.join(format!(".tmp-{upload_id}"));
        let mut out = std::fs::File::create(&temporary).map_err(unavailable)?;
        for (index, part) in parts.iter().enumerate() {
            let body =
                std::fs::read(dir.join(format!("{:05}", part.part_number))).map_err(|_| {
                    BlobError::Invalid(format!("part {} was not uploaded", part.part_number))
                })?;
            if format!("{:x}", md5_like(&body)) != part.etag {
                return Err(BlobError::Invalid(format!(
                    "part {} etag mismatch",
                    part.part_number
                )));
            }
            if index + 1 < parts.len() && body.len() < MIN_PART_BYTES {
                let _ = std::fs::remove_file(&temporary);
                return Err(BlobError::Invalid(format!(
                    "part {} is {} bytes; every part but the last must be at least 5 MiB",
                    part.part_number,
                    body.len()
                )));
            }
            out.write_all(&body).map_err(unavailable)?;
        }
        out.sync_data().map_err(unavailable)?;
        drop(out);
        std::fs::rename(&temporary, &path).map_err(unavailable)?;
        std::fs::remove_dir_all(&dir).map_err(unavailable)?;
        Ok(())
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError> {
        let dir = self.multipart_dir(upload_id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        self.object_path(bucket, key)?;
        Ok(self.presign(SignedMethod::Get, bucket, key, expires_in))
    }

    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        _content_type: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        self.object_path(bucket, key)?;
        Ok(self.presign(SignedMethod::Put, bucket, key, expires_in))
    }
}

/// A content hash for part etags (SHA-256, truncated; S3 uses MD5, only equality matters).
fn md5_like(body: &[u8]) -> u128 {
    use sha2::Digest;
    let digest = Sha256::digest(body);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}
