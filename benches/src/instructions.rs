//! The allocator benches' workloads, run once for counting instructions under callgrind
//! (`benches/instructions.sh`): `instructions_system WORKLOAD OPS` and
//! `instructions_leakwatch MODE WORKLOAD OPS` run `OPS` operations of one workload and
//! exit. Counted at two sizes, the difference divided by the difference in operations is
//! the marginal cost of one operation, start-up and exit cancelled.
//!
//! - `w1`: `OPS` alloc+free pairs of 16 to 256 bytes, [`DEPTH`] frames
//!   below `main` (the criterion `churn` group's loop, in one call).
//! - `w2`: `OPS` blocks kept from 50 sites, then all freed (`retained_growth`, sized).
//! - `w3`: `w1` on two threads at once, `OPS` pairs on each (`two_threads_churn`).

use crate::{DEPTH, at_depth, churn, retained_blocks, two_threads_churn};
use std::hint::black_box;
use std::process::ExitCode;

/// One of the allocator benches' workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Alloc+free pairs at depth, one thread.
    W1,
    /// Blocks retained from 50 sites, then freed.
    W2,
    /// Alloc+free pairs at depth, two threads.
    W3,
}

impl Workload {
    /// The workload named `name` (`w1`, `w2`, `w3`).
    pub fn parse(name: &str) -> Option<Workload> {
        match name {
            "w1" | "W1" => Some(Workload::W1),
            "w2" | "W2" => Some(Workload::W2),
            "w3" | "W3" => Some(Workload::W3),
            _ => None,
        }
    }

    /// Runs `ops` operations: pairs (W1), blocks (W2) or pairs on each thread (W3).
    pub fn run(self, ops: u64) {
        match self {
            Workload::W1 => at_depth(DEPTH, &mut || churn(ops)),
            Workload::W2 => {
                let blocks = usize::try_from(ops).unwrap_or(usize::MAX);
                drop(black_box(retained_blocks(blocks)));
            }
            Workload::W3 => {
                black_box(two_threads_churn(ops));
            }
        }
    }
}

/// Most operations a run takes (W2 keeps one block of up to 256 bytes per operation).
pub const MAX_OPS: u64 = 100_000_000;

/// Parses `WORKLOAD OPS` from `args` and runs it; `program` and `usage` name the binary
/// and its arguments in the one-line error (exit 2) for bad input.
pub fn run_from_args(program: &str, usage: &str, args: &[String]) -> ExitCode {
    let (workload, ops) = match args {
        [workload, ops] => (workload, ops),
        _ => return bad_input(program, usage, "expected a workload and an operation count"),
    };
    let Some(workload) = Workload::parse(workload) else {
        return bad_input(program, usage, &format!("unknown workload {workload:?}"));
    };
    let ops = match ops.parse::<u64>() {
        Ok(n) if (1..=MAX_OPS).contains(&n) => n,
        _ => {
            return bad_input(
                program,
                usage,
                &format!("operation count {ops:?} is not a number from 1 to {MAX_OPS}"),
            );
        }
    };
    workload.run(ops);
    ExitCode::SUCCESS
}

/// Prints `program: what (usage: program usage)` and returns exit code 2.
pub fn bad_input(program: &str, usage: &str, what: &str) -> ExitCode {
    eprintln!("{program}: {what} (usage: {program} {usage})");
    ExitCode::from(2)
}
