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
/// A multipart upload no part was written to for this long is abandoned (as S3's lifecycle
/// rule `AbortIncompleteMultipartUpload` after one day).
pub const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// A folder's entries sorted as S3 would sort the keys below it: a directory sorts as its
/// name followed by `/`.
#[derive(Debug)]
struct DirectoryListing {
    modified: SystemTime,
    /// (name, kind), sorted by name + "/" for folders.
    entries: Arc<Vec<(String, EntryKind)>>,
}

/// What a folder entry can be in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Folder,
    /// A regular file, or a link that may lead to one (followed when listed: a link whose
    /// target is gone or is not a regular file is unreadable).
    File,
    /// Never an object (a FIFO, socket or device, a name that is not UTF-8): left out of
    /// listings and counted. A FIFO is never opened, so listing one cannot block.
    Unreadable,
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

    fn sorted_entries(&self, dir: &Path) -> std::io::Result<Arc<Vec<(String, EntryKind)>>> {
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
            let entry = match entry {
                Ok(entry) => entry,
                // Nameless, so it has no place in key order to be counted at.
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "a folder entry cannot be read");
                    continue;
                }
            };
            let (name, kind) = match entry.file_name().into_string() {
                Ok(name) => {
                    if name.starts_with(".tmp-") {
                        continue;
                    }
                    let kind = match entry.file_type() {
                        Ok(kind) if kind.is_dir() => EntryKind::Folder,
                        Ok(kind) if kind.is_file() || kind.is_symlink() => EntryKind::File,
                        _ => EntryKind::Unreadable,
                    };
                    (name, kind)
                }
                // Counted where its readable part of the name sorts.
                Err(raw) => (raw.to_string_lossy().into_owned(), EntryKind::Unreadable),
            };
            let is_dir = kind == EntryKind::Folder;
            entries.push((sort_name(&name, is_dir), name, kind));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let entries: Vec<(String, EntryKind)> = entries
            .into_iter()
            .map(|(_, name, kind)| (name, kind))
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
    /// and another entry follows. An entry that cannot be an object (or a folder that cannot
    /// be read) is counted in `unreadable` by the page whose key range holds it; it never
    /// fails the listing.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        dir: &Path,
        base: &str,
        prefix: &str,
        start_after: &str,
        max: usize,
        out: &mut Vec<ObjectMeta>,
        unreadable: &mut u64,
    ) -> bool {
        let entries = match self.sorted_entries(dir) {
            Ok(entries) => entries,
            Err(error) => {
                // Its keys would sort from `base` on: the page that reaches it counts it (a
                // page that is already full leaves it to the next).
                if out.len() == max {
                    return true;
                }
                if start_after.is_empty() || base > start_after {
                    tracing::warn!(dir = %dir.display(), %error, "a folder cannot be read; skipped");
                    *unreadable += 1;
                }
                return false;
            }
        };
        // Skip straight to the first entry that can hold a key after `start_after` and
        // under `prefix`.
        let lower = if start_after > prefix {
            start_after
        } else {
            prefix
        };
        let mut first = entries.partition_point(|(name, kind)| {
            format!("{base}{}", sort_name(name, *kind == EntryKind::Folder)).as_str() < lower
        });
        if first > 0 {
            let (name, kind) = &entries[first - 1];
            if *kind == EntryKind::Folder && lower.starts_with(&format!("{base}{name}/")) {
                first -= 1;
            }
        }
        for (name, kind) in &entries[first..] {
            let is_dir = *kind == EntryKind::Folder;
            let key = format!("{base}{}", sort_name(name, is_dir));
            if !key.starts_with(prefix) && !prefix.starts_with(&key) {
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            if is_dir {
                if self.walk(
                    &dir.join(name),
                    &key,
                    prefix,
                    start_after,
                    max,
                    out,
                    unreadable,
                ) {
                    return true;
                }
            } else if key.as_str() > start_after && key.starts_with(prefix) {
                if out.len() == max {
                    return true;
                }
                // Follows links: only a regular file (or a link to one) is an object.
                match std::fs::metadata(dir.join(name)) {
                    Ok(metadata) if *kind == EntryKind::File && metadata.is_file() => {
                        out.push(ObjectMeta {
                            etag: etag(&metadata),
                            key,
                            size: metadata.len(),
                        });
                    }
                    outcome => {
                        tracing::debug!(key, error = ?outcome.err(), "not a readable file; skipped");
                        *unreadable += 1;
                    }
                }
            }
        }
        false
    }

    /// Removes the parts of every multipart upload last written to before `before`, and
    /// returns how many uploads it removed. At start, with the start time: no job of an earlier
    /// process can still finish them. While running, uploads a day old are abandoned (S3's
    /// lifecycle rule `AbortIncompleteMultipartUpload` does the same on AWS).
    pub fn abort_uploads_older_than(&self, before: SystemTime) -> usize {
        let Ok(entries) = std::fs::read_dir(self.root.join("multipart")) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            // A part written moves the folder's modification time: it tells the last activity.
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified < before);
            if !stale {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(upload = ?entry.file_name(), %error, "could not remove an abandoned upload")
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed abandoned multipart uploads");
        }
        removed
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

/// Runs file-system work that borrows the store (walks that use its listing cache) without
/// stalling the other tasks of an async worker: on a multi-threaded runtime the worker hands
/// them to another thread while this one blocks. (A current-thread runtime, in some tests, has
/// no other worker to hand them to.)
fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
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
        self.object_path(bucket, key)?;
        // Uploads start seldom (one an export): a look at the others now is cheap.
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.multipart_dir(&upload_id)?;
        in_place(|| {
            if let Some(day_ago) = SystemTime::now().checked_sub(ABANDONED_UPLOAD_AGE) {
                self.abort_uploads_older_than(day_ago);
            }
            std::fs::create_dir_all(dir).map_err(unavailable)
        })?;
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
        if !(1..=10_000).contains(&part_number) {
            return Err(BlobError::Invalid(
                "part numbers are 1 to 10,000".to_owned(),
            ));
        }
        let upload_id = upload_id.to_owned();
        off_the_workers(move || {
            if !dir.is_dir() {
                return Err(BlobError::Invalid(format!("no upload {upload_id}")));
            }
            let etag = format!("{:x}", md5_like(&body));
            write_atomically(&dir.join(format!("{part_number:05}")), &body).map_err(unavailable)?;
            Ok(etag)
        })
        .await
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
        off_the_workers(move || {
            // Dropped on any refusal below, the half-written object disappears with it.
            let mut pending = create_pending(path).map_err(unavailable)?;
            let out = pending.file().map_err(unavailable)?;
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
                    return Err(BlobError::Invalid(format!(
                        "part {} is {} bytes; every part but the last must be at least 5 MiB",
                        part.part_number,
                        body.len()
                    )));
                }
                out.write_all(&body).map_err(unavailable)?;
            }
            pending.commit().map_err(unavailable)?;
            std::fs::remove_dir_all(&dir).map_err(unavailable)
        })
        .await
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError> {
        let dir = self.multipart_dir(upload_id)?;
        off_the_workers(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable(error)),
        })
        .await
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;

    use super::*;

    fn store() -> (FolderBlobs, PathBuf) {
        let root = std::env::temp_dir().join(labeling_testkit::unique("folder-blobs"));
        let blobs = FolderBlobs::new(
            &root,
            Arc::new(labeling_testkit::FakeClock::default()),
            b"secret".to_vec(),
        );
        let source = root.join("source");
        std::fs::create_dir_all(&source).unwrap();
        (blobs, source)
    }

    /// Every page of a listing of `bucket` in pages of `max`: the keys, and the unreadable
    /// entries counted.
    async fn list_all(blobs: &FolderBlobs, bucket: &str, max: usize) -> (Vec<String>, u64) {
        let (mut keys, mut unreadable) = (Vec::new(), 0);
        let mut start_after: Option<String> = None;
        loop {
            let page = blobs
                .list(bucket, "", start_after.as_deref(), max)
                .await
                .unwrap();
            keys.extend(page.objects.iter().map(|o| o.key.clone()));
            unreadable += page.unreadable;
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => start_after = Some(last.key.clone()),
                _ => return (keys, unreadable),
            }
        }
    }

    #[tokio::test]
    async fn a_listing_skips_and_counts_entries_that_cannot_be_objects() {
        let (blobs, source) = store();
        for name in ["a.png", "m/b.png", "z.png"] {
            std::fs::create_dir_all(source.join(name).parent().unwrap()).unwrap();
            std::fs::write(source.join(name), b"png").unwrap();
        }
        std::os::unix::fs::symlink(source.join("a.png"), source.join("link-to-a.png")).unwrap();
        // Each of these is one unreadable entry.
        std::os::unix::fs::symlink(source.join("gone.png"), source.join("dangling.png")).unwrap();
        std::os::unix::fs::symlink(source.join("m"), source.join("link-to-folder")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(source.join("m/fifo.png"))
            .status()
            .unwrap();
        assert!(status.success());
        let _socket = std::os::unix::net::UnixListener::bind(source.join("socket.png")).unwrap();
        std::fs::write(
            source.join(std::ffi::OsStr::from_bytes(b"latin-\xe9.png")),
            b"png",
        )
        .unwrap();
        // Mode 000: unreadable to anyone but root (who reads it, and lists its file).
        std::fs::create_dir_all(source.join("closed")).unwrap();
        std::fs::write(source.join("closed/c.png"), b"png").unwrap();
        std::fs::set_permissions(
            source.join("closed"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let closed_is_readable = std::fs::read_dir(source.join("closed")).is_ok();

        let bucket = format!("file://{}", source.display());
        for max in [1000, 1, 2] {
            let (keys, unreadable) = list_all(&blobs, &bucket, max).await;
            let mut expected = vec!["a.png", "link-to-a.png", "m/b.png", "z.png"];
            if closed_is_readable {
                expected.insert(1, "closed/c.png");
            }
            assert_eq!(keys, expected, "pages of {max}");
            assert_eq!(
                unreadable,
                5 + u64::from(!closed_is_readable),
                "each unreadable entry counted once, in pages of {max}"
            );
        }
        std::fs::set_permissions(
            source.join("closed"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn uploads_a_day_old_are_removed_when_an_upload_starts() {
        let (blobs, _) = store();
        std::fs::create_dir_all(blobs.root.join("buckets/b")).unwrap();
        let old = blobs.start_multipart("b", "old.json", "").await.unwrap();
        blobs
            .upload_part("b", "old.json", &old, 1, vec![1; 10])
            .await
            .unwrap();
        let old_dir = blobs.multipart_dir(&old).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        std::fs::File::open(&old_dir)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let recent = blobs.start_multipart("b", "recent.json", "").await.unwrap();
        let fresh = blobs.start_multipart("b", "new.json", "").await.unwrap();
        assert!(!old_dir.exists(), "the day-old upload is gone");
        assert!(blobs.multipart_dir(&recent).unwrap().is_dir());
        // At start, every upload from before is abandoned.
        let removed = blobs.abort_uploads_older_than(SystemTime::now() + Duration::from_secs(1));
        assert_eq!(removed, 2);
        assert!(!blobs.multipart_dir(&fresh).unwrap().exists());
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_read_is_counted_not_an_error() {
        let (blobs, source) = store();
        std::fs::write(source.join("a.png"), b"png").unwrap();
        let mut unreadable = 0;
        let mut out = Vec::new();
        // A path that is no folder stands for one the listing may not read.
        let stopped = blobs.walk(
            &source.join("a.png"),
            "sub/",
            "",
            "",
            10,
            &mut out,
            &mut unreadable,
        );
        assert!(!stopped);
        assert!(out.is_empty());
        assert_eq!(unreadable, 1);
    }
}
