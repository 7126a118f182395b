//! Exact mode equals ground truth: known workloads from several sites, with reallocs,
//! alignments up to 4096 and 8 threads; per-site live bytes and blocks are exactly what
//! the workload keeps, and every site returns to zero once everything is freed.

use leakwatch::{LeakWatch, Mode, Symbolizer};
use leakwatch_tests::{Totals, freed_for, old_age_sq_for, run, totals_for};
use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc};
use std::hint::black_box;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

const THREADS: usize = 8;

/// A block the workload keeps, with the layout to free it.
struct Kept {
    ptr: usize,
    layout: Layout,
}

/// Ground truth for one site function.
#[derive(Default, Clone, Copy, Debug)]
struct Expect {
    live_bytes: u64,
    live_blocks: u64,
    alloc_bytes: u64,
    alloc_blocks: u64,
}

fn keep(kept: &mut Vec<Kept>, ptr: *mut u8, layout: Layout) {
    assert!(!ptr.is_null());
    assert_eq!(
        ptr as usize % layout.align(),
        0,
        "alignment {} not honoured",
        layout.align()
    );
    kept.push(Kept {
        ptr: ptr as usize,
        layout,
    });
}

#[inline(never)]
fn site_small(kept: &mut Vec<Kept>, n: usize) {
    for i in 0..n {
        let layout = Layout::from_size_align(1 + i % 64, 1 << (i % 5)).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: the layout has a non-zero size; the result is checked by `keep`.
        let ptr = unsafe { alloc(layout) };
        keep(kept, ptr, layout);
    }
}

#[inline(never)]
fn site_aligned(kept: &mut Vec<Kept>) {
    for (size, align) in [
        (24, 64),
        (100, 512),
        (5000, 4096),
        (1, 4096),
        (4096, 2048),
        (70_000, 4096),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: the layout has a non-zero size; the result is checked by `keep`.
        let ptr = unsafe { alloc(layout) };
        keep(kept, ptr, layout);
    }
}

#[inline(never)]
fn site_zeroed(kept: &mut Vec<Kept>) {
    for size in [8usize, 800, 80_000] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: the layout has a non-zero size; the result is checked by `keep`.
        let ptr = unsafe { alloc_zeroed(layout) };
        keep(kept, ptr, layout);
    }
}

#[inline(never)]
fn site_origin(kept: &mut Vec<Kept>, n: usize) {
    for _ in 0..n {
        let layout = Layout::from_size_align(16, 16).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: the layout has a non-zero size; the result is checked by `keep`.
        let ptr = unsafe { alloc(layout) };
        keep(kept, ptr, layout);
    }
}

/// Reallocates every block of `kept` through a grow, a shrink and a grow again; the
/// result belongs to this site (a reallocation is a free plus an allocation here).
#[inline(never)]
fn site_resize(kept: &mut [Kept]) {
    for block in kept.iter_mut() {
        for new_size in [1000usize, 40, 3000] {
            #[allow(unsafe_code)]
            // SAFETY: `block` is live with `block.layout`; the new size is non-zero and
            // valid for its alignment.
            let ptr = unsafe { realloc(block.ptr as *mut u8, block.layout, new_size) };
            assert!(!ptr.is_null());
            block.ptr = ptr as usize;
            block.layout = Layout::from_size_align(new_size, block.layout.align()).unwrap();
        }
    }
}

#[inline(never)]
fn site_churn(n: usize) {
    for i in 0..n {
        let v: Vec<u8> = Vec::with_capacity(16 + i % 200);
        black_box(&v);
    }
}

#[inline(never)]
fn site_vec_growth(kept: &mut Vec<Vec<u64>>) {
    let mut v = Vec::new();
    for i in 0..10_000u64 {
        v.push(i); // grows by realloc: 4, 8, 16, ... 16384 elements
    }
    kept.push(v);
}

fn free_all(kept: Vec<Kept>) {
    for block in kept {
        #[allow(unsafe_code)]
        // SAFETY: every kept block is live, with the layout it was (re)allocated with,
        // and is freed exactly once here.
        unsafe {
            dealloc(block.ptr as *mut u8, block.layout)
        };
    }
}

/// What one thread keeps, by site.
struct Workload {
    small: Vec<Kept>,
    aligned: Vec<Kept>,
    zeroed: Vec<Kept>,
    resized: Vec<Kept>,
    vecs: Vec<Vec<u64>>,
}

fn run_workload() -> Workload {
    let mut w = Workload {
        small: Vec::with_capacity(2000),
        aligned: Vec::with_capacity(16),
        zeroed: Vec::with_capacity(16),
        resized: Vec::with_capacity(200),
        vecs: Vec::with_capacity(4),
    };
    site_small(&mut w.small, 2000);
    site_aligned(&mut w.aligned);
    site_zeroed(&mut w.zeroed);
    site_origin(&mut w.resized, 200);
    site_resize(&mut w.resized);
    site_churn(5000);
    site_vec_growth(&mut w.vecs);
    w
}

fn expected_per_thread() -> Vec<(&'static str, Expect)> {
    let small_bytes: u64 = (0..2000u64).map(|i| 1 + i % 64).sum();
    let aligned_bytes = 24 + 100 + 5000 + 1 + 4096 + 70_000;
    let churn_bytes: u64 = (0..5000u64).map(|i| 16 + i % 200).sum();
    // Vec<u64> growth: capacities 4, 8, ..., 16384 elements (each a realloc of the last).
    let caps: Vec<u64> =
        std::iter::successors(Some(4u64), |c| (*c < 10_000).then_some(c * 2)).collect();
    let vec_alloc_bytes: u64 = caps.iter().map(|c| c * 8).sum();
    vec![
        (
            "site_small",
            Expect {
                live_bytes: small_bytes,
                live_blocks: 2000,
                alloc_bytes: small_bytes,
                alloc_blocks: 2000,
            },
        ),
        (
            "site_aligned",
            Expect {
                live_bytes: aligned_bytes,
                live_blocks: 6,
                alloc_bytes: aligned_bytes,
                alloc_blocks: 6,
            },
        ),
        (
            "site_zeroed",
            Expect {
                live_bytes: 80_808,
                live_blocks: 3,
                alloc_bytes: 80_808,
                alloc_blocks: 3,
            },
        ),
        (
            "site_origin",
            Expect {
                live_bytes: 0,
                live_blocks: 0,
                alloc_bytes: 200 * 16,
                alloc_blocks: 200,
            },
        ),
        (
            "site_resize",
            Expect {
                live_bytes: 200 * 3000,
                live_blocks: 200,
                alloc_bytes: 200 * 4040,
                alloc_blocks: 600,
            },
        ),
        (
            "site_churn",
            Expect {
                live_bytes: 0,
                live_blocks: 0,
                alloc_bytes: churn_bytes,
                alloc_blocks: 5000,
            },
        ),
        (
            "site_vec_growth",
            Expect {
                live_bytes: caps.last().unwrap() * 8,
                live_blocks: 1,
                alloc_bytes: vec_alloc_bytes,
                alloc_blocks: caps.len() as u64,
            },
        ),
    ]
}

/// Checks every site against `live_threads` workloads still live and `alloc_threads`
/// workloads run in total.
fn check(symbolizer: &mut Symbolizer, live_threads: u64, alloc_threads: u64) {
    let snapshot = leakwatch::snapshot();
    assert_eq!(snapshot.mode, Mode::Exact);
    assert_eq!(snapshot.overflow.untracked_blocks, 0);
    assert_eq!(snapshot.overflow.replaced_entries, 0);
    for (function, per_thread) in expected_per_thread() {
        let got = totals_for(&snapshot, symbolizer, function);
        let live_bytes = per_thread.live_bytes * live_threads;
        let live_blocks = per_thread.live_blocks * live_threads;
        let want = Totals {
            sites: got.sites,
            live_bytes,
            live_blocks: live_blocks as f64,
            alloc_bytes: per_thread.alloc_bytes * alloc_threads,
            alloc_blocks: (per_thread.alloc_blocks * alloc_threads) as f64,
        };
        assert!(got.sites >= 1, "{function}: no site found");
        assert_eq!(got, want, "{function}");
    }
}

fn single_thread_matches_ground_truth() {
    let mut symbolizer = Symbolizer::new();
    let w = run_workload();
    check(&mut symbolizer, 1, 1);
    free_workload(w);
    check(&mut symbolizer, 0, 1);
}

fn free_workload(w: Workload) {
    free_all(w.small);
    free_all(w.aligned);
    free_all(w.zeroed);
    free_all(w.resized);
    drop(w.vecs);
}

fn eight_threads_match_ground_truth() {
    // Allocation totals accumulate over both tests; the single-threaded one freed its blocks.
    let mut symbolizer = Symbolizer::new();
    let workloads: Vec<Workload> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS).map(|_| s.spawn(run_workload)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    check(&mut symbolizer, THREADS as u64, 1 + THREADS as u64);
    // Free on other threads than the ones that allocated.
    std::thread::scope(|s| {
        for w in workloads {
            s.spawn(move || free_workload(w));
        }
    });
    check(&mut symbolizer, 0, 1 + THREADS as u64);
}

/// Boxes on purpose: each is its own 100-byte heap block.
#[allow(clippy::vec_box)]
#[inline(never)]
fn old_blocks(n: usize) -> Vec<Box<[u8; 100]>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Box::new([0; 100]));
    }
    v
}

/// As [`old_blocks`], from another site.
#[allow(clippy::vec_box)]
#[inline(never)]
fn young_blocks(n: usize) -> Vec<Box<[u8; 100]>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Box::new([0; 100]));
    }
    v
}

#[inline(never)]
fn old_resized(n: usize) -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Vec::with_capacity(64));
    }
    v
}

/// Takes the snapshots that make every block allocated before them old.
fn age_everything() -> leakwatch::Snapshot {
    let mut last = leakwatch::snapshot();
    for _ in 1..leakwatch::OLD_SNAPSHOTS {
        last = leakwatch::snapshot();
    }
    last
}

fn freed_old_bytes_count_only_blocks_live_at_a_snapshot() {
    let mut symbolizer = Symbolizer::new();
    // Seen at fewer snapshots than OLD_SNAPSHOTS: a young block, not a departure.
    let short = old_blocks(5);
    for _ in 1..leakwatch::OLD_SNAPSHOTS {
        let _ = leakwatch::snapshot();
    }
    drop(short);
    let none = leakwatch::snapshot();
    assert_eq!(freed_for(&none, &mut symbolizer, "old_blocks"), (540, 0));
    let old = old_blocks(50); // 50 x 100 bytes, and the 400-byte Vec holding them
    let mut resized = old_resized(10); // 10 x 64 bytes (and a 240-byte Vec)
    let first = age_everything();
    drop(old);
    for v in &mut resized {
        v.reserve_exact(1000); // realloc'd away from old_resized's site
    }
    drop(young_blocks(30)); // born and freed between two snapshots
    let second = leakwatch::snapshot();
    assert_eq!(second.epoch, first.epoch + 1);
    assert_eq!(
        freed_for(&second, &mut symbolizer, "old_blocks"),
        (540 + 5400, 5400)
    );
    assert_eq!(
        freed_for(&second, &mut symbolizer, "old_resized"),
        (640, 640)
    );
    assert_eq!(
        freed_for(&second, &mut symbolizer, "young_blocks"),
        (3240, 0)
    );
    // Each old departure adds its KiB (rounded up: 1 for these) times its age squared:
    // the 51 blocks of old_blocks and the 10 buffers realloc'd away lived 8 snapshots.
    let age_sq = u64::from(leakwatch::OLD_SNAPSHOTS).pow(2);
    let old_age_sq = old_age_sq_for;
    assert_eq!(
        old_age_sq(&second, &mut symbolizer, "old_blocks"),
        51 * age_sq
    );
    assert_eq!(
        old_age_sq(&second, &mut symbolizer, "old_resized"),
        10 * age_sq
    );
    assert_eq!(old_age_sq(&second, &mut symbolizer, "young_blocks"), 0);
    // A worker frees blocks live at a snapshot and waits: its batched frees, old ones
    // included, are in the next snapshot.
    let old = old_blocks(20);
    let _ = age_everything();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        drop(old);
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    let third = leakwatch::snapshot();
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(
        freed_for(&third, &mut symbolizer, "old_blocks"),
        (540 + 5400 + 2160, 5400 + 2160)
    );
    assert_eq!(
        old_age_sq(&third, &mut symbolizer, "old_blocks"),
        (51 + 21) * age_sq
    );
    drop(resized);
}

#[inline(never)]
fn one_per_thread() -> Vec<u8> {
    black_box(Vec::with_capacity(32))
}

fn threads_beyond_the_slots_are_counted() {
    const MANY: usize = 1100;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(MANY + 1));
    let workers: Vec<_> = (0..MANY)
        .map(|_| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let kept = one_per_thread();
                    barrier.wait(); // everyone has allocated (and registered, if it could)
                    barrier.wait(); // the snapshot is taken
                    drop(kept);
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    let crowded = leakwatch::snapshot();
    barrier.wait();
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        crowded.overflow.unregistered_threads >= (MANY - 1024) as u64,
        "{:?}",
        crowded.overflow
    );
    assert!(crowded.tracker.threads >= 1000, "{:?}", crowded.tracker);
    assert!(
        crowded.warnings.iter().any(|w| w.contains("thread slots")),
        "{:?}",
        crowded.warnings
    );
    // The workers released their slots when they exited.
    let after = leakwatch::snapshot();
    assert!(after.tracker.threads < 10, "{:?}", after.tracker);
    let mut symbolizer = Symbolizer::new();
    let t = totals_for(&after, &mut symbolizer, "one_per_thread");
    assert_eq!(
        (t.live_bytes, t.alloc_bytes),
        (0, 32 * MANY as u64),
        "{t:?}"
    );
}

fn main() {
    run(&[
        (
            "single_thread_matches_ground_truth",
            single_thread_matches_ground_truth,
        ),
        (
            "eight_threads_match_ground_truth",
            eight_threads_match_ground_truth,
        ),
        (
            "freed_old_bytes_count_only_blocks_live_at_a_snapshot",
            freed_old_bytes_count_only_blocks_live_at_a_snapshot,
        ),
        (
            "threads_beyond_the_slots_are_counted",
            threads_beyond_the_slots_are_counted,
        ),
    ]);
}
