//! Every live thread is in every snapshot (sampled mode, the default rate): a 64 MiB
//! buffer allocated by a thread that then blocks is in the very next snapshot, at its
//! site and in the process totals, though the thread publishes nothing more. A thread
//! that only frees (a drop thread) batches its frees like any other thread, and they
//! too are in the next snapshot.

use leakwatch::{LeakWatch, Mode, Symbolizer};
use leakwatch_tests::{run, totals_for};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled();

const BIG: u64 = 64 << 20;

#[inline(never)]
fn alloc_64m() -> Vec<u8> {
    black_box(Vec::with_capacity(BIG as usize))
}

fn a_blocked_threads_big_buffer_is_in_the_next_snapshot() {
    let mut symbolizer = Symbolizer::new();
    let before = leakwatch::snapshot();
    assert_eq!(before.mode, Mode::Sampled);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let kept = alloc_64m();
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        drop(kept);
    });
    ready_rx.recv().unwrap();
    let snaps: Vec<_> = (0..3).map(|_| leakwatch::snapshot()).collect();
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    for snap in &snaps {
        // 64 MiB at 512 KiB is sampled with probability 1 - e^-128: weight = its size.
        let t = totals_for(snap, &mut symbolizer, "alloc_64m");
        assert_eq!(t.live_bytes, BIG, "{t:?}");
        let grew = snap.process.live_bytes - before.process.live_bytes;
        assert!(grew >= BIG as i64, "process live bytes grew by {grew} only");
    }
    let after = leakwatch::snapshot();
    assert_eq!(
        totals_for(&after, &mut symbolizer, "alloc_64m").live_bytes,
        0
    );
}

/// Waits, without allocating, until `stage` reaches `value`.
fn wait_for(stage: &AtomicU32, value: u32) {
    while stage.load(SeqCst) < value {
        thread::yield_now();
    }
}

const DROPPED: usize = 10_000;

fn a_drop_thread_batches_its_frees_and_is_in_the_next_snapshot() {
    // 10,000 blocks of 16 bytes (160,000 bytes: less than one 256 KiB batch of frees),
    // made here and freed by a thread that allocates nothing.
    let blocks: Vec<Box<[u8; 16]>> = (0..DROPPED).map(|_| Box::new([1; 16])).collect();
    let stage = Arc::new(AtomicU32::new(0));
    let dropper = {
        let stage = Arc::clone(&stage);
        thread::spawn(move || {
            wait_for(&stage, 1);
            drop(blocks);
            stage.store(2, SeqCst);
            wait_for(&stage, 3);
        })
    };
    leakwatch::flush_thread();
    let before = leakwatch::snapshot();
    let published = leakwatch::__publications_for_test();
    stage.store(1, SeqCst);
    wait_for(&stage, 2);
    // Only the dropper ran meanwhile (this thread waited without allocating).
    let publications = leakwatch::__publications_for_test() - published;
    let snap = leakwatch::snapshot();
    stage.store(3, SeqCst);
    dropper.join().unwrap();
    assert!(
        publications <= 2,
        "the drop thread published {publications} times for {DROPPED} frees"
    );
    // Its frees are batched, unpublished, and still in the snapshot.
    let frees = snap.process.frees - before.process.frees;
    let freed = snap.process.freed_bytes - before.process.freed_bytes;
    assert!(frees > DROPPED as u64, "{frees} frees seen");
    assert!(freed >= (DROPPED * 16) as u64, "{freed} bytes freed seen");
}

fn main() {
    run(&[
        (
            "a_blocked_threads_big_buffer_is_in_the_next_snapshot",
            a_blocked_threads_big_buffer_is_in_the_next_snapshot,
        ),
        (
            "a_drop_thread_batches_its_frees_and_is_in_the_next_snapshot",
            a_drop_thread_batches_its_frees_and_is_in_the_next_snapshot,
        ),
    ]);
}
