//! A workload on the bare system allocator, for callgrind's instruction counts: the
//! baseline `benches/instructions.sh` subtracts (see `leakwatch_benches::instructions`).
//!
//! ```sh
//! target/release/instructions_system w1 200000
//! ```
use std::process::ExitCode;

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    leakwatch_benches::instructions::run_from_args("instructions_system", "w1|w2|w3 OPS", &args)
}
