//! Test harness: starts the whole local service on `127.0.0.1:0` with a fresh data directory
//! and a clock the test controls, and speaks HTTP to it like any client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod direct;
pub mod ml;
pub mod openapi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use labeling_local::{Local, Options, Store};
use labeling_testkit::FakeClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Which store the suite runs on: `LABELING_TEST_STORE=aws` runs it on DynamoDB, S3 and SQS in
/// the emulator at `LABELING_MOTO_ENDPOINT`; otherwise on the embedded store.
pub fn on_aws() -> bool {
    std::env::var("LABELING_TEST_STORE").is_ok_and(|s| s == "aws")
}

/// A moto_server of this test's own, on a free loopback port, stopped when dropped. Each test
/// gets one: moto copies all of a server's tables on every transaction, so a server shared by
/// a whole suite slows down and grows without bound.
pub struct MotoServer {
    pub endpoint: String,
    child: std::process::Child,
}

impl MotoServer {
    pub fn start() -> Self {
        let program = std::env::var("LABELING_MOTO_SERVER").expect(
            "LABELING_MOTO_SERVER is not set: run ./infra/test.sh, or eval \"$(./infra/python-env.sh)\"",
        );
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = std::process::Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Python takes seconds to start on a loaded machine: wait as long as the child
            // lives. It exits at once when the port was taken meanwhile; then try another.
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Something answers; make sure it is ours and not a thief of the port.
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(None) = child.try_wait() {
                        return Self {
                            endpoint: format!("http://127.0.0.1:{port}"),
                            child,
                        };
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polling for background work: up to two minutes of real time (CI machines are slow and
/// busy), moving the fake clock a little on each poll so that delayed jobs and retries of
/// failed jobs come due, and each refresh leaves a distinct time.
pub struct Patience {
    deadline: std::time::Instant,
}

impl Patience {
    const POLL: Duration = Duration::from_millis(10);
    const FAKE_STEP: Duration = Duration::from_millis(100);

    pub fn new() -> Self {
        Self {
            deadline: std::time::Instant::now() + Duration::from_secs(120),
        }
    }

    /// Waits one poll; false once the patience is used up.
    pub async fn wait(&mut self, clock: &FakeClock) -> bool {
        clock.advance(Self::FAKE_STEP);
        tokio::time::sleep(Self::POLL).await;
        std::time::Instant::now() < self.deadline
    }
}

impl Default for Patience {
    fn default() -> Self {
        Self::new()
    }
}

pub struct TestApp {
    pub base: String,
    /// The emulator this app's AWS store talks to.
    pub moto: Option<MotoServer>,
    /// The store's blob port, to put and remove source images as a user would.
    pub blobs: Arc<dyn labeling_core::ports::Blobs>,
    pub aws: Option<labeling_aws::Aws>,
    /// Counts what the service asks of the table.
    pub table: Arc<labeling_core::ports::counting::CountingTable>,
    /// Makes bucket names unique to this app (buckets are global in an emulator).
    suffix: String,
    pub admin: String,
    pub clock: Arc<FakeClock>,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    pub service: Arc<labeling_core::Service>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A response: status, headers that tests look at, and the body as JSON (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with options of the test's own (limits, for example).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Options)) -> TestApp {
    // `LABELING_TEST_LOG=warn` (or any filter) shows the server's logs, e.g. causes of a 503.
    if let Ok(filter) = std::env::var("LABELING_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let data_dir = std::env::temp_dir().join(labeling_testkit::unique("labeling-test"));
    let clock = Arc::new(FakeClock::default());
    let mut options = Options::new(&data_dir);
    options.admin_token = Some("admin-token".to_owned());
    options.clock = clock.clone();
    let suffix = labeling_testkit::unique("t")
        .to_lowercase()
        .replace('_', "-");
    let suffix = suffix[suffix.len().saturating_sub(24)..]
        .trim_start_matches('-')
        .to_owned();
    let moto = on_aws().then(MotoServer::start);
    if let Some(moto) = &moto {
        let endpoint = moto.endpoint.clone();
        options.store = Store::Aws {
            settings: labeling_aws::AwsSettings {
                table: format!("labeling-{suffix}"),
                bucket: format!("labeling-{suffix}"),
                jobs_queue: format!("jobs-{suffix}"),
                region: "us-east-1".to_owned(),
                endpoint: Some(endpoint),
            },
            create_resources: true,
        };
    }
    configure(&mut options);
    let local = Local::open(options).await.unwrap();
    let service = local.service.clone();
    let blobs = local.blobs.clone();
    let aws = local.aws.clone();
    let table = local.table.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        moto,
        blobs,
        aws,
        table,
        suffix,
        admin: "admin-token".to_owned(),
        clock,
        data_dir,
        client: reqwest::Client::new(),
        service,
        shutdown: Some(shutdown),
    }
}

/// A small real PNG of the given size.
pub fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
    let picture = image::RgbImage::from_pixel(width, height, image::Rgb([shade, 100, 200]));
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

impl TestApp {
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method_name = method.as_str().to_owned();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if let Err(mismatch) = openapi::check(&method_name, path, status.as_u16(), &body) {
            panic!("the response does not match /openapi.json: {mismatch}");
        }
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Creates a user and returns its token.
    pub async fn user(&self, name: &str, role: &str) -> String {
        let reply = self
            .post("/users", &self.admin, json!({ "name": name, "role": role }))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body["token"].as_str().unwrap().to_owned()
    }

    /// The name a test's bucket `name` has in this app's store (unique in an emulator).
    pub fn bucket(&self, name: &str) -> String {
        if self.aws.is_some() {
            format!("{name}-{}", self.suffix)
        } else {
            name.to_owned()
        }
    }

    /// Puts an object into a bucket of the store, creating the bucket when needed.
    pub async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        if let Some(aws) = &self.aws {
            aws.create_bucket(bucket, "us-east-1").await.unwrap();
        }
        self.blobs
            .put(bucket, key, body, "image/png")
            .await
            .unwrap();
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) {
        self.blobs.delete(bucket, key).await.unwrap();
    }

    /// Writes `count` PNG images of `width` x `height` as `prefix/img-NNNNN.png` into `bucket`.
    pub async fn images(&self, bucket: &str, prefix: &str, count: usize, width: u32, height: u32) {
        let body = png(width, height, 7);
        if let Some(aws) = &self.aws {
            aws.create_bucket(bucket, "us-east-1").await.unwrap();
        }
        let keys: Vec<String> = (0..count)
            .map(|index| format!("{prefix}/img-{index:05}.png"))
            .collect();
        let puts = keys
            .iter()
            .map(|key| self.blobs.put(bucket, key, body.clone(), "image/png"));
        let results: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(puts),
            16,
        ))
        .await;
        for result in results {
            result.unwrap();
        }
    }

    /// Creates a project and waits until ingest has made it `running`.
    pub async fn project(&self, body: Value) -> String {
        let reply = self.post("/projects", &self.admin, body).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        assert_eq!(reply.body["status"], "initializing");
        let id = reply.body["id"].as_str().unwrap().to_owned();
        self.wait_for_status(&id, "running").await;
        id
    }

    /// Polls the project until it reaches `status` (ingest runs on the background worker).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let mut patience = Patience::new();
        loop {
            let reply = self.get(&format!("/projects/{id}"), &self.admin).await;
            if reply.body["status"] == status {
                return reply.body;
            }
            assert!(
                patience.wait(&self.clock).await,
                "project {id} never reached {status}: {reply:?}"
            );
        }
    }

    /// A project of `count` images of 64x48, with `labeler` as a member.
    pub async fn labeled_project(
        &self,
        task_type: &str,
        labels: &[&str],
        count: usize,
        page_size: u32,
        labeler: &str,
    ) -> String {
        let bucket = format!(
            "b{}",
            labeling_testkit::unique("x")
                .replace(['-', '_'], "")
                .to_lowercase()
        );
        let bucket = &bucket[..bucket.len().min(40)];
        self.images(bucket, "set", count, 64, 48).await;
        let id = self
            .project(json!({
                "name": labeling_testkit::unique("project"),
                "task_type": task_type,
                "labels": labels,
                "instructions": { "text": "label it", "url": null },
                "source": format!("s3://{bucket}/set/**"),
                "page_size": page_size,
            }))
            .await;
        // A member must be a user: create the labeler unless the test did (409 then).
        self.post(
            "/users",
            &self.admin,
            json!({ "name": labeler, "role": "labeler" }),
        )
        .await;
        let reply = self
            .post(
                &format!("/projects/{id}/members"),
                &self.admin,
                json!({ "user": labeler }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        id
    }

    pub async fn checkout(&self, project: &str, token: &str) -> Reply {
        self.post(
            &format!("/projects/{project}/tasks/checkout"),
            token,
            json!({}),
        )
        .await
    }

    pub async fn submit(&self, project: &str, task: &str, token: &str, body: Value) -> Reply {
        self.post(
            &format!("/projects/{project}/tasks/{task}/submit"),
            token,
            body,
        )
        .await
    }

    pub async fn dashboard(&self, project: &str) -> Value {
        let reply = self
            .get(&format!("/projects/{project}/dashboard"), &self.admin)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }
}

impl TestApp {
    /// Starts an export, waits until it finished, and returns its final view and its content.
    pub async fn export(&self, project: &str, body: Value) -> (Value, Vec<u8>) {
        let started = self
            .post(&format!("/projects/{project}/exports"), &self.admin, body)
            .await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
        let id = started.body["id"].as_str().unwrap().to_owned();
        let mut patience = Patience::new();
        loop {
            let view = self
                .get(&format!("/projects/{project}/exports/{id}"), &self.admin)
                .await
                .body;
            match view["status"].as_str() {
                Some("succeeded") => {
                    let url = view["download_url"].as_str().unwrap();
                    let content = self.client.get(url).send().await.unwrap();
                    assert_eq!(content.status(), StatusCode::OK);
                    let bytes = content.bytes().await.unwrap().to_vec();
                    return (view, bytes);
                }
                Some("failed") => panic!("export failed: {view}"),
                _ => assert!(
                    patience.wait(&self.clock).await,
                    "export {id} never finished: {view}"
                ),
            }
        }
    }

    /// Queues a refresh and waits until one has run after this call (its status changed).
    pub async fn refresh(&self, project: &str) -> Value {
        let before = self.dashboard(project).await["refresh"].clone();
        // Refreshes record when they ran: keep this one apart from the last one.
        self.clock.advance(Duration::from_secs(1));
        let reply = self
            .post(
                &format!("/projects/{project}/refresh"),
                &self.admin,
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        self.wait_for_refresh_after(project, &before).await
    }

    /// Waits until the project's refresh status differs from `before`.
    pub async fn wait_for_refresh_after(&self, project: &str, before: &Value) -> Value {
        let mut patience = Patience::new();
        loop {
            let now = self.dashboard(project).await;
            if &now["refresh"] != before {
                return now;
            }
            assert!(
                patience.wait(&self.clock).await,
                "no refresh of {project} ran"
            );
        }
    }

    /// Keys of every item handed out until nothing is left, in order (each item skipped).
    pub async fn drain_keys(&self, project: &str, token: &str) -> Vec<String> {
        self.submit_until_empty(project, token, |_| json!({ "skip": true }))
            .await
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// Checks out and submits until nothing is left, building each item's labels with `labels`
    /// (given the item's key). Returns the submitted labels by key.
    pub async fn label_all<F>(
        &self,
        project: &str,
        token: &str,
        labels: F,
    ) -> std::collections::BTreeMap<String, Value>
    where
        F: FnMut(&str) -> Value,
    {
        self.submit_until_empty(project, token, labels)
            .await
            .into_iter()
            .collect()
    }

    /// Checks out and submits until checkout answers 204, each item answered with `answer`
    /// (given its key); every (key, submitted entry) in the order handed out.
    async fn submit_until_empty<F>(
        &self,
        project: &str,
        token: &str,
        mut answer: F,
    ) -> Vec<(String, Value)>
    where
        F: FnMut(&str) -> Value,
    {
        let mut submitted = Vec::new();
        loop {
            let task = self.checkout(project, token).await;
            if task.status == StatusCode::NO_CONTENT {
                return submitted;
            }
            assert_eq!(task.status, StatusCode::OK, "{task:?}");
            let mut items = Vec::new();
            for item in task.body["items"].as_array().unwrap() {
                let key = item["key"].as_str().unwrap().to_owned();
                let mut entry = answer(&key);
                entry["item_id"] = item["item_id"].clone();
                items.push(entry.clone());
                submitted.push((key, entry));
            }
            let reply = self
                .submit(
                    project,
                    task.body["task_id"].as_str().unwrap(),
                    token,
                    json!({ "items": items }),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        }
    }
}
