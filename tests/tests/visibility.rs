//! Every live thread is in every snapshot (exact mode): a thread that allocated and now
//! waits (on a channel, a barrier, a join) still has its counts batched, unpublished;
//! the very next snapshot must show them anyway, for its sites and the process totals,
//! exactly, with many threads, reallocations, thread exit and fork.

use leakwatch::{LeakWatch, Symbolizer};
use leakwatch_tests::{in_forked_child, run, totals_for};
use std::hint::black_box;
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
        t.live_bytes == 2048 && t2.live_bytes == 2048 && joined == 800
    });
    done.send(()).unwrap();
    worker.join().unwrap();
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
    ]);
}
