//! Multipart uploads: parts kept in `<root>/multipart/<upload id>/` until the upload completes
//! into one object, and uploads abandoned for a day removed.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use labeling_core::ports::blobs::MIN_PART_BYTES;
use labeling_core::ports::{BlobError, CompletedPart};
use sha2::Sha256;

use super::files::{create_pending, write_atomically};
use super::{FolderBlobs, in_place, off_the_workers, unavailable};

/// A multipart upload no part was written to for this long is abandoned (as S3's lifecycle
/// rule `AbortIncompleteMultipartUpload` after one day).
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

impl FolderBlobs {
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

    pub(super) fn multipart_dir(&self, upload_id: &str) -> Result<PathBuf, BlobError> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BlobError::Invalid("unknown upload id".to_owned()));
        }
        Ok(self.root.join("multipart").join(upload_id))
    }

    pub(super) fn start_upload(&self, bucket: &str, key: &str) -> Result<String, BlobError> {
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

    pub(super) async fn store_part(
        &self,
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

    pub(super) async fn complete_upload(
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

    pub(super) async fn abort_upload(&self, upload_id: &str) -> Result<(), BlobError> {
        let dir = self.multipart_dir(upload_id)?;
        off_the_workers(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable(error)),
        })
        .await
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
