//! The CLI's HTTP client commands: they talk to a running server (local or on AWS) like any
//! other API client.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {}{path}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            bail!(
                "{path} answered {status}: {detail} {}",
                body.get("errors").map(Value::to_string).unwrap_or_default()
            );
        }
        Ok(body)
    }

    /// A project id from an id or a name (case-insensitive).
    pub async fn resolve_project(&self, id_or_name: &str) -> anyhow::Result<String> {
        let listed = self.call(reqwest::Method::GET, "/projects", None).await?;
        let projects = listed["projects"].as_array().cloned().unwrap_or_default();
        projects
            .iter()
            .find(|p| {
                p["id"] == id_or_name
                    || p["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(id_or_name))
            })
            .and_then(|p| p["id"].as_str().map(str::to_owned))
            .with_context(|| format!("no project named or with id {id_or_name:?}"))
    }

    /// Starts an export, shows its progress, and downloads it to `out`.
    pub async fn export(
        &self,
        project: &str,
        format: &str,
        include_unlabeled: bool,
        out: &Path,
    ) -> anyhow::Result<Value> {
        let project_id = self.resolve_project(project).await?;
        let started = self
            .call(
                reqwest::Method::POST,
                &format!("/projects/{project_id}/exports"),
                Some(json!({ "format": format, "include_unlabeled": include_unlabeled })),
            )
            .await?;
        let export_id = started["id"]
            .as_str()
            .context("the export has no id")?
            .to_owned();
        let mut stderr = std::io::stderr();
        let view = loop {
            let view = self
                .call(
                    reqwest::Method::GET,
                    &format!("/projects/{project_id}/exports/{export_id}"),
                    None,
                )
                .await?;
            let written = view["progress"]["items_written"].as_u64().unwrap_or(0);
            let total = view["progress"]["items_total"].as_u64().unwrap_or(0);
            let _ = write!(
                stderr,
                "\r{} {written}/{total} items {}",
                progress_bar(written, total),
                view["status"].as_str().unwrap_or("")
            );
            let _ = stderr.flush();
            match view["status"].as_str() {
                Some("succeeded") => break view,
                Some("failed") => bail!(
                    "the export failed: {}",
                    view["error"].as_str().unwrap_or("no reason given")
                ),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let _ = writeln!(stderr);
        let url = view["download_url"]
            .as_str()
            .context("the finished export has no download URL")?;
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .context("downloading the export")?
            .error_for_status()?;
        let mut file = tokio::fs::File::create(out)
            .await
            .with_context(|| format!("creating {}", out.display()))?;
        while let Some(chunk) = response.chunk().await? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        }
        Ok(view)
    }
}

fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .map_or(WIDTH, |f| f.min(WIDTH));
    format!(
        "[{}{}]",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    )
}

/// What an upload did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadSummary {
    pub uploaded: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Image files below `folder`, as (path relative to it with `/` separators, full path).
fn image_files(folder: &Path) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(folder) {
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if labeling_core::domain::source::is_image_key(&name) {
                    found.push((name, path));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A file's size and SHA-256 (hex), read a megabyte at a time off the async workers.
async fn size_and_sha256(path: std::path::PathBuf) -> anyhow::Result<(u64, String)> {
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1024 * 1024];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            size += read as u64;
            hasher.update(&buffer[..read]);
        }
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await?
}

impl Client {
    /// Uploads every image below `folder` into dataset `dataset` (created if missing), several
    /// files at a time. Files already there with the same size and SHA-256 are skipped, so an
    /// interrupted upload resumes where it stopped.
    pub async fn upload(
        &self,
        folder: &Path,
        dataset: &str,
        parallel: usize,
    ) -> anyhow::Result<UploadSummary> {
        use futures::StreamExt;
        if self
            .call(reqwest::Method::GET, &format!("/datasets/{dataset}"), None)
            .await
            .is_err()
        {
            self.call(reqwest::Method::POST, "/datasets", Some(json!({ "name": dataset, "description": format!("uploaded from {}", folder.display()) })))
                .await?;
        }
        let files = image_files(folder)?;
        let total = files.len() as u64;
        let mut summary = UploadSummary::default();
        let mut stderr = std::io::stderr();
        for batch in files.chunks(500) {
            let mut described = Vec::with_capacity(batch.len());
            for (name, path) in batch {
                let (size, sha256) = size_and_sha256(path.clone())
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                described.push(json!({ "name": name, "size": size, "sha256": sha256 }));
            }
            let slots = self
                .call(
                    reqwest::Method::POST,
                    &format!("/datasets/{dataset}/uploads"),
                    Some(json!({ "files": described })),
                )
                .await?;
            let slots = slots["uploads"].as_array().cloned().unwrap_or_default();
            let puts = batch
                .iter()
                .zip(slots)
                .map(|((name, path), slot)| async move {
                    if slot["skip"] == true {
                        return Ok::<_, anyhow::Error>((0u64, true));
                    }
                    let url = slot["url"]
                        .as_str()
                        .with_context(|| format!("no upload URL for {name}"))?;
                    // Streamed from disk: a camera's 10 MB photos, or a 2 GB scan, eight at a
                    // time, without holding them in memory.
                    let file = tokio::fs::File::open(path)
                        .await
                        .with_context(|| format!("reading {}", path.display()))?;
                    let size = file.metadata().await?.len();
                    let body = reqwest::Body::wrap_stream(
                        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
                    );
                    // Exactly the headers the URL was signed with (content type, checksum):
                    // any guess of ours that differs is refused.
                    let mut put = self.http.put(url);
                    if let Some(headers) = slot["headers"].as_object() {
                        for (header, value) in headers {
                            let value = value.as_str().with_context(|| {
                                format!("the upload header {header} of {name} is not text")
                            })?;
                            put = put.header(header.as_str(), value);
                        }
                    }
                    let response = put
                        .header("content-length", size)
                        .body(body)
                        .send()
                        .await
                        .with_context(|| format!("uploading {name}"))?;
                    if !response.status().is_success() {
                        let status = response.status();
                        let problem: Value = response.json().await.unwrap_or(Value::Null);
                        anyhow::bail!(
                            "uploading {name}: {status}: {}",
                            problem["detail"].as_str().unwrap_or("no detail")
                        );
                    }
                    Ok((size, false))
                });
            let mut results = futures::stream::iter(puts).buffer_unordered(parallel.max(1));
            while let Some(result) = results.next().await {
                let (size, skipped) = result?;
                if skipped {
                    summary.skipped += 1;
                } else {
                    summary.uploaded += 1;
                    summary.bytes += size;
                }
                let done = summary.uploaded + summary.skipped;
                let _ = write!(
                    stderr,
                    "\r{} {done}/{total} files ({} skipped)",
                    progress_bar(done, total),
                    summary.skipped
                );
                let _ = stderr.flush();
            }
        }
        let _ = writeln!(stderr);
        Ok(summary)
    }
}
