//! The concurrency torture test (`leakwatch_tests::torture`) in exact mode: threads
//! allocating, reallocating and freeing at every alignment up to 4096, scopes, snapshots,
//! thread churn and a fork every second, for 60 s in release builds (5 s in debug).
//! Afterwards every worker's site holds exactly the bytes the test says are live, and
//! nothing once everything is freed.

use leakwatch::LeakWatch;
use leakwatch_tests::run;
use leakwatch_tests::torture;
use std::time::Instant;

leakwatch_tests::torture_sites!();

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

fn exact_totals_equal_the_truth() {
    let duration = torture::duration();
    let started = Instant::now();
    let outcome = torture::run(duration, SITES);
    println!(
        "torture, exact: {:.1} s; {outcome:?}",
        started.elapsed().as_secs_f64()
    );
    for (slot, &(truth, tracked)) in outcome.sites.iter().enumerate() {
        assert!(truth > 0, "site_{slot} kept nothing: {outcome:?}");
        assert_eq!(tracked, truth, "site_{slot}: {outcome:?}");
    }
    outcome.assert_complete(duration);
}

fn main() {
    run(&[("exact_totals_equal_the_truth", exact_totals_equal_the_truth)]);
}
