//! leakwatch's cached DWARF unwinder against `backtrace` (libgcc) in a crate built
//! without frame pointers: the same frames, captured in the same function, at several
//! depths, through inlined, closure and generic frames, on several threads; and exact
//! mode's stacks all come from the cached unwinder (no slow captures).

use leakwatch::LeakWatch;
use std::hint::black_box;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// Both unwinders' frames from here up (`None` when the cached one fell back).
#[inline(never)]
fn both() -> (Option<Vec<u64>>, Vec<u64>) {
    let (mut fast, mut slow) = ([0u64; 200], [0u64; 200]);
    let (n, m) = leakwatch::__capture_both_unwinders(&mut fast, &mut slow);
    (n.map(|n| fast[..n].to_vec()), slow[..m].to_vec())
}

#[inline(always)]
fn inlined(depth: u32) -> (Option<Vec<u64>>, Vec<u64>) {
    let r = recurse(depth);
    black_box(depth);
    r
}

#[inline(never)]
fn generic<T: Copy + Into<u64>>(depth: u32, tag: T) -> (Option<Vec<u64>>, Vec<u64>) {
    let mut extra = [tag.into(); 9]; // a frame with a stack array: an rsp-relative CFA
    black_box(&mut extra);
    let r = inlined(depth);
    black_box(extra[depth as usize % 9]);
    r
}

#[inline(never)]
fn recurse(depth: u32) -> (Option<Vec<u64>>, Vec<u64>) {
    if depth == 0 {
        return both();
    }
    let run = |d: u32| match d % 3 {
        0 => generic(d - 1, d as u8),
        1 => generic(d - 1, d as u16),
        _ => recurse(d - 1),
    };
    let r = black_box(run)(depth);
    black_box(depth);
    r
}

fn assert_same(depth: u32) {
    // Twice: rules computed, then cached.
    for round in 0..2 {
        let (fast, slow) = recurse(depth);
        let fast = fast.unwrap_or_else(|| panic!("depth {depth}: the cached unwinder fell back"));
        assert!(
            slow.len() > depth as usize,
            "depth {depth}: backtrace saw only {slow:x?}"
        );
        assert_eq!(fast, slow, "depth {depth}, round {round}");
    }
}

#[test]
fn the_cached_unwinder_gives_backtraces_frames() {
    for depth in [0, 1, 2, 3, 7, 24, 100] {
        assert_same(depth);
    }
}

#[test]
fn on_other_threads_too() {
    let threads: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                for depth in [i, i * 5, 40 - i] {
                    assert_same(depth);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[inline(never)]
fn keep_at(depth: u32, kept: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        kept.push(vec![1u8; 64]);
        return;
    }
    keep_at(depth - 1, kept);
    black_box(depth);
}

#[test]
fn exact_mode_stacks_come_from_the_cached_unwinder() {
    let mut kept = Vec::new();
    let result = leakwatch::check(|| {
        for depth in 0..30 {
            keep_at(depth, &mut kept);
        }
    })
    .run();
    assert!(result.leaks().count() > 0, "{result:#?}");
    let snapshot = leakwatch::snapshot();
    assert_eq!(snapshot.unwinder, leakwatch::Unwinder::CachedDwarf);
    assert!(
        snapshot.tracker.unwind_rules_computed > 0,
        "{:?}",
        snapshot.tracker
    );
    assert_eq!(snapshot.tracker.slow_captures, 0, "{:?}", snapshot.warnings);
    assert!(
        snapshot.warnings.iter().any(|w| w.contains("cached rules")),
        "{:?}",
        snapshot.warnings
    );
    drop(kept);
}
