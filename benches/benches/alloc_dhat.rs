//! The workloads under dhat-rs with its heap profiler running: the peer to beat.
use criterion::Criterion;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let profile = std::env::temp_dir().join("leakwatch-bench-dhat-heap.json");
    let _profiler = dhat::Profiler::builder().file_name(&profile).build();
    let mut c = Criterion::default().configure_from_args();
    leakwatch_benches::register(&mut c, "dhat");
    c.final_summary();
}
