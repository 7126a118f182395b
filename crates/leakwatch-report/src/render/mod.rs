//! Renderers: a [`Report`](crate::Report) or a snapshot turned into something to read or
//! to feed another tool.
//!
//! - [`text`]: a terminal table of the top sites, readable in 100 columns.
//! - JSON: [`Report::to_json`](crate::Report::to_json) (documented in docs/report-format.md).
//! - [`pprof`]: gzipped protobuf profiles for `go tool pprof`, Pyroscope, Parca.
//! - [`prometheus`]: the text exposition format, bounded to the top sites.
//! - [`flamegraph`]: an SVG flame graph of live bytes by stack.
//! - [`html`]: one self-contained page with charts, the ranking and the flame graph.

pub mod flamegraph;
pub mod html;
pub mod pprof;
pub mod prometheus;
pub mod text;
