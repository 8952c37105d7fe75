//! The `labeling export` command against a running server: it shows progress and writes the
//! COCO file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_core::Actor;
use labeling_core::domain::labeling::{AnnotationInput, SubmissionInput, SubmittedItemInput};
use labeling_local::{Local, Options, demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeling_export_downloads_a_coco_file_with_a_progress_bar() {
    let dir = std::env::temp_dir().join(format!("labeling-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::new(&dir);
    options.admin_token = Some("cli-admin".to_owned());
    let local = Local::open(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    local.set_public_base(&base);
    let service = local.service.clone();
    let admin = Actor::admin("admin");
    let project = demo::create_demo(&service, local.blobs.as_ref(), demo::DEMO_BUCKET, &admin, 3)
        .await
        .unwrap();
    service.jobs().ingest_now(&project).await.unwrap();
    let task = service
        .labeling()
        .checkout(&admin, &project)
        .await
        .unwrap()
        .unwrap();
    let item = &task.items[0];
    let submission = SubmissionInput {
        items: vec![SubmittedItemInput {
            item_id: Some(item.item_id),
            annotations: Some(vec![AnnotationInput {
                label: "circle".to_owned(),
                bbox: Some(vec![10.0, 20.0, 30.0, 40.0]),
                polygon: None,
            }]),
            ..Default::default()
        }],
    };
    service
        .labeling()
        .submit(&admin, &project, &task.task_id, submission)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));

    let out = dir.join("out.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .args(["export", "demo: SHAPES", "--format", "coco", "--out"])
        .arg(&out)
        .args(["--server", &base, "--token", "cli-admin"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[##############################] 1/1 items"),
        "a finished progress bar: {stderr}"
    );
    let coco: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 1);
    assert_eq!(coco["images"][0]["width"], 320);
    assert_eq!(
        coco["annotations"][0]["bbox"],
        serde_json::json!([10.0, 20.0, 30.0, 40.0])
    );
    assert_eq!(coco["categories"][0]["name"], "circle");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("s3://demo/export/coco/Demo: shapes/")
    );

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .args(["export", "no such project", "--out"])
        .arg(dir.join("never.json"))
        .args(["--server", &base, "--token", "cli-admin"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no project named"));
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeling_upload_sends_a_folder_and_resumes_without_sending_twice() {
    let dir = std::env::temp_dir().join(format!("labeling-cli-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(pictures.join("sub")).unwrap();
    for (index, name) in ["a.png", "b.png", "sub/c.png"].iter().enumerate() {
        std::fs::write(pictures.join(name), demo::shapes_picture(index as u64)).unwrap();
    }
    std::fs::write(pictures.join("notes.txt"), b"not an image").unwrap();
    let mut options = Options::new(dir.join("data"));
    options.admin_token = Some("cli-admin".to_owned());
    let local = Local::open(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = local.service.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));
    let upload = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
            .arg("upload")
            .arg(&pictures)
            .args([
                "--dataset",
                "pics",
                "--server",
                &base,
                "--token",
                "cli-admin",
            ])
            .output()
    };
    let first = upload().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("3 files uploaded"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("3/3 files"),
        "a progress bar"
    );
    let second = upload().await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 files uploaded") && stdout.contains("3 already there"),
        "{stdout}"
    );
    std::fs::write(pictures.join("b.png"), demo::shapes_picture(99)).unwrap();
    let third = upload().await.unwrap();
    assert!(
        String::from_utf8_lossy(&third.stdout).contains("1 files uploaded"),
        "a changed file is sent again"
    );
    // The uploads' events queue a count of the folder, run by the server's worker.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let dataset = service
            .datasets()
            .get_dataset(&Actor::admin("admin"), "pics")
            .await
            .unwrap();
        if dataset.files == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the uploads were never counted: {} files",
            dataset.files
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A long admin token that passes the length check.
const LONG_TOKEN: &str = "edge-test-admin-token-0123456789abcdef";

/// A `labeling serve` started on a fresh data directory and port 0, killed when dropped.
struct Serving {
    child: tokio::process::Child,
    /// Every line it wrote so far, stdout and stderr interleaved.
    lines: Vec<String>,
    receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
    dir: std::path::PathBuf,
}

impl Serving {
    fn start(name: &str, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("labeling-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = serve_command(&dir, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let sender = sender.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = sender.send(line);
                }
            });
        }
        Self {
            child,
            lines: Vec::new(),
            receiver,
            dir,
        }
    }

    /// Waits for a line containing `text` and returns it.
    async fn line_with(&mut self, text: &str) -> String {
        if let Some(line) = self.lines.iter().find(|line| line.contains(text)) {
            return line.clone();
        }
        let wait = async {
            while let Some(line) = self.receiver.recv().await {
                self.lines.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
            panic!(
                "the server ended before printing {text:?}: {:?}",
                self.lines
            );
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), wait)
            .await
            .unwrap_or_else(|_| panic!("no {text:?} within 2 minutes"))
    }

    /// The `http://host:port` it listens on.
    async fn base(&mut self) -> String {
        let line = self.line_with("listening on http://").await;
        let start = line.find("http://").unwrap();
        line[start..].split_whitespace().next().unwrap().to_owned()
    }

    /// Stops it and returns everything it wrote.
    async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        while let Some(line) = self.receiver.recv().await {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `labeling serve` on `dir` (and a free loopback port unless `args` name an address), with
/// none of the caller's settings.
fn serve_command(dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"));
    command.arg("serve").arg("--data-dir").arg(dir);
    if !args.contains(&"--addr") {
        command.args(["--addr", "127.0.0.1:0"]);
    }
    command
        .args(args)
        .env_remove("LABELING_ADMIN_TOKEN")
        .env_remove("LABELING_PUBLIC_URL")
        .env_remove("LABELING_ADDR")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_short_or_spaced_admin_token_without_repeating_it() {
    let dir = std::env::temp_dir().join(format!("labeling-cli-short-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let short = serve_command(&dir, &["--admin-token", "hunter2-hunter2"])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&short.stderr).into_owned()
        + &String::from_utf8_lossy(&short.stdout);
    assert!(!short.status.success(), "a 15-character token is refused");
    assert!(said.contains("too short"), "{said}");
    assert!(said.contains("at least 32"), "{said}");
    assert!(
        !said.contains("hunter2"),
        "the refusal repeats the token: {said}"
    );
    assert!(!dir.exists(), "a refused start creates nothing");

    let spaced = serve_command(&dir, &[])
        .env(
            "LABELING_ADMIN_TOKEN",
            "correct horse battery staple and more words",
        )
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&spaced.stderr);
    assert!(!spaced.status.success(), "a token with spaces is refused");
    assert!(said.contains("LABELING_ADMIN_TOKEN"), "{said}");
    assert!(said.contains("without spaces"), "{said}");
    assert!(
        !said.contains("horse"),
        "the refusal repeats the token: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_prints_an_admin_token_it_was_given() {
    let mut serving = Serving::start("given-token", &["--admin-token", LONG_TOKEN, "--no-demo"]);
    serving.base().await;
    let line = serving.line_with("admin token").await;
    assert_eq!(line, "admin token: the one you gave");
    let said = serving.stop().await;
    assert!(!said.contains(LONG_TOKEN), "the token was printed: {said}");

    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .args(["serve", "--help"])
        .env("LABELING_ADMIN_TOKEN", LONG_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains(LONG_TOKEN),
        "--help shows the token from the environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_it_listens_beyond_loopback() {
    let mut serving = Serving::start(
        "wide",
        &[
            "--admin-token",
            LONG_TOKEN,
            "--no-demo",
            "--addr",
            "0.0.0.0:0",
        ],
    );
    let warning = serving.line_with("beyond this machine").await;
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("TLS proxy"), "{warning}");
    serving.base().await;
    let said = serving.stop().await;

    let mut quiet = Serving::start("narrow", &["--admin-token", LONG_TOKEN, "--no-demo"]);
    quiet.line_with("admin token").await;
    let quiet_said = quiet.stop().await;
    assert!(
        !quiet_said.contains("beyond this machine"),
        "loopback is not warned about: {quiet_said} (the wide one said {said})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_start_with_the_public_url() {
    let public = "https://labels.example.org/team";
    let mut serving = Serving::start(
        "public-url",
        &["--admin-token", LONG_TOKEN, "--public-url", public],
    );
    let base = serving.base().await;
    let demo = serving.line_with("demo project").await;
    let project = demo.split_whitespace().nth(2).unwrap().to_owned();
    let client = reqwest::Client::new();
    let mut task = serde_json::Value::Null;
    for _ in 0..600 {
        let response = client
            .post(format!("{base}/projects/{project}/tasks/checkout"))
            .bearer_auth(LONG_TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::OK {
            task = response.json().await.unwrap();
            break;
        }
        // The demo's ingest job runs in the child process: only its clock can move it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let image_url = task["items"][0]["image_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no task came: {task}"));
    assert!(
        image_url.starts_with(&format!("{public}/blobs/demo/")),
        "{image_url}"
    );
    serving.stop().await;

    for (bad, why) in [
        ("https://labels.example.org/?v=1", "query"),
        ("ftp://labels.example.org", "http"),
        ("labels.example.org", "URL"),
    ] {
        let dir = std::env::temp_dir().join(format!("labeling-cli-bad-url-{}", std::process::id()));
        let refused = serve_command(&dir, &["--public-url", bad])
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{bad} is refused");
        assert!(said.contains(why), "{bad}: {said}");
        assert!(!dir.exists(), "a refused start creates nothing");
    }
}
