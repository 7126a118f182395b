//! The ranking benchmark's history: 10,000 sites x 600 points (ten minutes at one
//! snapshot a second), shared by the `report_rank` criterion bench (time) and the
//! `rank_instructions` program (instructions, counted by callgrind).
use leakwatch_report::{RankOptions, Series, Verdict, rank};

/// `sites` sites over `points` snapshots a second apart: a quarter each leaking at
/// 1 KB/s, filling a cache, sawtoothing, flat with noise.
pub fn series(sites: u32, points: u64) -> Series<u32> {
    let mut s = Series::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..points {
        let t = i as f64;
        let values: Vec<(u32, f64)> = (0..sites)
            .map(|k| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x >> 11) as f64 / (1u64 << 53) as f64;
                let shape = match k % 4 {
                    0 => 1e6 + 1000.0 * t,                // leak: 1 KB/s
                    1 => 1e6 * (1.0 - (-t / 60.0).exp()), // cache
                    2 => 1e5 * (t % 20.0),                // sawtooth
                    _ => 5e5,                             // stable
                };
                (k, shape + 1e4 * noise)
            })
            .collect();
        s.push(i * 1000, 0.0, values);
    }
    s
}

/// The same sites with live bytes by age: each site's old bytes (blocks that lived
/// through `OLD` snapshots), so every growing site is also ranked on its old bytes.
/// A leak's blocks are never freed: its old bytes are its live bytes `OLD` points late.
/// The cache's entries live for good once in; the sawtooth's die within 20 s, so only
/// those older than `OLD` count; the flat site's blocks are old.
pub fn with_ages(mut s: Series<u32>) -> Series<u32> {
    const OLD: usize = 8;
    let aged = s
        .sites
        .iter()
        .map(|(&k, live)| {
            let old = (0..live.len())
                .map(|i| match k % 4 {
                    0 | 1 => i.checked_sub(OLD).map_or(0.0, |j| live[j]),
                    2 => (live[i] - 1e5 * OLD as f64).max(0.0),
                    _ => live[i],
                })
                .collect();
            (k, old)
        })
        .collect();
    s.aged = aged;
    s
}

/// Panics unless the 2,500 leaks rank first, all `leak`, and the 2,500 caches are `plateau`.
pub fn check(s: &Series<u32>, options: &RankOptions) {
    let ranking = rank(s, options);
    let count = |v: Verdict| ranking.sites.iter().filter(|t| t.verdict == v).count();
    assert!(
        ranking.sites[..2_500]
            .iter()
            .all(|t| t.verdict == Verdict::Leak && t.key % 4 == 0)
    );
    assert_eq!(count(Verdict::Leak), 2_500);
    assert_eq!(count(Verdict::Plateau), 2_500);
}

/// How many leaks' old bytes are themselves a `leak`.
pub fn old_leaks(s: &Series<u32>, options: &RankOptions) -> usize {
    rank(s, options)
        .sites
        .iter()
        .filter(|t| t.key % 4 == 0 && t.old_verdict == Some(Verdict::Leak))
        .count()
}
