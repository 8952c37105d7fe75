//! `labeling-bench ingest`: the ingest job over N empty `.jpg` keys on the embedded adapters,
//! timed alone (file creation is reported apart), with the table writes and listings it made.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use labeling_core::domain::project::NewProjectInput;
use labeling_core::ports::blobs::MAX_LIST_KEYS;
use labeling_core::ports::{Clock, SystemClock};
use labeling_core::{Actor, Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};

use crate::stats::ScratchDir;
use labeling_core::ports::counting::{CountingBlobs, CountingTable};

/// Files per folder under `imgs/`.
const FILES_PER_FOLDER: usize = 1000;
/// Azure ML data labeling's documented initialization rate, items per second.
const AZURE_ML_ITEMS_PER_SECOND: f64 = 20.0;
/// The target: half a million keys ingested in under this many seconds.
const TARGET_KEYS: usize = 500_000;
const TARGET_SECONDS: f64 = 30.0;

pub async fn run(keys: usize, refresh_keys: Option<usize>) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("ingest")?;
    let dir = scratch.path();
    println!("ingest benchmark");
    println!("  data dir              {}", dir.display());

    let started = Instant::now();
    let folders = create_files(dir, keys)?;
    let creation = started.elapsed().as_secs_f64();
    println!(
        "  files created         {keys} in {folders} folders in {creation:.2} s (not part of the figure)"
    );

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = ServiceConfig::default();
    std::fs::create_dir_all(dir.join("buckets").join(&config.system_bucket))
        .context("creating the system bucket")?;
    let database = Database::open(&dir.join("labeling.db"))?;
    let table = Arc::new(CountingTable::new(Arc::new(SqliteTable::new(
        database.clone(),
    ))));
    let blobs = Arc::new(CountingBlobs::new(Arc::new(FolderBlobs::new(
        dir,
        clock.clone(),
        vec![7; 32],
    ))));
    let queue = Arc::new(SqliteQueue::new(database, clock.clone(), 5));
    let service = Service::new(table.clone(), blobs.clone(), queue, clock, config);

    let admin = Actor::admin("bench");
    let project = service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: "ingest bench".to_owned(),
                task_type: "image_classification_multiclass".to_owned(),
                labels: vec!["a".to_owned(), "b".to_owned()],
                source: "s3://bench/imgs/**".to_owned(),
                page_size: Some(1),
                ..NewProjectInput::default()
            },
        )
        .await
        .context("creating the project")?;

    let table_before = table.counts();
    let blobs_before = blobs.counts();
    let started = Instant::now();
    service
        .jobs()
        .ingest_now(&project.id)
        .await
        .context("running the ingest job")?;
    let seconds = started.elapsed().as_secs_f64();
    let table_counts = table.counts().since(table_before);
    let blob_counts = blobs.counts().since(blobs_before);

    let dashboard = service
        .dashboard()
        .dashboard(&admin, &project.id)
        .await
        .context("reading the dashboard")?;
    let rate = keys as f64 / seconds.max(f64::EPSILON);
    let expected_lists = keys.div_ceil(MAX_LIST_KEYS).max(1);
    let projected = TARGET_KEYS as f64 / rate;

    println!("  keys                  {keys}");
    println!("  ingest seconds        {seconds:.3}");
    println!("  keys/second           {rate:.0}");
    println!("  project status        {}", dashboard.status);
    println!(
        "  items in manifest     {} (dropped over the cap: {})",
        dashboard.total_items, dashboard.dropped
    );
    println!("  table writes          {}", table_counts.writes);
    println!("  table round trips     {}", table_counts.round_trips);
    println!(
        "  list calls            {} (expected ceil({keys}/{MAX_LIST_KEYS}) = {expected_lists})",
        blob_counts.lists
    );
    println!("  manifest chunk puts   {}", blob_counts.puts);
    println!(
        "  vs Azure ML           {:.0}x its ~{AZURE_ML_ITEMS_PER_SECOND:.0} items/s initialization (it would take {:.0} s)",
        rate / AZURE_ML_ITEMS_PER_SECOND,
        keys as f64 / AZURE_ML_ITEMS_PER_SECOND
    );
    let verdict = if keys >= TARGET_KEYS {
        if seconds < TARGET_SECONDS {
            "met"
        } else {
            "missed"
        }
    } else if projected < TARGET_SECONDS {
        "on track (projected linearly)"
    } else {
        "off track (projected linearly)"
    };
    println!(
        "  target                < {TARGET_SECONDS:.0} s for {TARGET_KEYS} keys: {verdict} ({projected:.2} s at this rate)"
    );
    anyhow::ensure!(
        dashboard.total_items + dashboard.dropped == keys as u64,
        "the manifest holds {} items and {} dropped, not {keys}",
        dashboard.total_items,
        dashboard.dropped
    );
    let Some(new_keys) = refresh_keys else {
        return Ok(());
    };

    // A refresh that finds `new_keys` new files among the existing ones.
    let folder = dir.join("buckets/bench/imgs/zz-new");
    std::fs::create_dir_all(&folder)?;
    for index in 0..new_keys {
        std::fs::File::create(folder.join(format!("new-{index:06}.jpg")))?;
    }
    let table_before = table.counts();
    let blobs_before = blobs.counts();
    let job = labeling_core::jobs::Job::Refresh {
        project_id: project.id.clone(),
        trigger: "on_demand".to_owned(),
        request_id: "r_bench".to_owned(),
    };
    let started = Instant::now();
    service
        .jobs()
        .run_job(&job.to_body()?)
        .await
        .context("running the refresh job")?;
    let seconds = started.elapsed().as_secs_f64();
    let table_counts = table.counts().since(table_before);
    let blob_counts = blobs.counts().since(blobs_before);
    let after = service
        .dashboard()
        .dashboard(&admin, &project.id)
        .await
        .context("reading the dashboard")?;
    println!();
    println!("refresh benchmark");
    println!("  project               {keys} items, {new_keys} new files");
    println!("  refresh seconds       {seconds:.3}");
    println!(
        "  items added           {}",
        after.total_items - dashboard.total_items
    );
    println!(
        "  table writes          {} ({} round trips)",
        table_counts.writes, table_counts.round_trips
    );
    println!("  list calls            {}", blob_counts.lists);
    println!(
        "  blob puts             {} (chunks of the new batch, refresh status)",
        blob_counts.puts
    );
    println!(
        "  target                < 5 s and table writes independent of the {keys} existing items: {}",
        if seconds < 5.0 && table_counts.writes < 16 {
            "met"
        } else {
            "missed"
        }
    );
    anyhow::ensure!(
        after.total_items == dashboard.total_items + new_keys as u64,
        "the refresh added {} items, not {new_keys}",
        after.total_items - dashboard.total_items
    );
    Ok(())
}

/// Creates `keys` empty `.jpg` files under `buckets/bench/imgs/dNNN/`, 1000 a folder; returns
/// the number of folders.
fn create_files(dir: &Path, keys: usize) -> anyhow::Result<usize> {
    let root = dir.join("buckets").join("bench").join("imgs");
    let folders = keys.div_ceil(FILES_PER_FOLDER);
    let width = folders.saturating_sub(1).to_string().len().max(3);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let root = &root;
                scope.spawn(move || -> anyhow::Result<()> {
                    for folder in (worker..folders).step_by(threads) {
                        let path = root.join(format!("d{folder:0width$}"));
                        std::fs::create_dir_all(&path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let first = folder * FILES_PER_FOLDER;
                        let last = (first + FILES_PER_FOLDER).min(keys);
                        for index in first..last {
                            let file = path.join(format!("img-{index:07}.jpg"));
                            std::fs::File::create(&file)
                                .with_context(|| format!("creating {}", file.display()))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a file-creating thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(folders)
}
