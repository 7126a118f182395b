//! The workloads on the bare system allocator: the baseline for every ratio.
use criterion::Criterion;

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    leakwatch_benches::register(&mut c, "system");
    c.final_summary();
}
