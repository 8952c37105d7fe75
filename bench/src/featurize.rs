//! `labeling-bench featurize`: images per second of the backbone on N 640x480 JPEGs at several
//! batch sizes, side by side with (a) ONNX Runtime alone on ready tensors (the limit) and (b)
//! Python `onnxruntime` with Pillow preprocessing (infra/models/bench_python.py).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use labeling_ml::{BackboneSpec, OnnxEmbedder, preprocess};

use crate::stats::ScratchDir;

/// Colour photos that ship with scikit-image, the base of the generated JPEGs.
const PHOTOS: &[&str] = &[
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
];

pub struct Paths {
    pub dylib: PathBuf,
    pub model: PathBuf,
    pub python: PathBuf,
    pub samples: PathBuf,
}

pub fn run(images: usize, batch_sizes: &[usize], paths: &Paths) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("featurize")?;
    let jpegs = generate(images, &paths.samples, scratch.path())?;
    let megabytes = jpegs.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!("featurize benchmark: {images} JPEGs of 640 x 480 ({megabytes:.1} MB)");

    let spec = BackboneSpec::efficientnet_lite0();
    let embedder = OnnxEmbedder::open(&paths.dylib, &paths.model, spec.clone())?;
    let side = spec.input_size as usize;
    let per_image = 3 * side * side;
    let mut ready = vec![0f32; images * per_image];
    let started = Instant::now();
    for (bytes, row) in jpegs.iter().zip(ready.chunks_exact_mut(per_image)) {
        preprocess(bytes, &spec, row).map_err(|why| anyhow::anyhow!("a generated JPEG: {why}"))?;
    }
    // What (c) adds to (a) on the same cores: decode, crop, resize, normalize on one thread.
    println!(
        "  preprocessing alone   {:.2} ms an image (decode, crop, resize, normalize; one thread)",
        started.elapsed().as_secs_f64() * 1e3 / images.max(1) as f64
    );
    embedder.embed_blocking(&jpegs[..1.min(images)])?; // warm-up

    let python = python_baseline(paths, scratch.path(), batch_sizes);
    println!(
        "  {:>5}  {:>16}  {:>17}  {:>12}  {:>8}  {:>8}",
        "batch", "(a) ORT alone/s", "(b) Python+PIL/s", "(c) ours/s", "c/a", "c/b"
    );
    for &batch in batch_sizes {
        let started = Instant::now();
        for chunk in ready.chunks(batch * per_image) {
            embedder.embed_tensor(chunk.to_vec(), chunk.len() / per_image)?;
        }
        let alone = images as f64 / started.elapsed().as_secs_f64();

        let ours_embedder = embedder.clone().with_batch_size(batch);
        let started = Instant::now();
        let outcomes = ours_embedder.embed_blocking(&jpegs)?;
        let ours = images as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(
            outcomes.iter().all(Result::is_ok),
            "a generated JPEG was refused"
        );

        let (python_rate, python_ratio) = match python.as_ref().ok().and_then(|p| p.get(&batch)) {
            Some(rate) => (format!("{rate:.1}"), format!("{:.2}", ours / rate)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "  {batch:>5}  {alone:>16.1}  {python_rate:>17}  {ours:>12.1}  {:>8.2}  {python_ratio:>8}",
            ours / alone
        );
    }
    if let Err(why) = python {
        println!("  (b) did not run: {why:#}");
    }
    println!(
        "  execution provider: {}; targets: c/a >= 0.90 and c/b > 1",
        labeling_core::ports::Embedder::backbone(&embedder).execution_provider
    );
    Ok(())
}

/// N JPEGs of 640 x 480 (quality 90): the photos resized, each with its own noise so no two are
/// alike, written to `dir` for the Python side and returned for ours.
fn generate(images: usize, samples: &Path, dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bases: Vec<RgbImage> = PHOTOS
        .iter()
        .filter_map(|name| image::open(samples.join(name)).ok())
        .map(|photo| {
            photo
                .resize_exact(640, 480, FilterType::Triangle)
                .into_rgb8()
        })
        .collect();
    anyhow::ensure!(
        !bases.is_empty(),
        "no sample photos in {}",
        samples.display()
    );
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..images)
        .map(|i| {
            let mut picture = bases[i % bases.len()].clone();
            for value in picture.iter_mut() {
                // xorshift: cheap noise of +-12 levels.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 25) as i16 - 12;
                *value = (i16::from(*value) + noise).clamp(0, 255) as u8;
            }
            let mut jpeg = std::io::Cursor::new(Vec::new());
            picture.write_to(&mut jpeg, ImageFormat::Jpeg)?;
            let jpeg = jpeg.into_inner();
            std::fs::write(dir.join(format!("{i:06}.jpg")), &jpeg)?;
            Ok(jpeg)
        })
        .collect()
}

/// Images per second of the Python baseline per batch size.
fn python_baseline(
    paths: &Paths,
    dir: &Path,
    batch_sizes: &[usize],
) -> anyhow::Result<std::collections::HashMap<usize, f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/models/bench_python.py");
    let batches = batch_sizes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let output = std::process::Command::new(&paths.python)
        .arg(&script)
        .arg(&paths.model)
        .arg(dir)
        .arg(batches)
        .output()
        .with_context(|| format!("running {}", paths.python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)?;
            let batch = value["batch"].as_u64().context("batch")? as usize;
            let rate = value["images_per_s"].as_f64().context("images_per_s")?;
            Ok((batch, rate))
        })
        .collect()
}
