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

use crate::series::{Departed, Series};
use crate::stats::{Bucketing, bucket, mann_kendall, median_of, select, theil_sen};
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
    /// Sampled estimates move in steps of about `R`, and between two levels by the
    /// blocks that arrived and departed (see `Noise`), so growth must exceed three
    /// samples and that noise before it counts.
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
    /// The smallest growth that counts: `min_growth`, and at least three samples' worth.
    fn growth_floor(&self) -> f64 {
        self.min_growth.max(3.0 * self.sample_bytes)
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
    /// What the site's old bytes (`Series::aged`: in blocks that lived through
    /// `OLD_SNAPSHOTS` snapshots) did over the same window, when the series knows ages:
    /// the second leak signal (its rules in docs/ARCHITECTURE.md, "Age, the second
    /// signal").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_verdict: Option<Verdict>,
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
    let axes = Axes::over(&series.times, options);
    let mut sites: Vec<SiteTrend<K>> = series
        .sites
        .iter()
        .map(|(key, values)| {
            let departed = series.departed.get(key);
            let aged = series.aged.get(key).filter(|a| a.len() == values.len());
            let young_life = young_life(values, aged, departed, options.sample_bytes);
            let mut trend = match young(&series.times, values, options.sample_bytes) {
                // A site that appeared within the window is ranked over its own life.
                Some(born) => {
                    let times = &series.times[born..];
                    let life = Axes::over(times, options);
                    let departed = departed.map(|d| d.since(born));
                    let mut trend = site_trend(
                        key.clone(),
                        &life,
                        &values[born..],
                        departed.as_ref(),
                        young_life,
                        true,
                        options,
                    );
                    trend.window_seconds = life.window;
                    let too_young = life.raw_points < YOUNG_POINTS;
                    if let Some(aged) = aged {
                        let (live, old) = (&values[born..], &aged[born..]);
                        let d = departed.as_ref();
                        trend = with_age(trend, &life, times, live, old, d, options, too_young);
                    }
                    // Fewer than YOUNG_POINTS snapshots old: too young to be told from a
                    // cache still filling, however steadily it has climbed.
                    trend.verdict = growing_at_most_if_young(trend.verdict, life.raw_points);
                    trend
                }
                None => {
                    let mut trend = site_trend(
                        key.clone(),
                        &axes,
                        values,
                        departed,
                        young_life,
                        true,
                        options,
                    );
                    trend.window_seconds = axes.window;
                    match aged {
                        Some(old) => {
                            let times = &series.times;
                            with_age(trend, &axes, times, values, old, departed, options, false)
                        }
                        None => trend,
                    }
                }
            };
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

/// How far apart, in standard deviations of their noise, two levels must be for the
/// difference to count as growth (one-sided: about 2% of pure-noise differences pass).
const GREW_SIGMAS: f64 = 2.0;
/// How far the last third must sit above the middle one, in standard deviations, for a
/// leak to count as still climbing.
const CLIMB_SIGMAS: f64 = 1.0;
/// How far the last third must sit above the middle one, in standard deviations of a
/// turning-over sampled estimate's wander, for a leak to count as still climbing.
const TURNOVER_SIGMAS: f64 = 3.0;
/// Fewest points (snapshots) a window needs before a site in it is called a leak or
/// stopped.
const MIN_POINTS: usize = 10;
/// Fewest points before a sampled site is called a leak. A cache that fills in the
/// first seconds of a history and then turns over has a sampled estimate that keeps
/// wandering up as its few samples are replaced (the demo's session store, 8 MiB in about
/// 16 samples, read `leak` at 10 to 15 points of 0.5 s in one run of eight, its estimate
/// at 4.6 to 9.1 MiB); over twice that many points its fill lies in the window's first
/// third, and the thirds see it stop. Exact estimates do not wander: they keep
/// [`MIN_POINTS`].
const MIN_SAMPLED_LEAK_POINTS: usize = 20;
/// The share of a site's rise over the window (its highest minus its lowest point) that
/// one step must hold for the site to be a step, not a leak (see [`one_step`]).
const ONE_STEP_SHARE: f64 = 0.8;
/// How far a step must stand out of one point's noise, in its standard deviations: the
/// largest of 600 differences of points with Gaussian noise is about 4.6 of them.
const STEP_SIGMAS: f64 = 6.0;
/// How far the last third must fall short of a steady climb, in standard deviations of
/// that climb's noise, for a site to count as stopped.
const STOP_SIGMAS: f64 = 2.0;

/// The trend of a site that never moved by `min_growth`: stable, with rates from the
/// change between the window's ends (no significance test: p-values of 1).
fn flat_trend<K>(key: K, window: f64, values: &[f64]) -> SiteTrend<K> {
    let window_growth = tenths_growth(values);
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
        old_verdict: None,
    }
}

/// The level of a stretch of a series: the median of its points (so that noise and
/// short spikes do not move it), where it sits, and how many points it rests on.
#[derive(Debug, Clone, Copy)]
struct Level {
    value: f64,
    /// The stretch's middle point (index into the series).
    center: usize,
    points: usize,
}

impl Level {
    /// The level of `values[a..b]` (at least one point; clamped to the series).
    fn of(values: &[f64], a: usize, b: usize) -> Level {
        let n = values.len();
        let a = a.min(n.saturating_sub(1));
        let b = b.clamp(a + 1, n.max(a + 1));
        Level {
            value: median_of(&values[a..b.min(n)]),
            center: (a + b - 1) / 2,
            points: b - a,
        }
    }
}

/// The sampling noise model of one site (see docs/ARCHITECTURE.md, "How a leak is told
/// from a cache").
///
/// A sampled estimate is the sum of the weights `w = s / p(s)` of the sampled blocks
/// alive at that moment. Between two moments `a` and `b`, blocks alive at both add the
/// same weight to both estimates, and blocks allocated and freed in between add to
/// neither: the difference moves only with the blocks alive at exactly one of the two
/// moments, those that arrived (`A` bytes) and those that departed (`D` bytes). Each is
/// sampled independently, so `Var(est_b - est_a) = sum of s^2 (1 - p) / p` over them,
/// at most `R x (A + D)` (equality for blocks much smaller than `R`). And `A - D` is the
/// true change, so `A + D = change + 2 D`. The allocator counts, per site, the bytes
/// freed from blocks that had been alive at a snapshot ([`Departed`], cumulative; young
/// ones weighed by their share of a stretch); those between `a` and `b` bound `D` from
/// above, as does the level at `a` itself. So the noise of a difference of two levels
/// is `sqrt(R x (|change| + 2 min(D, level_a)))`,
/// plus the series' own jitter between neighbouring points (which in sampled mode
/// holds the blocks seen at one snapshot and gone at the next, and in exact mode the
/// real bursts of the program). A busy site whose blocks die young adds nothing to it
/// however much it allocates; without `departed` (older recordings) `D <= level_a`
/// gives the bound `sqrt(R x (level_a + level_b))`.
struct Noise<'a> {
    /// Bytes one sample stands for (0: exact).
    r: f64,
    /// Cumulative departures, one per (fine) point, where known.
    departed: Option<&'a Departed>,
    /// Snapshots each (fine) point averages.
    snapshots_per_point: f64,
    /// Snapshots at which a block that departed young was alive, on average (see
    /// [`young_life`]; `OLD_SNAPSHOTS`, the most, where unknown): how many of the young
    /// departures were more than a snapshot's blip.
    young_snapshots: f64,
    /// The mean square of the snapshots an old departure had lived through (see
    /// [`old_life_sq`]), where known.
    old_life_sq: Option<f64>,
    /// Standard deviation of one point's jitter.
    point_sigma: f64,
    /// The series' own swing: the standard deviation of the median of one block of
    /// `block_points` points around the trend (see [`block_noise`]).
    block_sigma: f64,
    block_points: usize,
}

impl Noise<'_> {
    /// The standard deviation of `y - x` due to noise alone.
    fn between(&self, x: Level, y: Level) -> f64 {
        self.model(x, y, y.value - x.value)
    }

    /// The noise of a change of `change` bytes from `x` to `y`: the sampling and jitter
    /// model, or the series' own swing between stretches that long where that is larger
    /// (a sawtooth or a batch job moves the truth itself, which no sampling model sees).
    fn model(&self, x: Level, y: Level, change: f64) -> f64 {
        let modelled = self.jitter(x, y).hypot(self.sampling(x, y, change));
        modelled.max(self.swing(x, y))
    }

    /// The series' own swing between stretches as long as `x` and `y`.
    fn swing(&self, x: Level, y: Level) -> f64 {
        let b = self.block_points.max(1) as f64;
        self.block_sigma
            * (b / x.points.max(1) as f64 + b / y.points.max(1) as f64)
                .min(2.0)
                .sqrt()
    }

    /// The noise that is not sampling: jitter, or the swing where larger.
    fn jitter_or_swing(&self, x: Level, y: Level) -> f64 {
        self.jitter(x, y).max(self.swing(x, y))
    }

    /// The jitter part: the standard deviation of the difference of two medians of
    /// points with independent noise of `point_sigma`.
    fn jitter(&self, x: Level, y: Level) -> f64 {
        1.2533
            * self.point_sigma
            * (1.0 / x.points.max(1) as f64 + 1.0 / y.points.max(1) as f64).sqrt()
    }

    /// The sampling part of the noise of a change from level `x` to `y` of `change`
    /// bytes (the observed one, or one expected under a hypothesis); `x` and `y` in
    /// either order.
    fn sampling(&self, x: Level, y: Level, change: f64) -> f64 {
        if self.r <= 0.0 {
            return 0.0;
        }
        (self.r * self.turnover(x, y, change)).sqrt()
    }

    /// How far a rise of `change` bytes from `x` to `y` stands out if the site did not
    /// grow: its noise and the continuity correction to take off the rise first.
    ///
    /// Under no growth arrivals (`A = change + D`) and departures (`D`, counted) have one
    /// mean, which the departures seen may undershoot by chance (a pool of long-lived
    /// blocks sees a few samples arrive and a few leave in a window, and in some draws
    /// only arrivals). The arrivals departures could have balanced are the rise, up to
    /// what the earlier level held beyond the departures counted; for those the test is
    /// the conditional one (given `n = A + D` samples that came or went, each is an
    /// arrival with probability 1/2): noise `sqrt(R (A + D))`, and one sample off the
    /// rise, since counts move by whole samples (`(A - D - 1) / sqrt(A + D)` is within
    /// 0.15 standard deviations of the exact binomial tail from 4 samples on). A site
    /// that held nothing has nothing to balance its arrivals with: `sqrt(2 R D)`, no
    /// correction, and every sample that came and stayed is growth. The jitter, or the
    /// series' own swing where larger, as in [`Noise::model`].
    fn if_flat(&self, x: Level, y: Level, change: f64) -> FlatTest {
        let (a, b) = if x.center <= y.center { (x, y) } else { (y, x) };
        let (sampling, correction) = if self.r > 0.0 {
            let departed = self.departed(a, b);
            let balanceable = change.max(0.0).min((a.value.max(0.0) - departed).max(0.0));
            let turnover = 2.0 * departed + balanceable;
            ((self.r * turnover).sqrt(), balanceable.min(self.r))
        } else {
            (0.0, 0.0)
        };
        FlatTest {
            noise: self.jitter(x, y).hypot(sampling).max(self.swing(x, y)),
            correction,
        }
    }

    /// `A + D`: bytes alive at one of the two levels' moments and not at the other, for
    /// a change of `change` bytes between them: the change, plus twice the bytes that
    /// departed (at most what the earlier level held).
    fn turnover(&self, x: Level, y: Level, change: f64) -> f64 {
        let (a, b) = if x.center <= y.center { (x, y) } else { (y, x) };
        change.abs() + 2.0 * self.departed(a, b)
    }

    /// Bytes that departed between the earlier level `a` and the later `b` (bounded by
    /// what `a` held; without counts, that bound). Blocks that lived through
    /// `OLD_SNAPSHOTS` snapshots count in full; younger ones, alive at `k` of a
    /// stretch's `m` snapshots, move its median by about `k/m` of their weight, so
    /// they count with `(k/m)^2` (in full over stretches that short) at `k` =
    /// `OLD_SNAPSHOTS`, the most, and only as far as they departed within one of the
    /// two stretches: a young block that came and went between them was alive at
    /// neither. A block seen at one snapshot moves no median (the jitter covers it), so
    /// of the young departures only the share the site's [`young_life`] leaves for
    /// longer-lived ones counts: as if each had been seen at one snapshot or at the
    /// most, their mean `k` makes the share of the latter `(k - 1) / (OLD_SNAPSHOTS -
    /// 1)` (all of them where `k` is unknown). (Counting them at `(k/m)^2` instead let
    /// the demo's fixed session store, entries living 4 snapshots, read `leak` at 20
    /// points of one run in ten.)
    fn departed(&self, a: Level, b: Level) -> f64 {
        let before = a.value.max(0.0);
        let Some(d) = self.departed.filter(|d| !d.old.is_empty()) else {
            return before;
        };
        let between = |column: &[f64]| {
            let at = |i: usize| column.get(i.min(column.len().saturating_sub(1))).copied();
            (at(b.center).unwrap_or(0.0) - at(a.center).unwrap_or(0.0)).max(0.0)
        };
        let old = between(&d.old);
        let young = (between(&d.seen) - old).max(0.0);
        let snapshots = a.points.min(b.points) as f64 * self.snapshots_per_point;
        // An old block alive at a share `f = min(k, m)/m` of a stretch's `m` snapshots
        // moves its median by about `f` of its weight where the series is busy, and by
        // all or nothing where it is quiet (a sampled series' levels are whole samples:
        // all once it was alive at more than half the points). `4 f^2` bounds both, so
        // with `k` unknown they count `4 E[min(k, m)^2] / m^2`, at most `4 E[k^2] / m^2`
        // from the measured ages (which count up to MAX_DEPARTED_AGE: only for stretches
        // no longer). A pool's blocks, living longer than any stretch, count in full;
        // blocks living seconds in a window of minutes hardly at all.
        let old_weight = match self.old_life_sq {
            Some(k2) if snapshots <= f64::from(leakwatch_types::MAX_DEPARTED_AGE) => {
                (4.0 * k2 / snapshots.max(1.0).powi(2)).min(1.0)
            }
            _ => 1.0,
        };
        let old = old_weight * old;
        let most = f64::from(leakwatch_types::OLD_SNAPSHOTS);
        let share = ((self.young_snapshots - 1.0) / (most - 1.0)).clamp(0.0, 1.0);
        let weight = share * (most / snapshots.max(1.0)).powi(2).min(1.0);
        // Young blocks that came and went between the two stretches were alive at
        // neither: only those departing within one of them (its half towards the
        // other) moved a median.
        let span = b.center.saturating_sub(a.center).max(1) as f64;
        let cover = ((a.points + b.points) as f64 / 2.0 / span).min(1.0);
        (old + cover * weight * young).min(before)
    }
}

/// [`Noise::if_flat`]: the noise of a rise if the site did not grow, and the continuity
/// correction taken off the rise before it is compared.
struct FlatTest {
    noise: f64,
    correction: f64,
}

/// The standard deviation of one point's noise, from first differences around their
/// median (so a steady trend does not count): their root mean square with the largest
/// 5% left out (so a step, a cache filling or a spike does not count), divided by
/// `sqrt(2)`. Not the median absolute deviation: that ignores up to half the
/// differences, so the drop of a sawtooth (one difference in four) would go unseen.
fn point_noise(values: &[f64]) -> f64 {
    if values.len() < 6 {
        return 0.0;
    }
    let mut diffs: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let center = median_of(&diffs);
    diffs.iter_mut().for_each(|d| *d = (*d - center).abs());
    // The largest 5% left out: a selection puts the `keep` smallest first (unordered),
    // no sort needed.
    let keep = diffs.len() - (diffs.len() / 20).max(1);
    select(&mut diffs, keep);
    let mean_square = diffs[..keep].iter().map(|d| d * d).sum::<f64>() / keep as f64;
    (mean_square / 2.0).sqrt()
}

/// Blocks the series is cut into to measure its own swing.
const SWING_BLOCKS: usize = 20;
/// Blocks the series is cut into to find when it reached its level.
const FLAT_BLOCKS: usize = 12;

/// The medians of `blocks` consecutive blocks of `values.len() / blocks` points (the
/// remainder at the end left out), and the points per block. Needs at least `blocks`
/// values.
fn block_medians(values: &[f64], blocks: usize) -> (Vec<f64>, usize) {
    let per = values.len() / blocks;
    let medians = values
        .chunks_exact(per.max(1))
        .take(blocks)
        .map(median_of)
        .collect();
    (medians, per)
}

/// The series' own swing: how much the medians of [`SWING_BLOCKS`] consecutive blocks
/// (each as long as the shortest stretch a level is taken over, the window's first
/// twentieth) differ from one block to the next beyond their typical step, as
/// [`point_noise`] measures it. A steady leak's blocks step evenly, and a cache that
/// filled and stopped steps only while it filled (a few outlying differences); noise,
/// and a truth that rises and falls (a sawtooth, a periodic batch, a sampled estimate
/// wandering as its samples turn over), scatter them. Returns it and the points per
/// block.
fn block_noise(values: &[f64]) -> (f64, usize) {
    if values.len() < 2 * SWING_BLOCKS {
        return (0.0, 1);
    }
    let (medians, per) = block_medians(values, SWING_BLOCKS);
    (point_noise(&medians), per)
}

/// How long a site has been flat, against how long it took to get there, on the medians
/// of [`FLAT_BLOCKS`] blocks (robust to noise): seconds since the first block that sits
/// (within `band`) at the level `now` it holds; the span a next rise may take, the time
/// it rose over and twice the gap between its last two rises (a container that doubles
/// takes twice as long for each next step, so a pause shorter than that is no evidence
/// that it stopped).
fn flat_and_rise(times: &[f64], values: &[f64], start: f64, now: f64, band: f64) -> (f64, f64) {
    let n = times.len().min(values.len());
    if n < FLAT_BLOCKS {
        return (0.0, 0.0);
    }
    // Blocks that end at the newest point (the oldest few points left out, never the
    // newest: at 16 points, 12 blocks of one left the last four unseen, and a doubling
    // vector's newest doubling with them).
    let skip = n % FLAT_BLOCKS;
    let (levels, per) = block_medians(&values[skip..n], FLAT_BLOCKS);
    let at = |k: usize| (skip + k * per).min(n - 1);
    let center = |k: usize| times[(skip + k * per + per / 2).min(n - 1)];
    let Some(reached) = levels.iter().position(|&v| v >= now - band) else {
        return (0.0, 0.0);
    };
    let began = levels[..reached]
        .iter()
        .rposition(|&v| v <= start + band)
        .unwrap_or(0);
    let rise_time = center(reached) - center(began);
    // Rises: steps between neighbouring blocks of at least a tenth of the whole rise.
    let step = 0.1 * (now - start);
    let rises: Vec<usize> = (began + 1..=reached)
        .filter(|&k| levels[k] - levels[k - 1] >= step)
        .collect();
    let gap = match rises.as_slice() {
        [.., a, b] => center(*b) - center(*a),
        _ => 0.0,
    };
    let flat = times[n - 1] - times[at(reached)];
    (flat, rise_time.max(2.0 * gap))
}

/// The time axis of a series, bucketed for the trend statistics (`coarse`) and for the
/// levels (`fine`).
struct Axes {
    coarse: Bucketing,
    fine: Bucketing,
    window: f64,
    /// Points (snapshots) of the series.
    raw_points: usize,
}

impl Axes {
    fn over(times: &[f64], o: &RankOptions) -> Axes {
        Axes {
            coarse: Bucketing::new(times, o.max_points),
            fine: Bucketing::new(times, o.max_points.saturating_mul(4)),
            window: times.last().copied().unwrap_or(0.0) - times.first().copied().unwrap_or(0.0),
            raw_points: times.len(),
        }
    }
}

/// A site born in the window is `growing` at most until it has lived this many
/// snapshots. A cache that appears with a new model version fills as fast as requests
/// bring new sessions: 1 to 2 s in the demo, but 9 s in the soak under load (one
/// snapshot a second), where ranked over its own life it climbed as steadily as a leak
/// and was called one. 30 snapshots are 15 s at the demo's interval and 30 s at the
/// recorder's default; older sites, and sites present from the window's first third,
/// need the usual ten points.
const YOUNG_POINTS: usize = 30;

/// Where a site that appeared within the window was born: the index of its last point
/// holding no bytes before it began (so its first arrival still counts as growth), when
/// points before it hold none and it began after the window's first third (`None`:
/// ranked over the whole window). Before it the site did not exist: its zeros say
/// nothing of its trend, and ranked with them, a cache that appeared late and filled in
/// seconds (a new model version's sessions after an update) has its whole rise between
/// the window's middle and last thirds, as a leak has. Over its own life it is what it
/// is: a cache that filled early in its life and held.
///
/// An exact site began at its first bytes. A sampled site's first sample comes, on
/// average, one gap between its samples after it began, and the gap is its life over
/// the samples that arrived in it: a cache filling in a burst of samples began at its
/// first, but a slow leak seen in four samples began a quarter of its seen life
/// earlier. (Born at its first sample, a leak whose first of eight samples came after
/// the first third was ranked over what followed, which starts one sample up: about 30
/// of the 3,600 draws of 8-sample leaks in `sampled_leaks_on_churning_sites_are_found`
/// were `stable` or `growing` for it.)
fn young(times: &[f64], values: &[f64], sample_bytes: f64) -> Option<usize> {
    let born = values.iter().position(|&v| v > 0.0)?;
    let (start, end) = (*times.first()?, *times.last()?);
    let third = start + (end - start) / 3.0;
    let first_seen = *times.get(born)?;
    let began = if sample_bytes > 0.0 {
        let arrivals: f64 = values[born..]
            .windows(2)
            .map(|w| (w[1] - w[0]).max(0.0))
            .sum::<f64>()
            + values[born];
        let samples = (arrivals / sample_bytes).max(1.0);
        first_seen - (end - first_seen) / samples
    } else {
        first_seen
    };
    if born == 0 || began <= third {
        return None;
    }
    // The last point before it began (at most the one before its first sample).
    let before = times[..born].partition_point(|&t| t < began);
    Some(before.saturating_sub(1).min(born - 1))
}

/// The age signal: the verdict of the site's old bytes (`old`, one value per point: live
/// bytes in blocks that have lived through `OLD_SNAPSHOTS` snapshots), ranked with the
/// same rules and noise model as its live bytes, combined with the verdict of those
/// (`trend`, ranked over `times`, which `axes` bucket).
///
/// A leaked block is never freed, so it ages: a leak's old bytes climb at its rate,
/// `OLD_SNAPSHOTS` snapshots behind its live bytes, and only departures of old blocks
/// (`Departed::old`, of the same age) move them down. Blocks that die younger (a
/// request's buffers, a churning cache's entries) never enter them, and neither does
/// their sampling noise: in sampled mode a leak on a churning site, buried in the wander
/// of its young samples, is a staircase of its kept samples among its old bytes. A cache
/// that turns over faster than that holds no old bytes, however it fills.
///
/// Old bytes that appear within the window (a site born in it, or one whose blocks only
/// began to live long) are ranked over their own life, as live bytes are (`young`), and
/// are `growing` at most until that life is [`YOUNG_POINTS`] snapshots long.
///
/// - **Confirm**: live bytes `growing`, `stable` or `plateau` (a store that filled at
///   the start and wanders: its fill looks like a cache that stopped), their growth
///   lost in the noise of young blocks (the last third's young bytes at least
///   [`YOUNG_SHARE`] of the old bytes' growth), and old bytes a `leak` (beyond their own
///   noise, significant, still climbing): `leak`. Where young bytes are few, old bytes
///   are the live bytes a few snapshots late, and a second test of the same evidence
///   would only add its own false alarms.
/// - **Veto**: live bytes a `leak` over at least [`VETO_SNAPSHOTS`] snapshots, but old
///   bytes neither a leak nor growing, and grown by under a quarter of what the live
///   growth would have aged into: the growth is young bytes that turn over, `growing` at
///   most. (A leaked container whose buffer is reallocated as it grows is one such: its
///   buffer is always young; `growing` is its verdict.)
#[allow(clippy::too_many_arguments)]
fn with_age<K: Clone>(
    mut trend: SiteTrend<K>,
    axes: &Axes,
    times: &[f64],
    live: &[f64],
    old: &[f64],
    departed: Option<&Departed>,
    o: &RankOptions,
    too_young: bool,
) -> SiteTrend<K> {
    // One value per point in each (the caller keeps only old bytes as long as the live).
    let n = times.len();
    if trend.verdict == Verdict::Shrinking {
        return trend;
    }
    // Old bytes that are all of the live bytes (every block lived through
    // `OLD_SNAPSHOTS` snapshots: a pool, a filled cache, configuration) with no young
    // departure are the live series with the live noise: the same verdict, and neither
    // rule below can fire (no young bytes to hide a leak, no growth to veto). Common in
    // a service, and a second trend saved.
    if old == live && departed.is_none_or(|d| d.seen == d.old) {
        trend.old_verdict = Some(growing_at_most_if_young(trend.verdict, axes.raw_points));
        return trend;
    }
    let born = young(times, old, o.sample_bytes).unwrap_or(0);
    // `axes` bucket all of `times`: rebucket only for old bytes born later.
    let rebucketed;
    let life = if born == 0 {
        axes
    } else {
        rebucketed = Axes::over(&times[born..], o);
        &rebucketed
    };
    // The young bytes the live verdict had to see the growth through (the last third's
    // level of live bytes not yet old): where they are few, old bytes are live bytes
    // a few snapshots late and a second look at the same evidence, not a cleaner one.
    // A plateau's old bytes matter only if they can confirm a leak: a second trend for
    // every cache that filled (a quarter of the ranking bench's sites) was 13% of a
    // ranking's instructions, so it is ranked only where the rule's other conditions
    // can hold (see `may_be_obscured`).
    let plateau = trend.verdict == Verdict::Plateau;
    if plateau && (too_young || life.raw_points < YOUNG_POINTS) {
        return trend;
    }
    let third = n - n / 3;
    let young_bytes: Vec<f64> = live[third..]
        .iter()
        .zip(&old[third..])
        .map(|(l, o)| (l - o).max(0.0))
        .collect();
    if plateau && !may_be_obscured(&young_bytes, &old[born..], &life.fine) {
        return trend;
    }
    // Old bytes move only with old blocks' departures: young ones were never in them.
    let departed = departed.map(|d| d.since(born).of_old_blocks());
    let mut aged = site_trend(
        trend.key.clone(),
        life,
        &old[born..],
        departed.as_ref(),
        None,
        false,
        o,
    );
    aged.verdict = growing_at_most_if_young(aged.verdict, life.raw_points);
    trend.old_verdict = Some(aged.verdict);
    let obscured = median_of(&young_bytes) >= YOUNG_SHARE * aged.window_growth.max(0.0);
    match trend.verdict {
        Verdict::Growing | Verdict::Stable | Verdict::Plateau
            if aged.verdict == Verdict::Leak && obscured && !too_young =>
        {
            trend.verdict = Verdict::Leak;
            trend.score = aged.score.max(
                trend.recent_rate.max(trend.rate).max(0.0) * (1.0 - aged.p_increasing.min(1.0)),
            );
        }
        Verdict::Leak if n >= VETO_SNAPSHOTS => {
            let lag = OLD_SNAPSHOTS as f64 / n as f64;
            let would_age = trend.window_growth.max(0.0) * (1.0 - lag);
            if !matches!(aged.verdict, Verdict::Leak | Verdict::Growing)
                && tenths_growth(old) < 0.25 * would_age
            {
                trend.verdict = Verdict::Growing;
            }
        }
        _ => {}
    }
    trend
}

/// Whether `young` bytes (the last third's, each at least 0) may obscure the growth of
/// `old` bytes as `with_age`'s confirm rule asks: their median at least [`YOUNG_SHARE`]
/// of the growth `site_trend` reports for the old bytes over `fine`. Settled first by
/// bounds that need no sort (the median of values at least 0 is at most twice their
/// mean; the reported growth is at least the lowest raw point under the last tenth's
/// runs less the highest under the first twentieth's), and exactly only where they
/// cannot tell.
fn may_be_obscured(young: &[f64], old: &[f64], fine: &Bucketing) -> bool {
    if young.is_empty() || old.is_empty() {
        return true;
    }
    let mean = young.iter().sum::<f64>() / young.len() as f64;
    let per = fine.per();
    let m = old.len().div_ceil(per);
    let (head, tail) = ((m / 20).max(1), (m / 10).max(1));
    let lowest = |range: &[f64]| range.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = |range: &[f64]| range.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lowest_growth = lowest(&old[((m - tail) * per).min(old.len())..])
        - highest(&old[..(head * per).min(old.len())]);
    if 2.0 * mean < YOUNG_SHARE * lowest_growth {
        return false;
    }
    median_of(young) >= YOUNG_SHARE * ends_growth(&fine.view(old)).max(0.0)
}

/// The growth `site_trend` reports over a window of (fine) points `values`: from the
/// level of its first twentieth to that of its last tenth. (A site that never moved by
/// the growth floor takes [`tenths_growth`] there instead, and is `stable`.)
fn ends_growth(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let (first, last) = window_ends(values);
    last.value - first.value
}

/// The levels of the first twentieth and the last tenth of `values` (not empty).
fn window_ends(values: &[f64]) -> (Level, Level) {
    let m = values.len();
    let tenth = (m / 10).max(1);
    (
        Level::of(values, 0, (m / 20).max(1)),
        Level::of(values, m - tenth, m),
    )
}

/// Young bytes, as a share of the old bytes' growth, from which the old bytes' verdict may
/// confirm a leak the live bytes' could not.
const YOUNG_SHARE: f64 = 0.25;
/// The age, in snapshots, of the old bytes (`Series::aged`).
const OLD_SNAPSHOTS: u32 = leakwatch_types::OLD_SNAPSHOTS;
/// Fewest snapshots of a leak's life before its old bytes may veto it: three times the
/// age they lag by, so that most of a leak's growth would have aged into them.
const VETO_SNAPSHOTS: usize = 3 * OLD_SNAPSHOTS as usize;

/// Growth from a series' start to its end: the level (median) of its last tenth minus
/// that of its first tenth (0 for an empty one).
fn tenths_growth(values: &[f64]) -> f64 {
    let n = values.len();
    let k = (n / 10).max(1).min(n);
    if n == 0 {
        return 0.0;
    }
    median_of(&values[n - k..]) - median_of(&values[..k])
}

/// `verdict`, but `growing` at most for a site (or old bytes) fewer than [`YOUNG_POINTS`]
/// snapshots old.
fn growing_at_most_if_young(verdict: Verdict, points: usize) -> Verdict {
    if verdict == Verdict::Leak && points < YOUNG_POINTS {
        Verdict::Growing
    } else {
        verdict
    }
}

/// How many snapshots a block that departed young (before `OLD_SNAPSHOTS` snapshots)
/// was alive at, on average, by Little's law: the young bytes alive at a snapshot that
/// did not go on to age, over the young bytes departing per snapshot. Young bytes at a
/// point are its live bytes not yet old; those that aged within the next
/// `OLD_SNAPSHOTS` points are what the old bytes gained there (plus old departures), so
/// a leak's young blocks, which all age, do not count. A 5 ms request buffer caught by
/// one snapshot lived at one; a session that ends within seconds, at a few. `None` where
/// ages or departures are not known, or nothing departed young; at least 1 and at most
/// `OLD_SNAPSHOTS`.
fn young_life(
    values: &[f64],
    aged: Option<&Vec<f64>>,
    departed: Option<&Departed>,
    sample_bytes: f64,
) -> Option<f64> {
    let (aged, departed) = (aged?, departed?);
    let n = values.len();
    let lag = leakwatch_types::OLD_SNAPSHOTS as usize;
    if sample_bytes <= 0.0 || n <= lag + 1 || departed.old.len() != n || departed.seen.len() != n {
        return None;
    }
    let young_departed =
        (departed.seen[n - 1] - departed.seen[0]) - (departed.old[n - 1] - departed.old[0]);
    if young_departed <= 0.0 {
        return None;
    }
    let staying: f64 = (0..n - lag)
        .map(|t| {
            let young = (values[t] - aged[t]).max(0.0);
            let aged_on = aged[t + lag] - aged[t] + (departed.old[t + lag] - departed.old[t]);
            (young - aged_on.max(0.0)).max(0.0)
        })
        .sum();
    let per_snapshot = young_departed / (n - 1) as f64;
    let life = staying / (n - lag) as f64 / per_snapshot;
    Some(life.clamp(1.0, lag as f64))
}

/// The mean square of the lives (snapshots lived through) of a site's old departures over
/// the window: their bytes times age squared over their bytes. `None` where the ages are
/// not known or no old block departed.
fn old_life_sq(departed: &Departed) -> Option<f64> {
    let n = departed.old.len();
    if n < 2 || departed.old_age_sq.len() != n {
        return None;
    }
    let bytes = departed.old[n - 1] - departed.old[0];
    let age_sq = departed.old_age_sq[n - 1] - departed.old_age_sq[0];
    (bytes > 0.0 && age_sq.is_finite()).then(|| (age_sq / bytes).max(1.0))
}

fn site_trend<K>(
    key: K,
    axes: &Axes,
    values: &[f64],
    departed: Option<&Departed>,
    young_life: Option<f64>,
    rates_shown: bool,
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
    let mk = mann_kendall(&v);
    let recent_len = ((n as f64 * o.recent_fraction).round() as usize).clamp(n.min(3), n);
    // The Theil-Sen rates (a third of a ranking's instructions), computed once and only
    // where asked for: always for live bytes (reports show them); for old bytes only
    // where a verdict's test needs them.
    let computed = std::cell::OnceCell::new();
    let rates = || {
        *computed.get_or_init(|| {
            let rate = theil_sen(t, &v).unwrap_or(0.0);
            let recent = theil_sen(&t[n - recent_len..], &v[n - recent_len..]).unwrap_or(0.0);
            (rate, recent)
        })
    };
    if rates_shown {
        rates();
    }

    // Levels, on a finer bucketing than the trend statistics (still bounding the cost):
    // the window's three thirds, and its first and last tenths.
    let times = &axes.fine.times;
    let values = axes.fine.view(values);
    let values = &*values;
    let old_life_sq = departed.and_then(old_life_sq);
    let departed = departed.map(|d| Departed {
        old: axes.fine.apply(&d.old),
        seen: axes.fine.apply(&d.seen),
        old_age_sq: Vec::new(),
    });
    let snapshots_per_point = axes.raw_points as f64 / values.len().max(1) as f64;
    let m = values.len();
    let third = |k: usize| Level::of(values, m * k / 3, m * (k + 1) / 3);
    let (early, middle, late) = (third(0), third(1), third(2));
    // The start: the first twentieth (a cache may fill within the first tenth); the end:
    // the last tenth.
    let (first, last) = window_ends(values);
    let (block_sigma, block_points) = block_noise(values);
    let noise = Noise {
        r: o.sample_bytes,
        departed: departed.as_ref(),
        snapshots_per_point,
        young_snapshots: young_life.unwrap_or(f64::from(leakwatch_types::OLD_SNAPSHOTS)),
        old_life_sq,
        point_sigma: point_noise(values),
        block_sigma,
        block_points,
    };

    let growth = late.value - early.value;
    let window_growth = last.value - first.value;
    let recent_growth = late.value - middle.value;
    let window = axes.window;
    let mean_rate = if window > 0.0 { growth / window } else { 0.0 };
    // Held to the noise the change would have if nothing grew (arrivals balanced by
    // departures, `Noise::if_flat`, with the jitter and swing), not to the noise of the
    // change observed: the question is whether "no growth" explains it. Where nothing
    // was there to depart, every sample that arrived and stayed is growth, and the
    // floor of three samples is what keeps chance arrivals out.
    let beyond = |x: Level, y: Level, sigmas: f64| {
        let change = y.value - x.value;
        change >= min_growth && {
            let flat = noise.if_flat(x, y, change);
            change - flat.correction > sigmas * flat.noise
        }
    };
    // Grew beyond noise: from the first third's level to the last's, or from the
    // window's first twentieth to its last tenth or third (a leak's full rise; a cache
    // that filled within the first third shows only there). The start rests on few
    // points and is a second and third look, so it must clear a higher bar.
    let from_start = GREW_SIGMAS + 0.5;
    let grew = (beyond(early, late, GREW_SIGMAS)
        || beyond(first, last, from_start)
        || beyond(first, late, from_start))
        && (mean_rate.max(window_growth / window.max(1e-9)) > o.min_rate || {
            let (rate, recent_rate) = rates();
            rate.max(recent_rate) > o.min_rate
        });
    let significant_up = mk.p_increasing < o.alpha;
    // How long it has been flat, and how long it rose for (see `flat_and_rise`).
    let rise = late.value - first.value;
    // Within noise of its level (the wander of an estimate whose samples turn over),
    // but never more than a quarter of the rise: a leak's last quarter is no flat stretch.
    let rise_up = rise.max(0.0);
    let band = (2.0 * noise.model(middle, late, 0.0)).clamp(0.1 * rise_up, 0.25 * rise_up);
    // Flat since it reached the level it holds now: the last third's, or the newest
    // tenth's where that rose beyond the band since (the last third's median lags a
    // step inside it: a vector that just doubled again has not been flat at all).
    let now = if last.value > late.value + band {
        last.value
    } else {
        late.value
    };
    let (flat_time, rise_span) = flat_and_rise(times, values, first.value, now, band);
    // The growth from the middle third to the last that a steady climb predicts: half
    // the thirds' growth, or about 0.4 of the rise from the window's start.
    let expected = (growth / 2.0).max(0.4 * rise);
    // Still climbing: at least a quarter of that pace, at least one sample, and more
    // than noise explains if nothing grew: the jitter, and the wander of a sampled
    // estimate whose samples turn over (`sqrt(2 R D)`: arrivals balance departures),
    // which moves like a random walk and so is held to a stricter bound.
    let at_rest_from_middle = |to: Level| {
        noise
            .jitter_or_swing(middle, to)
            .hypot(TURNOVER_SIGMAS / CLIMB_SIGMAS * noise.sampling(middle, to, 0.0))
    };
    let at_rest = at_rest_from_middle(late);
    let climbed_to = |to: Level, pace: f64, sigmas: f64| {
        let climb = to.value - middle.value;
        climb >= 0.25 * pace && climb >= o.sample_bytes && climb > sigmas * at_rest_from_middle(to)
    };
    // From the middle third to the last third, or to the last tenth: a slow leak's few
    // samples may all arrive late in the last third (the tenth sits further from the
    // middle, so a steady climb rises more by then: 0.45 of the window, not 0.33). The
    // tenth rests on fewer points, and a sawtooth's tooth can fill it, so it must clear
    // twice the noise.
    let still_climbing = climbed_to(late, expected, CLIMB_SIGMAS)
        || climbed_to(last, 1.35 * expected, 2.0 * CLIMB_SIGMAS);
    // Mann-Kendall's normal approximation and the noise estimates need ten points: with
    // fewer, a site is neither a leak nor stopped (and sampled, see
    // [`MIN_SAMPLED_LEAK_POINTS`], not a leak with fewer than twenty).
    let enough_points = axes.raw_points >= MIN_POINTS;
    let enough_for_leak = if o.sample_bytes > 0.0 {
        axes.raw_points >= MIN_SAMPLED_LEAK_POINTS
    } else {
        enough_points
    };
    // Stopped: flat for longer than it took to rise (see `flat_and_rise`), short of the
    // pace, and either short of it by more than the noise a steady climb of `expected`
    // would have, or risen early and clearly and not climbing since by more than noise
    // at rest explains (a cache filled within the window's first part, whose thirds'
    // growth may not even show the rise, its estimate wandering as its samples turn
    // over).
    let climb_noise = noise.model(middle, late, expected);
    let flat_long_enough = flat_time > 1.2 * rise_span && enough_points;
    let short_of_pace = recent_growth < 0.5 * expected;
    let stopped = flat_long_enough
        && short_of_pace
        && (expected - recent_growth > STOP_SIGMAS * climb_noise
            || (rise > 1.5 * STOP_SIGMAS * noise.between(first, late)
                && recent_growth <= CLIMB_SIGMAS * at_rest));
    let verdict = if grew
        && significant_up
        && still_climbing
        && !stopped
        && enough_for_leak
        && !one_step(&v, high - low, noise.point_sigma)
    {
        Verdict::Leak
    } else if grew && stopped {
        // Grew beyond noise and has stopped: a cache or pool that filled up.
        Verdict::Plateau
    } else if mk.p_decreasing < o.alpha
        && growth <= -min_growth
        && -growth > GREW_SIGMAS * noise.between(early, late)
        && rates().0 < -o.min_rate
    {
        Verdict::Shrinking
    } else if grew {
        // Grew beyond noise, but neither a sure leak nor surely stopped: worth watching.
        Verdict::Growing
    } else {
        Verdict::Stable
    };
    let score = match verdict {
        Verdict::Leak | Verdict::Growing => {
            let (rate, recent_rate) = rates();
            recent_rate.max(rate).max(mean_rate) * (1.0 - mk.p_increasing.min(1.0))
        }
        _ => live_bytes,
    };
    // Not asked for and not needed: the mean rate stands in (old bytes' rates are not
    // shown).
    let (rate, recent_rate) = computed.get().copied().unwrap_or((mean_rate, mean_rate));
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
        old_verdict: None,
    }
}

/// Whether a site's rise is one step: a leak piles up allocation after allocation,
/// while a table that doubled once or a buffer taken once rises between two snapshots.
/// However recent the step (all the growth is then in the last third, and no flat
/// stretch is yet as long as the rise), that is no leak. One step: a rise over two
/// neighbouring intervals (a step inside a bucket of averaged points spreads over two)
/// holding [`ONE_STEP_SHARE`] of the rise from the lowest point to the highest
/// (`range`, of the raw points: averaged `values` may only hold less), and standing out
/// of the points' own noise (`sigma`, [`point_noise`]) by [`STEP_SIGMAS`], so that
/// noise alone, whose extremes may span most of a slow leak's range, is no step.
fn one_step(values: &[f64], range: f64, sigma: f64) -> bool {
    let span = if values.len() >= 3 { 2 } else { 1 };
    let largest = values
        .windows(span + 1)
        .map(|w| w[span] - w[0])
        .fold(0.0f64, f64::max);
    largest >= ONE_STEP_SHARE * range && largest > STEP_SIGMAS * sigma
}

#[cfg(test)]
mod tests;
