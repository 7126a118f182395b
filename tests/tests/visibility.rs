//! Every live thread is in every snapshot (exact mode): a thread that allocated and now
//! waits (on a channel, a barrier, a join) still has its counts batched, unpublished;
//! the very next snapshot must show them anyway, for its sites and the process totals,
//! exactly, with many threads, reallocations, thread exit and fork.

use leakwatch::{LeakWatch, Symbolizer};
use leakwatch_tests::{in_forked_child, is_runtime_frame, run, totals_for};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

#[inline(never)]
fn leak_2k() -> Vec<u8> {
    black_box(Vec::with_capacity(2048))
}

/// A worker that leaks 2 KiB at `leak_2k`, says so, and waits until told to finish.
fn waiting_leaker() -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let kept = leak_2k();
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        drop(kept);
    });
    ready_rx.recv().unwrap();
    (done_tx, worker)
}

fn a_waiting_threads_small_leak_is_in_the_next_snapshot() {
    let mut symbolizer = Symbolizer::new();
    let before = leakwatch::snapshot();
    let (done, worker) = waiting_leaker();
    let snap = leakwatch::snapshot();
    done.send(()).unwrap();
    worker.join().unwrap();
    let t = totals_for(&snap, &mut symbolizer, "leak_2k");
    assert_eq!((t.live_bytes, t.live_blocks), (2048, 1.0), "{t:?}");
    let grew = snap.process.live_bytes - before.process.live_bytes;
    assert!(grew >= 2048, "process live bytes grew by {grew} only");
    // Once the worker exited and freed it, it is gone.
    let after = leakwatch::snapshot();
    assert_eq!(totals_for(&after, &mut symbolizer, "leak_2k").live_bytes, 0);
}

const THREADS: usize = 16;
const KEPT: usize = 100;
const RESIZED: usize = 10;

#[inline(never)]
fn many_keep() -> Vec<Vec<u8>> {
    let mut kept = Vec::with_capacity(KEPT);
    for _ in 0..KEPT {
        kept.push(Vec::with_capacity(100));
    }
    kept
}

#[inline(never)]
fn many_resize(kept: &mut [Vec<u8>]) {
    for v in kept.iter_mut().take(RESIZED) {
        v.reserve_exact(300); // a realloc from 100 to 300 bytes
    }
}

#[inline(never)]
fn many_churn() {
    for i in 0..1000 {
        black_box(Vec::<u8>::with_capacity(16 + i % 100));
    }
}

fn many_threads_are_exact_while_they_wait_and_after_they_exit() {
    let mut symbolizer = Symbolizer::new();
    let start = Arc::new(Barrier::new(THREADS + 1));
    let finish = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (start, finish) = (Arc::clone(&start), Arc::clone(&finish));
            thread::spawn(move || {
                let mut kept = many_keep();
                many_resize(&mut kept);
                many_churn();
                start.wait();
                finish.wait();
                // Free every other block, then exit holding the rest (they are leaked
                // on purpose, so the exit flush must publish the frees and keep the rest).
                let mut i = 0;
                kept.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                std::mem::forget(kept);
            })
        })
        .collect();
    start.wait();
    let waiting = leakwatch::snapshot();
    let keep = totals_for(&waiting, &mut symbolizer, "many_keep");
    let resize = totals_for(&waiting, &mut symbolizer, "many_resize");
    let churn = totals_for(&waiting, &mut symbolizer, "many_churn");
    finish.wait();
    for w in workers {
        w.join().unwrap();
    }
    let n = THREADS as u64;
    // many_keep: the 100-byte blocks (and the Vec of Vecs holding them, 100 x 24 bytes).
    let spine = KEPT as u64 * 24;
    assert_eq!(
        keep.live_bytes,
        n * ((KEPT - RESIZED) as u64 * 100 + spine),
        "{keep:?}"
    );
    assert_eq!(
        keep.alloc_blocks,
        (n * (KEPT as u64 + 1)) as f64,
        "{keep:?}"
    );
    assert_eq!(resize.live_bytes, n * RESIZED as u64 * 300, "{resize:?}");
    assert_eq!(churn.live_bytes, 0, "{churn:?}");
    assert_eq!(churn.alloc_blocks, (n * 1000) as f64, "{churn:?}");

    let exited = leakwatch::snapshot();
    let keep = totals_for(&exited, &mut symbolizer, "many_keep");
    let resize = totals_for(&exited, &mut symbolizer, "many_resize");
    // Every other block was freed: of each thread's first ten (resized, odd indexes
    // kept), five stay; of the other ninety, forty-five.
    assert_eq!(
        keep.live_bytes,
        n * ((KEPT - RESIZED) as u64 / 2 * 100 + spine),
        "{keep:?}"
    );
    assert_eq!(
        resize.live_bytes,
        n * RESIZED as u64 / 2 * 300,
        "{resize:?}"
    );
    assert_eq!(exited.overflow.site_table_full_samples, 0);
}

fn a_forked_child_sees_the_other_threads_counts() {
    let (done, worker) = waiting_leaker();
    in_forked_child(Duration::from_secs(20), || {
        // The worker does not exist here; its pending 2 KiB (allocated before fork, in
        // memory the child has) must have been published into the child's tables.
        let mut symbolizer = Symbolizer::new();
        let snap = leakwatch::snapshot();
        let t = totals_for(&snap, &mut symbolizer, "leak_2k");
        // New threads reuse the freed slots and exit cleanly.
        let joined = (0..8)
            .map(|_| thread::spawn(|| black_box(vec![0u8; 100]).len()))
            .map(|h| h.join().unwrap_or(0))
            .sum::<usize>();
        let again = leakwatch::snapshot();
        let t2 = totals_for(&again, &mut symbolizer, "leak_2k");
        // Only the forking thread kept its registry slot.
        snap.tracker.threads == 1 && t.live_bytes == 2048 && t2.live_bytes == 2048 && joined == 800
    });
    done.send(()).unwrap();
    worker.join().unwrap();
}

/// Stress workers' blocks: allocations begun and done, frees begun and done.
static ALLOCS_BEGUN: AtomicU64 = AtomicU64::new(0);
static ALLOCS_DONE: AtomicU64 = AtomicU64::new(0);
static FREES_BEGUN: AtomicU64 = AtomicU64::new(0);
static FREES_DONE: AtomicU64 = AtomicU64::new(0);

const BLOCK: usize = 4096;

/// Allocates a 4 KiB block `depth` frames below the caller: each depth is its own site
/// (so 12 depths overflow the 8-slot site batch and most blocks make a move), and every
/// 64 blocks fill a 256 KiB batch of process counts (another move).
#[inline(never)]
fn stress_keep(depth: u32, kept: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        ALLOCS_BEGUN.fetch_add(1, SeqCst);
        kept.push(Vec::with_capacity(BLOCK));
        ALLOCS_DONE.fetch_add(1, SeqCst);
    } else {
        stress_keep(depth - 1, kept);
        black_box(depth);
    }
}

/// Whether a site's first frame outside the runtime is `stress_keep`.
fn is_stress(symbolizer: &mut Symbolizer, site: &leakwatch::SiteStats) -> bool {
    symbolizer
        .symbolize_stack(&site.frames)
        .into_iter()
        .filter(|s| !is_runtime_frame(s))
        .find_map(|s| s.function)
        .is_some_and(|f| f.rsplit("::").next() == Some("stress_keep"))
}

/// Snapshots taken while short-lived threads allocate, free, publish (moves) and exit:
/// each must count exactly the blocks allocated (and freed) by some moment during the
/// `snapshot()` call: at least those done before it began, at most those begun before
/// it returned. A move counted twice, or missed, breaks that.
fn snapshots_racing_moves_and_exits_are_exact() {
    const WORKERS: usize = 6;
    const ROUNDS: usize = 40;
    const DEPTHS: u32 = 12;
    const SNAPSHOTS: usize = 1000;
    const MAX_WAVES: usize = 5000;
    let seen = Arc::new(AtomicUsize::new(0));
    let reader = {
        let seen = Arc::clone(&seen);
        thread::spawn(move || {
            let mut symbolizer = Symbolizer::new();
            let mut stress: HashMap<u32, bool> = HashMap::new();
            let mut unread = 0;
            while seen.load(Relaxed) < SNAPSHOTS {
                let (allocs_done, frees_done) = (ALLOCS_DONE.load(SeqCst), FREES_DONE.load(SeqCst));
                let snap = leakwatch::snapshot();
                let (allocs_begun, frees_begun) =
                    (ALLOCS_BEGUN.load(SeqCst), FREES_BEGUN.load(SeqCst));
                let (mut allocs, mut frees) = (0.0, 0.0);
                for site in &snap.sites {
                    let ours = *stress
                        .entry(site.id)
                        .or_insert_with(|| is_stress(&mut symbolizer, site));
                    if ours {
                        allocs += site.alloc_blocks;
                        frees += site.freed_blocks;
                    }
                }
                seen.fetch_add(1, Relaxed);
                if snap.overflow.unread_threads > 0 {
                    // Said so in its warnings: a thread could not wait for this one.
                    unread += 1;
                    continue;
                }
                assert!(
                    allocs_done as f64 <= allocs && allocs <= allocs_begun as f64,
                    "{allocs} blocks allocated, not in [{allocs_done}, {allocs_begun}]"
                );
                assert!(
                    frees_done as f64 <= frees && frees <= frees_begun as f64,
                    "{frees} blocks freed, not in [{frees_done}, {frees_begun}]"
                );
            }
            unread
        })
    };
    // Waves of short-lived workers (each registers, moves, exits) until the reader has
    // taken its snapshots (or failed).
    let mut waves = 0;
    while seen.load(Relaxed) < SNAPSHOTS && !reader.is_finished() && waves < MAX_WAVES {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                thread::spawn(|| {
                    let mut kept = Vec::with_capacity(DEPTHS as usize);
                    for _ in 0..ROUNDS {
                        for depth in 0..DEPTHS {
                            stress_keep(depth, &mut kept);
                        }
                        while let Some(block) = kept.pop() {
                            FREES_BEGUN.fetch_add(1, SeqCst);
                            drop(block);
                            FREES_DONE.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        waves += 1;
    }
    seen.fetch_add(SNAPSHOTS, Relaxed); // stops the reader if the waves ran out first
    let unread = reader.join().unwrap();
    assert!(
        unread < SNAPSHOTS / 10,
        "{unread} snapshots could not read every thread"
    );
    let mut symbolizer = Symbolizer::new();
    let end = leakwatch::snapshot();
    let t = totals_for(&end, &mut symbolizer, "stress_keep");
    let total = (waves * WORKERS * ROUNDS) as u64 * u64::from(DEPTHS);
    assert_eq!((t.live_bytes, t.alloc_blocks), (0, total as f64), "{t:?}");
    assert_eq!(t.sites, DEPTHS as usize);
}

fn main() {
    run(&[
        (
            "a_waiting_threads_small_leak_is_in_the_next_snapshot",
            a_waiting_threads_small_leak_is_in_the_next_snapshot,
        ),
        (
            "many_threads_are_exact_while_they_wait_and_after_they_exit",
            many_threads_are_exact_while_they_wait_and_after_they_exit,
        ),
        (
            "a_forked_child_sees_the_other_threads_counts",
            a_forked_child_sees_the_other_threads_counts,
        ),
        (
            "snapshots_racing_moves_and_exits_are_exact",
            snapshots_racing_moves_and_exits_are_exact,
        ),
    ]);
}
