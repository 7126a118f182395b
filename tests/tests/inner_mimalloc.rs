//! Any inner allocator: leakwatch wrapping mimalloc tracks exactly, keeps alignments,
//! survives fork, and returns every site to zero.

use leakwatch::{LeakWatch, Mode, Symbolizer};
use leakwatch_tests::{in_forked_child, run, totals_for};
use std::alloc::{Layout, alloc, dealloc};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch<mimalloc::MiMalloc> = LeakWatch::new(mimalloc::MiMalloc).enabled().exact();

#[inline(never)]
fn aligned_blocks() -> Vec<(usize, Layout)> {
    let mut kept = Vec::with_capacity(64);
    for align in [8usize, 16, 64, 256, 4096] {
        for size in [1usize, 24, 4000, 70_000] {
            let layout = Layout::from_size_align(size, align).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: non-zero size.
            let ptr = unsafe { alloc(layout) };
            assert!(!ptr.is_null() && ptr as usize % align == 0, "align {align}");
            kept.push((ptr as usize, layout));
        }
    }
    kept
}

/// Vectors grown element by element (reallocations through mimalloc).
#[inline(never)]
fn grown_vecs() -> Vec<Vec<u32>> {
    let mut all = Vec::with_capacity(100);
    for i in 0..100 {
        let mut v = Vec::new();
        for x in 0..1000 + i {
            v.push(x);
        }
        all.push(v);
    }
    all
}

fn exact_over_mimalloc() {
    assert_eq!(leakwatch::mode(), Mode::Exact);
    let mut symbolizer = Symbolizer::new();
    let blocks = std::thread::scope(|s| {
        let a = s.spawn(aligned_blocks);
        let b = s.spawn(aligned_blocks);
        let mut all = a.join().unwrap();
        all.extend(b.join().unwrap());
        all
    });
    let vecs = grown_vecs();
    let snapshot = leakwatch::snapshot();
    let t = totals_for(&snapshot, &mut symbolizer, "aligned_blocks");
    // 20 blocks per thread, plus the list that holds them: one list survives (the other
    // was emptied into it and freed), with room for 64 (address, layout) pairs.
    let per_thread: u64 = 5 * (1 + 24 + 4000 + 70_000);
    let list = 64 * size_of::<(usize, Layout)>() as u64;
    assert_eq!(
        (t.live_bytes, t.live_blocks),
        (2 * per_thread + list, 41.0),
        "{t:?}"
    );
    let t = totals_for(&snapshot, &mut symbolizer, "grown_vecs");
    let vec_bytes: u64 =
        vecs.iter().map(|v| 4 * v.capacity() as u64).sum::<u64>() + 24 * vecs.capacity() as u64;
    assert_eq!(t.live_bytes, vec_bytes, "{t:?}");

    for (ptr, layout) in blocks {
        #[allow(unsafe_code)]
        // SAFETY: each block is live with this layout and freed once.
        unsafe {
            dealloc(ptr as *mut u8, layout)
        };
    }
    drop(black_box(vecs));
    let snapshot = leakwatch::snapshot();
    assert_eq!(
        totals_for(&snapshot, &mut symbolizer, "aligned_blocks").live_bytes,
        0
    );
    assert_eq!(
        totals_for(&snapshot, &mut symbolizer, "grown_vecs").live_bytes,
        0
    );
}

fn fork_over_mimalloc() {
    for _ in 0..5 {
        in_forked_child(Duration::from_secs(20), || {
            let kept = black_box(vec![3u8; 12_345]);
            let snapshot = leakwatch::snapshot();
            snapshot
                .sites
                .iter()
                .any(|s| s.live_bytes == kept.len() as u64)
        });
    }
}

fn main() {
    run(&[
        ("exact_over_mimalloc", exact_over_mimalloc),
        ("fork_over_mimalloc", fork_over_mimalloc),
    ]);
}
