//! Scopes: a scope counts exactly the allocations made inside it (on the threads that
//! entered it), whatever the process-wide mode (off, sampled, exact), wherever its blocks
//! are freed, and nothing else: two scopes open at once never see each other.

use leakwatch::{LeakWatch, Scope, ScopeHandle};
use leakwatch_tests::run;
use std::hint::black_box;
use std::sync::{Arc, Barrier};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

#[inline(never)]
fn allocate(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; size]).collect()
}

/// Runs `f` once with tracking off, once sampled at the default rate, once exact.
fn in_every_mode(f: fn()) {
    leakwatch::disable();
    f();
    leakwatch::set_sample_rate(leakwatch::DEFAULT_SAMPLE_RATE);
    leakwatch::enable();
    f();
    leakwatch::set_sample_rate(1);
    f();
    leakwatch::disable();
}

fn counts_exactly_what_the_scope_allocates() {
    in_every_mode(|| {
        let scope = Scope::open().unwrap();
        // Outside: not counted.
        let before = allocate(10, 100);
        let kept = {
            let _inside = scope.handle().enter();
            allocate(100, 1000)
        };
        let stats = scope.stats();
        // 100 blocks of 1000 bytes, plus the outer Vec's buffer (100 x 24 bytes).
        assert_eq!(stats.live_bytes, 100 * 1000 + 100 * 24, "{stats:?}");
        assert_eq!(stats.allocs, 101);
        let site_bytes: u64 = stats.sites.iter().map(|s| s.live_bytes).sum();
        assert_eq!(site_bytes as i64, stats.live_bytes);
        let site_blocks: f64 = stats.sites.iter().map(|s| s.live_blocks).sum();
        assert_eq!(site_blocks, 101.0);
        assert!(
            stats
                .sites
                .iter()
                .all(|s| s.scope != 0 && !s.frames.is_empty())
        );
        drop(kept);
        let stats = scope.stats();
        assert_eq!(stats.live_bytes, 0);
        assert!(stats.sites.iter().all(|s| s.live_bytes == 0));
        assert_eq!(stats.peak_bytes, 100 * 1000 + 100 * 24);
        black_box(before);
    });
}

fn frees_on_other_threads_and_reallocs_are_counted() {
    in_every_mode(|| {
        let scope = Scope::open().unwrap();
        let (mut grown, sent) = {
            let _inside = scope.handle().enter();
            let mut grown: Vec<u64> = Vec::with_capacity(4);
            for i in 0..1000 {
                grown.push(i); // reallocations inside the scope
            }
            (grown, allocate(50, 64))
        };
        // Freed by a thread that never entered the scope.
        std::thread::spawn(move || drop(sent)).join().unwrap();
        let stats = scope.stats();
        assert_eq!(stats.live_bytes, (grown.capacity() * 8) as i64, "{stats:?}");
        // Reallocated outside the scope: the old block leaves the scope, the new one is
        // not the scope's.
        grown.shrink_to_fit();
        grown.push(1);
        assert_eq!(scope.stats().live_bytes, 0);
        black_box(grown);
    });
}

fn spawned_threads_can_enter_the_parents_scope() {
    in_every_mode(|| {
        let scope = Scope::open().unwrap();
        let kept = {
            let _inside = scope.handle().enter();
            let parent = ScopeHandle::current().unwrap();
            std::thread::spawn(move || {
                let _inside = parent.enter();
                allocate(10, 500)
            })
            .join()
            .unwrap()
        };
        let stats = scope.stats();
        assert!(stats.live_bytes >= 10 * 500, "{stats:?}");
        drop(kept);
        assert!(scope.stats().live_bytes < 500);
    });
}

fn two_scopes_at_once_do_not_see_each_other() {
    in_every_mode(|| {
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [(30usize, 100usize), (7, 3000)]
            .into_iter()
            .map(|(n, size)| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let scope = Scope::open().unwrap();
                    barrier.wait();
                    let kept = {
                        let _inside = scope.handle().enter();
                        // The same function in both scopes: still two sets of sites.
                        allocate(n, size)
                    };
                    barrier.wait();
                    let stats = scope.stats();
                    drop(kept);
                    (n, size, stats)
                })
            })
            .collect();
        for t in threads {
            let (n, size, stats) = t.join().unwrap();
            assert_eq!(stats.live_bytes, (n * size + n * 24) as i64, "{stats:?}");
        }
    });
}

fn closed_scopes_stop_counting() {
    let scope = Scope::open().unwrap();
    let handle = scope.handle();
    let kept = {
        let _inside = handle.enter();
        allocate(5, 100)
    };
    drop(scope);
    assert!(!handle.is_open());
    // Entering a closed scope changes nothing; freeing its blocks is harmless.
    let _inside = handle.enter();
    assert_eq!(ScopeHandle::current(), None);
    drop(kept);
    let again = Scope::open().unwrap();
    assert_ne!(again.handle(), handle);
    assert_eq!(again.stats().live_bytes, 0);
}

fn main() {
    run(&[
        (
            "counts_exactly_what_the_scope_allocates",
            counts_exactly_what_the_scope_allocates,
        ),
        (
            "frees_on_other_threads_and_reallocs_are_counted",
            frees_on_other_threads_and_reallocs_are_counted,
        ),
        (
            "spawned_threads_can_enter_the_parents_scope",
            spawned_threads_can_enter_the_parents_scope,
        ),
        (
            "two_scopes_at_once_do_not_see_each_other",
            two_scopes_at_once_do_not_see_each_other,
        ),
        ("closed_scopes_stop_counting", closed_scopes_stop_counting),
    ]);
}
