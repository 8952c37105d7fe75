//! Small numeric kernels shared by the ML modules: a seeded generator, dot products, f16.

/// SplitMix64: tiny, fast, and good enough for shuffles and k-means++ sampling. Its output is
/// fixed by the seed on every platform, which a reproducible training run needs.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(mix(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), by a multiply-shift, which has no modulo bias worth noting
    /// at the sizes we shuffle.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates.
    pub(crate) fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = self.below(i + 1);
            values.swap(i, j);
        }
    }
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits, used as a stable hash of item ids.
pub(crate) fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A dot product with sixteen independent accumulators: the compiler may not reorder float
/// additions itself, so one accumulator would serialize on the add latency and never vectorize;
/// sixteen fill four SSE (two AVX) registers, enough to hide that latency. The summation order
/// is fixed, so results are the same on every run.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    let mut sum = acc[0];
    for (x, y) in rest_a.iter().zip(rest_b) {
        sum += x * y;
    }
    sum
}

/// `y += alpha * x`.
#[inline]
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Scales `values` to unit L2 norm; a zero or non-finite vector becomes all zeros, so it is
/// equally far from everything instead of poisoning sums with NaN.
pub(crate) fn normalized(values: &[f32]) -> Vec<f32> {
    let norm = dot(values, values).sqrt();
    if norm.is_finite() && norm > 0.0 {
        values.iter().map(|v| v / norm).collect()
    } else {
        vec![0.0; values.len()]
    }
}

/// IEEE 754 binary16 from binary32, rounding to nearest, ties to even (what hardware does), so
/// a stored embedding is within half a unit in the last place of the computed one.
pub(crate) fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x007f_ffff;
    if exponent == 0xff {
        // Infinity stays infinity; a NaN keeps a payload bit so it stays a NaN.
        let nan = if mantissa != 0 { 0x0200 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        // A subnormal half: the unit is 2^-24, so shift the 24-bit significand accordingly.
        let shift = (14 - half_exponent) as u32;
        if shift > 24 {
            return sign;
        }
        let significand = mantissa | 0x0080_0000;
        let half = significand >> shift;
        let rest = significand & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let rounded = if rest > halfway || (rest == halfway && half & 1 == 1) {
            half + 1
        } else {
            half
        };
        // A carry out of the subnormal range lands exactly on the smallest normal.
        return sign | rounded as u16;
    }
    let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    let rounded = if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        half + 1
    } else {
        half
    };
    // A carry into the exponent is right too, up to infinity (0x7c00).
    sign | rounded as u16
}

/// IEEE 754 binary32 from binary16; exact.
pub(crate) fn f16_to_f32(half: u16) -> f32 {
    let negative = half & 0x8000 != 0;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x03ff);
    let sign = if negative { 0x8000_0000 } else { 0 };
    match exponent {
        0 => {
            // Zero or subnormal: mantissa * 2^-24, exact in f32.
            let magnitude = mantissa as f32 * (1.0 / 16_777_216.0);
            if negative { -magnitude } else { magnitude }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// The logistic function, computed on the side where `exp` cannot overflow.
pub(crate) fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}

/// [`sigmoid`] in f64, for the losses whose gradients are checked to 1e-3.
pub(crate) fn sigmoid_f64(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}

/// ln(1 + e^x) without overflow.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Adam (Kingma and Ba) with the step decaying linearly to a tenth over a run of known length,
/// so the last epochs settle instead of jittering around the optimum. Shared by the heads: the
/// same update, bit for bit, wherever it runs.
pub(crate) struct Adam {
    first: Vec<f32>,
    second: Vec<f32>,
    step: usize,
    total_steps: usize,
    learning_rate: f32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;

    pub(crate) fn new(parameters: usize, learning_rate: f32, total_steps: usize) -> Self {
        Self {
            first: vec![0.0; parameters],
            second: vec![0.0; parameters],
            step: 0,
            total_steps: total_steps.max(1),
            learning_rate,
        }
    }

    /// One update of `theta` along `gradient`.
    pub(crate) fn step(&mut self, theta: &mut [f32], gradient: &[f32]) {
        self.step += 1;
        let progress = (self.step - 1) as f32 / self.total_steps as f32;
        let rate = self.learning_rate * (1.0 - 0.9 * progress);
        let correction1 = 1.0 - Self::BETA1.powi(self.step as i32);
        let correction2 = 1.0 - Self::BETA2.powi(self.step as i32);
        let step_size = rate * correction2.sqrt() / correction1;
        for (((t, g), m), v) in theta
            .iter_mut()
            .zip(gradient)
            .zip(self.first.iter_mut())
            .zip(self.second.iter_mut())
        {
            *m = Self::BETA1 * *m + (1.0 - Self::BETA1) * g;
            *v = Self::BETA2 * *v + (1.0 - Self::BETA2) * g * g;
            *t -= step_size * *m / (v.sqrt() + Self::EPSILON);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_finite_half_survives_a_round_trip_through_f32() {
        for half in 0..=u16::MAX {
            let value = f16_to_f32(half);
            if value.is_nan() {
                assert!(f32_to_f16(value) & 0x7c00 == 0x7c00 && f32_to_f16(value) & 0x03ff != 0);
            } else {
                assert_eq!(f32_to_f16(value), half, "half {half:#06x} -> {value}");
            }
        }
    }

    #[test]
    fn halves_round_to_nearest_with_ties_to_even() {
        let ulp = 2f32.powi(-10);
        assert_eq!(f16_to_f32(f32_to_f16(1.0 + ulp / 2.0)), 1.0);
        assert_eq!(f16_to_f32(f32_to_f16(1.0 + 1.5 * ulp)), 1.0 + 2.0 * ulp);
        assert_eq!(f16_to_f32(f32_to_f16(1.0 + 0.6 * ulp)), 1.0 + ulp);
        assert_eq!(f16_to_f32(f32_to_f16(70_000.0)), f32::INFINITY);
        assert_eq!(f16_to_f32(f32_to_f16(65_504.0)), 65_504.0);
        assert_eq!(f16_to_f32(f32_to_f16(2f32.powi(-26))), 0.0);
        assert_eq!(f16_to_f32(f32_to_f16(1.5 * 2f32.powi(-25))), 2f32.powi(-24));
    }

    proptest! {
        #[test]
        fn a_stored_half_is_within_half_an_ulp(value in -60_000f32..60_000f32) {
            let back = f16_to_f32(f32_to_f16(value));
            let tolerance = (value.abs() * 2f32.powi(-11)).max(2f32.powi(-25));
            prop_assert!((back - value).abs() <= tolerance, "{value} -> {back}");
        }

        #[test]
        fn the_unrolled_dot_product_matches_the_plain_sum(
            pairs in proptest::collection::vec((-1f32..1f32, -1f32..1f32), 0..40)
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            prop_assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4);
        }
    }

    #[test]
    fn a_shuffle_is_a_permutation_fixed_by_its_seed() {
        let mut first: Vec<usize> = (0..100).collect();
        let mut second = first.clone();
        SplitMix::new(7).shuffle(&mut first);
        SplitMix::new(7).shuffle(&mut second);
        assert_eq!(first, second);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(first, sorted);
    }
}
