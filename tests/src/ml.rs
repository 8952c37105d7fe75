//! What the ML-assist tests share: the real backbone and a real labeled data set.

use std::path::PathBuf;

use labeling_local::ml_setup::MlBackbone;
use serde_json::Value;

/// The backbone prepared by infra/models/prepare.sh (test.sh exports where it is).
pub fn backbone() -> MlBackbone {
    let variable = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run ./infra/test.sh, or eval \"$(./infra/models/prepare.sh)\""
            )
        })
    };
    MlBackbone::Files {
        dylib: PathBuf::from(variable("LABELING_ORT_DYLIB")),
        model: PathBuf::from(variable("LABELING_BACKBONE")),
        detection: Some(PathBuf::from(variable("LABELING_DETECTION_BACKBONE"))),
    }
}

/// Writes the first `count` digits as PNGs into a fresh folder: (file name, true class).
pub fn digits(count: usize) -> (PathBuf, Vec<(String, String)>) {
    let python = std::env::var("LABELING_ML_PYTHON").expect(
        "LABELING_ML_PYTHON is not set: run ./infra/test.sh, or eval \"$(./infra/models/prepare.sh)\"",
    );
    let dir = std::env::temp_dir().join(labeling_testkit::unique("digits"));
    let output = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/digits.py"))
        .arg(&dir)
        .arg(count.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let truth = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            (
                record["key"].as_str().unwrap().to_owned(),
                record["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (dir, truth)
}

/// A pasted scene's true box: class name and `[x, y, w, h]` in pixels.
pub type TrueBox = (String, [f64; 4]);

/// Writes `count` pasted scenes (tests/python/scenes.py: objects cut from scikit-image's
/// photos pasted onto other photos) as JPEGs into a fresh folder: (file name, true boxes).
pub fn scenes(count: usize, seed: u64) -> (PathBuf, Vec<(String, Vec<TrueBox>)>) {
    let python = std::env::var("LABELING_ML_PYTHON").expect(
        "LABELING_ML_PYTHON is not set: run ./infra/test.sh, or eval \"$(./infra/models/prepare.sh)\"",
    );
    let dir = std::env::temp_dir().join(labeling_testkit::unique("scenes"));
    let output = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/scenes.py"))
        .arg(&dir)
        .arg(count.to_string())
        .arg(seed.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let scenes = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let boxes = record["boxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let bbox: Vec<f64> = b["bbox"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    (
                        b["label"].as_str().unwrap().to_owned(),
                        [bbox[0], bbox[1], bbox[2], bbox[3]],
                    )
                })
                .collect();
            (record["key"].as_str().unwrap().to_owned(), boxes)
        })
        .collect();
    (dir, scenes)
}
