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
