//! The workloads under leakwatch: off, sampled at the default rate, and exact; plus the
//! cost of one stack capture with each unwinder.
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
    leakwatch::disable();

    let mut group = c.benchmark_group("capture_20_frames");
    for (name, unwinder) in [("frame-pointers", Unwinder::FramePointers), ("backtrace", Unwinder::Backtrace)] {
        group.bench_function(name, |b| {
            let mut frames = [0u64; 64];
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
