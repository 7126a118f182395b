//! The workloads under leakwatch: off, sampled at the default rate, and exact; plus the
//! cost of one stack capture (24 frames) with each unwinder, exact mode's churn with
//! each DWARF unwinder, and the cost of sampling at other rates.
use criterion::Criterion;
use leakwatch::{LeakWatch, Unwinder};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

fn main() {
    let mut c = Criterion::default().configure_from_args();
    assert!(leakwatch::is_installed());

    leakwatch::disable();
    leakwatch_benches::register(&mut c, "leakwatch-off");

    leakwatch::set_sample_rate(leakwatch::DEFAULT_SAMPLE_RATE);
    leakwatch::enable();
    leakwatch_benches::register(&mut c, "leakwatch-sampled");

    leakwatch::set_sample_rate(1);
    leakwatch::enable();
    leakwatch_benches::register(&mut c, "leakwatch-exact");

    // Exact mode's churn with each DWARF unwinder, whatever the probe chose (in a build
    // without frame pointers `leakwatch-exact` above is `cached-dwarf`).
    let chosen = leakwatch::unwinder();
    let mut group = c.benchmark_group("churn_by_unwinder");
    group.throughput(criterion::Throughput::Elements(
        leakwatch_benches::CHURN_BATCH,
    ));
    for (name, unwinder) in [
        ("exact-cached-dwarf", Unwinder::CachedDwarf),
        ("exact-backtrace", Unwinder::Backtrace),
    ] {
        leakwatch::set_unwinder(unwinder);
        group.bench_function(name, |b| {
            b.iter(|| {
                leakwatch_benches::at_depth(leakwatch_benches::DEPTH, &mut || {
                    leakwatch_benches::churn(leakwatch_benches::CHURN_BATCH)
                })
            })
        });
    }
    group.finish();
    leakwatch::set_unwinder(chosen);

    // The cost of sampling more or less often (the default is 512 KiB).
    let mut group = c.benchmark_group("churn_by_sample_rate");
    group.throughput(criterion::Throughput::Elements(
        leakwatch_benches::CHURN_BATCH,
    ));
    for rate_kib in [16u32, 64, 256, 512, 2048] {
        leakwatch::set_sample_rate(rate_kib * 1024);
        group.bench_function(
            criterion::BenchmarkId::from_parameter(format!("{rate_kib}KiB")),
            |b| {
                b.iter(|| {
                    leakwatch_benches::at_depth(leakwatch_benches::DEPTH, &mut || {
                        leakwatch_benches::churn(leakwatch_benches::CHURN_BATCH)
                    })
                })
            },
        );
    }
    group.finish();
    leakwatch::disable();

    // In a build without frame pointers the frame-pointer walk is short and wrong (its
    // time is then not a capture of 24 frames).
    let mut group = c.benchmark_group("capture_24_frames");
    for (name, unwinder) in [
        ("frame-pointers", Unwinder::FramePointers),
        ("cached-dwarf", Unwinder::CachedDwarf),
        ("backtrace", Unwinder::Backtrace),
    ] {
        group.bench_function(name, |b| {
            let mut frames = [0u64; 24];
            let n = leakwatch_benches::at_depth(leakwatch_benches::DEPTH, &mut || {
                leakwatch::__capture_for_bench(unwinder, &mut frames)
            });
            assert!(
                n == 24 || unwinder == Unwinder::FramePointers,
                "{name}: {n} frames"
            );
            b.iter(|| {
                leakwatch_benches::at_depth(leakwatch_benches::DEPTH, &mut || {
                    leakwatch::__capture_for_bench(unwinder, &mut frames)
                })
            })
        });
    }
    group.finish();
    c.final_summary();
}
