//! New data: refresh on demand, on events and when labelers run low; uploads into datasets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use labeling_tests::{TestApp, png, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn project_over(
    app: &TestApp,
    bucket: &str,
    count: usize,
    incremental: bool,
) -> (String, String) {
    app.images(bucket, "set", count, 8, 8).await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .project(json!({
            "name": labeling_testkit::unique("refresh"),
            "task_type": "image_classification_multiclass",
            "labels": ["a", "b"],
            "source": format!("s3://{bucket}/set/**"),
            "incremental_refresh": incremental,
        }))
        .await;
    app.post(
        &format!("/projects/{project}/members"),
        &app.admin,
        json!({ "user": "ann" }),
    )
    .await;
    (project, ann)
}

fn assert_each_once(keys: &[String], expected: usize) {
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "an item was handed out twice: {keys:?}"
    );
    assert_eq!(keys.len(), expected);
}

#[tokio::test]
async fn a_refresh_after_adding_three_files_adds_exactly_three_items() {
    let app = spawn_app().await;
    let bucket = app.bucket("fresh");
    let (project, ann) = project_over(&app, &bucket, 5, false).await;
    for name in ["set/new-a.png", "set/deeper/new-b.png", "set/new-c.jpg"] {
        app.put_object(&bucket, name, png(8, 8, 9)).await;
    }
    app.put_object(&bucket, "set/notes.txt", b"not an image".to_vec())
        .await;
    let dashboard = app.refresh(&project).await;
    assert_eq!(dashboard["total_items"], 8, "{dashboard}");
    assert_eq!(dashboard["refresh"]["items_added"], 3);
    assert_eq!(dashboard["refresh"]["last_refresh_trigger"], "on_demand");
    let shown = app.get(&format!("/projects/{project}"), &app.admin).await;
    assert_eq!(
        shown.body["refresh"], dashboard["refresh"],
        "the project page shows the same refresh"
    );
    let to_labeler = app.get(&format!("/projects/{project}"), &ann).await;
    assert!(to_labeler.body.get("refresh").is_none(), "{to_labeler:?}");
    assert_each_once(&app.drain_keys(&project, &ann).await, 8);
}

#[tokio::test]
async fn a_refresh_with_nothing_new_adds_nothing_and_writes_nothing_to_the_table() {
    let app = spawn_app().await;
    let bucket = app.bucket("quiet");
    let (project, _) = project_over(&app, &bucket, 4, false).await;
    app.refresh(&project).await;
    // Dashboards read the table but never write it; refresh jobs are what is measured.
    let before = app.table.counts();
    let dashboard = app.refresh(&project).await;
    let during = app.table.counts().since(before);
    assert_eq!(dashboard["total_items"], 4);
    assert_eq!(dashboard["refresh"]["items_added"], 0);
    assert_eq!(
        during.writes, 0,
        "a refresh that finds nothing new writes nothing to the table"
    );
}

#[tokio::test]
async fn deleted_files_are_counted_and_never_crash_a_checkout() {
    let app = spawn_app().await;
    let bucket = app.bucket("gone");
    let (project, ann) = project_over(&app, &bucket, 4, false).await;
    app.delete_object(&bucket, "set/img-00002.png").await;
    let dashboard = app.refresh(&project).await;
    assert_eq!(dashboard["refresh"]["files_removed"], 1, "{dashboard}");
    assert_eq!(
        dashboard["total_items"], 4,
        "items stay; the missing image is found at checkout"
    );
    assert_each_once(&app.drain_keys(&project, &ann).await, 3);
    assert_eq!(app.dashboard(&project).await["missing"], 1);
}

#[tokio::test]
async fn two_refreshes_started_at_once_add_each_item_once() {
    let app = spawn_app().await;
    let bucket = app.bucket("twice");
    let (project, ann) = project_over(&app, &bucket, 3, false).await;
    for index in 0..6 {
        app.put_object(&bucket, &format!("set/extra-{index}.png"), png(8, 8, 1))
            .await;
    }
    let before = app.dashboard(&project).await["refresh"].clone();
    let path = format!("/projects/{project}/refresh");
    let (a, b) = tokio::join!(
        app.post(&path, &app.admin, json!({})),
        app.post(&path, &app.admin, json!({}))
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    app.wait_for_refresh_after(&project, &before).await;
    for _ in 0..200 {
        if app.dashboard(&project).await["total_items"] == 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Let the second refresh finish too, then count.
    let settled = app.refresh(&project).await;
    assert_eq!(settled["total_items"], 9, "{settled}");
    assert_each_once(&app.drain_keys(&project, &ann).await, 9);
}

#[tokio::test]
async fn new_uploads_reach_a_project_with_incremental_refresh_without_asking() {
    let app = spawn_app().await;
    let bucket = app.bucket("events");
    let (project, ann) = project_over(&app, &bucket, 2, true).await;
    let before = app.dashboard(&project).await["refresh"].clone();
    // An object-created notification, as the edge that receives S3's events hands it over
    // (decoded there: shared/lambda/tests/s3_events.rs).
    app.put_object(&bucket, "set/arrived one.png", png(8, 8, 2))
        .await;
    app.service
        .refreshes()
        .objects_created(&[(bucket.clone(), "set/arrived one.png".to_owned())])
        .await
        .unwrap();
    let dashboard = app.wait_for_refresh_after(&project, &before).await;
    assert_eq!(
        dashboard["refresh"]["last_refresh_trigger"],
        "object_created"
    );
    assert_eq!(dashboard["total_items"], 3, "{dashboard}");
    let keys = app.drain_keys(&project, &ann).await;
    assert!(keys.contains(&"set/arrived one.png".to_owned()), "{keys:?}");
    assert_eq!(
        app.dashboard(&project).await["refresh"]["next_scheduled_at"]
            .as_str()
            .map(|t| t.contains("T02:00:00")),
        Some(true)
    );
}

#[tokio::test]
async fn labelers_running_low_trigger_a_refresh() {
    let app = spawn_app().await;
    let bucket = app.bucket("low");
    let (project, ann) = project_over(&app, &bucket, 10, true).await;
    for index in 0..4 {
        app.put_object(&bucket, &format!("set/later-{index}.png"), png(8, 8, 4))
            .await;
    }
    let before = app.dashboard(&project).await["refresh"].clone();
    let keys = app.drain_keys(&project, &ann).await;
    assert!(keys.len() >= 10, "{keys:?}");
    let dashboard = app.wait_for_refresh_after(&project, &before).await;
    assert_eq!(dashboard["refresh"]["last_refresh_trigger"], "low_water");
    assert_eq!(dashboard["total_items"], 14, "{dashboard}");
    let mut all = keys;
    all.extend(app.drain_keys(&project, &ann).await);
    assert_each_once(&all, 14);
}

#[tokio::test]
async fn upload_names_with_dot_dot_absolute_paths_empty_names_and_control_characters_are_refused() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/datasets",
            &app.admin,
            json!({ "name": "pets", "description": "my pets" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["source"], "dataset:pets");
    for (bad, why) in [
        ("../escape.jpg", "'..'"),
        ("cats/../../escape.jpg", "'..'"),
        ("/etc/passwd.jpg", "absolute"),
        ("C:\\photos\\a.jpg", "absolute"),
        ("", "empty"),
        ("tab\there.jpg", "control"),
        ("nul\u{0}.jpg", "control"),
        ("line\nbreak.jpg", "control"),
        ("a//b.jpg", "empty segment"),
        ("notes.txt", "image"),
    ] {
        let reply = app
            .post(
                "/datasets/pets/uploads",
                &app.admin,
                json!({ "files": ["ok/good.jpg", bad] }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?} was accepted: {reply:?}"
        );
        assert_eq!(reply.body["errors"][0]["pointer"], "/files/1", "{bad:?}");
        let detail = reply.body["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{bad:?}: {detail}");
    }
    let listed = app.get("/datasets/pets", &app.admin).await;
    assert_eq!(
        listed.body["files"], 0,
        "a refused request hands out nothing"
    );
    assert_eq!(
        app.post("/datasets", &app.admin, json!({ "name": "pets" }))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post("/datasets", &app.admin, json!({ "name": "Bad Name" }))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn uploaded_files_become_a_project_source() {
    let app = spawn_app().await;
    app.post("/datasets", &app.admin, json!({ "name": "shots" }))
        .await;
    let body = png(12, 9, 5);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let files =
        json!({ "files": [{ "name": "a/one.png", "size": body.len(), "sha256": sha }, "two.png"] });
    let slots = app
        .post("/datasets/shots/uploads", &app.admin, files.clone())
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{slots:?}");
    for slot in slots.body["uploads"].as_array().unwrap() {
        assert_eq!(slot["skip"], false);
        let mut put = app.client.put(slot["url"].as_str().unwrap());
        for (name, value) in slot["headers"].as_object().unwrap() {
            put = put.header(name.as_str(), value.as_str().unwrap());
        }
        let put = put.body(body.clone()).send().await.unwrap();
        assert!(put.status().is_success(), "{}", put.status());
    }
    let again = app.post("/datasets/shots/uploads", &app.admin, files).await;
    assert_eq!(
        again.body["uploads"][0]["skip"], true,
        "the same file is not uploaded twice"
    );
    assert_eq!(
        again.body["uploads"][1]["skip"], false,
        "without a checksum nothing is assumed"
    );
    // Reading a dataset lists nothing: the uploads' count (queued by their events, or by a read
    // of a count a minute old where no events come) shows within moments.
    let mut patience = labeling_tests::Patience::new();
    loop {
        let dataset = app.get("/datasets/shots", &app.admin).await.body;
        if dataset["files"] == 2 {
            assert_eq!(dataset["bytes"], 2 * body.len());
            assert!(dataset["counted_at"].is_string(), "{dataset}");
            break;
        }
        assert!(
            patience.wait(&app.clock).await,
            "the uploads were never counted: {dataset}"
        );
    }
    assert_eq!(
        app.get("/datasets", &app.admin).await.body["datasets"][0]["name"],
        "shots"
    );
    let project = app
        .project(json!({ "name": "from uploads", "task_type": "object_detection", "labels": ["x"], "source": "dataset:shots" }))
        .await;
    assert_eq!(app.dashboard(&project).await["total_items"], 2);
    let missing = app.post("/projects", &app.admin, json!({ "name": "nope", "task_type": "object_detection", "labels": ["x"], "source": "dataset:nothing" })).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.body["errors"][0]["pointer"], "/source");
}

#[tokio::test]
async fn the_cap_holds_across_refreshes() {
    if labeling_tests::on_aws() {
        return; // Half a million objects in the emulator would take minutes; the cap is store-independent.
    }
    let app = spawn_app().await;
    let bucket = app.bucket("full");
    // 499,998 empty image files, written straight into the bucket's folder.
    let root = app.data_dir.join("buckets").join(&bucket).join("set");
    for folder in 0..500 {
        let dir = root.join(format!("d{folder:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..1000 {
            if folder * 1000 + file < 499_998 {
                std::fs::write(dir.join(format!("{file:03}.jpg")), b"").unwrap();
            }
        }
    }
    let (project, _) = {
        let project = app
            .project(json!({ "name": "full", "task_type": "image_classification_multiclass", "labels": ["a"], "source": format!("s3://{bucket}/set/**") }))
            .await;
        (project, ())
    };
    assert_eq!(app.dashboard(&project).await["total_items"], 499_998);
    for index in 0..5 {
        std::fs::write(root.join(format!("z-new-{index}.jpg")), b"").unwrap();
    }
    let dashboard: Value = app.refresh(&project).await;
    assert_eq!(
        dashboard["total_items"], 500_000,
        "{}",
        dashboard["refresh"]
    );
    assert_eq!(dashboard["refresh"]["items_added"], 2);
    assert_eq!(dashboard["refresh"]["items_dropped"], 3);
    assert_eq!(dashboard["dropped"], 3);
    let again = app.refresh(&project).await;
    assert_eq!(
        again["total_items"], 500_000,
        "the check stops when the project is full"
    );
    assert!(
        again["refresh"]["note"]
            .as_str()
            .unwrap()
            .contains("500000"),
        "{}",
        again["refresh"]
    );
}

#[tokio::test]
async fn entries_of_a_source_folder_that_cannot_be_read_are_skipped_and_counted() {
    if labeling_tests::on_aws() {
        return; // Local folders as sources exist only in the embedded store.
    }
    let app = spawn_app().await;
    let folder = app.data_dir.join("outside");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    for name in ["a.png", "sub/b.png", "z.png"] {
        std::fs::write(folder.join(name), png(8, 8, 3)).unwrap();
    }
    // One dangling link was enough to fail every try of the ingest, and the project stayed
    // `initializing` for ever.
    std::os::unix::fs::symlink(folder.join("gone.png"), folder.join("dangling.png")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(folder.join("sub/pipe.png"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let project = app
        .project(json!({
            "name": labeling_testkit::unique("unreadable"),
            "task_type": "image_classification_multiclass",
            "labels": ["a"],
            "source": format!("file://{}/**", folder.display()),
        }))
        .await;
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["total_items"], 3, "{dashboard}");
    assert_eq!(dashboard["refresh"]["files_unreadable"], 2, "{dashboard}");

    std::fs::write(folder.join("sub/c.png"), png(8, 8, 4)).unwrap();
    std::os::unix::fs::symlink(folder.join("gone-too.png"), folder.join("sub/d.png")).unwrap();
    let dashboard = app.refresh(&project).await;
    assert_eq!(dashboard["total_items"], 4, "{dashboard}");
    assert_eq!(dashboard["refresh"]["items_added"], 1, "{dashboard}");
    assert_eq!(dashboard["refresh"]["files_unreadable"], 3, "{dashboard}");
    assert_eq!(dashboard["refresh"]["files_removed"], 0, "{dashboard}");
}
