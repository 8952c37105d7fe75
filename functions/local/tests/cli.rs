//! The `labeling export` command against a running server: it shows progress and writes the
//! COCO file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use labeling_core::Actor;
use labeling_core::domain::labeling::{AnnotationInput, SubmissionInput, SubmittedItemInput};
use labeling_local::{Local, Options, demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeling_export_downloads_a_coco_file_with_a_progress_bar() {
    let dir = std::env::temp_dir().join(format!("labeling-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::new(&dir);
    options.admin_token = Some("cli-admin".to_owned());
    let local = Local::open(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    local.set_public_base(&base);
    let service = local.service.clone();
    let admin = Actor::admin("admin");
    let project = demo::create_demo(&service, local.blobs.as_ref(), demo::DEMO_BUCKET, &admin, 3)
        .await
        .unwrap();
    service.ingest_now(&project).await.unwrap();
    let task = service.checkout(&admin, &project).await.unwrap().unwrap();
    let item = &task.items[0];
    let submission = SubmissionInput {
        items: vec![SubmittedItemInput {
            item_id: Some(item.item_id),
            annotations: Some(vec![AnnotationInput {
                label: "circle".to_owned(),
                bbox: Some(vec![10.0, 20.0, 30.0, 40.0]),
                polygon: None,
            }]),
            ..Default::default()
        }],
    };
    service
        .submit(&admin, &project, &task.task_id, submission)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));

    let out = dir.join("out.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .args(["export", "demo: SHAPES", "--format", "coco", "--out"])
        .arg(&out)
        .args(["--server", &base, "--token", "cli-admin"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[##############################] 1/1 items"),
        "a finished progress bar: {stderr}"
    );
    let coco: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 1);
    assert_eq!(coco["images"][0]["width"], 320);
    assert_eq!(
        coco["annotations"][0]["bbox"],
        serde_json::json!([10.0, 20.0, 30.0, 40.0])
    );
    assert_eq!(coco["categories"][0]["name"], "circle");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("s3://demo/export/coco/Demo: shapes/")
    );

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
        .args(["export", "no such project", "--out"])
        .arg(dir.join("never.json"))
        .args(["--server", &base, "--token", "cli-admin"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no project named"));
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeling_upload_sends_a_folder_and_resumes_without_sending_twice() {
    let dir = std::env::temp_dir().join(format!("labeling-cli-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pictures = dir.join("pictures");
    std::fs::create_dir_all(pictures.join("sub")).unwrap();
    for (index, name) in ["a.png", "b.png", "sub/c.png"].iter().enumerate() {
        std::fs::write(pictures.join(name), demo::shapes_picture(index as u64)).unwrap();
    }
    std::fs::write(pictures.join("notes.txt"), b"not an image").unwrap();
    let mut options = Options::new(dir.join("data"));
    options.admin_token = Some("cli-admin".to_owned());
    let local = Local::open(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = local.service.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));
    let upload = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_labeling"))
            .arg("upload")
            .arg(&pictures)
            .args([
                "--dataset",
                "pics",
                "--server",
                &base,
                "--token",
                "cli-admin",
            ])
            .output()
    };
    let first = upload().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("3 files uploaded"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("3/3 files"),
        "a progress bar"
    );
    let second = upload().await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 files uploaded") && stdout.contains("3 already there"),
        "{stdout}"
    );
    std::fs::write(pictures.join("b.png"), demo::shapes_picture(99)).unwrap();
    let third = upload().await.unwrap();
    assert!(
        String::from_utf8_lossy(&third.stdout).contains("1 files uploaded"),
        "a changed file is sent again"
    );
    let dataset = service
        .get_dataset(&Actor::admin("admin"), "pics")
        .await
        .unwrap();
    assert_eq!(dataset.files, 3);
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
