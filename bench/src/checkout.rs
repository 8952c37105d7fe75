//! `labeling-bench checkout`: the whole local server on a loopback port, and concurrent
//! labelers looping checkout then submit over HTTP, each with its own connection pool.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use labeling_local::{Local, Options};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stats::{Latencies, ScratchDir, micros};

const ADMIN_TOKEN: &str = "bench-admin";
/// Labeler accounts created; more when there are more clients, so none shares one.
const LABELERS: usize = 32;
const TARGET_CYCLES_PER_SECOND: f64 = 2000.0;
const TARGET_P99_MS: f64 = 25.0;

/// What one client measured.
#[derive(Debug, Default)]
struct ClientRun {
    cycles: Vec<u64>,
    checkouts: Vec<u64>,
    submits: Vec<u64>,
    /// Set when the client stopped on an unexpected answer.
    error: Option<String>,
    ran_dry: bool,
}

pub async fn run(
    clients: usize,
    items: usize,
    seconds: u64,
    aws_endpoint: Option<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(clients > 0, "--clients must be at least 1");
    let scratch = ScratchDir::new("checkout")?;
    let dir = scratch.path();
    println!("checkout benchmark");
    println!("  data dir              {}", dir.display());

    let mut options = Options::new(dir);
    options.admin_token = Some(ADMIN_TOKEN.to_owned());
    let names = format!("bench-{}", std::process::id());
    if let Some(endpoint) = &aws_endpoint {
        println!("  store                 aws (emulator at {endpoint})");
        options.store = labeling_local::Store::Aws {
            settings: labeling_aws::AwsSettings {
                table: names.clone(),
                bucket: names.clone(),
                jobs_queue: names.clone(),
                region: "us-east-1".to_owned(),
                endpoint: Some(endpoint.clone()),
            },
            create_resources: true,
        };
    } else {
        println!("  store                 embedded");
    }
    let local = Local::open(options).await?;
    let table = local.table.clone();
    let aws = local.aws.clone();

    let started = Instant::now();
    let source = if aws.is_some() {
        put_images(local.blobs.as_ref(), &names, items).await?;
        format!("s3://{names}/set/**")
    } else {
        write_images(dir, items)?;
        "s3://bench/set/**".to_owned()
    };
    println!(
        "  images written        {items} PNGs of 16x16 in {:.2} s (not part of the figure)",
        started.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));

    let table_before = table.counts();
    if let Some(aws) = &aws {
        aws.requests.reset();
    }
    let outcome = drive(&base, clients, items, seconds, &source).await;
    if let Ok(cycles) = &outcome {
        let cycles = (*cycles).max(1) as f64;
        let trips = table.counts().since(table_before);
        println!(
            "  table per cycle       {:.2} round trips, {:.2} item writes (checkout + submit; setup included)",
            trips.round_trips as f64 / cycles,
            trips.writes as f64 / cycles
        );
        if let Some(aws) = &aws {
            println!(
                "  AWS requests/cycle    DynamoDB {:.2}, S3 {:.2}, SQS {:.2}",
                aws.requests.dynamodb() as f64 / cycles,
                aws.requests.s3() as f64 / cycles,
                aws.requests.sqs() as f64 / cycles
            );
        }
    }
    let _ = stop.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("  server stopped with an error: {error:#}"),
        Err(error) => eprintln!("  server task failed: {error}"),
    }
    outcome.map(|_| ())
}

/// Returns the checkout+submit cycles completed.
async fn drive(
    base: &str,
    clients: usize,
    items: usize,
    seconds: u64,
    source: &str,
) -> anyhow::Result<usize> {
    let admin = reqwest::Client::new();
    let labelers = LABELERS.max(clients);
    let mut tokens = Vec::with_capacity(labelers);
    for index in 0..labelers {
        let name = format!("labeler-{index:03}");
        let reply = call(
            &admin,
            base,
            "/users",
            Some(json!({ "name": name, "role": "labeler" })),
        )
        .await?;
        expect(&reply, StatusCode::CREATED, "creating a user")?;
        let token = reply.1["token"]
            .as_str()
            .context("a created user has no token")?
            .to_owned();
        tokens.push((name, token));
    }

    let started = Instant::now();
    let reply = call(
        &admin,
        base,
        "/projects",
        Some(json!({
            "name": "checkout bench",
            "task_type": "image_classification_multiclass",
            "labels": ["a", "b"],
            "source": source,
            "page_size": 1,
        })),
    )
    .await?;
    expect(&reply, StatusCode::ACCEPTED, "creating the project")?;
    let project = reply.1["id"]
        .as_str()
        .context("a created project has no id")?
        .to_owned();
    wait_until_running(&admin, base, &project).await?;
    println!(
        "  project ingested      {project} running after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for (name, _) in &tokens {
        let reply = call(
            &admin,
            base,
            &format!("/projects/{project}/members"),
            Some(json!({ "user": name })),
        )
        .await?;
        expect(&reply, StatusCode::OK, "adding a member")?;
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let runs: Vec<_> = (0..clients)
        .map(|index| {
            let token = tokens[index % tokens.len()].1.clone();
            let base = base.to_owned();
            let project = project.clone();
            tokio::spawn(async move { label(&base, &project, &token, deadline).await })
        })
        .collect();
    let mut cycles = Vec::new();
    let mut checkouts = Vec::new();
    let mut submits = Vec::new();
    let mut errors = Vec::new();
    let mut ran_dry = false;
    for run in futures::future::join_all(runs).await {
        let run = run.context("a client task failed")?;
        cycles.extend(run.cycles);
        checkouts.extend(run.checkouts);
        submits.extend(run.submits);
        errors.extend(run.error);
        ran_dry |= run.ran_dry;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let completed = cycles.len();
    let requests = Latencies::new(checkouts.iter().chain(&submits).copied().collect());
    let cycles = Latencies::new(cycles);
    let checkouts = Latencies::new(checkouts);
    let submits = Latencies::new(submits);
    let rate = completed as f64 / elapsed.max(f64::EPSILON);

    println!("  clients               {clients} ({labelers} labelers)");
    println!("  items                 {items}");
    println!(
        "  stopped by            {}",
        if ran_dry {
            "items ran out (204)"
        } else {
            "deadline"
        }
    );
    println!("  cycles                {completed}");
    println!("  seconds               {elapsed:.3}");
    println!("  cycles/second         {rate:.0}");
    println!(
        "  cycle latency ms      p50 {:.2}  p99 {:.2}  max {:.2}",
        cycles.percentile_ms(50.0),
        cycles.percentile_ms(99.0),
        cycles.max_ms()
    );
    println!(
        "  request latency ms    p50 {:.2}  p99 {:.2}  max {:.2}  ({} requests)",
        requests.percentile_ms(50.0),
        requests.percentile_ms(99.0),
        requests.max_ms(),
        requests.len()
    );
    println!(
        "    checkout            p50 {:.2}  p99 {:.2}  max {:.2}",
        checkouts.percentile_ms(50.0),
        checkouts.percentile_ms(99.0),
        checkouts.max_ms()
    );
    println!(
        "    submit              p50 {:.2}  p99 {:.2}  max {:.2}",
        submits.percentile_ms(50.0),
        submits.percentile_ms(99.0),
        submits.max_ms()
    );
    println!(
        "  target throughput     >= {TARGET_CYCLES_PER_SECOND:.0} cycles/s: {}",
        verdict(rate >= TARGET_CYCLES_PER_SECOND)
    );
    println!(
        "  target latency        p99 < {TARGET_P99_MS:.0} ms per request: {}",
        verdict(requests.percentile_ms(99.0) < TARGET_P99_MS)
    );
    println!("  client errors         {}", errors.len());
    for error in errors.iter().take(5) {
        println!("    {error}");
    }

    let reply = call(
        &admin,
        base,
        &format!("/projects/{project}/dashboard"),
        None,
    )
    .await?;
    expect(&reply, StatusCode::OK, "reading the dashboard")?;
    let labeled = reply.1["labeled"]
        .as_u64()
        .context("the dashboard has no labeled count")?;
    let matched = labeled == completed as u64;
    println!(
        "  dashboard labeled     {labeled} vs {completed} cycles: {}",
        if matched {
            "counters match"
        } else {
            "COUNTERS DO NOT MATCH"
        }
    );
    anyhow::ensure!(
        matched,
        "the dashboard counts {labeled} labeled, the clients {completed}"
    );
    anyhow::ensure!(
        errors.is_empty(),
        "{} clients stopped on an error",
        errors.len()
    );
    Ok(completed)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// One labeler's loop: checkout then submit until the deadline or no work is left.
async fn label(base: &str, project: &str, token: &str, deadline: Instant) -> ClientRun {
    let client = reqwest::Client::new();
    let mut run = ClientRun::default();
    let checkout_url = format!("{base}/projects/{project}/tasks/checkout");
    while Instant::now() < deadline {
        let cycle = Instant::now();
        let response = client
            .post(&checkout_url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await;
        let task = match read(response).await {
            Ok((StatusCode::NO_CONTENT, _)) => {
                run.checkouts.push(micros(cycle.elapsed()));
                run.ran_dry = true;
                break;
            }
            Ok((StatusCode::OK, task)) => task,
            Ok((status, body)) => {
                run.error = Some(format!("checkout answered {status}: {body}"));
                break;
            }
            Err(error) => {
                run.error = Some(format!("checkout failed: {error:#}"));
                break;
            }
        };
        run.checkouts.push(micros(cycle.elapsed()));
        let Some(task_id) = task["task_id"].as_str() else {
            run.error = Some(format!("a task without an id: {task}"));
            break;
        };
        let labels: Vec<Value> = task["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| json!({ "item_id": item["item_id"], "labels": ["a"] }))
                    .collect()
            })
            .unwrap_or_default();
        let submit = Instant::now();
        let response = client
            .post(format!("{base}/projects/{project}/tasks/{task_id}/submit"))
            .bearer_auth(token)
            .json(&json!({ "items": labels }))
            .send()
            .await;
        match read(response).await {
            Ok((StatusCode::OK, _)) => {}
            Ok((status, body)) => {
                run.error = Some(format!("submit answered {status}: {body}"));
                break;
            }
            Err(error) => {
                run.error = Some(format!("submit failed: {error:#}"));
                break;
            }
        }
        run.submits.push(micros(submit.elapsed()));
        run.cycles.push(micros(cycle.elapsed()));
    }
    run
}

async fn read(response: reqwest::Result<reqwest::Response>) -> anyhow::Result<(StatusCode, Value)> {
    let response = response?;
    let status = response.status();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, body))
}

/// An admin request: GET without a body, POST with one.
async fn call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let request = match body {
        Some(body) => client.post(format!("{base}{path}")).json(&body),
        None => client.get(format!("{base}{path}")),
    };
    read(request.bearer_auth(ADMIN_TOKEN).send().await)
        .await
        .with_context(|| format!("calling {path}"))
}

fn expect(reply: &(StatusCode, Value), status: StatusCode, what: &str) -> anyhow::Result<()> {
    if reply.0 != status {
        bail!("{what}: expected {status}, got {}: {}", reply.0, reply.1);
    }
    Ok(())
}

async fn wait_until_running(
    client: &reqwest::Client,
    base: &str,
    project: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let reply = call(client, base, &format!("/projects/{project}"), None).await?;
        expect(&reply, StatusCode::OK, "reading the project")?;
        match reply.1["status"].as_str() {
            Some("running") => return Ok(()),
            Some("initializing") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => bail!("the project is {other:?}, not running: {}", reply.1),
        }
    }
}

/// Puts `items` copies of one 16x16 PNG under `set/` of `bucket` (the AWS store).
async fn put_images(
    blobs: &dyn labeling_core::ports::Blobs,
    bucket: &str,
    items: usize,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let png = png()?;
    let keys: Vec<String> = (0..items)
        .map(|index| format!("set/img-{index:06}.png"))
        .collect();
    let mut puts = futures::stream::iter(
        keys.iter()
            .map(|key| blobs.put(bucket, key, png.clone(), "image/png")),
    )
    .buffer_unordered(16);
    while let Some(result) = puts.next().await {
        result?;
    }
    Ok(())
}

fn png() -> anyhow::Result<Vec<u8>> {
    let picture = image::RgbImage::from_pixel(16, 16, image::Rgb([30, 100, 200]));
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the PNG")?;
    Ok(png)
}

/// Writes `items` copies of one 16x16 PNG under `buckets/bench/set/`.
pub(crate) fn write_images(dir: &std::path::Path, items: usize) -> anyhow::Result<()> {
    let folder = dir.join("buckets").join("bench").join("set");
    std::fs::create_dir_all(&folder)?;
    let picture = image::RgbImage::from_pixel(16, 16, image::Rgb([30, 100, 200]));
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the PNG")?;
    for index in 0..items {
        let path = folder.join(format!("img-{index:06}.png"));
        std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
