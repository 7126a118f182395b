//! Growth ranking: from a [`Series`] to a verdict and a rank for every site.
//!
//! Per site: a Theil-Sen growth rate over the whole window and over its recent part, the
//! Mann-Kendall test for a monotonic trend, and the levels (medians) of the window's
//! three thirds. The verdict follows from those:
//!
//! | verdict | whole window | last third against middle third |
//! |---|---|---|
//! | `leak` | significant growth (p < alpha), above the thresholds and the noise | not clearly stopped |
//! | `plateau` | growth above the thresholds and five times the noise (or significant) | clearly short of a steady climb: grew, then stopped (a cache); also a rise early in the window (last third well above the first tenth) followed by a flat stretch |
//! | `growing` | growth above the thresholds, weakly significant (p < 0.05; any rise with under 10 points) | not falling |
//! | `shrinking` | significant decline | |
//! | `stable` | none of the above | |
//!
//! Leaks rank first (by growth rate), then growing, plateau, stable, shrinking.

use crate::series::Series;
use crate::stats::{Bucketing, bucket, mann_kendall, median, theil_sen};
use serde::{Deserialize, Serialize};

/// What a site's live bytes are doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Sustained, significant growth that has not stopped.
    Leak,
    /// Growth that is not (yet) significant.
    Growing,
    /// Grew significantly, then stopped: a cache or pool filling up.
    Plateau,
    /// No trend.
    Stable,
    /// Significant decline.
    Shrinking,
}

impl Verdict {
    /// The verdict's name as printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Growing => "growing",
            Verdict::Plateau => "plateau",
            Verdict::Stable => "stable",
            Verdict::Shrinking => "shrinking",
        }
    }
}

/// Thresholds of the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankOptions {
    /// Significance level of the trend test for `leak` and `plateau` (default 0.001: a
    /// flat but noisy site is called a leak about once in a thousand windows).
    pub alpha: f64,
    /// Growth rates below this many bytes per second are no growth (default 16).
    pub min_rate: f64,
    /// Growth over the window below this many bytes is no growth (default 64 KiB).
    pub min_growth: f64,
    /// The recent part of the window, as a fraction of its points (default 1/3).
    pub recent_fraction: f64,
    /// Points the statistics work on: longer series are averaged into this many
    /// buckets (default 32), which bounds the cost (Theil-Sen and Mann-Kendall look at
    /// every pair) and smooths sampling noise.
    pub max_points: usize,
    /// The process's memory limit in bytes, for time-to-limit estimates.
    pub limit_bytes: Option<u64>,
    /// Bytes one sample stands for: the sampling rate `R` of sampled snapshots, 0 for
    /// exact ones ([`Report::build`](crate::Report::build) sets it from the history).
    /// Sampled estimates move in steps of about `R` and wander by about `sqrt(L R)`
    /// around a level `L` as samples come and go, so growth must exceed four samples
    /// and that wander before it counts.
    pub sample_bytes: f64,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions {
            alpha: 0.001,
            min_rate: 16.0,
            min_growth: 64.0 * 1024.0,
            recent_fraction: 1.0 / 3.0,
            max_points: 32,
            limit_bytes: None,
            sample_bytes: 0.0,
        }
    }
}

impl RankOptions {
    /// The smallest growth that counts: `min_growth`, and at least four samples' worth.
    fn growth_floor(&self) -> f64 {
        self.min_growth.max(4.0 * self.sample_bytes)
    }

    /// How much the difference of two levels of a sampled site varies by sampling alone
    /// (0 for exact snapshots). Samples arrive with the site's allocations and leave with
    /// its frees, each worth about `R` bytes, so over bytes `churn` allocated plus freed
    /// the estimate moves by about `sqrt(R * churn)` more or less than the truth (for
    /// the part of the churn between the two levels). Without a known churn,
    /// two independent estimates around `level`: `sqrt(2 * level * R)`.
    /// `span` is the fraction of the window between the two levels.
    fn sampling_noise(&self, level: f64, churn: Option<f64>, span: f64) -> f64 {
        match churn {
            Some(churn) => (self.sample_bytes * churn.max(0.0) * span).sqrt(),
            None => (2.0 * level.max(0.0) * self.sample_bytes).sqrt(),
        }
    }
}

/// The trend of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteTrend<K> {
    /// The site (id or label).
    pub key: K,
    /// Live bytes at the last point.
    pub live_bytes: f64,
    /// Growth rate over the window (Theil-Sen), bytes per second.
    pub rate: f64,
    /// Growth rate over the recent part of the window, bytes per second.
    pub recent_rate: f64,
    /// Growth over the window: the level (median) of its last third minus that of its
    /// first third, bytes.
    pub growth: f64,
    /// The level of the last third minus that of the middle third, bytes.
    pub recent_growth: f64,
    /// Growth from the start of the window to its end: the level (median) of its last
    /// tenth minus that of its first tenth, bytes. What a person means by "it grew by".
    pub window_growth: f64,
    /// Mann-Kendall p-value for an increasing trend over the window.
    pub p_increasing: f64,
    /// Mann-Kendall p-value for a decreasing trend over the window.
    pub p_decreasing: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Ranking score: higher is more urgent within a verdict.
    pub score: f64,
    /// Seconds until the process reaches its limit if this site keeps growing at
    /// `recent_rate` (and nothing else changes); `None` without a limit or growth.
    pub seconds_to_limit: Option<f64>,
    /// The window these statistics cover, in seconds.
    pub window_seconds: f64,
}

/// Every site's trend, most urgent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking<K> {
    /// Seconds covered by the series.
    pub window_seconds: f64,
    /// Points in the series.
    pub points: usize,
    /// Process live bytes at the last point.
    pub process_live_bytes: f64,
    /// Process growth rate over the window (Theil-Sen), bytes per second.
    pub process_rate: f64,
    /// Process growth rate over the shortest recent window ranked (seconds, bytes per
    /// second), when [`rank_windows`] ranked one.
    pub process_recent_rate: Option<(f64, f64)>,
    /// The limit used for time-to-limit estimates.
    pub limit_bytes: Option<u64>,
    /// Seconds until the process reaches its limit at the summed recent rate of the
    /// leaking sites; `None` without a limit or a leak.
    pub seconds_to_limit: Option<f64>,
    /// Sites, most urgent first.
    pub sites: Vec<SiteTrend<K>>,
}

/// Ranks every site of `series`.
pub fn rank<K: Ord + Clone>(series: &Series<K>, options: &RankOptions) -> Ranking<K> {
    let process_live = series.process.last().copied().unwrap_or(0.0);
    let headroom = options
        .limit_bytes
        .map(|l| (l as f64 - process_live).max(0.0));
    // Every site shares the time axis: bucket it once.
    let axes = Axes {
        coarse: Bucketing::new(&series.times, options.max_points),
        fine: Bucketing::new(&series.times, options.max_points.saturating_mul(4)),
        window: series.times.last().copied().unwrap_or(0.0)
            - series.times.first().copied().unwrap_or(0.0),
    };
    let mut sites: Vec<SiteTrend<K>> = series
        .sites
        .iter()
        .map(|(key, values)| {
            let churn = series.churn.get(key).copied();
            let mut trend = site_trend(key.clone(), &axes, values, churn, options);
            trend.window_seconds = axes.window;
            trend.seconds_to_limit = time_to(headroom, trend.recent_rate, trend.verdict);
            trend
        })
        .collect();
    sites.sort_by(|a, b| a.verdict.cmp(&b.verdict).then(b.score.total_cmp(&a.score)));
    let (t, p) = bucket(&series.times, &series.process, options.max_points);
    let leak_rate: f64 = sites
        .iter()
        .filter(|s| s.verdict == Verdict::Leak)
        .map(|s| s.recent_rate.max(0.0))
        .sum();
    Ranking {
        window_seconds: series.times.last().copied().unwrap_or(0.0)
            - series.times.first().copied().unwrap_or(0.0),
        points: series.len(),
        process_live_bytes: process_live,
        process_rate: theil_sen(&t, &p).unwrap_or(0.0),
        process_recent_rate: None,
        limit_bytes: options.limit_bytes,
        seconds_to_limit: time_to(headroom, leak_rate, Verdict::Leak),
        sites,
    }
}

/// Ranks `series` over its whole window and over each of the `recent` windows (seconds,
/// ending at its last point; only those well shorter than the whole): each site takes
/// the most urgent `leak` or `growing` verdict a recent window gives it, with that
/// window's statistics; otherwise the whole window's. A leak that began long after the
/// start shows in a recent window first; a slow one only over a long one.
pub fn rank_windows<K: Ord + Clone>(
    series: &Series<K>,
    options: &RankOptions,
    recent: &[f64],
) -> Ranking<K> {
    let mut ranking = rank(series, options);
    for &window in recent {
        if window.is_nan() || window <= 0.0 || ranking.window_seconds < 1.5 * window {
            continue;
        }
        let position: std::collections::BTreeMap<K, usize> = ranking
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.clone(), i))
            .collect();
        let recent = rank(&series.last_seconds(window), options);
        let shortest = ranking.process_recent_rate.is_none_or(|(w, _)| window < w);
        if shortest {
            ranking.process_recent_rate = Some((recent.window_seconds, recent.process_rate));
        }
        for trend in recent.sites {
            if !matches!(trend.verdict, Verdict::Leak | Verdict::Growing) {
                continue;
            }
            if let Some(&i) = position.get(&trend.key) {
                if trend.verdict < ranking.sites[i].verdict {
                    ranking.sites[i] = trend;
                }
            }
        }
    }
    ranking
        .sites
        .sort_by(|a, b| a.verdict.cmp(&b.verdict).then(b.score.total_cmp(&a.score)));
    let headroom = options
        .limit_bytes
        .map(|l| (l as f64 - ranking.process_live_bytes).max(0.0));
    let leak_rate: f64 = ranking
        .sites
        .iter()
        .filter(|s| s.verdict == Verdict::Leak)
        .map(|s| s.recent_rate.max(0.0))
        .sum();
    ranking.seconds_to_limit = time_to(headroom, leak_rate, Verdict::Leak);
    ranking
}

fn time_to(headroom: Option<f64>, rate: f64, verdict: Verdict) -> Option<f64> {
    let headroom = headroom?;
    (rate > 0.0 && matches!(verdict, Verdict::Leak | Verdict::Growing)).then(|| headroom / rate)
}

/// The levels of the first, middle and last third of a series: medians, so that noise
/// and short spikes do not move them. Fewer than three points share thirds.
fn thirds(values: &[f64]) -> [f64; 3] {
    let n = values.len();
    if n == 0 {
        return [0.0; 3];
    }
    let cut = |k: usize| (n * k / 3).min(n - 1);
    let part = |a: usize, b: usize| {
        let mut part = values[a..b.max(a + 1).min(n)].to_vec();
        median(&mut part).unwrap_or(0.0)
    };
    [part(0, cut(1)), part(cut(1), cut(2)), part(cut(2), n)]
}

/// The level (median) of the first tenth of `values` (at least one point).
fn first_tenth_level(values: &[f64]) -> f64 {
    let k = (values.len() / 10).max(1).min(values.len());
    median(&mut values[..k].to_vec()).unwrap_or(0.0)
}

/// The trend of a site that never moved by `min_growth`: stable, with rates from the
/// change between the window's ends (no significance test: p-values of 1).
fn flat_trend<K>(key: K, window: f64, values: &[f64]) -> SiteTrend<K> {
    let window_growth = edge_levels(values);
    let rate = if window > 0.0 {
        window_growth / window
    } else {
        0.0
    };
    SiteTrend {
        key,
        live_bytes: values.last().copied().unwrap_or(0.0),
        rate,
        recent_rate: rate,
        growth: window_growth,
        recent_growth: 0.0,
        window_growth,
        p_increasing: 1.0,
        p_decreasing: 1.0,
        verdict: Verdict::Stable,
        score: values.last().copied().unwrap_or(0.0),
        seconds_to_limit: None,
        window_seconds: 0.0,
    }
}

/// The level of the last tenth of `values` minus that of the first tenth (medians; at
/// least one point each).
fn edge_levels(values: &[f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let k = (n / 10).max(1);
    let level = |part: &[f64]| median(&mut part.to_vec()).unwrap_or(0.0);
    level(&values[n - k..]) - level(&values[..k])
}

/// The standard deviation of the difference of two thirds' medians due to noise alone.
/// The noise is estimated from first differences (robust to trends and steps: the
/// median absolute difference, scaled for a normal distribution).
fn level_difference_noise(values: &[f64]) -> f64 {
    if values.len() < 6 {
        return 0.0;
    }
    let mut diffs: Vec<f64> = values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let mad = median(&mut diffs).unwrap_or(0.0);
    let sigma = mad / 0.6745 / std::f64::consts::SQRT_2;
    let per_third = (values.len() / 3).max(1) as f64;
    // Median of m points: sd ~ 1.2533 sigma / sqrt(m); the difference of two: sqrt(2) x.
    std::f64::consts::SQRT_2 * 1.2533 * sigma / per_third.sqrt()
}

/// The time axis of a series, bucketed for the trend statistics (`coarse`) and for the
/// levels (`fine`).
struct Axes {
    coarse: Bucketing,
    fine: Bucketing,
    window: f64,
}

fn site_trend<K>(
    key: K,
    axes: &Axes,
    values: &[f64],
    churn: Option<f64>,
    o: &RankOptions,
) -> SiteTrend<K> {
    let live_bytes = values.last().copied().unwrap_or(0.0);
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let min_growth = o.growth_floor();
    if high - low < min_growth || high.is_nan() || low.is_nan() {
        // Never moved by `min_growth`: no verdict but stable is possible (each needs a
        // growth or decline of at least that much), so skip the statistics.
        return flat_trend(key, axes.window, values);
    }
    let t = &axes.coarse.times;
    let v = axes.coarse.apply(values);
    let n = t.len();
    let rate = theil_sen(t, &v).unwrap_or(0.0);
    let mk = mann_kendall(&v);
    let recent_len = ((n as f64 * o.recent_fraction).round() as usize).clamp(n.min(3), n);
    let recent_rate = theil_sen(&t[n - recent_len..], &v[n - recent_len..]).unwrap_or(0.0);

    // Levels of the thirds of the window: a leak keeps climbing from the middle third to
    // the last; a cache that filled up has stopped. Levels and their noise are taken on
    // a finer bucketing than the trend statistics (still bounding the cost).
    let values = axes.fine.apply(values);
    let values = values.as_slice();
    let [early, middle, late] = thirds(values);
    let growth = late - early;
    let window_growth = edge_levels(values);
    let recent_growth = late - middle;
    let window = axes.window;
    let mean_rate = if window > 0.0 { growth / window } else { 0.0 };
    // How much two thirds' levels differ by noise alone: the series' own jitter, and
    // for sampled sites the sampling's wander, between the first and last thirds
    // (`level_noise`, two thirds of the window apart) and between the last two
    // (`recent_noise`, one third apart).
    let jitter = level_difference_noise(values);
    let level_noise = jitter.max(o.sampling_noise(late.max(middle), churn, 2.0 / 3.0));
    let recent_noise = jitter.max(o.sampling_noise(late.max(middle), churn, 1.0 / 3.0));

    let grew = growth >= min_growth
        && growth > 2.0 * level_noise
        && rate.max(recent_rate).max(mean_rate) > o.min_rate;
    let significant_up = mk.p_increasing < o.alpha;
    // At a steady rate the last third sits half the total growth above the middle one.
    // A leak must show it is still climbing: at least a quarter of that pace, and more
    // than noise explains (noisy data is no evidence of a leak). It has stopped when it
    // falls well short of that, by more than noise explains.
    let expected = growth / 2.0;
    let still_climbing = recent_growth >= 0.25 * expected && recent_growth > recent_noise;
    let stopped = recent_growth < 0.5 * expected && expected - recent_growth > 2.5 * recent_noise;
    // A rise early in the window (even before the first third's median would show it),
    // then a flat stretch: the last third sits well above the window's start and barely
    // above the middle third. Needs enough points for the noise estimate.
    let enough_points = values.len() >= 10;
    let rise = late - first_tenth_level(values);
    let rose_then_stopped = enough_points
        && rise >= min_growth
        && rise > 3.0 * level_noise
        && recent_growth < 0.15 * rise;

    let verdict = if grew && significant_up && still_climbing {
        Verdict::Leak
    } else if (grew && (significant_up || (stopped && enough_points))) || rose_then_stopped {
        // Grew, and is not climbing now. A short rise followed by a long flat stretch is no
        // monotonic trend to Mann-Kendall, but its levels tell it: the rise is more than
        // three times the level noise and then it stayed.
        Verdict::Plateau
    } else if mk.p_decreasing < o.alpha && growth <= -min_growth && rate < -o.min_rate {
        Verdict::Shrinking
    } else if grew && recent_growth >= 0.0 && (mk.p_increasing < 0.05 || (n < 10 && mk.s > 0.0)) {
        // Some evidence (or too few points for any): worth watching, not yet a leak.
        Verdict::Growing
    } else {
        Verdict::Stable
    };
    let score = match verdict {
        Verdict::Leak | Verdict::Growing => {
            recent_rate.max(rate).max(mean_rate) * (1.0 - mk.p_increasing.min(1.0))
        }
        _ => live_bytes,
    };
    SiteTrend {
        key,
        live_bytes,
        rate,
        recent_rate,
        growth,
        recent_growth,
        window_growth,
        p_increasing: mk.p_increasing,
        p_decreasing: mk.p_decreasing,
        verdict,
        score,
        seconds_to_limit: None,
        window_seconds: 0.0,
    }
}

#[cfg(test)]
mod tests;
