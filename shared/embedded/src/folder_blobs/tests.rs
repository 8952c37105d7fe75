//! Unit tests of the folder store that need its insides: listing walks, upload clean-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]
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
