//! Snapshots in, ranked growing call sites out.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod stats;
