//! Scopes opening and closing on many threads at once, with tracking off (the default
//! in `cargo test`), while other threads allocate outside any scope: every allocation
//! made inside a scope shows in that scope's counters. (Issue 9, item 1: with the open
//! count and the flag the hot path reads in two words, a close and an open could
//! interleave so that a scope stayed open while allocations skipped the tracker.)

use leakwatch::{LeakWatch, Scope};
use leakwatch_tests::run;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

// Each scope's allocation makes a site of its own (the marker frame holds the scope's
// tag): a small site table keeps `Scope::stats`, which reads every site, cheap once the
// table is full (later scope sites go to the overflow site, still counted by the scope).
#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().max_sites(64);

/// Threads opening and closing scopes.
const SCOPE_THREADS: usize = 8;
/// Rounds (open, allocate, read, close) of each scope thread: 100,000 in release builds,
/// fewer in debug ones.
const ROUNDS: usize = if cfg!(debug_assertions) {
    10_000
} else {
    100_000
};

fn scoped_allocations_are_never_lost() {
    assert_eq!(leakwatch::mode(), leakwatch::Mode::Off, "tracking is off");
    let stop = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // Two threads allocate and free outside any scope the whole time.
    let others: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    black_box(vec![n as u8; 64 + (n % 64) as usize]);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let scopes: Vec<_> = (0..SCOPE_THREADS)
        .map(|_| {
            let lost = Arc::clone(&lost);
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let scope = Scope::open().expect("a scope slot");
                    let block = {
                        let _inside = scope.handle().enter();
                        black_box(Box::new([7u8; 40]))
                    };
                    let stats = scope.stats();
                    if stats.allocs != 1 || stats.live_bytes != 40 {
                        lost.fetch_add(1, Relaxed);
                    }
                    drop(block);
                    drop(scope);
                }
            })
        })
        .collect();
    for t in scopes {
        t.join().unwrap();
    }
    stop.store(true, Relaxed);
    let outside: u64 = others.into_iter().map(|t| t.join().unwrap()).sum();
    let lost = lost.load(Relaxed);
    println!(
        "  {ROUNDS} scope rounds on each of {SCOPE_THREADS} threads, {outside} allocations outside, {lost} lost, {:?}",
        start.elapsed()
    );
    assert!(outside > 0, "the other threads ran");
    assert_eq!(
        lost, 0,
        "scoped allocations missing from their scope's stats"
    );
    // All closed: allocations outside a scope take the off path again.
    let scope = Scope::open().unwrap();
    drop(scope);
}

fn main() {
    run(&[(
        "scoped_allocations_are_never_lost",
        scoped_allocations_are_never_lost,
    )]);
}
