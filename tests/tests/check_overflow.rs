//! Checks whose allocations overflow the block table: every assertion fails, naming how
//! many allocations went untracked and why, since a budget met by what was tracked says
//! nothing about what was not (issue 9, item 4). The block table here holds 1,024 blocks,
//! 16 in each of its 64 shards.

use leakwatch::LeakWatch;
use leakwatch_tests::run;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().max_blocks(1024);

/// Holds `n` blocks at once, then frees them: nothing leaks.
#[inline(never)]
fn hold(n: u64) -> usize {
    let kept: Vec<Box<u64>> = (0..n).map(Box::new).collect();
    black_box(kept).len()
}

/// 2,000 blocks at once: about 31 per shard, so about 1,000 of each run's find no room.
fn overflowing() -> usize {
    hold(2000)
}

/// 100 blocks at once: all tracked (fewer than 2 per shard on average; a shard getting
/// more than 16 of them is a chance below 1e-12).
fn fitting() -> usize {
    hold(100)
}

/// The message a failing assertion panicked with (not printed: it is expected).
fn failure(f: impl FnOnce()) -> String {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    let payload = result.expect_err("the check should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The message says why and how many: at least 500 untracked in each of 55 runs.
fn assert_untracked_named(message: &str) {
    let count: u64 = message
        .strip_prefix("leakwatch: ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {message}"));
    assert!(count >= 55 * 500, "{count} untracked: {message}");
    assert!(
        message.contains("allocation(s) of the checked code could not be tracked"),
        "{message}"
    );
    assert!(message.contains("LEAKWATCH_MAX_BLOCKS"), "{message}");
}

fn the_budgets_hold_when_everything_is_tracked() {
    // The same budgets as below: what fails there fails for the overflow alone.
    leakwatch::check(fitting).assert_leaked_at_most(1 << 20);
    leakwatch::check(fitting).assert_peak_at_most(1 << 20);
    leakwatch::check(fitting).assert_allocations_at_most(10_000);
    leakwatch::check(fitting).assert_no_leaks();
    let result = leakwatch::check(fitting).run();
    assert_eq!(result.untracked, 0);
}

fn leaked_at_most_fails_when_allocations_went_untracked() {
    assert_untracked_named(&failure(|| {
        leakwatch::check(overflowing).assert_leaked_at_most(1 << 20)
    }));
}

fn peak_at_most_fails_when_allocations_went_untracked() {
    assert_untracked_named(&failure(|| {
        leakwatch::check(overflowing).assert_peak_at_most(1 << 20)
    }));
}

fn allocations_at_most_fails_when_allocations_went_untracked() {
    assert_untracked_named(&failure(|| {
        leakwatch::check(overflowing).assert_allocations_at_most(10_000)
    }));
}

fn no_leaks_fails_when_allocations_went_untracked() {
    assert_untracked_named(&failure(|| leakwatch::check(overflowing).assert_no_leaks()));
}

fn main() {
    run(&[
        (
            "the_budgets_hold_when_everything_is_tracked",
            the_budgets_hold_when_everything_is_tracked,
        ),
        (
            "leaked_at_most_fails_when_allocations_went_untracked",
            leaked_at_most_fails_when_allocations_went_untracked,
        ),
        (
            "peak_at_most_fails_when_allocations_went_untracked",
            peak_at_most_fails_when_allocations_went_untracked,
        ),
        (
            "allocations_at_most_fails_when_allocations_went_untracked",
            allocations_at_most_fails_when_allocations_went_untracked,
        ),
        (
            "no_leaks_fails_when_allocations_went_untracked",
            no_leaks_fails_when_allocations_went_untracked,
        ),
    ]);
}
