//! The concurrency torture test (`leakwatch_tests::torture`) in sampled mode, at
//! R = 16 KiB so that the workers' sites hold hundreds of samples. Estimates cannot be
//! exact; the run must not hang or crash, no counter may go negative, the estimate of
//! the live bytes must lie within five standard deviations of the truth, and every site
//! must return to exactly zero once everything is freed (a free subtracts the weight
//! its allocation added).
//!
//! A forked child once hung here (4 of 20 runs): its snapshot waited on the dynamic
//! loader's lock, inherited held from a parent thread that was inside `dl_iterate_phdr`
//! (another snapshot) at the fork. The fork handlers now hold the tracker's loader lock
//! across `fork` (`os::LOADER`); `fork_snapshot.rs` reproduces the hang at once.

use leakwatch::LeakWatch;
use leakwatch_tests::run;
use leakwatch_tests::torture;
use std::time::Instant;

const RATE: u32 = 16 * 1024;

leakwatch_tests::torture_sites!();

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().sample_rate(RATE);

fn sampled_estimates_are_plausible() {
    let duration = torture::duration();
    let started = Instant::now();
    let outcome = torture::run(duration, SITES);
    println!(
        "torture, sampled: {:.1} s; {outcome:?}",
        started.elapsed().as_secs_f64()
    );
    let truth: u64 = outcome.sites.iter().map(|s| s.0).sum();
    let estimate: u64 = outcome.sites.iter().map(|s| s.1).sum();
    // A block of s bytes is sampled with p = 1 - exp(-s/R), independently of the others,
    // and then weighs s/p: its variance s^2 (1-p)/p is at most R s, since
    // (1-p)/p = 1/(exp(s/R) - 1) <= R/s. Summed, Var(estimate) <= R x truth; scope
    // blocks are exact and only make it smaller.
    let sd = (f64::from(RATE) * truth as f64).sqrt();
    let off = (estimate as f64 - truth as f64).abs();
    assert!(
        off <= 5.0 * sd,
        "estimate {estimate} vs truth {truth}: {:.1} standard deviations ({sd:.0} B); {outcome:?}",
        off / sd
    );
    outcome.assert_complete(duration);
}

fn main() {
    run(&[(
        "sampled_estimates_are_plausible",
        sampled_estimates_are_plausible,
    )]);
}
