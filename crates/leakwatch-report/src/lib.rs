//! Snapshots in, ranked growing call sites out.
//!
//! A [`Series`] holds live bytes per site over a sequence of snapshots; [`rank`] turns
//! it into a [`Ranking`]: a growth rate, trend significance and [`Verdict`] per site,
//! leaks first. Everything here is a pure function of the snapshots.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod rank;
pub mod series;
pub mod stats;

pub use rank::{RankOptions, Ranking, SiteTrend, Verdict, rank};
pub use series::Series;
