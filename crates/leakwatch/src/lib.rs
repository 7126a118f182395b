//! leakwatch finds memory leaks in long-running services: a tracking global allocator
//! that attributes live heap bytes to call sites, cheaply enough to leave on in staging,
//! and a recorder that ranks the sites whose memory keeps growing.
//!
//! This is the crate a service adds. It re-exports the allocator ([`leakwatch_alloc`])
//! and the reports ([`report`], the `leakwatch-report` crate), and adds the
//! [`Recorder`]: a background thread that snapshots the tracker every second, tells a
//! leak from a cache that fills up, raises alerts, and renders reports (text, JSON,
//! pprof, Prometheus, flame graph, HTML).
//!
//! # Quick start
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();
//!
//! fn main() {
//!     leakwatch::enable(); // or run with LEAKWATCH=1
//!     let recorder = leakwatch::Recorder::builder()
//!         .file("leakwatch-series.jsonl") // for `leakwatch report leakwatch-series.jsonl`
//!         .start()
//!         .expect("start leakwatch's recorder");
//!     // ... serve traffic; a site that turns into a leak is logged (target "leakwatch") ...
//!     println!("{}", recorder.text(10));
//! }
//! ```
//!
//! With the `axum` feature, [`http::router`] serves the reports to a service's operators
//! (`/debug/leaks`, `/debug/pprof/heap`, `/debug/pprof/allocs`), open to loopback and to
//! a bearer token, closed to other sites' pages.
//!
//! In tests, [`check()`] fails when a closure's live memory grows with the number of
//! times it runs, naming the call site; [`check_async`] does the same for a future,
//! polled on any thread of the executor you give it (see [`check`](mod@check)).
//!
//! A snapshot alone says who holds memory now:
//! ```
//! #[global_allocator]
//! static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();
//!
//! leakwatch::enable();
//! let snapshot = leakwatch::snapshot();
//! println!("{} bytes live", snapshot.process.live_bytes);
//! ```
//!
//! # Integrations
//!
//! Two cargo features fit leakwatch into the stack a service already runs:
//!
//! - `prometheus-client`: `Recorder::prometheus_collector` gives a
//!   `PrometheusCollector` for the service's own `prometheus_client` registry: its
//!   `/metrics` then carries leakwatch's families (those of [`Recorder::prometheus`], the
//!   same names, help texts and labels) beside the service's, read at every scrape.
//! - `tracing`: every alert is also a `tracing` event at `WARN` level, target
//!   `leakwatch`, beside the `log` record ([`AlertOptions::log`], [`AlertOptions::tracing`]),
//!   with the log line as its message and these fields: `site` (the label, with its
//!   tags), `function`, `file` and `line` (where known), `verdict`, `live_bytes`,
//!   `growth_bytes` (over `window_seconds`), `rate_bytes_per_second` (the recent rate of
//!   a leak) and `seconds_to_limit` (with a memory limit). It is emitted in the current
//!   span: the caller's for [`Recorder::check_alerts`], and for the background thread's
//!   checks the span that was current when the recorder started, so a subscriber sees
//!   the service's span fields on it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod check;
#[cfg(feature = "prometheus-client")]
mod collector;
mod files;
pub mod future;
#[cfg(feature = "axum")]
pub mod http;
mod limit;
mod recorder;
mod symbols;

pub use check::{check, check_async};
#[cfg(feature = "prometheus-client")]
pub use collector::PrometheusCollector;
pub use files::FileStats;
pub use future::{tagged, with_tags};
pub use leakwatch_alloc::*;
pub use leakwatch_report::RecorderMemory;
pub use limit::memory_limit;
pub use recorder::{
    AlertOptions, DEFAULT_SYMBOL_BUDGET, LeakHook, Recorder, RecorderBuilder, RecorderStats,
};

/// Growth ranking and renderers (the `leakwatch-report` crate).
pub use leakwatch_report as report;
