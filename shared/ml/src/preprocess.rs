//! Bytes to a model's input: decode with limits read from the header first, centre crop, resize
//! and normalize straight into the `[3, size, size]` slice of the batch tensor.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use labeling_core::ports::ImageRejected;

use crate::spec::BackboneSpec;

/// Larger images are refused before anything is allocated for their pixels.
pub const MAX_PIXELS: u64 = 100_000_000;
/// A side above this is refused even when the pixel count passes (a 1 x 50,000,000 strip).
pub const MAX_SIDE: u32 = 20_000;
/// The decoders' own ceiling on any one allocation: a 100-megapixel 16-bit RGBA image needs
/// 800 MB, which no photo worth labeling does; 8-bit RGBA at the pixel limit fits.
const MAX_ALLOC: u64 = 4 * MAX_PIXELS + (16 << 20);

/// Writes the normalized `[3, size, size]` planes of `bytes` into `out` (length `3 * size *
/// size`), or says why the image is refused. Never panics: a decoder that does on hostile input
/// is caught and the image refused.
pub fn preprocess(bytes: &[u8], spec: &BackboneSpec, out: &mut [f32]) -> Result<(), ImageRejected> {
    crop_resize_normalize(&decode_guarded(bytes)?, spec, out);
    Ok(())
}

/// [`decode`], with a decoder that panics on hostile input caught and the image refused.
pub fn decode_guarded(bytes: &[u8]) -> Result<image::RgbImage, ImageRejected> {
    match catch_unwind(AssertUnwindSafe(|| decode(bytes))) {
        Ok(decoded) => decoded,
        Err(_) => Err(ImageRejected("the decoder failed on this image".into())),
    }
}

/// Decodes to 8-bit RGB, refusing what the header says is too large before decoding.
pub fn decode(bytes: &[u8]) -> Result<image::RgbImage, ImageRejected> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageRejected(format!("unreadable: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(ImageRejected(
            "not an image (no known format's signature)".into(),
        ));
    };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageRejected(
            "a truncated JPEG image: no end-of-image marker after its last scan".into(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| ImageRejected(format!("not a readable {format:?} image: {e}")))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageRejected(format!(
            "the header declares {width} x {height} pixels"
        )));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageRejected(format!(
            "the header declares {width} x {height} pixels, above the limits \
             ({MAX_SIDE} a side, {} megapixels)",
            MAX_PIXELS / 1_000_000
        )));
    }
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|e| ImageRejected(format!("a damaged or truncated {format:?} image: {e}")))?;
    Ok(image.into_rgb8())
}

/// The JPEG decoder fills a cut-off scan with grey and reports no error, so a truncated upload
/// would be embedded as a half-grey photo. Entropy-coded data never holds an `FF D9` (end of
/// image) or `FF DA` (start of scan) pair (a data `FF` is followed by `00`), so a complete file
/// has an end-of-image marker after its last start-of-scan; appended data (multi-picture
/// files) keeps that order too.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(last_scan) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Centre crop of `spec.crop` of the shorter side, resized to `spec.input_size` with a
/// triangle (bilinear) filter widened by the scale when shrinking (what Pillow's BILINEAR does,
/// so no aliasing), then `(x - mean) / std` per channel, written as planes (CHW).
pub fn crop_resize_normalize(rgb: &image::RgbImage, spec: &BackboneSpec, out: &mut [f32]) {
    let (width, height) = rgb.dimensions();
    let size = spec.input_size as usize;
    let side = ((width.min(height) as f32 * spec.crop) as u32).max(1);
    let x0 = (width - side) / 2;
    let y0 = (height - side) / 2;
    let columns = Taps::new(x0, side, width, size);
    let rows = Taps::new(y0, side, height, size);
    let plane = size * size;
    let scale = spec.std.map(|s| 1.0 / s);
    resize_with(rgb, &columns, &rows, |x, y, pixel| {
        for c in 0..3 {
            out[c * plane + y * size + x] = (pixel[c] - spec.mean[c]) * scale[c];
        }
    });
}

/// The whole image resized to `content` pixels (width, height) and placed at `offset` in a
/// square canvas of `side` pixels, the rest filled with grey (127, which (x - 127) / 128 maps
/// to about 0), then `(x - mean) / std`, as planes (CHW) into `out` (length `3 * side * side`).
/// What a detection backbone reads: the aspect ratio survives, so boxes map back exactly.
pub fn letterbox_normalize(
    rgb: &image::RgbImage,
    content: (u32, u32),
    offset: (u32, u32),
    side: u32,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut [f32],
) {
    let (width, height) = rgb.dimensions();
    let side = side as usize;
    let plane = side * side;
    let scale = std.map(|s| 1.0 / s);
    for c in 0..3 {
        out[c * plane..(c + 1) * plane].fill((LETTERBOX_GREY - mean[c]) * scale[c]);
    }
    let columns = Taps::new(0, width, width, content.0.max(1) as usize);
    let rows = Taps::new(0, height, height, content.1.max(1) as usize);
    let (left, top) = (offset.0 as usize, offset.1 as usize);
    resize_with(rgb, &columns, &rows, |x, y, pixel| {
        let (x, y) = (left + x, top + y);
        if x < side && y < side {
            for c in 0..3 {
                out[c * plane + y * side + x] = (pixel[c] - mean[c]) * scale[c];
            }
        }
    });
}

/// The padding's value before normalization.
const LETTERBOX_GREY: f32 = 127.0;

/// Resamples the source pixels the taps read: a horizontal pass over only the rows the vertical
/// taps need (into f32 RGB rows), then the vertical pass, handing each output pixel to `put`.
fn resize_with(
    rgb: &image::RgbImage,
    columns: &Taps,
    rows: &Taps,
    mut put: impl FnMut(usize, usize, [f32; 3]),
) {
    let (out_width, out_height) = (columns.len(), rows.len());
    let (first_row, last_row) = rows.span();
    let stride = rgb.width() as usize * 3;
    let raw = rgb.as_raw();
    let mut horizontal = vec![0f32; (last_row - first_row) * out_width * 3];
    for (r, line) in horizontal.chunks_exact_mut(out_width * 3).enumerate() {
        let src = &raw[(first_row + r) * stride..(first_row + r + 1) * stride];
        for (x, px) in line.chunks_exact_mut(3).enumerate() {
            let (start, weights) = columns.of(x);
            let mut acc = [0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let s = (start + k) * 3;
                acc[0] += w * f32::from(src[s]);
                acc[1] += w * f32::from(src[s + 1]);
                acc[2] += w * f32::from(src[s + 2]);
            }
            px.copy_from_slice(&acc);
        }
    }
    for y in 0..out_height {
        let (start, weights) = rows.of(y);
        for x in 0..out_width {
            let mut acc = [0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let s = ((start + k - first_row) * out_width + x) * 3;
                acc[0] += w * horizontal[s];
                acc[1] += w * horizontal[s + 1];
                acc[2] += w * horizontal[s + 2];
            }
            put(x, y, acc);
        }
    }
}

/// Precomputed filter taps of one axis: for each output pixel, the first source index and the
/// normalized weights of the consecutive source pixels it reads.
struct Taps {
    starts: Vec<usize>,
    width: usize,
    weights: Vec<f32>,
}

impl Taps {
    fn new(offset: u32, side: u32, limit: u32, size: usize) -> Self {
        let scale = side as f32 / size as f32;
        let support = scale.max(1.0);
        // Wide enough for every non-zero weight; never wider than the image (a 1-pixel image).
        let width = ((support.ceil() as usize) * 2 + 1).min(limit as usize);
        let mut starts = Vec::with_capacity(size);
        let mut weights = vec![0f32; size * width];
        for i in 0..size {
            let centre = offset as f32 + (i as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0) as usize).min(limit as usize - width);
            let row = &mut weights[i * width..(i + 1) * width];
            let mut total = 0.0;
            for (k, w) in row.iter_mut().enumerate() {
                let source = (lo + k) as f32 + 0.5;
                *w = (1.0 - ((source - centre) / support).abs()).max(0.0);
                total += *w;
            }
            if total > 0.0 {
                row.iter_mut().for_each(|w| *w /= total);
            } else {
                row[0] = 1.0;
            }
            starts.push(lo);
        }
        Self {
            starts,
            width,
            weights,
        }
    }

    /// Output pixels along the axis.
    fn len(&self) -> usize {
        self.starts.len()
    }

    fn of(&self, i: usize) -> (usize, &[f32]) {
        (
            self.starts[i],
            &self.weights[i * self.width..(i + 1) * self.width],
        )
    }

    /// The source range the taps read, `[first, last)`.
    fn span(&self) -> (usize, usize) {
        let first = self.starts.iter().copied().min().unwrap_or(0);
        let last = self
            .starts
            .iter()
            .map(|s| s + self.width)
            .max()
            .unwrap_or(0);
        (first, last)
    }
}
