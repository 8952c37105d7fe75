//! Roles, tokens, project names, signed URLs, sources and the API description.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use labeling_tests::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn requests_without_a_valid_token_get_401_problem_json() {
    let app = spawn_app().await;
    for token in [None, Some("wrong")] {
        let reply = app.request(Method::GET, "/projects", token, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!(reply.body["status"], 401);
        assert!(reply.body["type"].as_str().unwrap().starts_with("https://"));
    }
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_labeler_gets_403_on_every_admin_path() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    let p = format!("/projects/{project}");
    let admin_paths = [
        (
            Method::POST,
            "/projects".to_owned(),
            Some(
                json!({ "name": "x", "task_type": "object_detection", "labels": ["a"], "source": "s3://photos/**" }),
            ),
        ),
        (
            Method::PATCH,
            p.clone(),
            Some(json!({ "lease_seconds": 60 })),
        ),
        (Method::DELETE, p.clone(), None),
        (Method::POST, format!("{p}/pause"), None),
        (Method::POST, format!("{p}/resume"), None),
        (
            Method::POST,
            format!("{p}/labels"),
            Some(json!({ "labels": ["dog"], "mode": "continue" })),
        ),
        (
            Method::POST,
            format!("{p}/members"),
            Some(json!({ "user": "bob" })),
        ),
        (Method::DELETE, format!("{p}/members/ann"), None),
        (Method::GET, format!("{p}/dashboard"), None),
        (Method::GET, format!("{p}/items?state=labeled"), None),
        (Method::POST, format!("{p}/items/0/reject"), None),
        (
            Method::POST,
            "/users".to_owned(),
            Some(json!({ "name": "eve", "role": "admin" })),
        ),
        (Method::POST, format!("{p}/refresh"), Some(json!({}))),
        (
            Method::POST,
            format!("{p}/exports"),
            Some(json!({ "format": "coco" })),
        ),
        (Method::GET, format!("{p}/exports"), None),
        (Method::GET, format!("{p}/exports/x_any"), None),
        (
            Method::POST,
            "/datasets".to_owned(),
            Some(json!({ "name": "pets" })),
        ),
        (Method::GET, "/datasets".to_owned(), None),
        (Method::GET, "/datasets/pets".to_owned(), None),
        (
            Method::POST,
            "/datasets/pets/uploads".to_owned(),
            Some(json!({ "files": ["a.jpg"] })),
        ),
    ];
    for (method, path, body) in admin_paths {
        let reply = app.request(method.clone(), &path, Some(&ann), body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {reply:?}"
        );
        assert_eq!(reply.content_type, "application/problem+json");
    }
    let project_now = app.get(&p, &app.admin).await;
    assert_eq!(
        project_now.body["status"], "running",
        "nothing a labeler tried changed the project"
    );
    assert_eq!(project_now.body["members"], json!(["ann"]));
    // What a labeler may do on its project.
    let own = app.get(&p, &ann).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["instructions"]["text"], "label it");
    assert!(
        own.body.get("members").is_none(),
        "labelers do not see the member list"
    );
    assert_eq!(
        app.get("/projects", &ann).await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.checkout(&project, &ann).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_labeler_sees_nothing_of_a_project_it_is_not_a_member_of() {
    let app = spawn_app().await;
    let bob = app.user("bob", "labeler").await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 2, 1, "ann")
        .await;
    assert_eq!(app.get("/projects", &bob).await.body["projects"], json!([]));
    assert_eq!(
        app.get(&format!("/projects/{project}"), &bob).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.checkout(&project, &bob).await.status,
        StatusCode::NOT_FOUND
    );
    let task = app.checkout(&project, &ann).await.body;
    let task_id = task["task_id"].as_str().unwrap();
    app.post(
        &format!("/projects/{project}/members"),
        &app.admin,
        json!({ "user": "bob" }),
    )
    .await;
    let stolen = app
        .submit(&project, task_id, &bob, json!({ "items": [] }))
        .await;
    assert_eq!(
        stolen.status,
        StatusCode::FORBIDDEN,
        "a member cannot submit someone else's task"
    );
    let renewed = app
        .post(
            &format!("/projects/{project}/tasks/{task_id}/renew"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::FORBIDDEN);
    let removed = app
        .delete(&format!("/projects/{project}/members/bob"), &app.admin)
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(
        app.checkout(&project, &bob).await.status,
        StatusCode::NOT_FOUND,
        "removed members lose access"
    );
}

#[tokio::test]
async fn users_members_and_classes_compare_like_project_names() {
    let app = spawn_app().await;
    let ann = app.user("Ann", "labeler").await;
    let twin = app
        .post(
            "/users",
            &app.admin,
            json!({ "name": " ann ", "role": "labeler" }),
        )
        .await;
    assert_eq!(twin.status, StatusCode::CONFLICT, "{twin:?}");
    let project = app
        .labeled_project("image_classification_multiclass", &["Cat"], 1, 1, "Ann")
        .await;
    let members = format!("/projects/{project}/members");
    let nobody = app
        .post(&members, &app.admin, json!({ "user": "nobody" }))
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND, "{nobody:?}");
    assert_eq!(nobody.content_type, "application/problem+json");
    let again = app
        .post(&members, &app.admin, json!({ "user": "ANN" }))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(
        again.body["members"],
        json!(["Ann"]),
        "one member, under the user's own spelling"
    );
    let task = app.checkout(&project, &ann).await;
    assert_eq!(task.status, StatusCode::OK, "{task:?}");
    let item = task.body["items"][0]["item_id"].clone();
    let submitted = app
        .submit(
            &project,
            task.body["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [{ "item_id": item, "labels": [" cat"] }] }),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    assert_eq!(
        app.dashboard(&project).await["label_distribution"],
        json!({ "Cat": 1 })
    );
    let labels = format!("/projects/{project}/labels");
    let same_class = app
        .post(
            &labels,
            &app.admin,
            json!({ "labels": ["CAT"], "mode": "continue" }),
        )
        .await;
    assert_eq!(
        same_class.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{same_class:?}"
    );
    assert_eq!(same_class.body["errors"][0]["pointer"], "/labels/0");
    let removed = app.delete(&format!("{members}/aNN"), &app.admin).await;
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    assert_eq!(removed.body["members"], json!([]));
}

#[tokio::test]
async fn a_project_name_is_never_reused_even_after_delete() {
    let app = spawn_app().await;
    let photos = app.bucket("photos");
    app.images(&photos, "pets", 1, 4, 4).await;
    let source = format!("s3://{photos}/**");
    let project = app
        .project(json!({ "name": "Pets", "task_type": "object_detection", "labels": ["cat"], "source": source }))
        .await;
    let taken = app.post("/projects", &app.admin, json!({ "name": "pets", "task_type": "object_detection", "labels": ["cat"], "source": source })).await;
    assert_eq!(
        taken.status,
        StatusCode::CONFLICT,
        "names are case-insensitive"
    );
    assert_eq!(
        app.delete(&format!("/projects/{project}"), &app.admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/projects/{project}"), &app.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/projects", &app.admin).await.body["projects"],
        json!([])
    );
    let reused = app.post("/projects", &app.admin, json!({ "name": "PETS", "task_type": "object_detection", "labels": ["cat"], "source": source })).await;
    assert_eq!(
        reused.status,
        StatusCode::CONFLICT,
        "a deleted project's name stays reserved"
    );
    assert_eq!(reused.content_type, "application/problem+json");
}

#[tokio::test]
async fn signed_image_urls_refuse_tampering_and_expire() {
    if labeling_tests::on_aws() {
        // S3 checks its own signatures; the emulator does not, so this is the embedded store's.
        return;
    }
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 1, 1, "ann")
        .await;
    let task = app.checkout(&project, &ann).await.body;
    let url = task["items"][0]["image_url"].as_str().unwrap().to_owned();
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let other_key = url.replace("img-00000.png", "img-00001.png");
    assert_eq!(
        app.client.get(&other_key).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(
        app.client.get(&unsigned).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    app.clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "expired after 15 minutes"
    );
}

#[tokio::test]
async fn globs_pick_the_images_they_name() {
    let app = spawn_app().await;
    let photos = app.bucket("photos");
    for key in [
        "cats/a.jpg",
        "cats/deep/b.PNG",
        "cats/notes.txt",
        "2024/x.jpg",
        "2024/sub/y.jpg",
        "top.jpg",
    ] {
        app.put_object(&photos, key, labeling_tests::png(8, 8, 1))
            .await;
    }
    for (glob, expected) in [("cats/**", 2), ("**/*.*", 5), ("2024/*.jpg", 1), ("**", 5)] {
        let source = format!("s3://{photos}/{glob}");
        let project = app
            .project(json!({ "name": labeling_testkit::unique("glob"), "task_type": "object_detection", "labels": ["cat"], "source": source }))
            .await;
        assert_eq!(
            app.dashboard(&project).await["total_items"],
            expected,
            "{source}"
        );
    }
    if labeling_tests::on_aws() {
        return; // Local folders as sources exist only in the embedded store.
    }
    let folder = app.data_dir.join("buckets/photos");
    let project = app
        .project(json!({ "name": "local folder", "task_type": "object_detection", "labels": ["cat"], "source": format!("file://{}/2024/**", folder.display()) }))
        .await;
    assert_eq!(
        app.dashboard(&project).await["total_items"],
        2,
        "a local folder works as a source"
    );
    let ann = app.user("ann", "labeler").await;
    app.post(
        &format!("/projects/{project}/members"),
        &app.admin,
        json!({ "user": "ann" }),
    )
    .await;
    let task = app.checkout(&project, &ann).await.body;
    let url = task["items"][0]["image_url"].as_str().unwrap();
    assert_eq!(
        app.client.get(url).send().await.unwrap().status(),
        StatusCode::OK,
        "images of a local folder are served"
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_the_project_with_a_reason() {
    let app = spawn_app().await;
    let reply = app
        .post("/projects", &app.admin, json!({ "name": "nowhere", "task_type": "object_detection", "labels": ["cat"], "source": "s3://no-such-bucket/**" }))
        .await;
    let id = reply.body["id"].as_str().unwrap();
    let project = app.wait_for_status(id, "failed").await;
    assert!(
        project["failure"]
            .as_str()
            .unwrap()
            .contains("no-such-bucket"),
        "{project}"
    );
}

#[tokio::test]
async fn an_image_deleted_before_checkout_is_marked_missing_and_skipped() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 3, 1, "ann")
        .await;
    let source = app
        .get(&format!("/projects/{project}"), &app.admin)
        .await
        .body["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let bucket = source
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    app.delete_object(&bucket, "set/img-00001.png").await;
    let mut keys = Vec::new();
    loop {
        let task = app.checkout(&project, &ann).await;
        if task.status == StatusCode::NO_CONTENT {
            break;
        }
        keys.push(task.body["items"][0]["key"].as_str().unwrap().to_owned());
        let id = task.body["items"][0]["item_id"].as_u64().unwrap();
        app.submit(
            &project,
            task.body["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [{ "item_id": id, "annotations": [] }] }),
        )
        .await;
    }
    keys.sort();
    assert_eq!(keys, ["set/img-00000.png", "set/img-00002.png"]);
    let dashboard = app.dashboard(&project).await;
    assert_eq!(dashboard["missing"], 1);
    assert_eq!(dashboard["labeled"], 2);
}

/// A PNG whose header declares `width` x `height` (the pixels are a 4 x 4 picture's).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = labeling_tests::png(4, 4, 9);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    bytes
}

#[tokio::test]
async fn images_declaring_no_size_or_absurd_sizes_are_marked_missing_not_handed_out() {
    let app = spawn_app().await;
    let ann = app.user("ann", "labeler").await;
    let project = app
        .labeled_project("object_detection", &["cat"], 5, 1, "ann")
        .await;
    let source = app
        .get(&format!("/projects/{project}"), &app.admin)
        .await
        .body["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let bucket = source
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for (key, width, height) in [
        ("set/img-00001.png", 0, 0),
        ("set/img-00002.png", 1 << 31, 10),
        ("set/img-00003.png", 10, u32::MAX),
    ] {
        app.put_object(&bucket, key, png_declaring(width, height))
            .await;
    }
    let mut handed_out = Vec::new();
    loop {
        let task = app.checkout(&project, &ann).await;
        if task.status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(task.status, StatusCode::OK, "{task:?}");
        let item = &task.body["items"][0];
        handed_out.push((
            item["key"].as_str().unwrap().to_owned(),
            item["width"].clone(),
            item["height"].clone(),
        ));
        let id = item["item_id"].as_u64().unwrap();
        app.submit(
            &project,
            task.body["task_id"].as_str().unwrap(),
            &ann,
            json!({ "items": [{ "item_id": id, "annotations": [] }] }),
        )
        .await;
    }
    handed_out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        handed_out,
        [
            ("set/img-00000.png".to_owned(), json!(64), json!(48)),
            ("set/img-00004.png".to_owned(), json!(64), json!(48)),
        ]
    );
    assert_eq!(app.dashboard(&project).await["missing"], 3);
    let listed = app
        .get(
            &format!("/projects/{project}/items?state=missing"),
            &app.admin,
        )
        .await;
    let mut keys: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "set/img-00001.png",
            "set/img-00002.png",
            "set/img-00003.png"
        ]
    );
}

#[tokio::test]
async fn ingest_keeps_the_first_images_in_key_order_and_counts_the_rest_as_dropped() {
    let app = spawn_app().await;
    let capped = app.bucket("capped");
    app.images(&capped, "all", 7, 4, 4).await;
    let source =
        labeling_core::domain::source::Source::parse(&format!("s3://{capped}/all/**"), false)
            .unwrap();
    let listing = app.service.jobs().list_source(&source, 5).await.unwrap();
    assert_eq!(
        listing.keys,
        (0..5)
            .map(|i| format!("all/img-{i:05}.png"))
            .collect::<Vec<_>>()
    );
    assert_eq!(listing.dropped, 2);
}
