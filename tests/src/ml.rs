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

/// Runs `script` (in tests/python) with the ML environment's Python, writing into a fresh
/// folder named after `name`: the folder and the JSON line it printed per image.
fn generate(name: &str, script: &str, args: &[String]) -> (PathBuf, Vec<Value>) {
    let python = std::env::var("LABELING_ML_PYTHON").expect(
        "LABELING_ML_PYTHON is not set: run ./infra/test.sh, or eval \"$(./infra/models/prepare.sh)\"",
    );
    let dir = std::env::temp_dir().join(labeling_testkit::unique(name));
    let output = std::process::Command::new(python)
        .arg(format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(&dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (dir, records)
}

/// Writes the first `count` digits as PNGs into a fresh folder: (file name, true class).
pub fn digits(count: usize) -> (PathBuf, Vec<(String, String)>) {
    let (dir, records) = generate("digits", "digits.py", &[count.to_string()]);
    let truth = records
        .iter()
        .map(|record| {
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
    let (dir, records) = generate(
        "scenes",
        "scenes.py",
        &[count.to_string(), seed.to_string()],
    );
    let scenes = records
        .iter()
        .map(|record| {
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

/// The one-sided upper confidence bound of `correct / total` (Wilson score, `z` standard
/// deviations).
pub fn wilson_upper_bound(correct: u64, total: u64, z: f64) -> f64 {
    if total == 0 {
        return 1.0;
    }
    let n = total as f64;
    let p = correct as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre + margin) / (1.0 + z2 / n)).min(1.0)
}

/// Polls the runs page until the project's newest run succeeds (panics if it fails or takes
/// more than 15 minutes): the page, and a lookup of the run's steps by name.
pub async fn first_run_succeeded(app: &crate::TestApp, project: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let ml = app
            .get(&format!("/projects/{project}/ml"), &app.admin)
            .await;
        assert_eq!(ml.status, reqwest::StatusCode::OK, "{ml:?}");
        let first_run = &ml.body["runs"][0];
        if first_run["status"] == "succeeded" {
            return ml.body;
        }
        assert_ne!(first_run["status"], "failed", "{ml:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(900),
            "the ML run did not finish: {ml:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The step of `run` (a run of the runs page) named `name`.
pub fn step(run: &Value, name: &str) -> Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step: {run}"))
        .clone()
}
