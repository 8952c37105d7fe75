//! Object detection on frozen backbone feature maps: a small CenterNet-style head ("Objects as
//! Points", Zhou et al. 2019) trained here in Rust, the letterbox geometry that maps boxes
//! between an image and the backbone's square input, and the validation math (IoU matching,
//! precision/recall, COCO-style AP, per-class thresholds) that decides which classes get
//! prelabeled. No I/O and no ONNX: the backbone runs elsewhere and hands over its stride-16 map.
//!
//! Why CenterNet: it has no anchors to tune per project, its loss is a sum over cells (cheap on
//! a frozen map, and its gradient is easy to write by hand), and decoding is a 3x3 max-pool,
//! with a per-class NMS only as a safety net. Why a per-cell two-layer network shared across
//! cells (a 1x1 convolution pair): the frozen backbone already did the spatial work, so the head
//! only has to read it; each cell also sees the 3x3 mean of its neighbours' features, which
//! gives it context at twice the first layer's cost instead of the nine times a 3x3 convolution
//! would. Features are standardized per channel (as the linear head standardizes embeddings) so
//! one learning rate and one initialization suit any backbone.
//!
//! Targets: a Gaussian per box centre on its class's heatmap, max-combined where boxes meet. The
//! radius is the simple `floor(min(w, h) / 3)` cells with sigma `(2r + 1) / 6`, not CenterNet's
//! size-adaptive `gaussian_radius` (from CornerNet): that one means to bound the corner shift
//! that keeps IoU >= 0.7, but as CenterNet ships it its quadratic roots are not divided by 2a,
//! so it does not compute the bound it names (CornerNet fixed it, CenterNet kept it:
//! xingyizhou/CenterNet#273), and CenterNet's author found other radii such as 0.1 sqrt(w h)
//! "work similarly well" (#848). On our boxes (1-24 cells) it lands near min / 3.5 anyway, and a
//! rule one can state in a line is easier to check. Where two boxes share a centre cell the
//! later one's size and offset are the targets there (CenterNet overwrites too).
//!
//! Loss: CenterNet's penalty-reduced focal loss (alpha 2, beta 4) normalized by the positives
//! in the batch, L1 on log-size and on offset (both weight 1; see
//! [`DetectorOptions::size_weight`] for why not CenterNet's 0.1) at centre cells normalized by
//! their count, and L2 on the weights. The gradients are written by hand (no autodiff crate) and
//! checked against finite differences in the tests. Training is seeded mini-batch Adam over
//! images, a fixed number of epochs, the step decaying linearly to a tenth, one thread: the same
//! inputs and seed give bit-identical weights.
//!
//! Cost: per cell the first layer takes 2C x hidden multiply-adds forward and as many backward
//! (the backbone is frozen, so no gradient flows into the features: only the weight gradient is
//! needed, not the input gradient). Every cell near an object (a positive heatmap target) is in
//! every step's loss, but only [`DetectorOptions::background_cells`] of the others, drawn at
//! random per image and step and weighted up by how many they stand for, so the loss stays an
//! unbiased estimate: away from objects the focal loss is nearly zero once the prior has
//! settled, and computing it on all of them would quadruple the cost of a 24 x 24 map for
//! little. Measured (release, the shared 2-core machine under a load of 2-3, the ignored
//! `detect_bench_train_1000`): 1,000 synthetic maps of 112 x 24 x 24 train in 37 s with the
//! default options (mean best-box IoU 0.92 on fresh maps, AP@0.5 1.0; 78 s at 20 epochs without
//! the background sampling); detecting in one image takes 3 ms.

use serde::{Deserialize, Serialize};

use super::numeric::{Adam, SplitMix, axpy, dot, sigmoid_f64, softplus};

/// The version of a stored [`Detector`]: bumped when its layout changes, so an old blob is
/// refused instead of misread.
pub const DETECTOR_FORMAT: u32 = 1;

/// A labeled box: a class index and `[x, y, width, height]` in pixels.
pub type LabeledBox = (u32, [f32; 4]);

/// Per-class non-maximum suppression drops a box overlapping a higher-scoring kept box of its
/// class by more than this IoU.
pub const NMS_IOU: f32 = 0.5;

/// CenterNet's (and RetinaNet's) prior: every heatmap starts at probability 0.01, so the first
/// steps are not swamped by thousands of background cells each confidently wrong at 0.5.
const PRIOR_PROBABILITY: f64 = 0.01;

/// The focal loss's exponents: alpha sharpens on the prediction, beta reduces the penalty on
/// negatives near a centre (CenterNet's values).
const FOCAL_ALPHA: i32 = 2;
const FOCAL_BETA: i32 = 4;

/// The outputs of a cell after its class heatmaps: log width, log height, offset x, offset y.
const BOX_OUTPUTS: usize = 4;

/// How an image of `image_width` x `image_height` pixels sits in the backbone's square input of
/// `input` pixels: scaled so its long side fills the input, centred, the rest padded. The
/// scaled size is rounded to whole pixels and the padding to whole pixels on the left and top
/// (what a resizer that pastes the scaled image into the canvas produces), and the mapping uses
/// exactly those, so boxes land on the pixels the backbone saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    image_width: u32,
    image_height: u32,
    input: u32,
    stride: u32,
}

impl Letterbox {
    /// `input` must be a multiple of the backbone's `stride` (a feature map covers it exactly).
    pub fn new(
        image_width: u32,
        image_height: u32,
        input: u32,
        stride: u32,
    ) -> Result<Self, DetectError> {
        if image_width == 0 || image_height == 0 {
            return Err(DetectError::EmptyImage);
        }
        if stride == 0 || input == 0 || !input.is_multiple_of(stride) {
            return Err(DetectError::InputNotMultipleOfStride { input, stride });
        }
        Ok(Self {
            image_width,
            image_height,
            input,
            stride,
        })
    }

    pub fn image_width(&self) -> u32 {
        self.image_width
    }

    pub fn image_height(&self) -> u32 {
        self.image_height
    }

    pub fn input(&self) -> u32 {
        self.input
    }

    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// Input pixels per image pixel before rounding: `input / max(width, height)`.
    pub fn scale(&self) -> f32 {
        self.input as f32 / self.image_width.max(self.image_height) as f32
    }

    /// The scaled image's size in input pixels: the long side is `input`, the short side is
    /// rounded (at least one pixel).
    pub fn content_size(&self) -> (u32, u32) {
        let long = f64::from(self.image_width.max(self.image_height));
        let side = |length: u32| {
            let scaled = (f64::from(length) * f64::from(self.input) / long).round();
            (scaled as u32).clamp(1, self.input)
        };
        (side(self.image_width), side(self.image_height))
    }

    /// The padding left of and above the scaled image, in input pixels.
    pub fn padding(&self) -> (u32, u32) {
        let (width, height) = self.content_size();
        ((self.input - width) / 2, (self.input - height) / 2)
    }

    /// The feature map's side in cells: `input / stride`.
    pub fn feature_size(&self) -> usize {
        (self.input / self.stride) as usize
    }

    /// Per axis, input pixels per image pixel and the padding.
    fn axes(&self) -> ([f32; 2], [f32; 2]) {
        let (width, height) = self.content_size();
        let (left, top) = self.padding();
        (
            [
                width as f32 / self.image_width as f32,
                height as f32 / self.image_height as f32,
            ],
            [left as f32, top as f32],
        )
    }

    /// An image-pixel box `[x, y, w, h]` in input pixels.
    pub fn to_input(&self, bbox: [f32; 4]) -> [f32; 4] {
        let ([sx, sy], [px, py]) = self.axes();
        [
            bbox[0] * sx + px,
            bbox[1] * sy + py,
            bbox[2] * sx,
            bbox[3] * sy,
        ]
    }

    /// An input-pixel box `[x, y, w, h]` in image pixels, clamped inside the image (a box in the
    /// padding comes back with zero width or height).
    pub fn to_image(&self, bbox: [f32; 4]) -> [f32; 4] {
        let ([sx, sy], [px, py]) = self.axes();
        let (width, height) = (self.image_width as f32, self.image_height as f32);
        let x0 = ((bbox[0] - px) / sx).clamp(0.0, width);
        let x1 = ((bbox[0] + bbox[2] - px) / sx).clamp(0.0, width);
        let y0 = ((bbox[1] - py) / sy).clamp(0.0, height);
        let y1 = ((bbox[1] + bbox[3] - py) / sy).clamp(0.0, height);
        [x0, y0, (x1 - x0).max(0.0), (y1 - y0).max(0.0)]
    }
}

/// One image's backbone output.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Channel-major (CHW): value (c, y, x) at `(c * height + y) * width + x`.
    pub data: Vec<f32>,
}

impl FeatureMap {
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Self, DetectError> {
        let map = Self {
            channels,
            height,
            width,
            data,
        };
        map.check_shape()?;
        Ok(map)
    }

    pub fn cells(&self) -> usize {
        self.height * self.width
    }

    /// The fields are public, so every use checks them again.
    fn check_shape(&self) -> Result<(), DetectError> {
        if self.channels == 0 || self.height == 0 || self.width == 0 {
            return Err(DetectError::EmptyFeatureMap);
        }
        let expected = self
            .channels
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.width));
        if expected != Some(self.data.len()) {
            return Err(DetectError::FeatureMapLength {
                channels: self.channels,
                height: self.height,
                width: self.width,
                got: self.data.len(),
            });
        }
        Ok(())
    }
}

/// One training image: its feature map and its boxes in input pixels (after the letterbox).
#[derive(Debug, Clone, Copy)]
pub struct DetectionExample<'a> {
    pub features: &'a FeatureMap,
    pub boxes: &'a [LabeledBox],
}

/// Knobs of [`train_detector`]; the defaults suit EfficientNet-Lite0's stride-16 map of a
/// 384-pixel input (24 x 24 cells of 112 channels) and a few hundred to a few thousand images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorOptions {
    /// Units of the hidden layer.
    pub hidden: usize,
    /// Input pixels per feature-map cell.
    pub stride: u32,
    /// Passes over the images: a fixed schedule costs the same on every run. On the benchmark's
    /// 1,000 synthetic maps, 20 epochs reached a mean best-box IoU of 0.90, 30 of 0.92 and 40 of
    /// 0.94, at a cost proportional to the epochs.
    pub epochs: usize,
    /// Images per Adam step.
    pub batch_size: usize,
    /// Adam's initial step; it decays linearly to a tenth over the run (1e-2 was worse on the
    /// benchmark: IoU 0.81 against 0.90 at 20 epochs).
    pub learning_rate: f32,
    /// L2 penalty on the weights (not the biases), on the batch's loss.
    pub l2: f32,
    /// Weight of the L1 loss on ln width and height in cells. 1, not CenterNet's 0.1: CenterNet
    /// regresses raw sizes in output pixels (tens of units), so its L1 is ten to a hundred times
    /// an L1 on log-sizes (units of about 1), and 0.1 there balances it against the heatmap. At
    /// 0.1 on log-sizes the shared hidden layer learns little about size (benchmark, 20 epochs:
    /// mean best-box IoU 0.74 and AP@0.5 0.97; at 1, 0.90 and 1.00).
    pub size_weight: f32,
    /// Weight of the L1 loss on the centre offset.
    pub offset_weight: f32,
    /// Background cells (no object's Gaussian reaches them) per image and step that enter the
    /// focal loss, weighted up to stand for all of them; `None` takes them all. On 24 x 24 maps
    /// 128 of about 540 made training 3.8 times faster (21 s against 78 s on the benchmark at 20
    /// epochs) at the same AP; 64 was about as good on synthetic data, but real backgrounds hold
    /// more hard negatives than noise does.
    pub background_cells: Option<usize>,
    /// Seeds the initialization, the shuffles and the background samples.
    pub seed: u64,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            hidden: 64,
            stride: 16,
            epochs: 30,
            batch_size: 8,
            learning_rate: 3e-3,
            l2: 1e-4,
            size_weight: 1.0,
            offset_weight: 1.0,
            background_cells: Some(128),
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    #[error("a detector needs at least one class")]
    NoClasses,
    #[error("the hidden layer needs at least one unit")]
    NoHiddenUnits,
    #[error("the stride must be at least 1")]
    ZeroStride,
    #[error("the detector's dimensions are too large")]
    TooLarge,
    #[error("there are no training examples")]
    NoExamples,
    #[error("an image needs a width and a height of at least one pixel")]
    EmptyImage,
    #[error("the input size {input} is not a positive multiple of the stride {stride}")]
    InputNotMultipleOfStride { input: u32, stride: u32 },
    #[error("a feature map needs at least one channel and one cell")]
    EmptyFeatureMap,
    #[error("a feature map of {channels} x {height} x {width} cannot hold {got} values")]
    FeatureMapLength {
        channels: usize,
        height: usize,
        width: usize,
        got: usize,
    },
    #[error("example {index}'s feature map is empty or its data does not match its shape")]
    ExampleShape { index: usize },
    #[error("example {index} has {got} channels, the first has {channels}")]
    WrongChannels {
        index: usize,
        got: usize,
        channels: usize,
    },
    #[error("example {index} holds a feature that is not a finite number")]
    NotFinite { index: usize },
    #[error("example {index}, box {box_index}: class {class} is not below {classes}")]
    UnknownClass {
        index: usize,
        box_index: usize,
        class: u32,
        classes: usize,
    },
    #[error("example {index}, box {box_index}: not a box of finite position and positive size")]
    BadBox { index: usize, box_index: usize },
    #[error("the feature map has {got} channels, the detector takes {channels}")]
    FeatureChannels { got: usize, channels: usize },
    #[error(
        "the feature map is {height} x {width} cells, the letterbox makes {expected} x {expected}"
    )]
    FeatureMapSize {
        height: usize,
        width: usize,
        expected: usize,
    },
    #[error("the letterbox's stride {got} is not the detector's {stride}")]
    StrideMismatch { got: u32, stride: u32 },
    #[error("the feature map holds a value that is not a finite number")]
    FeaturesNotFinite,
    #[error("training diverged (a weight is not a finite number): lower the learning rate")]
    Diverged,
    #[error("the stored detector has format {got}, this code reads format {expected}")]
    UnsupportedFormat { got: u32, expected: u32 },
    #[error("the stored detector is malformed: {0}")]
    Malformed(&'static str),
}

/// A detected object, in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class: u32,
    /// The heatmap's probability at the object's centre cell.
    pub score: f32,
    /// `[x, y, width, height]` in image pixels, inside the image.
    pub bbox: [f32; 4],
}

/// The network's dimensions; its parameters, as one flat vector, are the hidden weights
/// (`hidden` rows of `2 x channels`), the hidden biases, the output weights (`classes + 4` rows
/// of `hidden`) and the output biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    channels: usize,
    hidden: usize,
    classes: usize,
}

impl Shape {
    /// A cell's own features, then its neighbourhood's mean.
    fn inputs(self) -> usize {
        2 * self.channels
    }

    fn outputs(self) -> usize {
        self.classes + BOX_OUTPUTS
    }

    /// The index of the log-width output (log-height follows).
    fn size_output(self) -> usize {
        self.classes
    }

    /// The index of the x offset output (y follows).
    fn offset_output(self) -> usize {
        self.classes + 2
    }

    /// The lengths of the four parameter blocks, `None` where they overflow (a forged blob).
    fn checked_lengths(self) -> Option<[usize; 4]> {
        let inputs = self.channels.checked_mul(2)?;
        let outputs = self.classes.checked_add(BOX_OUTPUTS)?;
        let hidden_weights = self.hidden.checked_mul(inputs)?;
        let output_weights = outputs.checked_mul(self.hidden)?;
        hidden_weights
            .checked_add(self.hidden)?
            .checked_add(output_weights)?
            .checked_add(outputs)?;
        Some([hidden_weights, self.hidden, output_weights, outputs])
    }

    /// Only for a shape [`Shape::checked_lengths`] accepted.
    fn lengths(self) -> [usize; 4] {
        [
            self.hidden * self.inputs(),
            self.hidden,
            self.outputs() * self.hidden,
            self.outputs(),
        ]
    }

    fn parameters(self) -> usize {
        self.lengths().iter().sum()
    }

    fn split(self, theta: &[f32]) -> Layers<'_> {
        let [hidden_weights, hidden_biases, output_weights, _] = self.lengths();
        let (hw, rest) = theta.split_at(hidden_weights);
        let (hb, rest) = rest.split_at(hidden_biases);
        let (ow, ob) = rest.split_at(output_weights);
        Layers {
            shape: self,
            hidden_weights: hw,
            hidden_biases: hb,
            output_weights: ow,
            output_biases: ob,
        }
    }

    fn split_mut(self, theta: &mut [f32]) -> LayersMut<'_> {
        let [hidden_weights, hidden_biases, output_weights, _] = self.lengths();
        let (hw, rest) = theta.split_at_mut(hidden_weights);
        let (hb, rest) = rest.split_at_mut(hidden_biases);
        let (ow, ob) = rest.split_at_mut(output_weights);
        LayersMut {
            hidden_weights: hw,
            hidden_biases: hb,
            output_weights: ow,
            output_biases: ob,
        }
    }
}

/// The parameters (or their gradient) by layer.
struct Layers<'a> {
    shape: Shape,
    hidden_weights: &'a [f32],
    hidden_biases: &'a [f32],
    output_weights: &'a [f32],
    output_biases: &'a [f32],
}

struct LayersMut<'a> {
    hidden_weights: &'a mut [f32],
    hidden_biases: &'a mut [f32],
    output_weights: &'a mut [f32],
    output_biases: &'a mut [f32],
}

/// One cell's activations and gradients, reused from cell to cell.
struct CellPass {
    input: Vec<f32>,
    pre_activation: Vec<f32>,
    hidden: Vec<f32>,
    outputs: Vec<f32>,
    output_gradient: Vec<f32>,
    hidden_gradient: Vec<f32>,
}

impl CellPass {
    fn new(shape: Shape) -> Self {
        Self {
            input: vec![0.0; shape.inputs()],
            pre_activation: vec![0.0; shape.hidden],
            hidden: vec![0.0; shape.hidden],
            outputs: vec![0.0; shape.outputs()],
            output_gradient: vec![0.0; shape.outputs()],
            hidden_gradient: vec![0.0; shape.hidden],
        }
    }

    fn forward(&mut self, layers: &Layers<'_>) {
        let inputs = layers.shape.inputs();
        for (((row, bias), pre), hidden) in layers
            .hidden_weights
            .chunks_exact(inputs)
            .zip(layers.hidden_biases)
            .zip(self.pre_activation.iter_mut())
            .zip(self.hidden.iter_mut())
        {
            *pre = dot(row, &self.input) + bias;
            *hidden = pre.max(0.0);
        }
        for ((row, bias), output) in layers
            .output_weights
            .chunks_exact(layers.shape.hidden)
            .zip(layers.output_biases)
            .zip(self.outputs.iter_mut())
        {
            *output = dot(row, &self.hidden) + bias;
        }
    }

    /// Adds this cell's gradient (from `output_gradient`) to `gradient`.
    fn backward(&mut self, layers: &Layers<'_>, gradient: &mut LayersMut<'_>) {
        let hidden = layers.shape.hidden;
        self.hidden_gradient.iter_mut().for_each(|g| *g = 0.0);
        for (((slope, row), gradient_row), gradient_bias) in self
            .output_gradient
            .iter()
            .zip(layers.output_weights.chunks_exact(hidden))
            .zip(gradient.output_weights.chunks_exact_mut(hidden))
            .zip(gradient.output_biases.iter_mut())
        {
            // Most outputs of a background cell (its box outputs) have no loss: skip their rows.
            if *slope == 0.0 {
                continue;
            }
            *gradient_bias += slope;
            axpy(*slope, &self.hidden, gradient_row);
            axpy(*slope, row, &mut self.hidden_gradient);
        }
        for (((slope, pre), gradient_row), gradient_bias) in self
            .hidden_gradient
            .iter()
            .zip(&self.pre_activation)
            .zip(
                gradient
                    .hidden_weights
                    .chunks_exact_mut(layers.shape.inputs()),
            )
            .zip(gradient.hidden_biases.iter_mut())
        {
            // A closed ReLU passes nothing back.
            if *pre > 0.0 && *slope != 0.0 {
                *gradient_bias += slope;
                axpy(*slope, &self.input, gradient_row);
            }
        }
    }
}

/// The map standardized per channel and transposed to one row of `channels` values per cell
/// (HWC), the layout the per-cell dot products read contiguously.
fn standardized_cells(features: &FeatureMap, mean: &[f32], scale: &[f32], out: &mut Vec<f32>) {
    let (cells, channels) = (features.cells(), features.channels);
    out.clear();
    out.resize(cells * channels, 0.0);
    for ((channel, plane), (m, s)) in features
        .data
        .chunks_exact(cells)
        .enumerate()
        .zip(mean.iter().zip(scale))
    {
        for (cell, value) in plane.iter().enumerate() {
            out[cell * channels + channel] = (value - m) / s;
        }
    }
}

/// The network's input at `cell`: its standardized features, then their mean over the 3 x 3
/// neighbourhood, zero-padded at the borders (zero is the data's mean after standardizing, so a
/// border cell's context leans toward "nothing in particular" rather than toward its own
/// values).
fn cell_input(
    cells: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    cell: usize,
    input: &mut [f32],
) {
    let (y, x) = (cell / width, cell % width);
    let (own, context) = input.split_at_mut(channels);
    own.copy_from_slice(&cells[cell * channels..(cell + 1) * channels]);
    context.iter_mut().for_each(|c| *c = 0.0);
    for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
        for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
            let neighbour = ny * width + nx;
            let values = &cells[neighbour * channels..(neighbour + 1) * channels];
            for (sum, value) in context.iter_mut().zip(values) {
                *sum += value;
            }
        }
    }
    context.iter_mut().for_each(|c| *c *= 1.0 / 9.0);
}

/// The focal loss at a centre cell with logit `z`, `-(1 - p)^a ln p`, and its derivative in `z`:
/// `-(1 - p)^a (a p (-ln p) + 1 - p)`.
fn focal_positive(z: f64) -> (f64, f64) {
    let (p, miss) = (sigmoid_f64(z), sigmoid_f64(-z));
    let minus_log_p = softplus(-z);
    let factor = miss.powi(FOCAL_ALPHA);
    let slope = -factor * (f64::from(FOCAL_ALPHA) * p * minus_log_p + miss);
    (factor * minus_log_p, slope)
}

/// The focal loss elsewhere, `-(1 - y)^b p^a ln(1 - p)` for a target `y` < 1, and its derivative
/// in `z`: `(1 - y)^b p^a (a (1 - p) (-ln(1 - p)) + p)`.
fn focal_negative(z: f64, target: f64) -> (f64, f64) {
    let (p, miss) = (sigmoid_f64(z), sigmoid_f64(-z));
    let minus_log_miss = softplus(z);
    let factor = (1.0 - target).powi(FOCAL_BETA) * p.powi(FOCAL_ALPHA);
    let slope = factor * (f64::from(FOCAL_ALPHA) * miss * minus_log_miss + p);
    (factor * minus_log_miss, slope)
}

/// The derivative of |x| (0 at the kink).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// What one image's cells should output.
struct Targets {
    cells: usize,
    /// Classes x cells, class-major: per class the maximum of its boxes' Gaussians.
    heat: Vec<f32>,
    /// Classes x cells: the box centres, the focal loss's positives (kept apart from `heat ==
    /// 1.0` so no float comparison decides what is a positive).
    positive: Vec<bool>,
    positives: usize,
    /// Per cell, the size and offset targets where a box's centre falls.
    regression: Vec<Option<Regression>>,
    regressions: usize,
    /// Cells where some class's target is above zero: in every step's loss.
    foreground: Vec<u32>,
    /// The others: all in the loss, or a sample of them.
    background: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Regression {
    /// ln of the box's width and height in cells.
    size: [f32; 2],
    /// The centre's position within its cell, in cells.
    offset: [f32; 2],
}

/// Where a box's centre falls on a `height` x `width` map: the cell (x, y) and the offset of the
/// centre in it. A centre off the map (a box from a careless letterbox) is clamped onto it.
fn centre_cell(bbox: [f32; 4], stride: f32, height: usize, width: usize) -> ([usize; 2], [f32; 2]) {
    let centre = [
        ((bbox[0] + bbox[2] / 2.0) / stride).clamp(0.0, width as f32),
        ((bbox[1] + bbox[3] / 2.0) / stride).clamp(0.0, height as f32),
    ];
    let cell = [
        (centre[0].floor() as usize).min(width - 1),
        (centre[1].floor() as usize).min(height - 1),
    ];
    (
        cell,
        [centre[0] - cell[0] as f32, centre[1] - cell[1] as f32],
    )
}

/// The targets of boxes already checked (class below `classes`, finite, positive size).
fn targets(
    boxes: &[LabeledBox],
    classes: usize,
    height: usize,
    width: usize,
    stride: f32,
) -> Targets {
    let cells = height * width;
    let mut heat = vec![0.0f32; classes * cells];
    let mut positive = vec![false; classes * cells];
    let mut regression = vec![None; cells];
    for (class, bbox) in boxes {
        let class = *class as usize;
        let size_in_cells = [bbox[2] / stride, bbox[3] / stride];
        let ([cx, cy], offset) = centre_cell(*bbox, stride, height, width);
        // Capped at the map's size: a huge (finite) box must not overflow the loop bounds below.
        let radius = (size_in_cells[0].min(size_in_cells[1]) / 3.0)
            .floor()
            .clamp(0.0, height.max(width) as f32) as usize;
        let sigma = (2 * radius + 1) as f32 / 6.0;
        let plane = &mut heat[class * cells..(class + 1) * cells];
        for y in cy.saturating_sub(radius)..=(cy + radius).min(height - 1) {
            for x in cx.saturating_sub(radius)..=(cx + radius).min(width - 1) {
                let (dx, dy) = (x.abs_diff(cx) as f32, y.abs_diff(cy) as f32);
                let value = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
                let target = &mut plane[y * width + x];
                *target = target.max(value);
            }
        }
        let centre = cy * width + cx;
        plane[centre] = 1.0;
        positive[class * cells + centre] = true;
        regression[centre] = Some(Regression {
            size: size_in_cells.map(f32::ln),
            offset,
        });
    }
    let (foreground, background) = (0..cells as u32)
        .partition(|cell| (0..classes).any(|class| heat[class * cells + *cell as usize] > 0.0));
    Targets {
        cells,
        positives: positive.iter().filter(|p| **p).count(),
        regressions: regression.iter().filter(|r| r.is_some()).count(),
        heat,
        positive,
        regression,
        foreground,
        background,
    }
}

/// The loss terms' weights (the heatmap's is 1 in training; the gradient check turns terms off
/// one at a time).
#[derive(Debug, Clone, Copy)]
struct LossWeights {
    heatmap: f64,
    size: f64,
    offset: f64,
    l2: f32,
}

/// The cells of one image that enter a step's loss, each with its weight.
struct Selection {
    image: usize,
    cells: Vec<(u32, f32)>,
}

/// The checked training problem.
struct Problem<'a> {
    shape: Shape,
    stride: u32,
    weights: LossWeights,
    examples: &'a [DetectionExample<'a>],
    mean: Vec<f32>,
    scale: Vec<f32>,
    targets: Vec<Targets>,
}

fn prepare<'a>(
    examples: &'a [DetectionExample<'a>],
    classes: usize,
    options: &DetectorOptions,
) -> Result<Problem<'a>, DetectError> {
    if classes == 0 {
        return Err(DetectError::NoClasses);
    }
    if options.hidden == 0 {
        return Err(DetectError::NoHiddenUnits);
    }
    if options.stride == 0 {
        return Err(DetectError::ZeroStride);
    }
    let first = examples.first().ok_or(DetectError::NoExamples)?;
    let channels = first.features.channels;
    let shape = Shape {
        channels,
        hidden: options.hidden,
        classes,
    };
    if shape.checked_lengths().is_none() || u32::try_from(classes).is_err() {
        return Err(DetectError::TooLarge);
    }
    for (index, example) in examples.iter().enumerate() {
        let features = example.features;
        if features.check_shape().is_err() {
            return Err(DetectError::ExampleShape { index });
        }
        if features.channels != channels {
            return Err(DetectError::WrongChannels {
                index,
                got: features.channels,
                channels,
            });
        }
        if features.data.iter().any(|v| !v.is_finite()) {
            return Err(DetectError::NotFinite { index });
        }
        for (box_index, (class, bbox)) in example.boxes.iter().enumerate() {
            if *class as usize >= classes {
                return Err(DetectError::UnknownClass {
                    index,
                    box_index,
                    class: *class,
                    classes,
                });
            }
            if bbox.iter().any(|v| !v.is_finite()) || bbox[2] <= 0.0 || bbox[3] <= 0.0 {
                return Err(DetectError::BadBox { index, box_index });
            }
        }
    }

    // In f64 and in a fixed order: millions of values, and the result must not depend on luck.
    let mut sum = vec![0.0f64; channels];
    let mut count = 0usize;
    for example in examples {
        let cells = example.features.cells();
        count += cells;
        for (s, plane) in sum
            .iter_mut()
            .zip(example.features.data.chunks_exact(cells))
        {
            *s += plane.iter().map(|v| f64::from(*v)).sum::<f64>();
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
    let mut squares = vec![0.0f64; channels];
    for example in examples {
        let cells = example.features.cells();
        for ((s, m), plane) in squares
            .iter_mut()
            .zip(&mean)
            .zip(example.features.data.chunks_exact(cells))
        {
            *s += plane
                .iter()
                .map(|v| (f64::from(*v) - m) * (f64::from(*v) - m))
                .sum::<f64>();
        }
    }
    // A constant channel (ReLU6 outputs often are) keeps scale 1 instead of dividing by ~0.
    let scale = squares
        .iter()
        .map(|s| {
            let std = (s / count as f64).sqrt();
            if std > 1e-6 { std as f32 } else { 1.0 }
        })
        .collect();

    let stride = options.stride as f32;
    let targets = examples
        .iter()
        .map(|e| {
            targets(
                e.boxes,
                classes,
                e.features.height,
                e.features.width,
                stride,
            )
        })
        .collect();
    Ok(Problem {
        shape,
        stride: options.stride,
        weights: LossWeights {
            heatmap: 1.0,
            size: f64::from(options.size_weight),
            offset: f64::from(options.offset_weight),
            l2: options.l2,
        },
        examples,
        mean: mean.iter().map(|m| *m as f32).collect(),
        scale,
        targets,
    })
}

impl Problem<'_> {
    /// Every cell of `image` at weight 1.
    #[cfg(test)]
    fn all_cells(&self, image: usize) -> Selection {
        Selection {
            image,
            cells: (0..self.targets[image].cells as u32)
                .map(|c| (c, 1.0))
                .collect(),
        }
    }

    /// The foreground of `image` and `background_cells` of its background drawn at random (a
    /// partial Fisher-Yates over `pool`), each standing for `background / drawn` cells.
    fn select(
        &self,
        image: usize,
        background_cells: Option<usize>,
        rng: &mut SplitMix,
        pool: &mut Vec<u32>,
    ) -> Selection {
        let targets = &self.targets[image];
        let mut cells: Vec<(u32, f32)> = targets.foreground.iter().map(|c| (*c, 1.0)).collect();
        let background = &targets.background;
        match background_cells {
            Some(drawn) if drawn < background.len() => {
                pool.clear();
                pool.extend_from_slice(background);
                for i in 0..drawn {
                    let j = i + rng.below(pool.len() - i);
                    pool.swap(i, j);
                }
                let weight = background.len() as f32 / drawn as f32;
                cells.extend(pool[..drawn].iter().map(|c| (*c, weight)));
            }
            _ => cells.extend(background.iter().map(|c| (*c, 1.0))),
        }
        Selection { image, cells }
    }

    /// The loss of `batch` (normalized by the batch's positives and centre cells) plus the L2
    /// term, and its gradient into `gradient` (overwritten).
    fn loss_and_gradient(&self, theta: &[f32], batch: &[Selection], gradient: &mut [f32]) -> f64 {
        gradient.iter_mut().for_each(|g| *g = 0.0);
        let shape = self.shape;
        let layers = shape.split(theta);
        let mut gradients = shape.split_mut(gradient);
        let positives: usize = batch.iter().map(|s| self.targets[s.image].positives).sum();
        let regressions: usize = batch
            .iter()
            .map(|s| self.targets[s.image].regressions)
            .sum();
        let heatmap_scale = self.weights.heatmap / positives.max(1) as f64;
        let size_scale = self.weights.size / regressions.max(1) as f64;
        let offset_scale = self.weights.offset / regressions.max(1) as f64;
        let mut pass = CellPass::new(shape);
        let mut cells = Vec::new();
        let mut loss = 0.0f64;
        for selection in batch {
            let features = self.examples[selection.image].features;
            let targets = &self.targets[selection.image];
            standardized_cells(features, &self.mean, &self.scale, &mut cells);
            for &(cell, weight) in &selection.cells {
                let cell = cell as usize;
                cell_input(
                    &cells,
                    shape.channels,
                    features.height,
                    features.width,
                    cell,
                    &mut pass.input,
                );
                pass.forward(&layers);
                let weight = f64::from(weight);
                pass.output_gradient.iter_mut().for_each(|g| *g = 0.0);
                if heatmap_scale != 0.0 {
                    let scale = weight * heatmap_scale;
                    for class in 0..shape.classes {
                        let at = class * targets.cells + cell;
                        let z = f64::from(pass.outputs[class]);
                        let (term, slope) = if targets.positive[at] {
                            focal_positive(z)
                        } else {
                            focal_negative(z, f64::from(targets.heat[at]))
                        };
                        loss += scale * term;
                        pass.output_gradient[class] = (scale * slope) as f32;
                    }
                }
                if let Some(target) = targets.regression[cell] {
                    for (first, values, term_scale) in [
                        (shape.size_output(), target.size, size_scale),
                        (shape.offset_output(), target.offset, offset_scale),
                    ] {
                        let scale = weight * term_scale;
                        for (axis, value) in values.iter().enumerate() {
                            let error = f64::from(pass.outputs[first + axis]) - f64::from(*value);
                            loss += scale * error.abs();
                            pass.output_gradient[first + axis] = (scale * sign(error)) as f32;
                        }
                    }
                }
                pass.backward(&layers, &mut gradients);
            }
        }
        let l2 = self.weights.l2;
        for (weights, gradient) in [
            (layers.hidden_weights, &mut *gradients.hidden_weights),
            (layers.output_weights, &mut *gradients.output_weights),
        ] {
            let squares: f64 = weights.iter().map(|w| f64::from(*w) * f64::from(*w)).sum();
            loss += 0.5 * f64::from(l2) * squares;
            axpy(l2, weights, gradient);
        }
        loss
    }

    /// ln of the boxes' mean width and height in cells: where the size outputs start, so the
    /// first steps do not spend themselves walking the size biases over from 0 (one cell).
    fn size_prior(&self) -> [f32; 2] {
        let mut sum = [0.0f64; 2];
        let mut count = 0usize;
        for targets in &self.targets {
            for regression in targets.regression.iter().flatten() {
                sum[0] += f64::from(regression.size[0]);
                sum[1] += f64::from(regression.size[1]);
                count += 1;
            }
        }
        sum.map(|s| (s / count.max(1) as f64) as f32)
    }
}

/// Seeded scaled-uniform weights: He's bound sqrt(6 / fan-in) for the ReLU layer (the hidden
/// units start with about the inputs' variance), 1 / sqrt(fan-in) for the output layer; the
/// heatmap biases at the prior, the size biases at the data's mean size, the offsets mid-cell.
fn initial_parameters(shape: Shape, size_prior: [f32; 2], rng: &mut SplitMix) -> Vec<f32> {
    let mut theta = vec![0.0f32; shape.parameters()];
    let layers = shape.split_mut(&mut theta);
    let mut uniform = |values: &mut [f32], bound: f64| {
        for value in values {
            *value = ((2.0 * rng.next_f64() - 1.0) * bound) as f32;
        }
    };
    uniform(layers.hidden_weights, (6.0 / shape.inputs() as f64).sqrt());
    uniform(layers.output_weights, (1.0 / shape.hidden as f64).sqrt());
    let prior_logit = -((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY).ln() as f32;
    let biases = layers.output_biases;
    biases[..shape.classes]
        .iter_mut()
        .for_each(|b| *b = prior_logit);
    biases[shape.size_output()..shape.size_output() + 2].copy_from_slice(&size_prior);
    biases[shape.offset_output()..shape.offset_output() + 2].copy_from_slice(&[0.5, 0.5]);
    theta
}

/// [`Adam`] over seeded mini-batches of images.
fn optimize(
    problem: &Problem<'_>,
    options: &DetectorOptions,
    theta: &mut [f32],
    rng: &mut SplitMix,
) {
    let size = theta.len();
    let mut gradient = vec![0.0f32; size];
    let n = problem.examples.len();
    let batch = options.batch_size.max(1);
    let mut adam = Adam::new(
        size,
        options.learning_rate,
        options.epochs * n.div_ceil(batch),
    );
    let mut order: Vec<usize> = (0..n).collect();
    let mut pool = Vec::new();
    for _ in 0..options.epochs {
        rng.shuffle(&mut order);
        for images in order.chunks(batch) {
            let selections: Vec<Selection> = images
                .iter()
                .map(|image| problem.select(*image, options.background_cells, rng, &mut pool))
                .collect();
            problem.loss_and_gradient(theta, &selections, &mut gradient);
            adam.step(theta, &gradient);
        }
    }
}

/// Trains a detector over `classes` classes (box classes are indices below it) on `examples`.
pub fn train_detector(
    examples: &[DetectionExample<'_>],
    classes: usize,
    options: &DetectorOptions,
) -> Result<Detector, DetectError> {
    let problem = prepare(examples, classes, options)?;
    let mut rng = SplitMix::new(options.seed);
    let mut theta = initial_parameters(problem.shape, problem.size_prior(), &mut rng);
    optimize(&problem, options, &mut theta, &mut rng);
    // Never stored: NaN weights would serialize as nulls and detect nothing, silently.
    if theta.iter().any(|t| !t.is_finite()) {
        return Err(DetectError::Diverged);
    }
    let layers = problem.shape.split(&theta);
    Ok(Detector {
        format: DETECTOR_FORMAT,
        classes,
        channels: problem.shape.channels,
        hidden: problem.shape.hidden,
        stride: problem.stride,
        mean: problem.mean.clone(),
        scale: problem.scale.clone(),
        hidden_weights: layers.hidden_weights.to_vec(),
        hidden_biases: layers.hidden_biases.to_vec(),
        output_weights: layers.output_weights.to_vec(),
        output_biases: layers.output_biases.to_vec(),
    })
}

/// A trained detector, stored as JSON like [`super::head::Head`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// [`DETECTOR_FORMAT`] when written.
    pub format: u32,
    pub classes: usize,
    pub channels: usize,
    pub hidden: usize,
    /// Input pixels per feature-map cell of the maps it was trained on.
    pub stride: u32,
    /// Feature standardization: x' = (x - mean) / scale, per channel.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `hidden` rows of `2 x channels`: a cell's standardized features, then their 3 x 3 mean.
    pub hidden_weights: Vec<f32>,
    pub hidden_biases: Vec<f32>,
    /// `classes + 4` rows of `hidden`: the class heatmap logits, ln width and ln height in
    /// cells, the centre's x and y offset in its cell.
    pub output_weights: Vec<f32>,
    pub output_biases: Vec<f32>,
}

impl Detector {
    fn shape(&self) -> Shape {
        Shape {
            channels: self.channels,
            hidden: self.hidden,
            classes: self.classes,
        }
    }

    fn layers(&self) -> Layers<'_> {
        Layers {
            shape: self.shape(),
            hidden_weights: &self.hidden_weights,
            hidden_biases: &self.hidden_biases,
            output_weights: &self.output_weights,
            output_biases: &self.output_biases,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Numbers and vectors only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored detector, checking its format and that its shapes agree (a blob may be
    /// corrupt or forged; mismatched shapes would otherwise read out of bounds or detect
    /// nonsense).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DetectError> {
        let detector: Detector = serde_json::from_slice(bytes)
            .map_err(|_| DetectError::Malformed("not a detector's JSON"))?;
        detector.check()?;
        Ok(detector)
    }

    fn check(&self) -> Result<(), DetectError> {
        if self.format != DETECTOR_FORMAT {
            return Err(DetectError::UnsupportedFormat {
                got: self.format,
                expected: DETECTOR_FORMAT,
            });
        }
        if self.classes == 0 || self.channels == 0 || self.hidden == 0 || self.stride == 0 {
            return Err(DetectError::Malformed("a dimension is zero"));
        }
        if u32::try_from(self.classes).is_err() {
            return Err(DetectError::Malformed("too many classes"));
        }
        let Some(lengths) = self.shape().checked_lengths() else {
            return Err(DetectError::Malformed("the dimensions are too large"));
        };
        if self.mean.len() != self.channels || self.scale.len() != self.channels {
            return Err(DetectError::Malformed(
                "the standardization does not match the channels",
            ));
        }
        let blocks = [
            &self.hidden_weights,
            &self.hidden_biases,
            &self.output_weights,
            &self.output_biases,
        ];
        if blocks
            .iter()
            .zip(lengths)
            .any(|(block, length)| block.len() != length)
        {
            return Err(DetectError::Malformed(
                "a layer's parameters do not match its dimensions",
            ));
        }
        let finite = |values: &[f32]| values.iter().all(|v| v.is_finite());
        if !finite(&self.mean)
            || blocks.iter().any(|block| !finite(block))
            || self.scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(DetectError::Malformed("a value is not a finite number"));
        }
        Ok(())
    }

    /// The network's outputs for every cell: `cells` rows of `classes + 4`.
    fn cell_outputs(&self, features: &FeatureMap) -> Vec<f32> {
        let layers = self.layers();
        let mut pass = CellPass::new(layers.shape);
        let mut cells = Vec::new();
        standardized_cells(features, &self.mean, &self.scale, &mut cells);
        let mut outputs = Vec::with_capacity(features.cells() * layers.shape.outputs());
        for cell in 0..features.cells() {
            cell_input(
                &cells,
                self.channels,
                features.height,
                features.width,
                cell,
                &mut pass.input,
            );
            pass.forward(&layers);
            outputs.extend_from_slice(&pass.outputs);
        }
        outputs
    }

    /// The objects in one image's `features` (the backbone's map of the image letterboxed by
    /// `letterbox`), in image pixels, by descending score (ties by class, then cell), at most
    /// `max_detections`: every heatmap peak (a cell equal to the maximum of its 3 x 3
    /// neighbourhood) decoded into a box, then per-class non-maximum suppression at [`NMS_IOU`].
    /// No score threshold: the per-class thresholds of validation ([`choose_threshold`]) decide
    /// what becomes a prelabel.
    pub fn detect(
        &self,
        features: &FeatureMap,
        letterbox: &Letterbox,
        max_detections: usize,
    ) -> Result<Vec<Detection>, DetectError> {
        features.check_shape()?;
        if features.channels != self.channels {
            return Err(DetectError::FeatureChannels {
                got: features.channels,
                channels: self.channels,
            });
        }
        if letterbox.stride() != self.stride {
            return Err(DetectError::StrideMismatch {
                got: letterbox.stride(),
                stride: self.stride,
            });
        }
        let side = letterbox.feature_size();
        if features.height != side || features.width != side {
            return Err(DetectError::FeatureMapSize {
                height: features.height,
                width: features.width,
                expected: side,
            });
        }
        if features.data.iter().any(|v| !v.is_finite()) {
            return Err(DetectError::FeaturesNotFinite);
        }
        let shape = self.shape();
        let outputs_per_cell = shape.outputs();
        let outputs = self.cell_outputs(features);
        let (height, width) = (features.height, features.width);
        let logit =
            |class: usize, y: usize, x: usize| outputs[(y * width + x) * outputs_per_cell + class];
        let stride = self.stride as f32;
        // exp of a wild size output would overflow; no box needs to be wider than twice the map.
        let max_log_size = (2.0 * height.max(width) as f32).ln();
        let mut candidates = Vec::new();
        for class in 0..shape.classes {
            for y in 0..height {
                for x in 0..width {
                    let z = logit(class, y, x);
                    let is_peak = (y.saturating_sub(1)..=(y + 1).min(height - 1)).all(|ny| {
                        (x.saturating_sub(1)..=(x + 1).min(width - 1))
                            .all(|nx| logit(class, ny, nx) <= z)
                    });
                    if !is_peak {
                        continue;
                    }
                    let row = &outputs[(y * width + x) * outputs_per_cell..][..outputs_per_cell];
                    let size = shape.size_output();
                    let offset = shape.offset_output();
                    let box_width = row[size].min(max_log_size).exp() * stride;
                    let box_height = row[size + 1].min(max_log_size).exp() * stride;
                    let centre_x = (x as f32 + row[offset]) * stride;
                    let centre_y = (y as f32 + row[offset + 1]) * stride;
                    let bbox = letterbox.to_image([
                        centre_x - box_width / 2.0,
                        centre_y - box_height / 2.0,
                        box_width,
                        box_height,
                    ]);
                    // A box wholly in the padding, or made of overflowed numbers, is no object.
                    if bbox.iter().any(|v| !v.is_finite()) || bbox[2] <= 0.0 || bbox[3] <= 0.0 {
                        continue;
                    }
                    candidates.push(Detection {
                        class: class as u32,
                        score: sigmoid_f64(f64::from(z)) as f32,
                        bbox,
                    });
                }
            }
        }
        Ok(non_maximum_suppression(
            &candidates,
            NMS_IOU,
            max_detections,
        ))
    }
}

/// Greedy per-class non-maximum suppression: by descending score (ties by class, then the
/// order given), a detection is kept unless a kept one of its class overlaps it by more than
/// `iou_threshold`; at most `max_detections` are kept.
pub fn non_maximum_suppression(
    detections: &[Detection],
    iou_threshold: f32,
    max_detections: usize,
) -> Vec<Detection> {
    let mut order: Vec<usize> = (0..detections.len()).collect();
    order.sort_by(|a, b| {
        let (da, db) = (&detections[*a], &detections[*b]);
        db.score
            .total_cmp(&da.score)
            .then(da.class.cmp(&db.class))
            .then(a.cmp(b))
    });
    let mut kept: Vec<Detection> = Vec::new();
    for index in order {
        if kept.len() >= max_detections {
            break;
        }
        let candidate = detections[index];
        let suppressed = kept
            .iter()
            .any(|k| k.class == candidate.class && iou(k.bbox, candidate.bbox) > iou_threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

/// Intersection over union of two `[x, y, w, h]` boxes; 0 when both are empty.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let overlap_width = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let overlap_height = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = overlap_width * overlap_height;
    let union = a[2] * a[3] + b[2] * b[3] - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

/// For each prediction (in the order given), the index of the truth it matches, if any, by
/// COCO's rule: predictions in descending score (ties by order given) each take the unmatched
/// truth of their class they overlap most, at IoU >= `iou_threshold`; a truth is matched at
/// most once, so a duplicate detection is a false positive.
pub fn match_detections(
    predictions: &[Detection],
    truths: &[LabeledBox],
    iou_threshold: f32,
) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..predictions.len()).collect();
    order.sort_by(|a, b| {
        predictions[*b]
            .score
            .total_cmp(&predictions[*a].score)
            .then(a.cmp(b))
    });
    let mut taken = vec![false; truths.len()];
    let mut matches = vec![None; predictions.len()];
    for index in order {
        let prediction = &predictions[index];
        let mut best: Option<(usize, f32)> = None;
        for (truth, (class, bbox)) in truths.iter().enumerate() {
            if taken[truth] || *class != prediction.class {
                continue;
            }
            let overlap = iou(prediction.bbox, *bbox);
            if overlap >= iou_threshold && best.is_none_or(|(_, b)| overlap > b) {
                best = Some((truth, overlap));
            }
        }
        if let Some((truth, _)) = best {
            taken[truth] = true;
            matches[index] = Some(truth);
        }
    }
    matches
}

/// One point of a class's precision/recall curve: keeping the class's detections scored >=
/// `threshold` keeps `detections` of them, `true_positives` matched to a truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecallPoint {
    pub threshold: f32,
    /// true_positives / detections.
    pub precision: f32,
    /// true_positives / the class's truths.
    pub recall: f32,
    pub detections: u32,
    pub true_positives: u32,
}

impl PrecisionRecallPoint {
    /// From the counts, not the stored f32.
    fn exact_precision(&self) -> f64 {
        if self.detections == 0 {
            0.0
        } else {
            f64::from(self.true_positives) / f64::from(self.detections)
        }
    }
}

/// The curve of one class from its detections' `(score, matched)` over all images and its
/// number of truths: thresholds ascending (as [`super::validation::CurvePoint`]s are), one
/// point per distinct score, since no threshold separates equal scores.
pub fn precision_recall_curve(scored: &[(f32, bool)], truths: u32) -> Vec<PrecisionRecallPoint> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut points = Vec::new();
    let (mut detections, mut true_positives) = (0u32, 0u32);
    for (position, (score, matched)) in sorted.iter().enumerate() {
        detections += 1;
        true_positives += u32::from(*matched);
        let last_of_its_score = sorted.get(position + 1).is_none_or(|next| next.0 != *score);
        if last_of_its_score {
            points.push(PrecisionRecallPoint {
                threshold: *score,
                precision: true_positives as f32 / detections as f32,
                recall: if truths == 0 {
                    0.0
                } else {
                    true_positives as f32 / truths as f32
                },
                detections,
                true_positives,
            });
        }
    }
    points.reverse();
    points
}

/// COCO's AP: the mean over recall levels 0, 0.01, ..., 1 of the best precision at that recall
/// or more (0 where the curve never reaches it). Recall levels are compared in integers
/// (`true_positives x 100 >= level x truths`), so a recall of exactly 0.29 counts as reaching
/// 0.29. 0 for a class without truths.
pub fn average_precision(curve: &[PrecisionRecallPoint], truths: u32) -> f64 {
    if truths == 0 {
        return 0.0;
    }
    let total: f64 = (0..=100u64)
        .map(|level| {
            curve
                .iter()
                .filter(|p| u64::from(p.true_positives) * 100 >= level * u64::from(truths))
                .map(PrecisionRecallPoint::exact_precision)
                .fold(0.0, f64::max)
        })
        .sum();
    total / 101.0
}

/// The lowest threshold of `curve` at which precision meets `target_precision` with at least
/// `min_support` true positives at or above it, i.e. the most recall the target allows; `None`:
/// no threshold qualifies, so the class is not prelabeled. As for classification
/// ([`super::validation::choose_threshold`]) the measured precision's 80% lower bound (Wilson)
/// must reach the target, not the measurement itself: the lowest threshold at which a noisy
/// estimate first touches the target is chosen exactly where it was lucky.
pub fn choose_threshold(
    curve: &[PrecisionRecallPoint],
    target_precision: f64,
    min_support: u32,
) -> Option<PrecisionRecallPoint> {
    curve
        .iter()
        .filter(|p| {
            p.true_positives >= min_support
                && super::validation::precision_lower_bound(p.true_positives, p.detections)
                    >= target_precision - 1e-9
        })
        .min_by(|a, b| a.threshold.total_cmp(&b.threshold))
        .copied()
}

/// One evaluated image: the detector's output and the truth, both in image pixels.
#[derive(Debug, Clone, Copy)]
pub struct EvaluatedImage<'a> {
    pub predictions: &'a [Detection],
    pub truths: &'a [LabeledBox],
}

/// How one class fared on held-out images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassDetectionReport {
    pub class: u32,
    pub truths: u32,
    pub detections: u32,
    /// `None` when the class has no truths (nothing to recall).
    pub average_precision: Option<f64>,
    /// Thresholds ascending.
    pub curve: Vec<PrecisionRecallPoint>,
}

/// The detection validation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionReport {
    pub iou_threshold: f32,
    pub images: u32,
    pub classes: Vec<ClassDetectionReport>,
    /// The mean AP over the classes that have truths.
    pub mean_average_precision: Option<f64>,
}

/// Matches every image's predictions to its truths ([`match_detections`]) and draws each of
/// the `classes` classes' curve and AP over all images. Predictions of a class not below
/// `classes` are ignored.
pub fn evaluate_detections(
    images: &[EvaluatedImage<'_>],
    classes: usize,
    iou_threshold: f32,
) -> DetectionReport {
    let mut scored: Vec<Vec<(f32, bool)>> = vec![Vec::new(); classes];
    let mut truths = vec![0u32; classes];
    for image in images {
        let matches = match_detections(image.predictions, image.truths, iou_threshold);
        for (prediction, matched) in image.predictions.iter().zip(matches) {
            if let Some(list) = scored.get_mut(prediction.class as usize) {
                list.push((prediction.score, matched.is_some()));
            }
        }
        for (class, _) in image.truths {
            if let Some(count) = truths.get_mut(*class as usize) {
                *count += 1;
            }
        }
    }
    let reports: Vec<ClassDetectionReport> = scored
        .iter()
        .zip(&truths)
        .enumerate()
        .map(|(class, (scored, truths))| {
            let curve = precision_recall_curve(scored, *truths);
            ClassDetectionReport {
                class: class as u32,
                truths: *truths,
                detections: scored.len() as u32,
                average_precision: (*truths > 0).then(|| average_precision(&curve, *truths)),
                curve,
            }
        })
        .collect();
    let with_truths: Vec<f64> = reports.iter().filter_map(|r| r.average_precision).collect();
    DetectionReport {
        iou_threshold,
        images: images.len() as u32,
        mean_average_precision: (!with_truths.is_empty())
            .then(|| with_truths.iter().sum::<f64>() / with_truths.len() as f64),
        classes: reports,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use super::*;

    const STRIDE: u32 = 16;

    /// Synthetic backbone output: noise, and over each object's cells a class signature plus
    /// what a real backbone's deep features carry about an object around them: its size and
    /// where its centre lies from the cell (the last four channels).
    struct Synthetic {
        maps: Vec<FeatureMap>,
        letterboxes: Vec<Letterbox>,
        /// In input pixels, for training.
        input_boxes: Vec<Vec<LabeledBox>>,
        /// In image pixels, for evaluation.
        image_boxes: Vec<Vec<LabeledBox>>,
    }

    impl Synthetic {
        fn examples(&self) -> Vec<DetectionExample<'_>> {
            self.maps
                .iter()
                .zip(&self.input_boxes)
                .map(|(features, boxes)| DetectionExample { features, boxes })
                .collect()
        }

        /// Every map's detections, `max` at most an image.
        fn detect_all(&self, detector: &Detector, max: usize) -> Vec<Vec<Detection>> {
            self.maps
                .iter()
                .zip(&self.letterboxes)
                .map(|(map, letterbox)| detector.detect(map, letterbox, max).unwrap())
                .collect()
        }

        /// `predictions` (one list a map) against the truths, at IoU 0.5.
        fn report(&self, predictions: &[Vec<Detection>]) -> DetectionReport {
            let images: Vec<EvaluatedImage<'_>> = predictions
                .iter()
                .zip(&self.image_boxes)
                .map(|(predictions, truths)| EvaluatedImage {
                    predictions,
                    truths,
                })
                .collect();
            evaluate_detections(&images, 2, 0.5)
        }
    }

    /// `count` maps of `channels` x `cells` x `cells`, of images of three shapes (two of them
    /// not square, so the letterbox pads), with 1-3 non-overlapping objects of two classes and
    /// 2-6 cells a side.
    fn synthetic(count: usize, channels: usize, cells: usize, seed: u64) -> Synthetic {
        let input = cells as u32 * STRIDE;
        let signature_channels = channels - 4;
        // The same class signatures for every call, so fresh maps show the trained classes.
        let mut signature_rng = SplitMix::new(0x5157);
        let signatures: Vec<Vec<f32>> = (0..2)
            .map(|_| {
                (0..signature_channels)
                    .map(|_| {
                        if signature_rng.next_f64() < 0.5 {
                            -1.0
                        } else {
                            1.0
                        }
                    })
                    .collect()
            })
            .collect();
        let mut rng = SplitMix::new(seed);
        let mut out = Synthetic {
            maps: Vec::new(),
            letterboxes: Vec::new(),
            input_boxes: Vec::new(),
            image_boxes: Vec::new(),
        };
        let stride = STRIDE as f32;
        for _ in 0..count {
            let (width, height) = [(640, 400), (300, 450), (500, 500)][rng.below(3)];
            let letterbox = Letterbox::new(width, height, input, STRIDE).unwrap();
            let scale = letterbox.scale();
            let mut image_boxes: Vec<LabeledBox> = Vec::new();
            for _ in 0..1 + rng.below(3) {
                for _attempt in 0..20 {
                    let class = rng.below(2) as u32;
                    let w = (2.0 + 4.0 * rng.next_f64() as f32) * stride / scale;
                    let h = (2.0 + 4.0 * rng.next_f64() as f32) * stride / scale;
                    if w >= width as f32 || h >= height as f32 {
                        continue;
                    }
                    let x = rng.next_f64() as f32 * (width as f32 - w);
                    let y = rng.next_f64() as f32 * (height as f32 - h);
                    let candidate = [x, y, w, h];
                    if image_boxes.iter().all(|(_, b)| iou(*b, candidate) == 0.0) {
                        image_boxes.push((class, candidate));
                        break;
                    }
                }
            }
            let input_boxes: Vec<LabeledBox> = image_boxes
                .iter()
                .map(|(class, b)| (*class, letterbox.to_input(*b)))
                .collect();
            let mut data: Vec<f32> = (0..channels * cells * cells)
                .map(|_| rng.next_f64() as f32 - 0.5)
                .collect();
            for (class, [x, y, w, h]) in &input_boxes {
                let (cx, cy) = ((x + w / 2.0) / stride, (y + h / 2.0) / stride);
                for row in 0..cells {
                    for col in 0..cells {
                        let (px, py) = ((col as f32 + 0.5) * stride, (row as f32 + 0.5) * stride);
                        if px < *x || px >= x + w || py < *y || py >= y + h {
                            continue;
                        }
                        let at = |channel: usize| (channel * cells + row) * cells + col;
                        for (channel, value) in signatures[*class as usize].iter().enumerate() {
                            data[at(channel)] += value;
                        }
                        data[at(signature_channels)] = (w / stride).ln();
                        data[at(signature_channels + 1)] = (h / stride).ln();
                        data[at(signature_channels + 2)] = cx - (col as f32 + 0.5);
                        data[at(signature_channels + 3)] = cy - (row as f32 + 0.5);
                    }
                }
            }
            out.maps
                .push(FeatureMap::new(channels, cells, cells, data).unwrap());
            out.letterboxes.push(letterbox);
            out.input_boxes.push(input_boxes);
            out.image_boxes.push(image_boxes);
        }
        out
    }

    /// The loss of [`Problem::loss_and_gradient`] written again, plainly and in f64 from the
    /// spec (ln of the sigmoid, not softplus), for the finite differences.
    fn reference_loss(problem: &Problem<'_>, theta: &[f64], batch: &[Selection]) -> f64 {
        let shape = problem.shape;
        let (n, h, o) = (shape.inputs(), shape.hidden, shape.outputs());
        let (w1, rest) = theta.split_at(h * n);
        let (b1, rest) = rest.split_at(h);
        let (w2, b2) = rest.split_at(o * h);
        let positives: usize = batch
            .iter()
            .map(|s| problem.targets[s.image].positives)
            .sum();
        let regressions: usize = batch
            .iter()
            .map(|s| problem.targets[s.image].regressions)
            .sum();
        let (positives, regressions) = (positives.max(1) as f64, regressions.max(1) as f64);
        let weights = problem.weights;
        let mut loss = 0.0;
        let mut cells = Vec::new();
        let mut input = vec![0.0f32; n];
        for selection in batch {
            let features = problem.examples[selection.image].features;
            let targets = &problem.targets[selection.image];
            standardized_cells(features, &problem.mean, &problem.scale, &mut cells);
            for &(cell, weight) in &selection.cells {
                let cell = cell as usize;
                let weight = f64::from(weight);
                cell_input(
                    &cells,
                    shape.channels,
                    features.height,
                    features.width,
                    cell,
                    &mut input,
                );
                let hidden: Vec<f64> = (0..h)
                    .map(|j| {
                        let sum: f64 = (0..n).map(|i| w1[j * n + i] * f64::from(input[i])).sum();
                        (sum + b1[j]).max(0.0)
                    })
                    .collect();
                let out: Vec<f64> = (0..o)
                    .map(|k| b2[k] + (0..h).map(|j| w2[k * h + j] * hidden[j]).sum::<f64>())
                    .collect();
                for (class, logit) in out[..shape.classes].iter().enumerate() {
                    let at = class * targets.cells + cell;
                    let p = 1.0 / (1.0 + (-logit).exp());
                    let term = if targets.positive[at] {
                        -(1.0 - p).powi(2) * p.ln()
                    } else {
                        -(1.0 - f64::from(targets.heat[at])).powi(4) * p * p * (1.0 - p).ln()
                    };
                    loss += weight * weights.heatmap * term / positives;
                }
                if let Some(target) = targets.regression[cell] {
                    for axis in 0..2 {
                        let size = out[shape.size_output() + axis] - f64::from(target.size[axis]);
                        let offset =
                            out[shape.offset_output() + axis] - f64::from(target.offset[axis]);
                        loss += weight * weights.size * size.abs() / regressions;
                        loss += weight * weights.offset * offset.abs() / regressions;
                    }
                }
            }
        }
        let l2 = f64::from(weights.l2);
        loss + w1.iter().chain(w2).map(|w| 0.5 * l2 * w * w).sum::<f64>()
    }

    #[test]
    fn the_hand_written_gradient_matches_finite_differences_for_every_term_and_layer() {
        // C = 3, hidden = 4, K = 2 on a 5 x 5 map (80 input pixels) with two boxes: one of 2.5 x
        // 3.1 cells (radius 0), one of 3.5 x 3.25 (radius 1, so its Gaussian reaches
        // neighbours).
        let mut rng = SplitMix::new(21);
        let data: Vec<f32> = (0..3 * 25)
            .map(|_| 2.0 * rng.next_f64() as f32 - 1.0)
            .collect();
        let features = FeatureMap::new(3, 5, 5, data).unwrap();
        let boxes = [(0, [8.0, 12.0, 40.0, 50.0]), (1, [20.0, 16.0, 56.0, 52.0])];
        let examples = [DetectionExample {
            features: &features,
            boxes: &boxes,
        }];
        let options = DetectorOptions {
            hidden: 4,
            ..DetectorOptions::default()
        };
        let mut problem = prepare(&examples, 2, &options).unwrap();
        assert_eq!(problem.targets[0].positives, 2);
        let shape = problem.shape;
        let theta: Vec<f32> = (0..shape.parameters())
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        // Background cells weighted as a sample would weigh them, to check the weights too.
        let mut selection = problem.all_cells(0);
        for (cell, weight) in &mut selection.cells {
            if problem.targets[0].background.contains(cell) {
                *weight = 1.7;
            }
        }
        let batch = [selection];
        let blocks = [
            "hidden weights",
            "hidden biases",
            "output weights",
            "output biases",
        ];
        let terms = [
            ("focal", (1.0, 0.0, 0.0, 0.0)),
            ("size", (0.0, 0.1, 0.0, 0.0)),
            ("offset", (0.0, 0.0, 1.0, 0.0)),
            ("all with l2", (1.0, 0.1, 1.0, 0.05)),
        ];
        for (name, (heatmap, size, offset, l2)) in terms {
            problem.weights = LossWeights {
                heatmap,
                size,
                offset,
                l2,
            };
            let mut gradient = vec![0.0f32; theta.len()];
            let loss = problem.loss_and_gradient(&theta, &batch, &mut gradient);
            let exact: Vec<f64> = theta.iter().map(|t| f64::from(*t)).collect();
            let reference = reference_loss(&problem, &exact, &batch);
            assert!(
                (loss - reference).abs() <= 1e-5 * reference.abs().max(1e-3),
                "{name}: loss {loss}, reference {reference}"
            );
            let epsilon = 1e-6;
            let mut nonzero = [false; 4];
            let [a, b, c, _] = shape.lengths();
            for i in 0..theta.len() {
                let block = [a, a + b, a + b + c]
                    .iter()
                    .filter(|end| i >= **end)
                    .count();
                let mut plus = exact.clone();
                plus[i] += epsilon;
                let mut minus = exact.clone();
                minus[i] -= epsilon;
                let numeric = (reference_loss(&problem, &plus, &batch)
                    - reference_loss(&problem, &minus, &batch))
                    / (2.0 * epsilon);
                let analytic = f64::from(gradient[i]);
                assert!(
                    (numeric - analytic).abs() <= 1e-3 * numeric.abs().max(analytic.abs()) + 1e-6,
                    "{name}, {} parameter {i}: analytic {analytic}, numeric {numeric}",
                    blocks[block]
                );
                nonzero[block] |= analytic.abs() > 1e-4;
            }
            // The regression terms reach the output layer's heatmap rows not at all, but every
            // block has some parameter they move.
            assert_eq!(nonzero, [true; 4], "{name}: a block has no gradient at all");
        }
    }

    #[test]
    fn targets_put_one_at_each_centre_and_max_combine_the_gaussians() {
        // Two class-0 boxes whose Gaussians overlap, one class-1 box; stride 16, 8 x 8 cells.
        let boxes = [
            (0, [16.0, 16.0, 64.0, 64.0]), // centre (48, 48): cell (3, 3), 4 cells: radius 1
            (0, [48.0, 16.0, 64.0, 64.0]), // centre (80, 48): cell (5, 3)
            (1, [100.0, 100.0, 20.0, 20.0]), // centre (110, 110): cell (6, 6), radius 0
        ];
        let targets = targets(&boxes, 2, 8, 8, 16.0);
        let at = |class: usize, x: usize, y: usize| targets.heat[class * 64 + y * 8 + x];
        assert_eq!((at(0, 3, 3), at(0, 5, 3), at(1, 6, 6)), (1.0, 1.0, 1.0));
        assert_eq!(targets.positives, 3);
        // Cell (4, 3) is one cell from both centres: the max of two equal values, not their sum.
        let sigma: f32 = 3.0 / 6.0;
        let one_away = (-1.0 / (2.0 * sigma * sigma)).exp();
        assert!((at(0, 4, 3) - one_away).abs() < 1e-6);
        assert_eq!(at(0, 7, 3), 0.0);
        assert_eq!(at(1, 5, 6), 0.0, "radius 0 reaches no neighbour");
        let regression = targets.regression[6 * 8 + 6].unwrap();
        assert!((regression.size[0] - (20.0f32 / 16.0).ln()).abs() < 1e-6);
        assert!((regression.offset[0] - 110.0 / 16.0 + 6.0).abs() < 1e-6);
        assert_eq!(targets.regressions, 3);
        assert_eq!(targets.foreground.len() + targets.background.len(), 64);
        assert!(targets.foreground.contains(&(3 * 8 + 4)));
        // A box far larger than the map covers it all, without overflowing anything.
        let huge = super::targets(&[(0, [0.0, 0.0, 1e30, 1e30])], 1, 4, 4, 16.0);
        assert_eq!((huge.foreground.len(), huge.positives), (16, 1));
    }

    #[test]
    fn the_letterbox_round_trips_and_clamps_inside_the_image() {
        let letterbox = Letterbox::new(640, 400, 384, 16).unwrap();
        assert_eq!(letterbox.content_size(), (384, 240));
        assert_eq!(letterbox.padding(), (0, 72));
        assert_eq!(letterbox.feature_size(), 24);
        let close = |got: [f32; 4], want: [f32; 4]| {
            assert!(
                got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-3),
                "{got:?} != {want:?}"
            );
        };
        let bbox = [100.0, 50.0, 200.0, 100.0];
        close(letterbox.to_input(bbox), [60.0, 102.0, 120.0, 60.0]);
        close(letterbox.to_image(letterbox.to_input(bbox)), bbox);
        // Into the padding above and past the right edge: clamped to the image.
        close(
            letterbox.to_image([300.0, 10.0, 200.0, 100.0]),
            [500.0, 0.0, 140.0, 38.0 / 0.6],
        );
        // Wholly in the padding below: nothing left.
        let below = letterbox.to_image([10.0, 320.0, 50.0, 50.0]);
        assert_eq!(below[3], 0.0);
        // A tall image pads left and right, with the padding rounded down.
        let tall = Letterbox::new(301, 600, 384, 16).unwrap();
        assert_eq!(tall.content_size(), (193, 384));
        assert_eq!(tall.padding(), (95, 0));
        assert_eq!(Letterbox::new(0, 5, 384, 16), Err(DetectError::EmptyImage));
        assert!(matches!(
            Letterbox::new(5, 5, 380, 16),
            Err(DetectError::InputNotMultipleOfStride { .. })
        ));
    }

    fn detection(class: u32, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox }
    }

    #[test]
    fn nms_keeps_the_higher_of_overlapping_boxes_of_a_class_and_both_of_two_classes() {
        let a = [10.0, 10.0, 100.0, 100.0];
        let b = [15.0, 12.0, 100.0, 100.0];
        let same_class = [detection(0, 0.6, b), detection(0, 0.9, a)];
        assert_eq!(
            non_maximum_suppression(&same_class, NMS_IOU, 10),
            vec![detection(0, 0.9, a)]
        );
        let two_classes = [detection(1, 0.6, b), detection(0, 0.9, a)];
        assert_eq!(
            non_maximum_suppression(&two_classes, NMS_IOU, 10),
            vec![detection(0, 0.9, a), detection(1, 0.6, b)]
        );
        // Equal scores: by class, then the order given; the cap counts kept boxes.
        let far = [300.0, 300.0, 10.0, 10.0];
        let ties = [
            detection(1, 0.5, far),
            detection(0, 0.5, a),
            detection(0, 0.5, far),
        ];
        assert_eq!(
            non_maximum_suppression(&ties, NMS_IOU, 2),
            vec![detection(0, 0.5, a), detection(0, 0.5, far)]
        );
        assert!((iou(a, b) - (95.0 * 98.0) / (2.0 * 10_000.0 - 95.0 * 98.0)).abs() < 1e-6);
        assert_eq!(iou([0.0; 4], [0.0; 4]), 0.0);
    }

    #[test]
    fn matching_takes_the_best_truth_once_in_descending_score() {
        let truths = [(0, [0.0, 0.0, 10.0, 10.0]), (0, [20.0, 0.0, 10.0, 10.0])];
        let predictions = [
            detection(0, 0.5, [1.0, 0.0, 10.0, 10.0]), // a duplicate of the first truth
            detection(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            detection(1, 0.8, [20.0, 0.0, 10.0, 10.0]), // right place, wrong class
            detection(0, 0.7, [21.0, 1.0, 10.0, 10.0]),
        ];
        assert_eq!(
            match_detections(&predictions, &truths, 0.5),
            vec![None, Some(0), None, Some(1)]
        );
    }

    #[test]
    fn ap_is_one_for_a_perfect_ranking_and_zero_without_predictions() {
        let perfect = precision_recall_curve(&[(0.9, true), (0.8, true), (0.7, true)], 3);
        assert_eq!(average_precision(&perfect, 3), 1.0);
        assert_eq!(average_precision(&[], 3), 0.0);
        // Half the truths found with no mistake: precision 1 up to recall 0.5, 51 levels of 101.
        let half = precision_recall_curve(&[(0.9, true), (0.8, true)], 4);
        assert!((average_precision(&half, 4) - 51.0 / 101.0).abs() < 1e-12);
        // The false positive ranked first costs precision at every recall.
        let late = precision_recall_curve(&[(0.9, false), (0.8, true)], 1);
        assert!((average_precision(&late, 1) - 0.5).abs() < 1e-12);
        assert_eq!(
            late.iter().map(|p| p.threshold).collect::<Vec<_>>(),
            vec![0.8, 0.9]
        );

        let predictions = [detection(0, 0.9, [0.0, 0.0, 10.0, 10.0])];
        let truths = [(0, [0.0, 0.0, 10.0, 10.0]), (1, [50.0, 0.0, 10.0, 10.0])];
        let report = evaluate_detections(
            &[EvaluatedImage {
                predictions: &predictions,
                truths: &truths,
            }],
            3,
            0.5,
        );
        let aps: Vec<Option<f64>> = report.classes.iter().map(|c| c.average_precision).collect();
        assert_eq!(aps, vec![Some(1.0), Some(0.0), None]);
        assert_eq!(report.mean_average_precision, Some(0.5));
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            serde_json::from_str::<DetectionReport>(&json).unwrap(),
            report
        );
    }

    #[test]
    fn the_threshold_is_the_lowest_that_meets_the_target_with_enough_support() {
        // By descending score: 5 right, 1 wrong, 4 right, 3 wrong.
        let mut scored = Vec::new();
        for i in 0..13 {
            let matched = !(i == 5 || i >= 10);
            scored.push(((20 - i) as f32 / 20.0, matched));
        }
        let curve = precision_recall_curve(&scored, 12);
        // The 80% lower bounds: 9 of 10 at threshold 0.55 is 0.79, 9 of 11 at 0.5 is 0.70.
        let chosen = choose_threshold(&curve, 0.75, 5).unwrap();
        assert_eq!(
            (chosen.threshold, chosen.true_positives, chosen.detections),
            (0.55, 9, 10)
        );
        // 5 of 5 at 0.8 is 0.88; 8 of 9 at 0.6 is only 0.77, though 0.89 measured.
        assert_eq!(choose_threshold(&curve, 0.8, 5).unwrap().threshold, 0.8);
        assert_eq!(choose_threshold(&curve, 0.8, 6), None);
        // Nothing measured on 5 boxes is sure of 0.9, though all 5 are right.
        assert_eq!(choose_threshold(&curve, 0.9, 1), None);
        assert_eq!(choose_threshold(&curve, 0.75, 10), None);
        assert_eq!(choose_threshold(&[], 0.5, 0), None);
    }

    #[test]
    fn it_learns_to_find_planted_objects_and_boxes_land_on_the_right_pixels() {
        let train = synthetic(150, 16, 16, 1);
        let fresh = synthetic(50, 16, 16, 2);
        let started = Instant::now();
        let detector = train_detector(&train.examples(), 2, &DetectorOptions::default()).unwrap();
        let trained_in = started.elapsed();
        let predictions = fresh.detect_all(&detector, 20);
        let report = fresh.report(&predictions);
        for class in &report.classes {
            assert!(
                class.average_precision.unwrap() >= 0.8,
                "class {}: AP {:?} (trained in {trained_in:?})",
                class.class,
                class.average_precision
            );
        }
        // Every truth's best detection of its class, in image pixels, sits on it closely.
        let mut overlaps = Vec::new();
        for ((predictions, truths), letterbox) in predictions
            .iter()
            .zip(&fresh.image_boxes)
            .zip(&fresh.letterboxes)
        {
            for detection in predictions {
                let [x, y, w, h] = detection.bbox;
                assert!(x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0);
                assert!(x + w <= letterbox.image_width() as f32 + 1e-3);
                assert!(y + h <= letterbox.image_height() as f32 + 1e-3);
            }
            for (class, truth) in truths {
                let best = predictions
                    .iter()
                    .filter(|d| d.class == *class)
                    .map(|d| iou(d.bbox, *truth))
                    .fold(0.0f32, f32::max);
                overlaps.push(best);
            }
        }
        let mean = overlaps.iter().sum::<f32>() / overlaps.len() as f32;
        println!(
            "trained in {trained_in:.2?}; AP@0.5 {:?}; mean best IoU {mean:.3}",
            report
                .classes
                .iter()
                .map(|c| c.average_precision)
                .collect::<Vec<_>>()
        );
        assert!(
            mean >= 0.8,
            "mean best IoU {mean} over {} truths",
            overlaps.len()
        );
    }

    #[test]
    fn the_same_seed_trains_a_bit_identical_detector_and_another_seed_does_not() {
        let data = synthetic(16, 8, 8, 3);
        let options = DetectorOptions {
            hidden: 16,
            epochs: 3,
            batch_size: 4,
            background_cells: Some(20),
            seed: 9,
            ..DetectorOptions::default()
        };
        let first = train_detector(&data.examples(), 2, &options).unwrap();
        let second = train_detector(&data.examples(), 2, &options).unwrap();
        assert_eq!(first.to_json(), second.to_json());
        let other = train_detector(
            &data.examples(),
            2,
            &DetectorOptions {
                seed: 10,
                ..options
            },
        )
        .unwrap();
        assert_ne!(first.to_json(), other.to_json());
    }

    #[test]
    fn a_stored_detector_round_trips_and_a_malformed_one_is_refused() {
        let data = synthetic(4, 8, 8, 4);
        let options = DetectorOptions {
            hidden: 8,
            epochs: 1,
            ..DetectorOptions::default()
        };
        let detector = train_detector(&data.examples(), 2, &options).unwrap();
        let json = detector.to_json();
        assert_eq!(Detector::from_json(&json).unwrap(), detector);

        let mut short = detector.clone();
        short.output_weights.pop();
        assert!(matches!(
            Detector::from_json(&short.to_json()),
            Err(DetectError::Malformed(_))
        ));
        let mut wider = detector.clone();
        wider.channels += 1;
        assert!(matches!(
            Detector::from_json(&wider.to_json()),
            Err(DetectError::Malformed(_))
        ));
        let mut huge = detector.clone();
        huge.hidden = usize::MAX / 2;
        assert!(matches!(
            Detector::from_json(&huge.to_json()),
            Err(DetectError::Malformed(_))
        ));
        let mut future = detector.clone();
        future.format = 2;
        assert_eq!(
            Detector::from_json(&future.to_json()),
            Err(DetectError::UnsupportedFormat {
                got: 2,
                expected: 1
            })
        );
        let mut scale = detector.clone();
        scale.scale[0] = 0.0;
        assert!(Detector::from_json(&scale.to_json()).is_err());
        assert!(matches!(
            Detector::from_json(b"{}"),
            Err(DetectError::Malformed(_))
        ));

        // Inputs that do not fit the detector are refused, not misread.
        let map = &data.maps[0];
        let letterbox = data.letterboxes[0];
        assert!(detector.detect(map, &letterbox, 10).is_ok());
        let other_stride = Letterbox::new(100, 100, 128, 8).unwrap();
        assert_eq!(
            detector.detect(map, &other_stride, 10),
            Err(DetectError::StrideMismatch { got: 8, stride: 16 })
        );
        let bigger = Letterbox::new(100, 100, 256, 16).unwrap();
        assert!(matches!(
            detector.detect(map, &bigger, 10),
            Err(DetectError::FeatureMapSize { .. })
        ));
        let narrow = FeatureMap::new(4, 8, 8, vec![0.0; 4 * 64]).unwrap();
        assert_eq!(
            detector.detect(&narrow, &letterbox, 10),
            Err(DetectError::FeatureChannels {
                got: 4,
                channels: 8
            })
        );
        let mut nan = map.clone();
        nan.data[7] = f32::NAN;
        assert_eq!(
            detector.detect(&nan, &letterbox, 10),
            Err(DetectError::FeaturesNotFinite)
        );
        assert_eq!(detector.detect(map, &letterbox, 0), Ok(Vec::new()));
    }

    #[test]
    fn bad_training_input_is_refused_with_the_example_named() {
        let map = FeatureMap::new(2, 3, 3, vec![0.5; 18]).unwrap();
        let narrow = FeatureMap::new(1, 3, 3, vec![0.5; 9]).unwrap();
        let mut nan = map.clone();
        nan.data[4] = f32::INFINITY;
        let mut broken = map.clone();
        broken.data.pop();
        let good = [(0, [0.0, 0.0, 16.0, 16.0])];
        let options = DetectorOptions::default();
        let case = |features: &FeatureMap, boxes: &[LabeledBox]| {
            let examples = [
                DetectionExample {
                    features: &map,
                    boxes: &good,
                },
                DetectionExample { features, boxes },
            ];
            train_detector(&examples, 2, &options).unwrap_err()
        };
        assert_eq!(
            case(&narrow, &good),
            DetectError::WrongChannels {
                index: 1,
                got: 1,
                channels: 2
            }
        );
        assert_eq!(case(&nan, &good), DetectError::NotFinite { index: 1 });
        assert_eq!(case(&broken, &good), DetectError::ExampleShape { index: 1 });
        assert_eq!(
            case(
                &map,
                &[(0, [0.0, 0.0, 16.0, 16.0]), (2, [0.0, 0.0, 16.0, 16.0])]
            ),
            DetectError::UnknownClass {
                index: 1,
                box_index: 1,
                class: 2,
                classes: 2
            }
        );
        assert_eq!(
            case(&map, &[(1, [0.0, 0.0, 0.0, 16.0])]),
            DetectError::BadBox {
                index: 1,
                box_index: 0
            }
        );
        assert_eq!(
            train_detector(&[], 2, &options).unwrap_err(),
            DetectError::NoExamples
        );
        assert_eq!(
            train_detector(&[], 0, &options).unwrap_err(),
            DetectError::NoClasses
        );
        let diverging = DetectorOptions {
            learning_rate: f32::NAN,
            epochs: 1,
            ..DetectorOptions::default()
        };
        let examples = [DetectionExample {
            features: &map,
            boxes: &good,
        }];
        assert_eq!(
            train_detector(&examples, 2, &diverging).unwrap_err(),
            DetectError::Diverged
        );
        assert_eq!(
            FeatureMap::new(2, 3, 3, vec![0.0; 17]),
            Err(DetectError::FeatureMapLength {
                channels: 2,
                height: 3,
                width: 3,
                got: 17
            })
        );
    }

    /// The intended scale: 1,000 maps of EfficientNet-Lite0's 112 channels x 24 x 24 cells (a
    /// 384-pixel input), default options. Run in release:
    /// `cargo test --release -p labeling-core --lib ml::detect::tests::detect_bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "a hand measurement; run in release"]
    fn detect_bench_train_1000() {
        let started = Instant::now();
        let train = synthetic(1_000, 112, 24, 11);
        let fresh = synthetic(200, 112, 24, 12);
        println!("synthesized 1,200 maps in {:.1?}", started.elapsed());
        // Knobs for exploring by hand without rebuilding: DETECT_BENCH_EPOCHS,
        // DETECT_BENCH_LEARNING_RATE, DETECT_BENCH_SIZE_WEIGHT, DETECT_BENCH_BACKGROUND (0: all).
        let knob = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let defaults = DetectorOptions::default();
        let background = knob(
            "DETECT_BENCH_BACKGROUND",
            defaults.background_cells.unwrap_or(0) as f64,
        ) as usize;
        let options = DetectorOptions {
            epochs: knob("DETECT_BENCH_EPOCHS", defaults.epochs as f64) as usize,
            learning_rate: knob(
                "DETECT_BENCH_LEARNING_RATE",
                f64::from(defaults.learning_rate),
            ) as f32,
            size_weight: knob("DETECT_BENCH_SIZE_WEIGHT", f64::from(defaults.size_weight)) as f32,
            background_cells: (background > 0).then_some(background),
            ..defaults
        };
        let started = Instant::now();
        let detector = train_detector(&train.examples(), 2, &options).unwrap();
        let trained = started.elapsed();
        println!("trained on 1,000 maps of 112 x 24 x 24 in {trained:.2?} with {options:?}");
        let started = Instant::now();
        let predictions = fresh.detect_all(&detector, 100);
        let per_image = started.elapsed() / fresh.maps.len() as u32;
        println!("inference: {per_image:.2?} per image (100 detections at most)");
        let report = fresh.report(&predictions);
        let mut overlaps = Vec::new();
        for (predictions, truths) in predictions.iter().zip(&fresh.image_boxes) {
            for (class, truth) in truths {
                let best = predictions
                    .iter()
                    .filter(|d| d.class == *class)
                    .map(|d| iou(d.bbox, *truth))
                    .fold(0.0f32, f32::max);
                overlaps.push(best);
            }
        }
        println!(
            "mean IoU of each truth's best detection: {:.3}",
            overlaps.iter().sum::<f32>() / overlaps.len() as f32
        );
        for class in &report.classes {
            println!(
                "class {}: {} truths, AP@0.5 {:.3}, threshold for precision 0.95: {:?}",
                class.class,
                class.truths,
                class.average_precision.unwrap_or(0.0),
                choose_threshold(&class.curve, 0.95, 8).map(|p| (p.threshold, p.recall))
            );
        }
    }
}
