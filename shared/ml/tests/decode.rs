//! Decoding and resizing without a model: every format ingest accepts decodes, and any image,
//! however small or oddly shaped, fills the model's input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use image::{ImageFormat, Rgb, RgbImage};
use labeling_core::domain::source::IMAGE_EXTENSIONS;
use labeling_ml::{BackboneSpec, decode, preprocess};

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 5) as u8, (y * 7) as u8, 128])
    })
}

#[test]
fn every_extension_ingest_accepts_is_decoded() {
    for extension in IMAGE_EXTENSIONS {
        // Decoding goes by the bytes' signature, not the name; these two are JPEG's other names.
        let format = match *extension {
            "jpe" | "jfif" => Some(ImageFormat::Jpeg),
            other => ImageFormat::from_extension(other),
        }
        .unwrap_or_else(|| panic!("{extension}: the image crate knows no such format"));
        let mut bytes = std::io::Cursor::new(Vec::new());
        gradient(40, 30).write_to(&mut bytes, format).unwrap();
        let decoded = decode(bytes.get_ref())
            .unwrap_or_else(|why| panic!("{extension} ({format:?}) is refused: {why}"));
        assert_eq!(decoded.dimensions(), (40, 30), "{extension}");
    }
}

#[test]
fn any_image_down_to_one_pixel_fills_the_whole_input_with_finite_values() {
    let spec = BackboneSpec::efficientnet_lite0();
    let side = spec.input_size as usize;
    for (width, height) in [(1, 1), (3, 2), (1, 500), (224, 224), (640, 480), (2000, 90)] {
        let mut png = std::io::Cursor::new(Vec::new());
        gradient(width, height)
            .write_to(&mut png, ImageFormat::Png)
            .unwrap();
        let mut input = vec![f32::NAN; 3 * side * side];
        preprocess(png.get_ref(), &spec, &mut input).unwrap();
        assert!(
            input.iter().all(|v| v.is_finite() && v.abs() <= 1.0),
            "{width} x {height}: every value is written and normalized to [-1, 1]"
        );
    }
}

#[test]
fn a_flat_colour_stays_that_colour_after_crop_and_resize() {
    let spec = BackboneSpec::efficientnet_lite0();
    let side = spec.input_size as usize;
    let mut png = std::io::Cursor::new(Vec::new());
    RgbImage::from_pixel(640, 480, Rgb([255, 127, 0]))
        .write_to(&mut png, ImageFormat::Png)
        .unwrap();
    let mut input = vec![0f32; 3 * side * side];
    preprocess(png.get_ref(), &spec, &mut input).unwrap();
    let planes: Vec<&[f32]> = input.chunks_exact(side * side).collect();
    for (plane, expected) in planes.iter().zip([1.0, 0.0, -127.0 / 128.0]) {
        assert!(
            plane.iter().all(|v| (v - expected).abs() < 1e-5),
            "expected {expected}"
        );
    }
}
