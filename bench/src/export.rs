//! `labeling-bench export`: a project of N labeled images with B boxes each, exported as COCO
//! by the export job (in a child process, so its peak memory is its own), next to the same
//! labels converted to COCO the way Label Studio users do it (`label-studio-converter`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use labeling_core::domain::labeling::{ItemRecord, ItemState, StoredAnnotation};
use labeling_core::domain::project::NewProjectInput;
use labeling_core::ports::{Clock, Item, Key, SystemClock, Table, Write};
use labeling_core::usecases::export::ExportInput;
use labeling_core::{Actor, Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable};

use crate::stats::ScratchDir;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const CLASSES: [&str; 3] = ["cat", "dog", "bird"];

fn service_on(dir: &Path) -> anyhow::Result<(Service, Arc<SqliteTable>)> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = ServiceConfig::default();
    std::fs::create_dir_all(dir.join("buckets").join(&config.system_bucket))?;
    std::fs::create_dir_all(dir.join("buckets/bench/imgs"))?;
    let database = Database::open(&dir.join("labeling.db"))?;
    let table = Arc::new(SqliteTable::new(database.clone()));
    let blobs = Arc::new(FolderBlobs::new(dir, clock.clone(), vec![7; 32]));
    let queue = Arc::new(SqliteQueue::new(database, clock.clone(), 5));
    Ok((
        Service::new(table.clone(), blobs, queue, clock, config),
        table,
    ))
}

fn key_of(item: u64) -> String {
    format!("imgs/d{:04}/img-{item:07}.jpg", item / 1000)
}

/// The boxes of an item: deterministic, inside the image, varied.
fn boxes_of(item: u64, boxes: u64) -> Vec<(u32, [f64; 4])> {
    (0..boxes)
        .map(|b| {
            let seed = item.wrapping_mul(2_654_435_761).wrapping_add(b * 97);
            let x = (seed % 500) as f64 + 0.5;
            let y = ((seed / 7) % 380) as f64 + 0.25;
            let w = 10.0 + ((seed / 13) % 120) as f64;
            let h = 10.0 + ((seed / 17) % 90) as f64;
            ((b % 3) as u32 + 1, [x, y, w, h])
        })
        .collect()
}

/// Writes a running project and `images` labeled item records; returns the project id.
async fn seed(dir: &Path, images: u64, boxes: u64) -> anyhow::Result<String> {
    let (service, table) = service_on(dir)?;
    let admin = Actor::admin("bench");
    let project = service
        .projects()
        .create_project(
            &admin,
            NewProjectInput {
                name: "export bench".to_owned(),
                task_type: "object_detection".to_owned(),
                labels: CLASSES.iter().map(|c| c.to_string()).collect(),
                source: "s3://bench/imgs/**".to_owned(),
                page_size: Some(1),
                ..Default::default()
            },
        )
        .await?;
    service.jobs().ingest_now(&project.id).await?;
    let now = SystemClock.now();
    let mut batch = Vec::with_capacity(100);
    for item in 0..images {
        let record = ItemRecord {
            item,
            key: key_of(item),
            round: 0,
            state: ItemState::Labeled,
            task_id: None,
            labels: boxes_of(item, boxes)
                .into_iter()
                .map(|(class_id, bbox)| StoredAnnotation {
                    class_id,
                    bbox: Some(bbox),
                    polygon: None,
                    confidence: None,
                })
                .collect(),
            prelabels: Vec::new(),
            prelabel: None,
            labeled_by: Some("bench".to_owned()),
            labeled_at: Some(now),
            width: Some(WIDTH),
            height: Some(HEIGHT),
            superseded: Vec::new(),
        };
        let serde_json::Value::Object(attrs) = serde_json::to_value(&record)? else {
            bail!("an item record is not an object");
        };
        batch.push(Write::Put {
            item: Item::new(
                Key::new(
                    labeling_core::keys::project_pk(&project.id),
                    labeling_core::keys::item_sk(item),
                ),
                attrs,
            ),
            condition: None,
        });
        if batch.len() == 100 {
            table.transact(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        table.transact(batch).await?;
    }
    Ok(project.id)
}

/// The export itself, in this (child) process: prints seconds and peak memory.
pub async fn run_child(dir: &Path, project: &str) -> anyhow::Result<()> {
    let (service, _) = service_on(dir)?;
    let admin = Actor::admin("bench");
    let started = Instant::now();
    let export = service
        .exports()
        .start_export(
            &admin,
            project,
            ExportInput {
                format: Some("coco".to_owned()),
                ..Default::default()
            },
        )
        .await?;
    service
        .exports()
        .run_export_now(project, &export.id)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let view = service
        .exports()
        .get_export(&admin, project, &export.id)
        .await?;
    println!("seconds {seconds:.3}");
    println!("items {}", view.progress.items_written);
    println!("annotations {}", view.progress.annotations_written);
    println!("location {}", view.location);
    println!("peak_rss_kb {}", peak_rss_kb().unwrap_or(0));
    Ok(())
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The same labels as Label Studio JSON (percent coordinates), as its export writes them.
fn write_label_studio(path: &Path, images: u64, boxes: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"[")?;
    for item in 0..images {
        if item > 0 {
            out.write_all(b",")?;
        }
        let results: Vec<serde_json::Value> = boxes_of(item, boxes)
            .into_iter()
            .enumerate()
            .map(|(index, (class, [x, y, w, h]))| {
                serde_json::json!({
                    "id": format!("r{item}-{index}"),
                    "type": "rectanglelabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": WIDTH,
                    "original_height": HEIGHT,
                    "image_rotation": 0,
                    "value": {
                        "x": x * 100.0 / f64::from(WIDTH),
                        "y": y * 100.0 / f64::from(HEIGHT),
                        "width": w * 100.0 / f64::from(WIDTH),
                        "height": h * 100.0 / f64::from(HEIGHT),
                        "rotation": 0,
                        "rectanglelabels": [CLASSES[class as usize - 1]],
                    },
                })
            })
            .collect();
        let task = serde_json::json!({
            "id": item + 1,
            "data": { "image": format!("s3://bench/{}", key_of(item)) },
            "annotations": [{ "id": item + 1, "result": results }],
        });
        serde_json::to_writer(&mut out, &task)?;
    }
    out.write_all(b"]")?;
    out.flush()?;
    Ok(())
}

fn field<'a>(output: &'a str, name: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
}

pub async fn run(
    images: u64,
    boxes: u64,
    peer: Option<PathBuf>,
    peer_images: Option<u64>,
) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("export")?;
    let dir = scratch.path();
    println!("export benchmark");
    println!(
        "  data                  {images} labeled images x {boxes} boxes = {} annotations",
        images * boxes
    );
    let seeding = Instant::now();
    let project = seed(dir, images, boxes).await?;
    println!(
        "  seeded                in {:.1} s (not part of the figure)",
        seeding.elapsed().as_secs_f64()
    );

    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["export-child", "--data-dir"])
        .arg(dir)
        .args(["--project", &project])
        .output()
        .context("running the export in a child process")?;
    let output = String::from_utf8_lossy(&child.stdout).into_owned();
    if !child.status.success() {
        bail!(
            "the export failed: {output}{}",
            String::from_utf8_lossy(&child.stderr)
        );
    }
    let seconds: f64 = field(&output, "seconds").context("no seconds")?.parse()?;
    let annotations: u64 = field(&output, "annotations")
        .context("no annotations")?
        .parse()?;
    let peak_mb = field(&output, "peak_rss_kb")
        .context("no peak")?
        .parse::<f64>()?
        / 1024.0;
    let location = field(&output, "location").unwrap_or("?");
    let file = dir
        .join("buckets")
        .join(location.trim_start_matches("s3://"));
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!("  export seconds        {seconds:.2}");
    println!(
        "  annotations/second    {:.0}",
        annotations as f64 / seconds
    );
    println!("  peak resident memory  {peak_mb:.0} MB (the whole export process)");
    println!(
        "  output                {:.0} MB at {location}",
        bytes as f64 / 1e6
    );
    println!(
        "  targets               < 15 s: {}; < 200 MB: {}",
        if seconds < 15.0 { "met" } else { "missed" },
        if peak_mb < 200.0 { "met" } else { "missed" }
    );

    let Some(converter) = peer else {
        println!("  peer                  skipped (pass --peer path/to/label-studio-converter)");
        return Ok(());
    };
    let peer_images = peer_images.unwrap_or(images).min(images);
    let tasks = dir.join("label-studio.json");
    write_label_studio(&tasks, peer_images, boxes)?;
    let config = dir.join("config.xml");
    std::fs::write(
        &config,
        format!(
            "<View><Image name=\"image\" value=\"$image\"/><RectangleLabels name=\"label\" toName=\"image\">{}</RectangleLabels></View>",
            CLASSES
                .iter()
                .map(|c| format!("<Label value=\"{c}\"/>"))
                .collect::<String>()
        ),
    )?;
    let out = dir.join("label-studio-coco");
    let started = Instant::now();
    let status = std::process::Command::new(&converter)
        .args(["export", "--heartex-format", "-f", "COCO", "-i"])
        .arg(&tasks)
        .arg("-c")
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running label-studio-converter")?;
    let peer_seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("label-studio-converter failed ({status})");
    }
    let scale = images as f64 / peer_images as f64;
    println!(
        "  label-studio-converter {peer_seconds:.2} s for {peer_images} images ({:.0} annotations/second)",
        (peer_images * boxes) as f64 / peer_seconds
    );
    if peer_images < images {
        println!(
            "                        scaled linearly to {images} images: {:.1} s",
            peer_seconds * scale
        );
    }
    let ratio = (peer_seconds * scale) / seconds;
    println!(
        "  ratio                 {ratio:.1}x faster than label-studio-converter (target >= 20x: {})",
        if ratio >= 20.0 { "met" } else { "missed" }
    );
    Ok(())
}
