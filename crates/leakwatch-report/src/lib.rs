//! Snapshots in, ranked growing call sites out.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`History`]: snapshots of one process over time, live bytes per site, bounded in
//!   memory (older points thinned). Fed by leakwatch's recorder, or read back from a
//!   series file by [`Recording`] (written by [`SeriesWriter`]).
//! - [`SymbolTable`] and [`LabelRules`]: return addresses to `function (file:line)`, and
//!   which frame names a site (the first one that is not runtime code).
//! - [`rank()`](fn@rank): a pure function from a [`Series`] to a [`Ranking`]: growth rate
//!   (Theil-Sen), trend significance (Mann-Kendall) and a [`Verdict`] per site.
//! - [`Report`]: a history ranked by label, with stacks and charts; the JSON format.
//! - [`render`]: text, pprof, Prometheus, flame graph and HTML renderers; [`diff()`](fn@diff)
//!   compares two reports.
//!
//! Nothing here touches the live allocator: it sees `Snapshot` values only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod diff;
pub mod error;
pub mod history;
pub mod rank;
pub mod recording;
pub mod render;
pub mod report;
pub mod series;
pub mod stats;
pub mod symbols;

pub use diff::{Diff, SiteDiff, diff};
pub use error::{Error, Result};
pub use history::History;
pub use rank::{RankOptions, Ranking, SiteTrend, Verdict, rank, rank_windows};
pub use recording::{
    MAX_FRAMES, MAX_LINE_BYTES, MAX_SITES, MAX_SYMBOLS, MAX_WARNINGS, Recording, SeriesWriter,
};
pub use report::{
    ClockNote, FunctionReport, LabelCache, ProcessSummary, RecorderMemory, Report, ReportOptions,
    SiteReport, SymbolizerCost,
};
pub use series::{Departed, Series};
pub use symbols::{Frame, LabelRules, SymbolTable};
