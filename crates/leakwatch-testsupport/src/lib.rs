//! What leakwatch's tests share, in one place instead of a copy per package:
//!
//! - [`temp_dir`]: a fresh temporary directory (the `tempfile` crate's), removed when
//!   dropped, that derefs to its `Path`.
//! - [`tool`]: whether an external program (`go`, `promtool`, `valgrind`, `chromium`) is
//!   on `PATH`, and [`tool::require`], which fails the test under `CI` and otherwise
//!   prints `SKIPPED: ...` and lets it pass.
//! - [`process`]: child processes in a process group of their own, waited for a bounded
//!   time and killed, with the whole group, when late or dropped; [`process::run`]
//!   captures their output.
//!
//! The crate depends on nothing of leakwatch, so that any package of the workspace can
//! take it as a dev-dependency without a cycle. It is not published.
//!
//! # Examples
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//!
//! let dir = leakwatch_testsupport::temp_dir("example");
//! std::fs::write(dir.join("hello.txt"), "hello").unwrap();
//! if leakwatch_testsupport::tool::require("cat", "apt-get install coreutils") {
//!     let out = leakwatch_testsupport::process::run(
//!         Command::new("cat").arg(dir.join("hello.txt")),
//!         None,
//!         Duration::from_secs(10),
//!     );
//!     assert!(out.status.success());
//!     assert_eq!(out.stdout, b"hello");
//! }
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[expect(unsafe_code)]
pub mod process;
pub mod tool;

use std::ops::Deref;
use std::path::Path;

/// A temporary directory, removed with what it holds when dropped. Derefs to its path,
/// so `dir.join("file")` and `&dir` as a `&Path` work.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Keeps the directory on disk (not removed on drop), for a test that must leave its
    /// files behind to be read after a failure; returns its path.
    pub fn keep(self) -> std::path::PathBuf {
        self.0.keep()
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh, empty directory under the system's temporary directory, named
/// `leakwatch-TAG-` and a random part, so tests (and runs of one test) never share one.
///
/// # Panics
///
/// When the directory cannot be created.
pub fn temp_dir(tag: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("leakwatch-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("leakwatch-testsupport: cannot create a temp dir: {e}"));
    TempDir(dir)
}

#[cfg(test)]
mod tests;
