//! The workloads under leakwatch: off, sampled at the default rate, and exact; plus the
//! cost of one stack capture (20 frames) with each unwinder, and the cost of sampling
//! at other rates.
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

    let mut group = c.benchmark_group("capture_20_frames");
    for (name, unwinder) in [
        ("frame-pointers", Unwinder::FramePointers),
        ("backtrace", Unwinder::Backtrace),
    ] {
        group.bench_function(name, |b| {
            let mut frames = [0u64; 20];
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
