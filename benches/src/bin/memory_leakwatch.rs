//! Peak memory of the retained-growth workload under leakwatch (`off`, `sampled`,
//! `exact`), with the tracker's own memory per tracked block; or, with `snapshot-cost`,
//! the time one snapshot takes with 16,384 live sites.
use leakwatch::LeakWatch;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "off" => leakwatch::disable(),
        "sampled" => {
            leakwatch::set_sample_rate(leakwatch::DEFAULT_SAMPLE_RATE);
            leakwatch::enable();
        }
        "exact" | "snapshot-cost" => {
            leakwatch::set_sample_rate(1);
            leakwatch::enable();
        }
        other => {
            eprintln!("memory_leakwatch: unknown mode {other:?} (off|sampled|exact|snapshot-cost)");
            return ExitCode::from(2);
        }
    }
    if mode == "snapshot-cost" {
        println!("{}", leakwatch_benches::memory::snapshot_cost());
        return ExitCode::SUCCESS;
    }
    let row = leakwatch_benches::memory::measure(&format!("leakwatch-{mode}"), || {
        let s = leakwatch::snapshot();
        Some((s.tracker.memory_bytes, s.tracker.tracked_blocks))
    });
    println!("{row}");
    ExitCode::SUCCESS
}
