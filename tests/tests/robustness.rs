//! Robustness: fork while another thread is in the tracker, thread exit (including
//! allocations in thread-local destructors after leakwatch's own exit flush), the
//! tracker's own allocations, and an inner allocator that returns null.

use leakwatch::{LeakWatch, Symbolizer};
use leakwatch_tests::{in_forked_child, run, totals_for};
use std::alloc::{GlobalAlloc, Layout, System, alloc, dealloc};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The system allocator, except that requests of exactly `FAIL_SIZE` bytes fail.
struct Flaky;

static FAIL_SIZE: AtomicUsize = AtomicUsize::new(31_337);

#[allow(unsafe_code)]
// SAFETY: forwards to `System` unchanged, or returns null (always allowed) for the one
// size chosen to fail.
unsafe impl GlobalAlloc for Flaky {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == FAIL_SIZE.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() == FAIL_SIZE.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: every block came from `System` (we never allocate otherwise).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size == FAIL_SIZE.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: LeakWatch<Flaky> = LeakWatch::new(Flaky).enabled().exact();

#[inline(never)]
fn child_allocates() -> Vec<u8> {
    black_box(vec![1u8; 54_321])
}

fn fork_while_another_thread_samples() {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // In exact mode every allocation of this thread goes through the site and block
        // tables, so forks land while it holds (or is about to take) their locks.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let v: Vec<Vec<u8>> = (0..64).map(|i| vec![0u8; 16 + i]).collect();
                black_box(v);
            }
        });
        // And a thread that holds every tracker lock for a while, over and over: without
        // fork handlers a child forked in that window would inherit held locks and hang.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                leakwatch::__hold_tracker_locks_for_test(Duration::from_millis(2));
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // Stop the helper threads even if an assertion below fails, or the scope would
        // wait for them forever.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..40 {
            in_forked_child(Duration::from_secs(20), || {
                // Enough allocations to touch every block-table shard: a lock inherited
                // in the held state would hang the child here.
                let many: Vec<Box<u64>> = (0..4096).map(Box::new).collect();
                black_box(many);
                let kept = child_allocates();
                let snapshot = leakwatch::snapshot();
                snapshot
                    .sites
                    .iter()
                    .any(|s| s.live_bytes == kept.len() as u64)
            });
        }
    });
}

fn thread_exit_publishes_its_counts() {
    let before = leakwatch::snapshot().process;
    std::thread::spawn(|| {
        // 100 KiB of frees: below the 256 KiB batch, so only the exit flush publishes them.
        for _ in 0..100 {
            black_box(vec![0u8; 1000]);
        }
    })
    .join()
    .unwrap();
    let after = leakwatch::snapshot().process;
    assert!(
        after.allocs - before.allocs >= 100,
        "{before:?} -> {after:?}"
    );
    assert!(after.frees - before.frees >= 100, "{before:?} -> {after:?}");
    assert!(after.freed_bytes - before.freed_bytes >= 100_000);
}

static KEPT_AT_EXIT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        allocate_in_tls_destructor();
    }
}

#[inline(never)]
fn allocate_in_tls_destructor() {
    let kept = vec![9u8; 7_777];
    let freed = vec![8u8; 5_000];
    drop(black_box(freed));
    KEPT_AT_EXIT.lock().unwrap().push(kept);
}

thread_local! {
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

fn allocations_in_thread_local_destructors_are_tracked() {
    KEPT_AT_EXIT.lock().unwrap().reserve(64);
    let threads = 16;
    for _ in 0..threads {
        std::thread::spawn(|| {
            ON_EXIT.with(|_| {});
            black_box(vec![0u8; 10]);
        })
        .join()
        .unwrap();
    }
    let snapshot = leakwatch::snapshot();
    let t = totals_for(
        &snapshot,
        &mut Symbolizer::new(),
        "allocate_in_tls_destructor",
    );
    assert_eq!(t.live_bytes, 7_777 * threads, "{t:?}");
    assert_eq!(t.alloc_bytes, (7_777 + 5_000) * threads, "{t:?}");
    KEPT_AT_EXIT.lock().unwrap().clear();
}

#[inline(never)]
fn allocate_untracked() -> Vec<u8> {
    leakwatch::untracked(|| black_box(vec![5u8; 44_444]))
}

fn the_trackers_own_allocations_are_never_sites() {
    let before = leakwatch::snapshot().process;
    let hidden = allocate_untracked();
    // Snapshots, symbolization, a new thread (whose exit-flush registration allocates)
    // and DWARF unwinding all allocate inside leakwatch.
    leakwatch::set_unwinder(leakwatch::Unwinder::Backtrace);
    std::thread::spawn(|| black_box(vec![0u8; 3]))
        .join()
        .unwrap();
    leakwatch::set_unwinder(leakwatch::Unwinder::FramePointers);
    let mut symbolizer = Symbolizer::new();
    let snapshot = leakwatch::snapshot();
    assert_eq!(
        totals_for(&snapshot, &mut symbolizer, "allocate_untracked").sites,
        0
    );
    assert!(snapshot.sites.iter().all(|s| s.live_bytes != 44_444));
    // Untracked allocations still count in the process totals.
    assert!(snapshot.process.live_bytes - before.live_bytes >= 44_444);
    let inside = [
        "leakwatch-alloc/src/snapshot.rs",
        "leakwatch-alloc/src/symbolize.rs",
        "leakwatch-alloc/src/tracker.rs",
        "leakwatch-alloc/src/stack.rs",
    ];
    for site in &snapshot.sites {
        for symbol in symbolizer.symbolize_stack(&site.frames) {
            let file = symbol.file.unwrap_or_default();
            assert!(
                !inside.iter().any(|f| file.ends_with(f)),
                "tracker allocation tracked: {file} in site {}",
                site.id
            );
        }
    }
    drop(hidden);
}

#[inline(never)]
fn site_survives_failed_realloc() -> (usize, Layout) {
    let layout = Layout::from_size_align(100, 8).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc(layout) };
    assert!(!ptr.is_null());
    (ptr as usize, layout)
}

fn a_null_from_the_inner_allocator_passes_through() {
    let fail = FAIL_SIZE.load(Ordering::Relaxed);
    let layout = Layout::from_size_align(fail, 8).unwrap();
    let before = leakwatch::snapshot();
    // Called on the static directly: the compiler may assume `std::alloc::alloc` succeeds
    // when its result is only compared with null.
    #[allow(unsafe_code)]
    // SAFETY: non-zero size; a null result is handled.
    let (p1, p2) = unsafe { (ALLOC.alloc(layout), ALLOC.alloc_zeroed(layout)) };
    assert!(black_box(p1).is_null() && black_box(p2).is_null());
    let (ptr, old) = site_survives_failed_realloc();
    #[allow(unsafe_code)]
    // SAFETY: `ptr` is live with layout `old`; the new size is valid for its alignment.
    let moved = unsafe { ALLOC.realloc(ptr as *mut u8, old, fail) };
    assert!(
        black_box(moved).is_null(),
        "the inner allocator must fail this realloc"
    );
    let mut symbolizer = Symbolizer::new();
    let after = leakwatch::snapshot();
    assert!(after.sites.iter().all(|s| s.live_bytes != fail as u64));
    assert!(after.process.allocs - before.process.allocs >= 1);
    let t = totals_for(&after, &mut symbolizer, "site_survives_failed_realloc");
    assert_eq!(
        (t.live_bytes, t.live_blocks, t.alloc_bytes),
        (100, 1.0, 100),
        "old block still tracked"
    );
    #[allow(unsafe_code)]
    // SAFETY: the failed realloc left `ptr` live with layout `old`.
    unsafe {
        dealloc(ptr as *mut u8, old)
    };
    let t = totals_for(
        &leakwatch::snapshot(),
        &mut symbolizer,
        "site_survives_failed_realloc",
    );
    assert_eq!((t.live_bytes, t.live_blocks), (0, 0.0));
}

fn main() {
    run(&[
        (
            "fork_while_another_thread_samples",
            fork_while_another_thread_samples,
        ),
        (
            "thread_exit_publishes_its_counts",
            thread_exit_publishes_its_counts,
        ),
        (
            "allocations_in_thread_local_destructors_are_tracked",
            allocations_in_thread_local_destructors_are_tracked,
        ),
        (
            "the_trackers_own_allocations_are_never_sites",
            the_trackers_own_allocations_are_never_sites,
        ),
        (
            "a_null_from_the_inner_allocator_passes_through",
            a_null_from_the_inner_allocator_passes_through,
        ),
    ]);
}
