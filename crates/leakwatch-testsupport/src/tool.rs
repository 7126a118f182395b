//! External programs that some tests drive, and whether they are there.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The path of the executable `name` (a bare name looked up in `PATH`, or a path with a
/// `/` checked as it is), or `None` when there is none.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|path| executable(path))
}

/// Whether the tests run in CI: the variable `CI` is set to anything but empty, `0` or
/// `false` (`.ci/run` sets `CI=true`). There, a missing tool fails a test.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether the test that needs `name` can go on: true when `name` is on `PATH`. When it
/// is not, panics under [`in_ci`] (a test that drives a tool must run in CI), and
/// otherwise prints `SKIPPED: NAME not found (INSTALL)` straight to standard error (past
/// libtest's capture, so the skip shows) and returns false: the caller returns and
/// passes.
///
/// # Panics
///
/// When `name` is missing and [`in_ci`] holds.
pub fn require(name: &str, install: &str) -> bool {
    if on_path(name).is_some() {
        return true;
    }
    assert!(
        !in_ci(),
        "{name} not found, and CI is set: install it ({install})"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {name} not found ({install}) ***\n"
    );
    false
}
