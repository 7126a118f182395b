//! Robust trend statistics for one time series: the Theil-Sen slope and the
//! Mann-Kendall trend test, plus the bucketing that keeps both cheap on long series.

use std::borrow::Cow;

/// Reduces `(times, values)` to at most `max_points` points by averaging consecutive
/// runs of equal length (the last run may be shorter). Keeps short series as they are.
pub fn bucket(times: &[f64], values: &[f64], max_points: usize) -> (Vec<f64>, Vec<f64>) {
    let n = times.len().min(values.len());
    let buckets = Bucketing::new(&times[..n], max_points);
    let values = buckets.apply(&values[..n]);
    (buckets.times, values)
}

/// [`bucket`] split in two: the runs and their times, computed once for a series' time
/// axis, then applied to each of its sites' values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketing {
    /// Points per run (1: no averaging).
    per: usize,
    /// Points covered.
    len: usize,
    /// The mean time of each run.
    pub times: Vec<f64>,
}

impl Bucketing {
    /// Runs of equal length that reduce `times` to at most `max_points` (`0`: no limit).
    pub fn new(times: &[f64], max_points: usize) -> Bucketing {
        let n = times.len();
        let per = if n <= max_points || max_points == 0 {
            1
        } else {
            n.div_ceil(max_points)
        };
        Bucketing {
            per,
            len: n,
            times: mean_runs(times, per),
        }
    }

    /// `values` (one per time; extra values are ignored, missing ones shorten the
    /// result) averaged over the runs.
    pub fn apply(&self, values: &[f64]) -> Vec<f64> {
        self.view(values).into_owned()
    }

    /// Points per run (1: no averaging).
    pub fn per(&self) -> usize {
        self.per.max(1)
    }

    /// [`Bucketing::apply`] without a copy where nothing is averaged (runs of one point).
    pub fn view<'a>(&self, values: &'a [f64]) -> Cow<'a, [f64]> {
        let values = &values[..values.len().min(self.len)];
        if self.per <= 1 {
            Cow::Borrowed(values)
        } else {
            Cow::Owned(mean_runs(values, self.per))
        }
    }
}

/// `xs` averaged over runs of `per` points.
fn mean_runs(xs: &[f64], per: usize) -> Vec<f64> {
    if per <= 1 {
        return xs.to_vec();
    }
    xs.chunks(per)
        .map(|run| run.iter().sum::<f64>() / run.len() as f64)
        .collect()
}

/// The Theil-Sen estimator: the median of the slopes between every pair of points with
/// distinct times. Robust to up to ~29% outliers. `None` with fewer than two times.
pub fn theil_sen(times: &[f64], values: &[f64]) -> Option<f64> {
    let n = times.len().min(values.len());
    with_scratch(|slopes| {
        for i in 0..n {
            for j in i + 1..n {
                let dt = times[j] - times[i];
                if dt > 0.0 {
                    slopes.push((values[j] - values[i]) / dt);
                }
            }
        }
        median(slopes)
    })
}

/// Runs `f` on an empty vector kept per thread, so that the ranking's many short-lived
/// copies (about forty medians and two Theil-Sen slope sets a site) allocate nothing;
/// one longer than 4,096 values (a caller's long series) is not kept. Not re-entrant:
/// `f` must not call it again (the `RefCell` would panic).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        let result = f(scratch);
        if scratch.capacity() > 4096 {
            *scratch = Vec::new();
        }
        result
    })
}

/// The median of `values`, left in place (0 for none): selected in a per-thread copy.
pub(crate) fn median_of(values: &[f64]) -> f64 {
    with_scratch(|copy| {
        copy.extend_from_slice(values);
        median(copy).unwrap_or(0.0)
    })
}

/// The median of `xs` (reorders it); `None` when empty.
pub fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mid = xs.len() / 2;
    select(xs, mid);
    let upper = xs[mid];
    if xs.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = xs[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// Reorders `xs` so that `xs[k]` is the value sorted order puts there, none after it
/// smaller and none before it larger (`k < xs.len()`). Without NaNs, with the plain
/// comparison (a total order then; `total_cmp`'s bit tricks made it a third slower and
/// a ranking selects about 45 times a site); with any, by `total_cmp`.
pub fn select(xs: &mut [f64], k: usize) {
    if xs.iter().any(|x| x.is_nan()) {
        xs.select_nth_unstable_by(k, f64::total_cmp);
    } else {
        xs.select_nth_unstable_by(k, |a, b| {
            a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
        });
    }
}

/// Result of the Mann-Kendall test for a monotonic trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// Concordant minus discordant pairs (positive: increasing).
    pub s: f64,
    /// Normal approximation of `s` (with continuity and tie corrections).
    pub z: f64,
    /// One-sided p-value for an increasing trend (`P(Z >= z)`).
    pub p_increasing: f64,
    /// One-sided p-value for a decreasing trend (`P(Z <= z)`).
    pub p_decreasing: f64,
}

/// The Mann-Kendall test on values in time order. With fewer than 3 values there is no
/// evidence either way (p-values of 1).
pub fn mann_kendall(values: &[f64]) -> MannKendall {
    let n = values.len();
    if n < 3 {
        return MannKendall {
            s: 0.0,
            z: 0.0,
            p_increasing: 1.0,
            p_decreasing: 1.0,
        };
    }
    // Branch-free: the comparisons are unpredictable, and this loop dominates ranking.
    let mut s = 0i64;
    for i in 0..n {
        let vi = values[i];
        s += values[i + 1..]
            .iter()
            .map(|&vj| i64::from(vj > vi) - i64::from(vj < vi))
            .sum::<i64>();
    }
    // Variance with the correction for groups of tied values.
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1usize;
    for k in 1..=n {
        if k < n && sorted[k] == sorted[k - 1] {
            run += 1;
        } else {
            let t = run as f64;
            ties += t * (t - 1.0) * (2.0 * t + 5.0);
            run = 1;
        }
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if var <= 0.0 {
        0.0
    } else if s > 0 {
        (s as f64 - 1.0) / var.sqrt()
    } else if s < 0 {
        (s as f64 + 1.0) / var.sqrt()
    } else {
        0.0
    };
    MannKendall {
        s: s as f64,
        z,
        p_increasing: upper_tail(z),
        p_decreasing: upper_tail(-z),
    }
}

/// `P(Z >= z)` for a standard normal `Z`.
pub fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7: plenty for significance levels).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests;
