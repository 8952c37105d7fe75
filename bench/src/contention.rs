//! `labeling-bench contention`: how many labels a second one project sustains when the table
//! behaves like DynamoDB under concurrency (the testkit's `DynamoLike`: overlapping
//! transactions cancelled, plain writes to held items refused, 1,000 write units a second per
//! item) behind the retrying table the composition roots use. Labelers drive the service
//! directly, without HTTP, so the figure is the table's limit, not the server's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use labeling_core::domain::errors::{DomainError, ErrorKind};
use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::domain::project::NewProjectInput;
use labeling_core::ports::SystemClock;
use labeling_core::{Actor, Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};
use labeling_host::Retrying;
use labeling_testkit::{DynamoLike, DynamoLikeConfig};

use crate::stats::ScratchDir;

/// What the labelers of one run did.
#[derive(Debug, Default)]
struct Tally {
    labels: u64,
    /// Requests the service answered "busy, retry" (503), sent again.
    busy: u64,
    ran_dry: bool,
}

pub async fn run(
    clients: Vec<usize>,
    items: usize,
    seconds: u64,
    hold_ms: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(!clients.is_empty(), "--clients needs at least one count");
    let config = DynamoLikeConfig {
        transaction_hold: Duration::from_millis(hold_ms),
        ..DynamoLikeConfig::default()
    };
    println!("contention benchmark (one project, DynamoDB-like table, service driven directly)");
    println!(
        "  table                 transactions hold their items {hold_ms} ms; {} write units/s per item",
        config.item_write_units_per_second
    );
    println!(
        "  {:>7} {:>8} {:>9} {:>9} {:>15} {:>13} {:>15} {:>11}",
        "clients",
        "labels",
        "seconds",
        "labels/s",
        "conflicts/label",
        "retries/label",
        "throttles/label",
        "busy/label"
    );
    for count in clients {
        anyhow::ensure!(count > 0, "a client count must be at least 1");
        one_run(count, items, seconds, config.clone()).await?;
    }
    Ok(())
}

async fn one_run(
    clients: usize,
    items: usize,
    seconds: u64,
    config: DynamoLikeConfig,
) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("contention")?;
    let dir = scratch.path();
    crate::checkout::write_images(dir, items)?;
    let clock = Arc::new(SystemClock);
    let database = Database::open(&dir.join("labeling.db"))?;
    let table = Arc::new(Retrying::new(DynamoLike::with_config(
        SqliteTable::new(database.clone()),
        config,
    )));
    let blobs = Arc::new(FolderBlobs::new(
        dir,
        clock.clone(),
        b"bench-secret".to_vec(),
    ));
    let queue = Arc::new(SqliteQueue::new(database, clock.clone(), 5));
    let service_config = ServiceConfig::default();
    std::fs::create_dir_all(dir.join("buckets").join(&service_config.system_bucket))?;
    let service = Arc::new(Service::new(
        table.clone(),
        blobs,
        queue,
        clock,
        service_config,
    ));
    let admin = Actor::admin("admin");
    let project = service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: format!("contention-{clients}"),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["cat".to_owned(), "dog".to_owned()],
                source: "s3://bench/set/**".to_owned(),
                ..Default::default()
            },
        )
        .await?;
    service.jobs().ingest_now(&project.id).await?;

    let before = (table.inner().refusals(), table.retries());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for index in 0..clients {
        let service = service.clone();
        let project = project.id.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            label(&service, &project, index, &stop).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for worker in workers {
        let one = worker.await??;
        tally.labels += one.labels;
        tally.busy += one.busy;
        tally.ran_dry |= one.ran_dry;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refusals = table.inner().refusals();
    let per_label = |n: u64| n as f64 / tally.labels.max(1) as f64;
    println!(
        "  {:>7} {:>8} {:>9.2} {:>9.0} {:>15.2} {:>13.2} {:>15.2} {:>11.3}{}",
        clients,
        tally.labels,
        elapsed,
        tally.labels as f64 / elapsed,
        per_label(refusals.conflicts - before.0.conflicts),
        per_label(table.retries() - before.1),
        per_label(refusals.throttles - before.0.throttles),
        per_label(tally.busy),
        if tally.ran_dry {
            "  (ran dry: raise --items)"
        } else {
            ""
        }
    );
    Ok(())
}

/// One labeler: checkout, submit, again, until told to stop; a 503 is sent again at once, as
/// the service already waited in its retries.
async fn label(
    service: &Service,
    project: &str,
    index: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Tally> {
    let actor = Actor::admin(format!("labeler{index}"));
    let class = if index.is_multiple_of(2) {
        "cat"
    } else {
        "dog"
    };
    let labeling = service.labeling();
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let task = match labeling.checkout(&actor, project).await {
            Ok(Some(task)) => task,
            Ok(None) => {
                tally.ran_dry = true;
                break;
            }
            Err(error) if error.kind() == ErrorKind::Unavailable => {
                tally.busy += 1;
                continue;
            }
            Err(error) => anyhow::bail!("checkout refused: {error}"),
        };
        let items: Vec<SubmittedItemInput> = task
            .items
            .iter()
            .map(|item| SubmittedItemInput {
                item_id: Some(item.item_id),
                labels: Some(vec![class.to_owned()]),
                ..Default::default()
            })
            .collect();
        loop {
            let submission = SubmissionInput {
                items: items.clone(),
            };
            match labeling
                .submit(&actor, project, &task.task_id, submission)
                .await
            {
                Ok(receipt) => {
                    tally.labels += receipt.labeled as u64;
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Unavailable => tally.busy += 1,
                Err(error) => anyhow::bail!("a valid lease was refused: {error}"),
            }
        }
    }
    Ok(tally)
}
