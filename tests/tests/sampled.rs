//! Sampled mode is unbiased: per-site live bytes and blocks, estimated from byte-weighted
//! samples, land within ±10% of the truth for sites holding at least 100 R (here each
//! holds 4,000 R or more, so ±10% is beyond 6 standard errors; the seed is fixed, so the
//! outcome is also deterministic).

use leakwatch::{LeakWatch, Mode, Symbolizer};
use leakwatch_tests::{run, totals_for};

const RATE: u32 = 16 * 1024;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().sample_rate(RATE).seed(0x5eed);

/// Boxes on purpose: each is its own 48-byte heap block.
#[allow(clippy::vec_box)]
#[inline(never)]
fn site_tiny(keep: &mut Vec<Box<[u8; 48]>>, n: usize) {
    for _ in 0..n {
        keep.push(Box::new([1; 48]));
    }
}

#[inline(never)]
fn site_page(keep: &mut Vec<Vec<u8>>, n: usize) {
    for _ in 0..n {
        keep.push(vec![2; 4096]);
    }
}

#[inline(never)]
fn site_large(keep: &mut Vec<Vec<u8>>, n: usize) {
    for _ in 0..n {
        keep.push(vec![3; 256 * 1024]);
    }
}

#[inline(never)]
fn site_mixed(keep: &mut Vec<Vec<u8>>, n: usize) -> u64 {
    let mut x = 12345u64;
    let mut total = 0;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 512 + (x % 8192) as usize;
        keep.push(vec![4; size]);
        total += size as u64;
    }
    total
}

fn within(label: &str, estimate: f64, truth: f64, tolerance: f64) {
    let error = (estimate - truth) / truth;
    println!(
        "  {label}: estimate {estimate:.0}, truth {truth:.0}, error {:+.2}%",
        error * 100.0
    );
    assert!(
        error.abs() <= tolerance,
        "{label}: estimate {estimate} vs truth {truth} ({:+.1}%)",
        error * 100.0
    );
}

fn estimates_are_within_ten_percent() {
    assert_eq!(leakwatch::mode(), Mode::Sampled);
    assert_eq!(leakwatch::sample_rate(), RATE);
    // Each site keeps 64 MiB (4,000 R) or more. Boxes: the keeping Vecs are reserved
    // up front so their own growth is not attributed to the sites.
    let mut tiny = Vec::with_capacity(1_500_000);
    let mut pages = Vec::with_capacity(16_384);
    let mut large = Vec::with_capacity(256);
    let mut mixed = Vec::with_capacity(40_000);
    site_tiny(&mut tiny, 1_500_000);
    site_page(&mut pages, 16_384);
    site_large(&mut large, 256);
    let mixed_bytes = site_mixed(&mut mixed, 40_000);

    let mut symbolizer = Symbolizer::new();
    let snapshot = leakwatch::snapshot();
    let cases = [
        ("site_tiny", 48.0 * 1_500_000.0, 1_500_000.0),
        ("site_page", 4096.0 * 16_384.0, 16_384.0),
        ("site_large", 256.0 * 1024.0 * 256.0, 256.0),
        ("site_mixed", mixed_bytes as f64, 40_000.0),
    ];
    for (function, bytes, blocks) in cases {
        let t = totals_for(&snapshot, &mut symbolizer, function);
        within(
            &format!("{function} live bytes"),
            t.live_bytes as f64,
            bytes,
            0.10,
        );
        within(
            &format!("{function} live blocks"),
            t.live_blocks,
            blocks,
            0.10,
        );
    }

    // Free every other tiny box and half the pages: the estimates follow.
    let mut i = 0;
    tiny.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    pages.truncate(8192);
    let snapshot = leakwatch::snapshot();
    let t = totals_for(&snapshot, &mut symbolizer, "site_tiny");
    within(
        "site_tiny after freeing half",
        t.live_bytes as f64,
        48.0 * 750_000.0,
        0.10,
    );
    let t = totals_for(&snapshot, &mut symbolizer, "site_page");
    within(
        "site_page after freeing half",
        t.live_bytes as f64,
        4096.0 * 8192.0,
        0.10,
    );

    // Free everything: sampled sites return exactly to zero (each free subtracts the
    // weight its allocation added).
    drop((tiny, pages, large, mixed));
    let snapshot = leakwatch::snapshot();
    for function in ["site_tiny", "site_page", "site_large", "site_mixed"] {
        assert_eq!(
            totals_for(&snapshot, &mut symbolizer, function).live_bytes,
            0,
            "{function}"
        );
    }
}

fn process_totals_count_every_allocation() {
    let before = leakwatch::snapshot().process;
    let mut kept = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        kept.push(Box::new([0u64; 4]));
    }
    let after = leakwatch::snapshot().process;
    // The snapshot itself allocates too, so the deltas are at least the workload's.
    assert!(
        after.allocs - before.allocs >= 10_000,
        "{before:?} -> {after:?}"
    );
    assert!(after.alloc_bytes - before.alloc_bytes >= 320_000);
    // 10,000 boxes of 32 bytes plus the 80,000-byte Vec holding them, plus whatever the
    // snapshot itself keeps (well under 64 KiB).
    let live_delta = after.live_bytes - before.live_bytes;
    assert!(
        (400_000..400_000 + 64 * 1024).contains(&live_delta),
        "live delta {live_delta}"
    );
    assert!(after.peak_live_bytes >= after.live_bytes);
    drop(kept);
}

fn main() {
    run(&[
        (
            "estimates_are_within_ten_percent",
            estimates_are_within_ten_percent,
        ),
        (
            "process_totals_count_every_allocation",
            process_totals_count_every_allocation,
        ),
    ]);
}
