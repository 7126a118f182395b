//! Snapshots in, ranked growing call sites out.
//!
//! A [`Series`] holds live bytes per site over a sequence of snapshots; [`rank`] turns
//! it into a [`Ranking`]: a growth rate, trend significance and [`Verdict`] per site,
//! leaks first. Everything here is a pure function of the snapshots.
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

pub use rank::{RankOptions, Ranking, SiteTrend, Verdict, rank};
pub use diff::{Diff, SiteDiff, diff};
pub use error::{Error, Result};
pub use history::History;
pub use recording::{Recording, SeriesWriter};
pub use report::{ProcessSummary, Report, ReportOptions, SiteReport};
pub use series::Series;
pub use symbols::{Frame, LabelRules, SymbolTable};
