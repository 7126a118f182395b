//! Byte-weighted sampling arithmetic: the random countdown and the weights that make
//! sampled estimates unbiased.
//!
//! Every allocated byte is picked with probability `1/R`, as a Poisson process over the
//! stream of allocated bytes: each thread draws the distance to the next picked byte from
//! an exponential distribution with mean `R` and counts it down by allocation sizes
//! (tcmalloc, jemalloc and Go do the same). An allocation of `s` bytes is sampled when the
//! countdown runs out inside it, which by memorylessness happens with probability
//! `p(s) = 1 - exp(-s/R)`. Weighting each sampled block by `1/p(s)` (Horvitz-Thompson)
//! makes per-site live bytes and live counts unbiased for every size, small or huge:
//! large blocks are sampled almost surely and weighted almost exactly 1, never both
//! always-sampled and scaled up.

/// Fixed-point scale of weighted block counts: a count of 1 is stored as `COUNT_ONE`.
pub(crate) const COUNT_ONE: u64 = 1 << 16;

/// A small, fast pseudo-random generator (SplitMix64) for sampling decisions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A strong 64-bit mixer (the SplitMix64 / MurmurHash3 finaliser).
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Bytes until the next sampled byte: exponential with mean `rate`, at least 1.
pub(crate) fn next_countdown(rng: &mut Rng, rate: u32) -> i64 {
    let u = rng.next_f64();
    // -ln(1-u) is Exp(1); 1-u is in (0, 1], so the log is finite.
    let draw = -(1.0 - u).ln() * f64::from(rate);
    (draw as i64).clamp(0, i64::MAX / 4) + 1
}

/// Probability that an allocation of `size` bytes is sampled at rate `rate`.
pub(crate) fn sample_probability(size: usize, rate: u32) -> f64 {
    if rate <= 1 {
        return 1.0;
    }
    let x = size as f64 / f64::from(rate);
    -(-x).exp_m1()
}

/// What one sampled block stands for: bytes and (fixed-point) blocks of the population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Weight {
    /// Estimated bytes this sample represents (`size / p(size)`, rounded).
    pub(crate) bytes: u64,
    /// Estimated blocks this sample represents, times [`COUNT_ONE`].
    pub(crate) count: u64,
}

impl Weight {
    /// The weight of a block of `size` bytes sampled at `rate` (1 = exact: weight 1).
    /// The same inputs always give the same weight, so a block's free subtracts exactly
    /// what its allocation added.
    pub(crate) fn of(size: usize, rate: u32) -> Weight {
        if rate <= 1 {
            return Weight {
                bytes: size as u64,
                count: COUNT_ONE,
            };
        }
        let p = sample_probability(size, rate);
        if p <= 0.0 {
            return Weight {
                bytes: size as u64,
                count: COUNT_ONE,
            };
        }
        Weight {
            bytes: (size as f64 / p).round() as u64,
            count: (COUNT_ONE as f64 / p).round() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rate_weighs_one() {
        assert_eq!(
            Weight::of(24, 1),
            Weight {
                bytes: 24,
                count: COUNT_ONE
            }
        );
        assert_eq!(sample_probability(1, 1), 1.0);
    }

    #[test]
    fn small_blocks_weigh_about_the_rate() {
        let w = Weight::of(16, 1 << 19);
        // p(16) ~ 16/R, so the byte weight is ~R and the count weight ~R/16.
        assert!((w.bytes as f64 - (1 << 19) as f64).abs() < 16.0, "{w:?}");
        let blocks = w.count as f64 / COUNT_ONE as f64;
        assert!((blocks - (1 << 15) as f64).abs() < 2.0, "{blocks}");
    }

    #[test]
    fn huge_blocks_weigh_about_their_size() {
        let w = Weight::of(64 << 20, 1 << 19);
        assert_eq!(w.bytes, 64 << 20);
        assert_eq!(w.count, COUNT_ONE);
    }

    #[test]
    fn countdown_has_mean_rate() {
        let mut rng = Rng(42);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| next_countdown(&mut rng, 4096) as f64).sum();
        let mean = sum / n as f64;
        // Standard error is 4096/sqrt(n) ~ 9; allow 6 sigma.
        assert!((mean - 4096.0).abs() < 60.0, "mean {mean}");
    }

    #[test]
    fn sampling_by_countdown_is_unbiased_for_mixed_sizes() {
        // Simulate one thread's countdown over a stream of mixed sizes and check the
        // Horvitz-Thompson estimate of total bytes and blocks per size class.
        let rate = 8192u32;
        let mut rng = Rng(7);
        let mut countdown = next_countdown(&mut rng, rate);
        let sizes = [8usize, 100, 4000, 8192, 100_000];
        let mut est_bytes = [0f64; 5];
        let mut est_blocks = [0f64; 5];
        let rounds = 2_000_000;
        for _ in 0..rounds {
            for (i, &size) in sizes.iter().enumerate() {
                countdown -= size as i64;
                if countdown <= 0 {
                    countdown = next_countdown(&mut rng, rate);
                    let w = Weight::of(size, rate);
                    est_bytes[i] += w.bytes as f64;
                    est_blocks[i] += w.count as f64 / COUNT_ONE as f64;
                }
            }
        }
        for (i, &size) in sizes.iter().enumerate() {
            // The estimate's relative standard error is about sqrt((1-p)/(n p)); allow
            // four of them (the seed is fixed, so this cannot flake).
            let p = sample_probability(size, rate);
            let tolerance = 4.0 * ((1.0 - p) / (rounds as f64 * p)).sqrt() + 1e-3;
            let truth = (size * rounds) as f64;
            let err = (est_bytes[i] - truth).abs() / truth;
            assert!(
                err < tolerance,
                "size {size}: bytes off by {:.2}% > {:.2}%",
                err * 100.0,
                tolerance * 100.0
            );
            let err = (est_blocks[i] - rounds as f64).abs() / rounds as f64;
            assert!(
                err < tolerance,
                "size {size}: blocks off by {:.2}% > {:.2}%",
                err * 100.0,
                tolerance * 100.0
            );
        }
    }
}
