//! What the command-line tests share: running the built `leakwatch` and a scratch
//! directory per test.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `leakwatch` binary built for these tests with `args`.
pub fn leakwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(args)
        .output()
        .expect("run leakwatch")
}

/// A fresh scratch directory for one test (`name`), in this process's own space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leakwatch-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
