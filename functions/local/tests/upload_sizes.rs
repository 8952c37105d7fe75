//! `labeling upload` with files of every size a team has: a 1 KB icon, a 3 MB camera photo and
//! a 200 MB scan, each stored byte for byte (signed PUTs were capped at 2 MiB once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;

use labeling_local::{Local, Options};
use sha2::{Digest, Sha256};

/// `size` bytes that do not compress or repeat, so a truncated or shuffled copy shows.
fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeling_upload_stores_1_kb_3_mb_and_200_mb_files_whole() {
    let dir = std::env::temp_dir().join(format!("labeling-upload-sizes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(&pictures).unwrap();
    let sizes = [
        ("icon.png", 1024),
        ("photo.jpg", 3_000_000),
        ("scan.tif", 200 * 1024 * 1024),
    ];
    let mut digests = Vec::new();
    for (index, (name, size)) in sizes.iter().enumerate() {
        let body = noise(*size, index as u64 + 1);
        digests.push(hex::encode(Sha256::digest(&body)));
        std::fs::File::create(pictures.join(name))
            .unwrap()
            .write_all(&body)
            .unwrap();
    }

    let token = "upload-sizes-admin-token-0123456789";
    let mut options = Options::new(dir.join("data"));
    options.admin_token = Some(token.to_owned());
    let local = Local::open(options).await.unwrap();
    let system_bucket = local.service.config().system_bucket.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .arg("upload")
        .arg(&pictures)
        .args(["--dataset", "scans", "--server", &base, "--token", token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 files uploaded"), "{stdout}");

    let stored = dir
        .join("data/buckets")
        .join(&system_bucket)
        .join("datasets/scans");
    for ((name, size), digest) in sizes.iter().zip(&digests) {
        let body = std::fs::read(stored.join(name)).unwrap();
        assert_eq!(body.len(), *size, "{name}");
        assert_eq!(&hex::encode(Sha256::digest(&body)), digest, "{name}");
    }
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
