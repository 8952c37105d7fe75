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
