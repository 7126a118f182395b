//! Every live thread is in every snapshot (sampled mode, the default rate): a 64 MiB
//! buffer allocated by a thread that then blocks is in the very next snapshot, at its
//! site and in the process totals, though the thread publishes nothing more.

use leakwatch::{LeakWatch, Mode, Symbolizer};
use leakwatch_tests::{run, totals_for};
use std::hint::black_box;
use std::sync::mpsc;
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

fn main() {
    run(&[(
        "a_blocked_threads_big_buffer_is_in_the_next_snapshot",
        a_blocked_threads_big_buffer_is_in_the_next_snapshot,
    )]);
}
