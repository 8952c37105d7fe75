//! The seeded pseudo-random order in which items are handed out.
//!
//! A Feistel network over the next even power of two, with cycle walking back into `0..len`,
//! is a bijection on `0..len` that needs no storage: position `p` maps to an item in O(1), so
//! "shuffled at start" costs nothing however large the project.

/// A bijection on `0..len`, chosen by `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    len: u64,
    half_bits: u32,
    seed: u64,
}

const ROUNDS: u64 = 4;

impl Permutation {
    pub fn new(len: u64, seed: u64) -> Self {
        let bits = if len <= 4 {
            2
        } else {
            64 - (len - 1).leading_zeros()
        };
        let half_bits = bits.div_ceil(2);
        Self {
            len,
            half_bits,
            seed,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `position`; `position` must be below `len`.
    pub fn apply(&self, position: u64) -> u64 {
        debug_assert!(position < self.len);
        let mut value = position;
        loop {
            value = self.encrypt(value);
            if value < self.len {
                return value;
            }
        }
    }

    fn encrypt(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let mut left = value >> self.half_bits;
        let mut right = value & mask;
        for round in 0..ROUNDS {
            let next =
                left ^ (mix(right ^ self.seed.rotate_left(round as u32 * 16) ^ round) & mask);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }
}

/// splitmix64's finalizer: a cheap, well-distributed round function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives independent seeds for each (round, batch) from a project's seed.
pub fn derive_seed(project_seed: u64, round: u64, batch: u64) -> u64 {
    mix(project_seed ^ mix(round.wrapping_mul(0x1_0000_0001) ^ mix(batch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn permutation_is_a_bijection(len in 0u64..3000, seed: u64) {
            let permutation = Permutation::new(len, seed);
            let mut seen = vec![false; len as usize];
            for position in 0..len {
                let item = permutation.apply(position);
                prop_assert!(item < len, "item {} out of range {}", item, len);
                prop_assert!(!seen[item as usize], "item {} handed out twice", item);
                seen[item as usize] = true;
            }
            prop_assert!(seen.iter().all(|s| *s));
        }
    }

    #[test]
    fn different_seeds_give_different_orders() {
        let a: Vec<u64> = (0..100)
            .map(|p| Permutation::new(100, 1).apply(p))
            .collect();
        let b: Vec<u64> = (0..100)
            .map(|p| Permutation::new(100, 2).apply(p))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn order_is_actually_shuffled() {
        let permutation = Permutation::new(10_000, 42);
        let fixed_points = (0..10_000).filter(|p| permutation.apply(*p) == *p).count();
        assert!(fixed_points < 50, "{fixed_points} fixed points");
    }
}
