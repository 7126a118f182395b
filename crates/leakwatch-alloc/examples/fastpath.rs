//! The unsampled fast path, for counting instructions: `N` alloc+free pairs of 64 bytes
//! in sampled mode at the largest rate (so no pair is sampled; frees still publish their
//! batch every 256 KiB). Run it at two sizes under callgrind and take the difference:
//!
//! ```sh
//! cargo build --release -p leakwatch-alloc --example fastpath
//! for n in 1000000 11000000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/fastpath $n 2>&1 | grep refs
//! done   # (refs at 11M - refs at 1M) / 10M = instructions per pair
//! ```
use leakwatch_alloc::LeakWatch;
use std::hint::black_box;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    leakwatch_alloc::set_sample_rate(u32::MAX);
    assert!(leakwatch_alloc::enable(), "leakwatch is not installed");
    for _ in 0..n {
        let v: Vec<u8> = Vec::with_capacity(black_box(64));
        black_box(&v);
    }
    let snapshot = leakwatch_alloc::snapshot();
    assert!(snapshot.process.allocs >= n);
    println!("{} pairs, {} sites", n, snapshot.sites.len());
}
