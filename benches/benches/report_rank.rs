//! Ranking cost: 10,000 sites x 600 points (ten minutes at one snapshot a second).
use criterion::{Criterion, criterion_group, criterion_main};
use leakwatch_report::{RankOptions, Series, Verdict, rank};
use std::hint::black_box;

fn series(sites: u32, points: u64) -> Series<u32> {
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

fn bench(c: &mut Criterion) {
    let s = series(10_000, 600);
    let options = RankOptions::default();
    // What is timed must also be right: the 2,500 leaks first, the caches plateau.
    let ranking = rank(&s, &options);
    let count = |v: Verdict| ranking.sites.iter().filter(|t| t.verdict == v).count();
    assert!(
        ranking.sites[..2_500]
            .iter()
            .all(|t| t.verdict == Verdict::Leak && t.key % 4 == 0)
    );
    assert_eq!(count(Verdict::Leak), 2_500);
    assert_eq!(count(Verdict::Plateau), 2_500);
    let mut group = c.benchmark_group("rank");
    group.sample_size(10);
    group.bench_function("10000_sites_x_600_points", |b| {
        b.iter(|| rank(black_box(&s), &options))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
