//! Files and folders only their owner may read: the data directory, the signing key, the users
//! file and the database. Anyone else on the machine who could read the signing key could sign
//! URLs for any object; anyone who could read the database could read every label.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read and write.
pub const FILE_MODE: u32 = 0o600;
/// Owner read, write and search.
pub const DIRECTORY_MODE: u32 = 0o700;

/// Creates `path` (and missing parents) as a private folder, or restricts an existing one.
pub fn create_directory(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(path)?;
    set_mode(path, DIRECTORY_MODE)
}

/// Writes `body` to a new private file at `path`, replacing what was there.
pub fn write(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // `mode` applies only when the file is created: an older file keeps its own.
    set_mode(path, FILE_MODE)?;
    file.write_all(body)?;
    file.sync_data()
}

/// Creates an empty private file at `path` if there is none; restricts an existing one.
pub fn create_or_restrict(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    set_mode(path, FILE_MODE)
}

/// Restricts an existing file to its owner.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    set_mode(path, FILE_MODE)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    if metadata.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_files_end_up_readable_by_their_owner_only() {
        let dir = std::env::temp_dir().join(format!("private-file-{}", uuid::Uuid::new_v4()));
        create_directory(&dir.join("inner")).unwrap();
        assert_eq!(mode_of(&dir.join("inner")), DIRECTORY_MODE);

        let fresh = dir.join("fresh");
        write(&fresh, b"secret").unwrap();
        assert_eq!(mode_of(&fresh), FILE_MODE);

        let old = dir.join("old");
        std::fs::write(&old, b"was world-readable").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&old, b"secret").unwrap();
        assert_eq!(mode_of(&old), FILE_MODE);

        let database = dir.join("db");
        std::fs::write(&database, b"").unwrap();
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_or_restrict(&database).unwrap();
        assert_eq!(mode_of(&database), FILE_MODE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
