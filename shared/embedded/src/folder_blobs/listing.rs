//! Folder listings in S3's key order: each folder's entries sorted once (and cached while the
//! folder is unchanged), walked depth first, with entries that cannot be objects counted.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use labeling_core::ports::ObjectMeta;

use super::{FolderBlobs, etag};

/// A folder unchanged for this long has a modification time that later changes will move.
const SETTLED_FOLDER_AGE: Duration = Duration::from_secs(2);

/// A folder's entries sorted as S3 would sort the keys below it: a directory sorts as its
/// name followed by `/`.
#[derive(Debug)]
pub(super) struct DirectoryListing {
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

fn sort_name(name: &str, is_dir: bool) -> String {
    if is_dir {
        format!("{name}/")
    } else {
        name.to_owned()
    }
}

impl FolderBlobs {
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
    pub(super) fn walk(
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
}
