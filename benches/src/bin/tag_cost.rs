//! What tags cost (issue 11): the memory of an interned tag set, and what a tag adds to
//! a tracked allocation (the sampled path: exact mode, so every allocation takes it).
//!
//! ```sh
//! cargo build --release -p leakwatch-benches --bin tag_cost
//! target/release/tag_cost            # prints two lines
//! ```
//!
//! `sets`: interns 1,000 distinct sets of two tags (`model`, `tenant`) and reads the
//! tracker's memory before and after. `tracked`: 200,000 alloc+free pairs of 64 bytes,
//! all tracked (exact mode), untagged then under a tag set, five rounds each,
//! alternating, and the fastest round of each: the difference is what the tag's marker
//! frame costs a sample (its push onto the stack, one more frame to hash and compare).
use leakwatch::{LeakWatch, TagSet};
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

const PAIRS: u32 = 200_000;

#[inline(never)]
fn pairs(n: u32) {
    for _ in 0..n {
        let v: Vec<u8> = Vec::with_capacity(black_box(64));
        black_box(&v);
    }
}

fn round() -> f64 {
    let started = Instant::now();
    pairs(PAIRS);
    started.elapsed().as_nanos() as f64 / f64::from(PAIRS)
}

fn main() {
    leakwatch::set_sample_rate(1);
    assert!(leakwatch::enable(), "leakwatch is not installed");

    // The values first, so that only the sets change the tracker's memory.
    let tenants: Vec<String> = (0..1000).map(|i| format!("tenant-{i}")).collect();
    let model = TagSet::none().with("model", "2");
    let before = leakwatch::snapshot().tracker;
    for tenant in &tenants {
        black_box(model.with("tenant", tenant));
    }
    let after = leakwatch::snapshot().tracker;
    println!(
        "sets: {} interned, tracker memory +{} bytes: {:.0} bytes per set of 2 tags",
        after.tag_sets - before.tag_sets,
        after.memory_bytes - before.memory_bytes,
        (after.memory_bytes - before.memory_bytes) as f64
            / f64::from((after.tag_sets - before.tag_sets).max(1))
    );

    let tags = TagSet::none()
        .with("model", "2")
        .with("route", "/v1/generate");
    pairs(PAIRS); // warm up: sites interned, tables grown
    {
        let _tags = tags.enter();
        pairs(PAIRS);
    }
    let (mut untagged, mut tagged) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        untagged = untagged.min(round());
        let _tags = tags.enter();
        tagged = tagged.min(round());
    }
    println!(
        "tracked: {untagged:.1} ns per pair untagged, {tagged:.1} ns tagged: {:+.1} ns ({:+.1}%) per tracked allocation",
        tagged - untagged,
        (tagged / untagged - 1.0) * 100.0
    );
}
