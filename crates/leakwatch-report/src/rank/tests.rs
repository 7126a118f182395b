//! Data-driven ranking tests: synthetic series with known shapes, each with the verdict
//! it must get, and leaks ranked first.

use super::*;

const POINTS: usize = 600; // ten minutes at one snapshot a second
const MIB: f64 = 1024.0 * 1024.0;

/// A small deterministic noise source (uniform in [-1, 1]).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A site's name and its live bytes as a function of time (seconds) and noise.
type Site<'a> = (&'static str, &'a dyn Fn(f64, &mut Noise) -> f64);

/// A series of `POINTS` points one second apart with the given sites.
fn series(sites: &[Site]) -> Series<&'static str> {
    seeded_series(0x9E37_79B9_7F4A_7C15, sites)
}

fn seeded_series(seed: u64, sites: &[Site]) -> Series<&'static str> {
    let mut s = Series::new();
    let mut noise = Noise(seed);
    for i in 0..POINTS {
        let t = i as f64;
        let values: Vec<(&str, f64)> = sites
            .iter()
            .map(|(k, f)| (*k, f(t, &mut noise).max(0.0)))
            .collect();
        let total = values.iter().map(|(_, v)| v).sum();
        s.push(1_700_000_000_000 + i as u64 * 1000, total, values);
    }
    s
}

fn check(sites: &[Site], expect: &[(&str, Verdict)]) {
    let ranking = rank(&series(sites), &RankOptions::default());
    for (key, verdict) in expect {
        let site = ranking.sites.iter().find(|s| s.key == *key).unwrap();
        assert_eq!(site.verdict, *verdict, "{key}: {site:#?}");
    }
}

#[test]
fn a_steady_leak() {
    check(
        &[("leak", &|t, _| 10.0 * MIB + 50_000.0 * t)],
        &[("leak", Verdict::Leak)],
    );
}

#[test]
fn a_slow_leak_buried_in_noise() {
    // 2 KiB/s under noise of +-2 MiB: ten times the growth of a whole minute.
    check(
        &[("slow", &|t, n| {
            50.0 * MIB + 2048.0 * t + 2.0 * MIB * n.next()
        })],
        &[("slow", Verdict::Leak)],
    );
}

#[test]
fn a_step_is_a_plateau() {
    check(
        &[("step", &|t, _| if t < 250.0 { MIB } else { 40.0 * MIB })],
        &[("step", Verdict::Plateau)],
    );
}

#[test]
fn a_cache_that_fills_then_levels_off() {
    check(
        &[("cache", &|t, n| {
            64.0 * MIB * (1.0 - (-t / 60.0).exp()) + 100_000.0 * n.next()
        })],
        &[("cache", Verdict::Plateau)],
    );
}

#[test]
fn a_cache_that_fills_early_then_wanders_is_a_plateau() {
    // Fills in the first 10% of the window, then drifts a little as sampled estimates
    // of a churning cache do: no monotonic trend overall, but a clear rise that stopped.
    check(
        &[("early", &|t, n| {
            let fill = (t / 60.0).min(1.0);
            16.0 * MIB * fill - 1500.0 * (t - 60.0).max(0.0) + 200_000.0 * n.next()
        })],
        &[("early", Verdict::Plateau)],
    );
}

#[test]
fn a_sawtooth_is_stable() {
    // Allocate 1 MiB/s for 20 s, release everything, again and again.
    check(
        &[("saw", &|t, _| MIB * (t % 20.0))],
        &[("saw", Verdict::Stable)],
    );
}

#[test]
fn a_shrinking_site() {
    check(
        &[("shrink", &|t, _| 100.0 * MIB - 100_000.0 * t)],
        &[("shrink", Verdict::Shrinking)],
    );
}

#[test]
fn a_site_that_appears_late_and_leaks() {
    check(
        &[("late", &|t, _| {
            if t < 450.0 {
                0.0
            } else {
                30_000.0 * (t - 450.0)
            }
        })],
        &[("late", Verdict::Leak)],
    );
}

#[test]
fn flat_and_noisy_sites_are_stable() {
    check(
        &[
            ("flat", &|_, _| 5.0 * MIB),
            ("noisy", &|_, n| 5.0 * MIB + MIB * n.next()),
        ],
        &[("flat", Verdict::Stable), ("noisy", Verdict::Stable)],
    );
}

#[test]
fn growth_too_small_to_matter_is_not_a_leak() {
    // 10 bytes a second: below the default minimum rate.
    check(
        &[("tiny", &|t, _| 1000.0 + 10.0 * t)],
        &[("tiny", Verdict::Stable)],
    );
}

#[test]
fn a_short_young_trend_is_growing_not_leak() {
    let mut s = Series::new();
    for (i, v) in [0.0, 300_000.0, 200_000.0, 500_000.0]
        .into_iter()
        .enumerate()
    {
        s.push(i as u64 * 1000, v, [("young", v)]);
    }
    let ranking = rank(&s, &RankOptions::default());
    assert_eq!(
        ranking.sites[0].verdict,
        Verdict::Growing,
        "{:#?}",
        ranking.sites[0]
    );
}

#[test]
fn leaks_rank_first_and_time_to_limit_is_estimated() {
    let series = series(&[
        ("cache", &|t, _| 200.0 * MIB * (1.0 - (-t / 60.0).exp())),
        ("slow-leak", &|t, _| 10_000.0 * t),
        ("stable", &|_, _| 300.0 * MIB),
        ("fast-leak", &|t, _| 100_000.0 * t),
        ("saw", &|t, _| MIB * (t % 20.0)),
    ]);
    let options = RankOptions {
        limit_bytes: Some(2 << 30),
        ..RankOptions::default()
    };
    let ranking = rank(&series, &options);
    let order: Vec<&str> = ranking.sites.iter().map(|s| s.key).collect();
    assert_eq!(&order[..2], ["fast-leak", "slow-leak"], "{order:?}");
    let fast = &ranking.sites[0];
    assert!((fast.rate - 100_000.0).abs() < 1.0, "{fast:#?}");
    let headroom = (2u64 << 30) as f64 - ranking.process_live_bytes;
    let expected = headroom / fast.recent_rate;
    assert!((fast.seconds_to_limit.unwrap() - expected).abs() < 1e-6);
    let both = ranking.seconds_to_limit.unwrap();
    assert!((both - headroom / (fast.recent_rate + ranking.sites[1].recent_rate)).abs() < 1e-6);
    assert_eq!(ranking.points, POINTS);
    assert_eq!(ranking.window_seconds, (POINTS - 1) as f64);
}

#[test]
fn false_alarms_are_rare_and_slow_leaks_are_found() {
    // 200 independent noise draws (fixed seeds): how often does a flat noisy site look
    // like a leak, and how often is a slow leak under heavy noise caught? The leak grows
    // 4 KiB/s under noise of +-4 MiB (standard deviation 2.4 MiB): after ten minutes it
    // has grown by one standard deviation of the noise.
    let (mut false_leaks, mut false_plateaus, mut found) = (0, 0, 0);
    for seed in 1..=200u64 {
        let s = seeded_series(
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
            &[
                ("flat", &|_, n| 20.0 * MIB + 4.0 * MIB * n.next()),
                ("slow", &|t, n| {
                    20.0 * MIB + 4096.0 * t + 4.0 * MIB * n.next()
                }),
            ],
        );
        let ranking = rank(&s, &RankOptions::default());
        let verdict = |k: &str| ranking.sites.iter().find(|s| s.key == k).unwrap().verdict;
        false_leaks += usize::from(verdict("flat") == Verdict::Leak);
        false_plateaus += usize::from(verdict("flat") == Verdict::Plateau);
        found += usize::from(verdict("slow") == Verdict::Leak);
    }
    eprintln!("false leaks {false_leaks}, false plateaus {false_plateaus}, found {found}");
    assert!(
        false_plateaus <= 4,
        "{false_plateaus} of 200 flat sites called plateaus"
    );
    assert!(
        false_leaks <= 1,
        "{false_leaks} of 200 flat sites called leaks"
    );
    assert!(found >= 190, "only {found} of 200 slow leaks found");
}

/// A sampled site, simulated sample by sample: allocations arrive as sampled blocks of
/// weight `R` (Poisson, `rate` bytes per second), and each sample leaves with its block
/// after an exponential lifetime `lifetime` (seconds; infinite: never freed). Returns the
/// estimate at each point (every `step` seconds) and the churn (bytes allocated plus freed
/// in the window).
fn sampled_site(
    seed: u64,
    r: f64,
    points: usize,
    step: f64,
    rate: &dyn Fn(f64) -> f64,
    lifetime: &dyn Fn(f64) -> f64,
) -> (Vec<f64>, f64) {
    let mut noise = Noise(seed);
    let mut uniform = move || (noise.next() + 1.0) / 2.0;
    let mut live = 0u64;
    let mut churn = 0.0;
    let mut values = Vec::with_capacity(points);
    for i in 0..points {
        let t = i as f64 * step;
        // Departures, then arrivals, over one step.
        let leave = 1.0 - (-step / lifetime(t)).exp();
        let before = live;
        live -= (0..before).filter(|_| uniform() < leave).count() as u64;
        churn += (before - live) as f64 * r;
        let expected = rate(t) * step / r;
        // Poisson arrivals by inversion.
        let (mut k, mut p, target) = (0u64, (-expected).exp(), uniform());
        let mut cumulative = p;
        while cumulative < target && k < 10_000 {
            k += 1;
            p *= expected / k as f64;
            cumulative += p;
        }
        live += k;
        churn += k as f64 * r;
        values.push(live as f64 * r);
    }
    (values, churn)
}

fn sampled_verdict(values: Vec<f64>, churn: f64, r: f64, step: f64) -> Verdict {
    let mut s = Series::new();
    for (i, v) in values.iter().enumerate() {
        s.push((i as f64 * step * 1000.0) as u64, *v, [("site", *v)]);
    }
    s.churn.insert("site", churn);
    let options = RankOptions {
        sample_bytes: r,
        ..RankOptions::default()
    };
    rank(&s, &options).sites[0].verdict
}

#[test]
fn sampled_estimates_of_a_churning_cache_are_not_a_leak() {
    // The demo's session cache: 8 MiB held, 3.9 MiB/s allocated, each block living 2 s,
    // sampled at the default 512 KiB: about 16 samples, renewed every 2 s. Twenty
    // seconds at two snapshots a second.
    let r = 512.0 * 1024.0;
    let mut leaks = 0;
    for seed in 1..=200u64 {
        let (values, churn) = sampled_site(seed * 7919, r, 40, 0.5, &|_| 4.0 * MIB, &|_| 2.0);
        leaks += usize::from(sampled_verdict(values, churn, r, 0.5) == Verdict::Leak);
    }
    eprintln!("sampled caches called leaks: {leaks} of 200");
    assert!(leaks <= 2, "{leaks} of 200 sampled caches called leaks");
}

#[test]
fn a_single_sample_that_stays_is_not_a_leak() {
    // A site of a few small blocks, sampled at 64 KiB: one sample arrives late and stays.
    let r = 64.0 * 1024.0;
    let values: Vec<f64> = (0..60).map(|i| if i < 50 { 0.0 } else { r }).collect();
    assert_ne!(sampled_verdict(values, r, r, 0.5), Verdict::Leak);
}

#[test]
fn sampled_leaks_are_still_found() {
    // The same cache, but after 8 s nothing is freed any more: the leak of the demo.
    let r = 512.0 * 1024.0;
    let mut found = 0;
    for seed in 1..=200u64 {
        let (values, churn) = sampled_site(seed * 104_729, r, 40, 0.5, &|_| 4.0 * MIB, &|t| {
            if t < 8.0 { 2.0 } else { f64::INFINITY }
        });
        found += usize::from(sampled_verdict(values, churn, r, 0.5) == Verdict::Leak);
    }
    eprintln!("sampled leaks found: {found} of 200");
    assert!(found >= 190, "only {found} of 200 sampled leaks found");
}
