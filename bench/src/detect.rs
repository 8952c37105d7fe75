//! `labeling-bench detect`: what box prelabels cost on this machine. Training on N labeled
//! pasted scenes (tests/python/scenes.py: real photos, known boxes) is the detection backbone's
//! pass over each image plus the head's training; inference is the backbone's pass plus the
//! head and its post-processing (peaks, NMS, boxes mapped back), timed apart so the head's share
//! of the backbone can be read (the limit: under 20%). Held-out scenes give AP at IoU 0.5.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use labeling_core::domain::ml::detect::{
    DetectionExample, DetectorOptions, EvaluatedImage, FeatureMap, LabeledBox, Letterbox,
    evaluate_detections, train_detector,
};
use labeling_ml::{FeatureSpec, OnnxFeatureExtractor};

use crate::stats::ScratchDir;

const CLASSES: [&str; 3] = ["cup", "cat", "rocket"];

pub struct Paths {
    pub dylib: PathBuf,
    pub model: PathBuf,
    pub python: PathBuf,
    pub script: PathBuf,
}

/// A generated scene: its JPEG and its true boxes (class index, `[x, y, w, h]`).
struct Scene {
    jpeg: Vec<u8>,
    boxes: Vec<LabeledBox>,
}

fn generate(count: usize, paths: &Paths, dir: &Path) -> anyhow::Result<Vec<Scene>> {
    let output = std::process::Command::new(&paths.python)
        .arg(&paths.script)
        .arg(dir)
        .arg(count.to_string())
        .output()
        .with_context(|| format!("running {}", paths.script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed: {}",
        paths.script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut scenes = Vec::with_capacity(count);
    for line in String::from_utf8(output.stdout)?.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        let key = record["key"].as_str().context("a scene without a key")?;
        let mut boxes = Vec::new();
        for b in record["boxes"]
            .as_array()
            .context("a scene without boxes")?
        {
            let class = CLASSES
                .iter()
                .position(|name| b["label"] == *name)
                .context("a box of an unknown class")? as u32;
            let values: Vec<f32> = b["bbox"]
                .as_array()
                .context("a box without bbox")?
                .iter()
                .filter_map(|v| v.as_f64().map(|v| v as f32))
                .collect();
            anyhow::ensure!(values.len() == 4, "a bbox of {} values", values.len());
            boxes.push((class, [values[0], values[1], values[2], values[3]]));
        }
        scenes.push(Scene {
            jpeg: std::fs::read(dir.join(key))?,
            boxes,
        });
    }
    Ok(scenes)
}

pub fn run(training: usize, held_out: usize, paths: &Paths) -> anyhow::Result<()> {
    let scratch = ScratchDir::new("detect")?;
    let scenes = generate(training + held_out, paths, scratch.path())?;
    let megabytes = scenes.iter().map(|s| s.jpeg.len()).sum::<usize>() as f64 / 1e6;
    println!(
        "detect benchmark: {} pasted scenes (JPEG, 512-800 px, {megabytes:.1} MB), {training} to train, {held_out} held out",
        scenes.len()
    );
    let extractor = OnnxFeatureExtractor::open(
        &paths.dylib,
        &paths.model,
        FeatureSpec::efficientnet_lite0(),
    )?;
    extractor.extract_blocking(&[scenes[0].jpeg.clone()])?; // warm-up

    let started = Instant::now();
    let jpegs: Vec<Vec<u8>> = scenes.iter().map(|s| s.jpeg.clone()).collect();
    let mut maps: Vec<(FeatureMap, Letterbox)> = Vec::with_capacity(scenes.len());
    for outcome in extractor.extract_blocking(&jpegs)? {
        maps.push(outcome.map_err(|why| anyhow::anyhow!("a generated scene: {why}"))?);
    }
    let backbone_seconds = started.elapsed().as_secs_f64();
    let backbone_per_image = backbone_seconds / scenes.len() as f64;

    let input_boxes: Vec<Vec<LabeledBox>> = scenes[..training]
        .iter()
        .zip(&maps)
        .map(|(scene, (_, letterbox))| {
            scene
                .boxes
                .iter()
                .map(|(class, bbox)| (*class, letterbox.to_input(*bbox)))
                .collect()
        })
        .collect();
    let examples: Vec<DetectionExample<'_>> = maps[..training]
        .iter()
        .zip(&input_boxes)
        .map(|((features, _), boxes)| DetectionExample { features, boxes })
        .collect();
    let started = Instant::now();
    let detector = train_detector(&examples, CLASSES.len(), &DetectorOptions::default())?;
    let train_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut predictions = Vec::with_capacity(held_out);
    for (features, letterbox) in &maps[training..] {
        predictions.push(detector.detect(features, letterbox, 100)?);
    }
    let head_per_image = started.elapsed().as_secs_f64() / held_out.max(1) as f64;
    let evaluated: Vec<EvaluatedImage<'_>> = predictions
        .iter()
        .zip(&scenes[training..])
        .map(|(predictions, scene)| EvaluatedImage {
            predictions,
            truths: &scene.boxes,
        })
        .collect();
    let report = evaluate_detections(&evaluated, CLASSES.len(), 0.5);

    println!(
        "  training on {training} images: {:.1} s = backbone {:.1} s ({:.1} ms an image: decode, letterbox, ONNX Runtime on {}) + head {train_seconds:.1} s",
        backbone_per_image * training as f64 + train_seconds,
        backbone_per_image * training as f64,
        backbone_per_image * 1e3,
        extractor.execution_provider(),
    );
    println!(
        "  inference: backbone alone {:.1} images/s; backbone + head + post-processing {:.1} images/s; the head and post-processing {:.2} ms an image = {:.1}% of the backbone (limit 20%)",
        1.0 / backbone_per_image,
        1.0 / (backbone_per_image + head_per_image),
        head_per_image * 1e3,
        100.0 * head_per_image / backbone_per_image
    );
    for class in &report.classes {
        println!(
            "  {:>6}: AP@0.5 {:.3} over {} held-out boxes",
            CLASSES[class.class as usize],
            class.average_precision.unwrap_or(0.0),
            class.truths
        );
    }
    println!(
        "  mean AP@0.5 {:.3}",
        report.mean_average_precision.unwrap_or(0.0)
    );
    Ok(())
}
