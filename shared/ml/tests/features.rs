//! The detection backbone through ONNX Runtime: a 112 x 24 x 24 map an image, the same map
//! whatever the batch, refused images refused one by one, and a map aligned with the letterbox
//! (what changes when an object is pasted into a scene is in the cells over the object). Needs
//! what `infra/models/prepare.sh` makes (infra/test.sh sets the variables).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::PathBuf;

use image::{ImageFormat, Rgb, RgbImage};
use labeling_ml::{FeatureSpec, OnnxFeatureExtractor};

fn prepared(variable: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is unset: run `eval \"$(./infra/models/prepare.sh)\"` first \
             (infra/test.sh does)"
        )
    }))
}

fn open() -> OnnxFeatureExtractor {
    OnnxFeatureExtractor::open(
        &prepared("LABELING_ORT_DYLIB"),
        &prepared("LABELING_DETECTION_BACKBONE"),
        FeatureSpec::efficientnet_lite0(),
    )
    .expect("the detection backbone opens")
}

fn sample(name: &str) -> RgbImage {
    let path = prepared("LABELING_SAMPLE_IMAGES").join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb8()
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// A grey 640 x 400 scene, with `object` pasted at `at` when given.
fn scene(object: Option<(&RgbImage, (u32, u32))>) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(640, 400, Rgb([127, 127, 127]));
    if let Some((object, (x, y))) = object {
        image::imageops::replace(&mut canvas, object, i64::from(x), i64::from(y));
    }
    canvas
}

#[test]
fn maps_do_not_depend_on_the_batch_and_bad_images_are_refused_alone() {
    let extractor = open();
    assert_eq!(extractor.channels(), 112);
    let coffee = png(&sample("coffee.png"));
    let chelsea = png(&sample("chelsea.png"));
    // Ten images span two session runs; a refused one sits in the middle of the first.
    let mut batch = vec![coffee.clone(), b"not an image".to_vec(), chelsea.clone()];
    batch.extend((0..7).map(|i| {
        if i % 2 == 0 {
            coffee.clone()
        } else {
            chelsea.clone()
        }
    }));
    let maps = extractor.extract_blocking(&batch).unwrap();
    assert_eq!(maps.len(), 10);
    assert!(maps[1].is_err(), "garbage is refused");
    let alone = extractor.extract_blocking(&[chelsea]).unwrap();
    let (alone_map, alone_box) = alone[0].as_ref().unwrap();
    let (batched_map, batched_box) = maps[2].as_ref().unwrap();
    assert_eq!(
        (alone_map.channels, alone_map.height, alone_map.width),
        (112, 24, 24)
    );
    assert_eq!(alone_box, batched_box);
    let worst = alone_map
        .data
        .iter()
        .zip(&batched_map.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "batching changed the map by {worst}");
    // Chelsea (451 x 300) fills the width; the rest is padding above and below.
    assert_eq!(alone_box.content_size(), (384, 255));
    assert_eq!(alone_box.padding(), (0, 64));
}

#[test]
fn what_an_object_changes_in_the_map_is_in_the_cells_over_it() {
    let extractor = open();
    let cat = sample("chelsea.png");
    let face = image::imageops::crop_imm(&cat, 140, 20, 160, 160).to_image();
    let empty = scene(None);
    let mut checked = 0;
    for at in [(40, 40), (420, 200), (240, 120)] {
        let maps = extractor
            .extract_blocking(&[png(&empty), png(&scene(Some((&face, at))))])
            .unwrap();
        let (without, letterbox) = maps[0].as_ref().unwrap();
        let (with, _) = maps[1].as_ref().unwrap();
        let cells = without.height * without.width;
        let change: Vec<f32> = (0..cells)
            .map(|cell| {
                (0..without.channels)
                    .map(|c| (with.data[c * cells + cell] - without.data[c * cells + cell]).powi(2))
                    .sum::<f32>()
            })
            .collect();
        let strongest = (0..cells)
            .max_by(|&a, &b| change[a].total_cmp(&change[b]))
            .unwrap();
        // The strongest change's cell, in image pixels, lies on the pasted face.
        let stride = letterbox.stride() as f32;
        let cell_box = [
            (strongest % without.width) as f32 * stride,
            (strongest / without.width) as f32 * stride,
            stride,
            stride,
        ];
        let [x, y, w, h] = letterbox.to_image(cell_box);
        let (cx, cy) = (x + w / 2.0, y + h / 2.0);
        let (fx, fy) = (at.0 as f32, at.1 as f32);
        assert!(
            cx >= fx - 8.0 && cx <= fx + 168.0 && cy >= fy - 8.0 && cy <= fy + 168.0,
            "the face at {at:?}: the strongest change is at ({cx}, {cy})"
        );
        // And the cells far from the face barely change.
        let far: f32 = (0..cells)
            .filter(|&cell| {
                let [x, y, _, _] = letterbox.to_image([
                    (cell % without.width) as f32 * stride,
                    (cell / without.width) as f32 * stride,
                    stride,
                    stride,
                ]);
                (x - fx).abs() > 260.0 || (y - fy).abs() > 260.0
            })
            .map(|cell| change[cell])
            .fold(0f32, f32::max);
        assert!(
            far < change[strongest] / 10.0,
            "the face at {at:?}: a cell far away changed by {far}, the strongest by {}",
            change[strongest]
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}
