//! Fault injection: the system refuses the tracker memory (as under `ulimit -v`,
//! `vm.overcommit_memory=2` or `vm.max_map_count`), so the block table cannot grow.
//! Allocations and frees must keep working, what could not be tracked must be counted
//! and reported, and nothing may hang. Each scenario runs in a forked child with a time
//! limit, so a hang fails the test instead of hanging CI.

use leakwatch::{LeakWatch, Symbolizer};
use leakwatch_tests::{in_forked_child, run, totals_for};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

/// Longest a scenario may take; it needs well under a second when nothing hangs.
const LIMIT: Duration = Duration::from_secs(30);

/// Blocks each thread keeps while mappings are refused: far more than the shards' first
/// tables hold (64 shards of 256 slots), so every shard fills to its limit.
const KEPT_PER_THREAD: usize = 20_000;
const THREADS: usize = 4;

#[inline(never)]
fn kept_while_refused(i: usize) -> Box<[u8]> {
    black_box(vec![i as u8; 16 + i % 48].into_boxed_slice())
}

#[inline(never)]
fn churn_while_refused(i: usize) {
    black_box(vec![i as u8; 8 + i % 100]);
}

#[inline(never)]
fn kept_after_recovery(i: usize) -> Box<[u8]> {
    black_box(vec![i as u8; 32].into_boxed_slice())
}

/// Threads fill the block table while it cannot grow, then free everything, then churn
/// (frees of untracked blocks whose filter bucket is set probe the full shards).
fn frees_work_when_the_block_table_cannot_grow() {
    in_forked_child(LIMIT, || {
        // The first tables exist before the system starts refusing (a shard's table is
        // mapped at its first insert).
        let warm: Vec<Box<u64>> = (0..4096).map(Box::new).collect();
        drop(warm);
        let before = leakwatch::snapshot();
        leakwatch::__refuse_mappings_for_test(true);
        let kept: Vec<usize> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    s.spawn(move || {
                        let mut kept = Vec::with_capacity(KEPT_PER_THREAD);
                        for i in 0..KEPT_PER_THREAD {
                            kept.push(kept_while_refused(t * KEPT_PER_THREAD + i));
                        }
                        let bytes = kept.iter().map(|b| b.len()).sum::<usize>();
                        for i in 0..50_000 {
                            churn_while_refused(i);
                        }
                        drop(kept);
                        for i in 0..50_000 {
                            churn_while_refused(i);
                        }
                        bytes
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let refused = leakwatch::snapshot();
        let allocated: usize = kept.iter().sum();
        let mut symbolizer = Symbolizer::new();
        let tracked = totals_for(&refused, &mut symbolizer, "kept_while_refused");
        let untracked = refused.overflow.untracked_blocks - before.overflow.untracked_blocks;
        let ok_refused = tracked.live_bytes == 0
            && tracked.alloc_bytes > 0
            && (tracked.alloc_bytes as usize) < allocated
            && tracked.alloc_blocks as u64 + untracked >= (THREADS * KEPT_PER_THREAD) as u64
            && refused.overflow.refused_mappings > 0
            && refused.warnings.iter().any(|w| w.contains("refused"));
        if !ok_refused {
            eprintln!(
                "while refused: {tracked:?} of {allocated} bytes, {untracked} untracked, {:?}, {:?}",
                refused.overflow, refused.warnings
            );
        }
        // Memory is back: the table grows again and tracks everything.
        leakwatch::__refuse_mappings_for_test(false);
        let again: Vec<Box<[u8]>> = (0..KEPT_PER_THREAD).map(kept_after_recovery).collect();
        let recovered = leakwatch::snapshot();
        let after = totals_for(&recovered, &mut symbolizer, "kept_after_recovery");
        let ok_recovered = after.live_bytes == 32 * KEPT_PER_THREAD as u64
            && recovered.overflow.untracked_blocks == refused.overflow.untracked_blocks;
        if !ok_recovered {
            eprintln!("after recovery: {after:?}, {:?}", recovered.overflow);
        }
        drop(again);
        ok_refused && ok_recovered
    });
}

fn main() {
    run(&[(
        "frees_work_when_the_block_table_cannot_grow",
        frees_work_when_the_block_table_cannot_grow,
    )]);
}
