//! The demo project a fresh data directory starts with: generated pictures of shapes (nothing
//! is downloaded) in bucket `demo`, and an object-detection project over them.

use image::{Rgb, RgbImage};
use labeling_core::Actor;
use labeling_core::domain::project::{Instructions, NewProjectInput};
use labeling_core::ports::Blobs;

pub const DEMO_BUCKET: &str = "demo";
const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// A deterministic pseudo-random sequence, so the demo is the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(below.max(1))) as u32
    }
}

/// A 320x240 PNG with one to three filled shapes on a light background.
pub fn shapes_picture(seed: u64) -> Vec<u8> {
    let mut random = Lcg(seed.wrapping_add(7));
    let (width, height) = (320u32, 240u32);
    let background = Rgb([235u8, 235, 225]);
    let mut picture = RgbImage::from_pixel(width, height, background);
    for _ in 0..1 + random.next(3) {
        let shape = random.next(3);
        let size = 30 + random.next(50);
        let cx = size + random.next(width - 2 * size);
        let cy = size + random.next(height - 2 * size);
        let color = Rgb([
            random.next(200) as u8,
            random.next(200) as u8,
            random.next(200) as u8,
        ]);
        for y in cy - size..cy + size {
            for x in cx - size..cx + size {
                let dx = x as f64 - cx as f64;
                let dy = y as f64 - cy as f64;
                let s = size as f64;
                let inside = match shape {
                    0 => dx * dx + dy * dy <= s * s,
                    1 => dx.abs() <= s * 0.8 && dy.abs() <= s * 0.8,
                    _ => dy >= -s && dy <= s && dx.abs() <= (dy + s) / 2.0,
                };
                if inside {
                    picture.put_pixel(x, y, color);
                }
            }
        }
    }
    let mut png = Vec::new();
    let _ = picture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
    png
}

/// Writes the demo pictures into `bucket` and creates the demo project (admin is a member).
pub async fn create_demo(
    service: &labeling_core::Service,
    blobs: &dyn Blobs,
    bucket: &str,
    admin: &Actor,
    pictures: u64,
) -> anyhow::Result<String> {
    for index in 0..pictures {
        blobs
            .put(
                bucket,
                &format!("shapes/shape-{index:03}.png"),
                shapes_picture(index),
                "image/png",
            )
            .await?;
    }
    let project = service
        .projects()
        .create_project(
            admin,
            NewProjectInput {
                name: "Demo: shapes".to_owned(),
                task_type: "object_detection".to_owned(),
                labels: SHAPES.iter().map(|s| s.to_string()).collect(),
                instructions: Some(Instructions {
                    text: Some(
                        "Draw a tight box around every circle, square and triangle.".to_owned(),
                    ),
                    url: None,
                }),
                source: format!("s3://{bucket}/shapes/**"),
                page_size: Some(1),
                ..Default::default()
            },
        )
        .await?;
    service
        .projects()
        .add_member(admin, &project.id, &admin.user)
        .await?;
    Ok(project.id)
}
