//! Peak memory of the retained-growth workload under leakwatch (`off`, `sampled`,
//! `exact`), with the tracker's own memory per tracked block; or, with `snapshot-cost`,
//! the time one snapshot takes with 16,384 live sites; or, with `recorder-cost [SECONDS]`,
//! the CPU a recorder at its defaults uses with 10,000 live sites.
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
        "exact" | "snapshot-cost" | "recorder-cost" => {
            leakwatch::set_sample_rate(1);
            leakwatch::enable();
        }
        other => {
            eprintln!(
                "memory_leakwatch: unknown mode {other:?} (off|sampled|exact|snapshot-cost|recorder-cost)"
            );
            return ExitCode::from(2);
        }
    }
    if mode == "recorder-cost" {
        let seconds = match std::env::args().nth(2).map(|s| s.parse::<u64>()) {
            None => 60,
            Some(Ok(s)) if s > 0 => s,
            Some(_) => {
                eprintln!("memory_leakwatch: recorder-cost takes a number of seconds");
                return ExitCode::from(2);
            }
        };
        println!(
            "{}",
            leakwatch_benches::memory::recorder_cost(10_000, seconds)
        );
        return ExitCode::SUCCESS;
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
