//! leakwatch finds memory leaks in long-running services: a tracking global allocator
//! that attributes live heap bytes to call sites, cheaply enough to leave on in staging.
//!
//! This is the crate a service adds. Today it re-exports the allocator
//! ([`leakwatch_alloc`]); growth ranking, reports and test assertions will live here too.
//!
//! # Quick start
//! ```
//! #[global_allocator]
//! static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();
//!
//! leakwatch::enable(); // or run with LEAKWATCH=1
//! let snapshot = leakwatch::snapshot();
//! println!("{} bytes live", snapshot.process.live_bytes);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use leakwatch_alloc::*;

/// Growth ranking and renderers (the `leakwatch-report` crate).
pub use leakwatch_report as report;
