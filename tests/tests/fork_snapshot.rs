//! Fork while another thread takes a snapshot (issue 9). A snapshot lists the loaded
//! modules with `dl_iterate_phdr`, which holds the dynamic loader's lock while it runs.
//! A child forked in that moment inherits the lock held by a thread it does not have,
//! and its own snapshot would wait for it forever. The fork handlers keep the tracker's
//! own `dl_iterate_phdr` calls out of `fork` (they hold the tracker's loader lock across
//! it), so every child here must snapshot and exit.

use leakwatch::LeakWatch;
use leakwatch_tests::{in_forked_child, run};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled();

/// Forks this many times while another thread snapshots without pause.
const FORKS: usize = if cfg!(debug_assertions) { 300 } else { 1_000 };

fn children_of_a_snapshotting_process_can_snapshot() {
    let stop = AtomicBool::new(false);
    let snapshots = thread::scope(|s| {
        let snapshotter = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                let snap = leakwatch::snapshot();
                assert!(!snap.modules.is_empty(), "a snapshot lists no modules");
                n += 1;
            }
            n
        });
        // Stops the snapshot thread however this thread leaves (a hung child panics).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let stopping = Stop(&stop);
        let started = Instant::now();
        for _ in 0..FORKS {
            in_forked_child(Duration::from_secs(10), || {
                !leakwatch::snapshot().modules.is_empty()
            });
        }
        drop(stopping);
        let n = snapshotter.join().expect("snapshot thread panicked");
        println!(
            "{FORKS} forks in {:.1} s while another thread took {n} snapshots",
            started.elapsed().as_secs_f64()
        );
        n
    });
    assert!(snapshots > 0, "the snapshot thread never ran");
}

fn main() {
    run(&[(
        "children_of_a_snapshotting_process_can_snapshot",
        children_of_a_snapshotting_process_can_snapshot,
    )]);
}
