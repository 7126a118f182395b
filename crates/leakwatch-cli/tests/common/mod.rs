//! What the command-line tests share: running the built `leakwatch`. Scratch directories
//! come from `leakwatch_testsupport::temp_dir`.

use std::process::{Command, Output};

/// Runs the `leakwatch` binary built for these tests with `args`.
pub fn leakwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(args)
        .output()
        .expect("run leakwatch")
}
