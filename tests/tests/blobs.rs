//! The local server's signed blob URLs under attack: a signing key in the wrong hands, files
//! that are not files, and objects larger than memory. (On AWS, S3 serves presigned URLs; these
//! tests run on the embedded store only.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labeling_core::ports::{Blobs, SystemClock};
use labeling_embedded::FolderBlobs;
use labeling_tests::{TestApp, on_aws, png, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;

/// What someone who read the data folder's signing key could do: sign any URL.
fn forger(app: &TestApp) -> FolderBlobs {
    let secret = std::fs::read(app.data_dir.join("signing.key")).unwrap();
    let forger = FolderBlobs::new(&app.data_dir, Arc::new(SystemClock), secret);
    forger.set_public_base(&app.base);
    forger
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_the_users_and_the_database_are_readable_by_their_owner_only() {
    if on_aws() {
        return;
    }
    let app = spawn_app().await;
    assert_eq!(mode_of(&app.data_dir), 0o700, "the data folder");
    for file in ["signing.key", "users.json", "labeling.db"] {
        assert_eq!(mode_of(&app.data_dir.join(file)), 0o600, "{file}");
    }
    // The write-ahead log exists once something was written; it takes the database's mode.
    app.user("ann", "labeler").await;
    let wal = app.data_dir.join("labeling.db-wal");
    if wal.exists() {
        assert_eq!(mode_of(&wal), 0o600, "labeling.db-wal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_made_before_private_modes_is_tightened_on_start() {
    let dir = std::env::temp_dir().join(labeling_testkit::unique("labeling-modes"));
    let mut options = labeling_local::Options::new(&dir);
    options.admin_token = Some("modes-admin-token-0123456789abcdef".to_owned());
    drop(labeling_local::Local::open(options).await.unwrap());
    for file in ["signing.key", "users.json", "labeling.db"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    drop(
        labeling_local::Local::open(labeling_local::Options::new(&dir))
            .await
            .unwrap(),
    );
    assert_eq!(mode_of(&dir), 0o700);
    for file in ["signing.key", "users.json", "labeling.db"] {
        assert_eq!(mode_of(&dir.join(file)), 0o600, "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_url_cannot_read_or_write_outside_what_the_service_hands_out() {
    if on_aws() {
        return;
    }
    let app = spawn_app().await;
    let forger = forger(&app);
    let client = reqwest::Client::new();
    let hour = Duration::from_secs(3600);

    // A file of the machine that no project reads: /etc/passwd exists everywhere.
    let url = forger
        .presign_get("file:///etc", "passwd", hour)
        .await
        .unwrap();
    let reply = client.get(&url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers()["content-type"],
        "application/problem+json",
        "{url}"
    );

    // A folder a project does read: its images are served, nothing else in it is.
    let folder = app.data_dir.join("outside-photos");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("cat.png"), png(8, 6, 1)).unwrap();
    std::fs::write(folder.join("notes.txt"), b"not an image").unwrap();
    let source = format!("file://{}/**", folder.display());
    app.project(json!({
        "name": "outside", "task_type": "object_detection", "labels": ["cat"],
        "source": source, "page_size": 1,
    }))
    .await;
    let bucket = format!("file://{}", folder.display());
    let image = client
        .get(forger.presign_get(&bucket, "cat.png", hour).await.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(
        image.bytes().await.unwrap().as_ref(),
        png(8, 6, 1).as_slice()
    );
    let notes = client
        .get(
            forger
                .presign_get(&bucket, "notes.txt", hour)
                .await
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(notes.status(), StatusCode::FORBIDDEN);

    // Writes: never into a local folder, never into another bucket or outside the datasets.
    let escape = std::env::temp_dir().join(labeling_testkit::unique("escape"));
    for (bucket, key) in [
        (
            format!("file://{}", escape.display()),
            "evil.png".to_owned(),
        ),
        (format!("file://{}", folder.display()), "cat.png".to_owned()),
        ("demo".to_owned(), "shapes/evil.png".to_owned()),
        (
            app.service.config().system_bucket.clone(),
            "export/coco/x/evil.json".to_owned(),
        ),
    ] {
        let url = forger
            .presign_put(&bucket, &key, "image/png", None, hour)
            .await
            .unwrap()
            .url;
        let reply = client
            .put(&url)
            .body(b"evil".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::FORBIDDEN, "{bucket} {key}");
    }
    assert!(
        !escape.exists(),
        "nothing was written outside the data folder"
    );
    assert_eq!(
        std::fs::read(folder.join("cat.png")).unwrap(),
        png(8, 6, 1),
        "a source image is never overwritten"
    );

    // Where uploads go, a signed PUT works.
    let system = app.service.config().system_bucket.clone();
    let url = forger
        .presign_put(&system, "datasets/cats/a.png", "image/png", None, hour)
        .await
        .unwrap()
        .url;
    let reply = client
        .put(&url)
        .header("content-type", "image/png")
        .body(png(4, 4, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(
        app.blobs
            .get(&system, "datasets/cats/a.png", None)
            .await
            .unwrap(),
        png(4, 4, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_a_signed_url_is_problem_json() {
    if on_aws() {
        return;
    }
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (url, status) in [
        (
            format!(
                "{}/blobs/demo/shapes/x.png?expires=abc&signature=00",
                app.base
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{}/blobs/demo/shapes/x.png", app.base),
            StatusCode::FORBIDDEN,
        ),
        (
            format!(
                "{}/blobs/demo/shapes/x.png?expires=99999999999999&signature=00",
                app.base
            ),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let reply = client.get(&url).send().await.unwrap();
        assert_eq!(reply.status(), status, "{url}");
        assert_eq!(
            reply.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
    }
}

/// Sends a PUT by hand and returns the status line and the body.
fn raw_put(base: &str, path_and_query: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "PUT {path_and_query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let _ = stream.write_all(body);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_is_a_413_problem_and_leaves_nothing_behind() {
    if on_aws() {
        return;
    }
    let app = spawn_app().await;
    let small = spawn_app_with(|options| options.max_upload_bytes = 1024 * 1024).await;
    let key = "datasets/big/huge.jpg";
    let hour = Duration::from_secs(3600);
    let system = app.service.config().system_bucket.clone();

    // Declared larger than 5 GiB (S3's single PUT): refused before a byte is read.
    let url = forger(&app)
        .presign_put(&system, key, "image/jpeg", None, hour)
        .await
        .unwrap()
        .url;
    let base = app.base.clone();
    let path_and_query = url.trim_start_matches(&app.base).to_owned();
    let (status, response) = tokio::task::spawn_blocking(move || {
        raw_put(
            &base,
            &path_and_query,
            "Content-Type: image/jpeg\r\nContent-Length: 5368709121\r\n",
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{response}");
    assert!(response.contains("application/problem+json"), "{response}");

    // Streamed without a length and over the limit (1 MiB on this server): cut off at the
    // limit, nothing stored.
    let url = forger(&small)
        .presign_put(&system, key, "image/jpeg", None, hour)
        .await
        .unwrap()
        .url;
    let chunks =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![7u8; 64 * 1024])));
    let reply = reqwest::Client::new()
        .put(&url)
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The server answers as soon as the limit is passed; the client may see the answer or a
    // connection closed while it was still sending.
    if let Ok(reply) = reply {
        assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.headers()["content-type"], "application/problem+json");
    }
    let folder = small
        .data_dir
        .join("buckets")
        .join(&system)
        .join("datasets/big");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Just under the limit is stored whole.
    let body = vec![9u8; 1024 * 1024];
    let reply = reqwest::Client::new()
        .put(&url)
        .header("content-type", "image/jpeg")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(std::fs::read(folder.join("huge.jpg")).unwrap(), body);
}

/// The process's peak resident memory so far, in bytes.
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kilobytes: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kilobytes * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_downloads_of_a_300_mb_object_stream_with_flat_memory() {
    if on_aws() {
        return;
    }
    let app = spawn_app().await;
    const SIZE: u64 = 300 * 1024 * 1024;
    // A sparse file: 300 MB to read, nothing to write.
    let folder = app.data_dir.join("buckets/exports-bucket/export/coco/p");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::File::create(folder.join("big.json"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let url = forger(&app)
        .presign_get(
            "exports-bucket",
            "export/coco/p/big.json",
            Duration::from_secs(600),
        )
        .await
        .unwrap();

    let before = peak_resident_bytes();
    let downloads = (0..6).map(|_| {
        let url = url.clone();
        async move {
            let mut response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.content_length(), Some(SIZE));
            let mut received = 0u64;
            while let Some(chunk) = response.chunk().await.unwrap() {
                received += chunk.len() as u64;
            }
            received
        }
    });
    let received = futures::future::join_all(downloads).await;
    assert_eq!(received, vec![SIZE; 6]);
    let growth = peak_resident_bytes().saturating_sub(before);
    // Buffered whole, the six would take 1.8 GB; streamed, a few buffers each.
    assert!(
        growth < 150 * 1024 * 1024,
        "peak memory grew by {} MB",
        growth / 1024 / 1024
    );
}

#[test]
fn fifos_named_like_images_do_not_freeze_the_server() {
    if on_aws() {
        return;
    }
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = server_runtime.block_on(async {
        let app = spawn_app().await;
        app.images("pics", "p", 8, 16, 16).await;
        let project = app
            .project(json!({
                "name": "fifos", "task_type": "object_detection", "labels": ["cat"],
                "source": "s3://pics/**", "page_size": 1,
            }))
            .await;
        (app, project)
    });
    let (app, project) = app;
    // Each image becomes a FIFO after ingest: opening one for reading waits for a writer.
    let folder = app.data_dir.join("buckets/pics/p");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
    }

    // The clients run on a runtime of their own, so a frozen server fails this test instead
    // of hanging it.
    let base = app.base.clone();
    let admin = app.admin.clone();
    let checked_out = project.clone();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let checkouts = (0..8).map(|_| {
                client
                    .post(format!("{base}/projects/{checked_out}/tasks/checkout"))
                    .bearer_auth(&admin)
                    .send()
            });
            let checkouts = futures::future::join_all(checkouts);
            let health = async {
                let mut slowest = Duration::ZERO;
                for _ in 0..20 {
                    let started = Instant::now();
                    let reply = client.get(format!("{base}/healthz")).send().await.unwrap();
                    assert_eq!(reply.status(), StatusCode::OK);
                    slowest = slowest.max(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                slowest
            };
            let (checkouts, slowest_health) = tokio::join!(checkouts, health);
            let statuses: Vec<u16> = checkouts
                .into_iter()
                .map(|reply| reply.unwrap().status().as_u16())
                .collect();
            let _ = done.send((statuses, slowest_health));
        });
    });
    let (statuses, slowest_health) = outcome
        .recv_timeout(Duration::from_secs(120))
        .expect("the server froze: checkouts and /healthz did not answer within two minutes");
    // Every image is unreadable: each checkout marks what it meets missing, and nothing is
    // left to hand out.
    assert!(statuses.iter().all(|status| *status == 204), "{statuses:?}");
    assert!(
        slowest_health < Duration::from_secs(5),
        "/healthz took {slowest_health:?}"
    );
    let missing = server_runtime.block_on(async {
        app.get(
            &format!("/projects/{project}/items?state=missing"),
            &app.admin,
        )
        .await
    });
    assert_eq!(
        missing.body["items"].as_array().map(Vec::len),
        Some(8),
        "{missing:?}"
    );
    drop(app);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
}
