//! What live bytes by age cost a snapshot (issue 11): the block table's walk
//! (`snapshot::ages`). Exact mode; the median of 11 snapshots with a few live blocks,
//! then with `N` more live blocks of 64 bytes from one site (default 1,000,000): the
//! difference is the walk over `N` blocks (the rest of a snapshot depends on the sites,
//! which do not change).
//!
//! ```sh
//! cargo build --release -p leakwatch-benches --bin age_cost
//! target/release/age_cost 1000000
//! ```
use leakwatch::LeakWatch;
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

fn median_snapshot_ms() -> f64 {
    let mut times: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            black_box(leakwatch::snapshot());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[inline(never)]
fn keep(n: usize) -> Vec<Vec<u8>> {
    let kept: Vec<Vec<u8>> = (0..n).map(|_| vec![1u8; 64]).collect();
    black_box(kept)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    leakwatch::set_sample_rate(1);
    assert!(leakwatch::enable(), "leakwatch is not installed");
    let few = median_snapshot_ms();
    let kept = keep(n);
    let many = median_snapshot_ms();
    let snapshot = leakwatch::snapshot();
    println!(
        "{} tracked blocks: snapshot {few:.2} ms with a few, {many:.2} ms with {n} more: {:.1} ns a block",
        snapshot.tracker.tracked_blocks,
        (many - few) * 1e6 / n as f64
    );
    drop(kept);
}
