//! Ranking cost: 10,000 sites x 600 points (ten minutes at one snapshot a second),
//! without and with live bytes by age.
use criterion::{Criterion, criterion_group, criterion_main};
use leakwatch_benches::rank_series::{check, old_leaks, series, with_ages};
use leakwatch_report::{RankOptions, rank};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let s = series(10_000, 600);
    let options = RankOptions::default();
    let aged = with_ages(s.clone());
    // What is timed must also be right: the 2,500 leaks first, the caches plateau, and
    // with ages the leaks' old bytes a leak too.
    check(&s, &options);
    check(&aged, &options);
    assert_eq!(old_leaks(&aged, &options), 2_500);
    let mut group = c.benchmark_group("rank");
    group.sample_size(10);
    group.bench_function("10000_sites_x_600_points", |b| {
        b.iter(|| rank(black_box(&s), &options))
    });
    group.bench_function("10000_sites_x_600_points_with_ages", |b| {
        b.iter(|| rank(black_box(&aged), &options))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
