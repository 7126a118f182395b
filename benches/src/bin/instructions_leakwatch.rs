//! A workload under leakwatch (`off`, `sampled` at the default rate, `exact`), for
//! callgrind's instruction counts (see `leakwatch_benches::instructions` and
//! `benches/instructions.sh`). The sampling seed is fixed, so a run draws the same
//! countdowns, and samples the same allocations, every time.
//!
//! ```sh
//! target/release/instructions_leakwatch sampled w1 200000
//! ```
use leakwatch::{LeakWatch, Mode};
use leakwatch_benches::instructions::{bad_input, run_from_args};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().seed(0x1e4c_3a7c);

const PROGRAM: &str = "instructions_leakwatch";
const USAGE: &str = "off|sampled|exact w1|w2|w3 OPS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        return bad_input(
            PROGRAM,
            USAGE,
            "expected a mode, a workload and an operation count",
        );
    };
    let expected = match mode.as_str() {
        "off" => {
            leakwatch::disable();
            Mode::Off
        }
        "sampled" => {
            leakwatch::set_sample_rate(leakwatch::DEFAULT_SAMPLE_RATE);
            Mode::Sampled
        }
        "exact" => {
            leakwatch::set_sample_rate(1);
            Mode::Exact
        }
        other => return bad_input(PROGRAM, USAGE, &format!("unknown mode {other:?}")),
    };
    if expected != Mode::Off && !leakwatch::enable() {
        eprintln!("{PROGRAM}: leakwatch could not start tracking");
        return ExitCode::FAILURE;
    }
    let code = run_from_args(PROGRAM, USAGE, rest);
    // A run that did not measure the mode it was asked for must not pass for one.
    if leakwatch::mode() != expected {
        eprintln!("{PROGRAM}: ran in mode {:?}, not {mode}", leakwatch::mode());
        return ExitCode::FAILURE;
    }
    code
}
