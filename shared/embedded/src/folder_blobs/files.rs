//! Object files: opened for reading only when they are regular files, and written through a
//! temporary file and a rename so readers never see half an object.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use labeling_core::ports::BlobError;

use super::unavailable;

/// Opens an object's file for reading, and only if it is a regular file. The file is opened
/// non-blocking first: opening a FIFO for reading otherwise waits for a writer for ever (a FIFO
/// named `x.png` in a bucket froze whole servers), and a device or socket is no object either.
/// Anything but a regular file reads as a missing object, as S3 has no such thing.
pub(super) fn open_regular(
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

pub(super) fn create_pending(path: PathBuf) -> std::io::Result<PendingObject> {
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
pub(super) fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut pending = create_pending(path.to_owned())?;
    pending.file()?.write_all(body)?;
    pending.commit()
}
