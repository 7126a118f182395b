//! A small language-model service with the outage's leak in it, for leakwatch's demo.
//!
//! - [`model`]: a word-level language model with one attention layer, built at start-up
//!   from the corpus in `data/` (no downloads); each session keeps a key/value cache.
//! - [`sessions`]: the session store, bounded by bytes and idle time; `--leaky` brings
//!   back the eviction bug that, after a model update, let every new session stay.
//! - [`server`]: the HTTP endpoints (generation, model update, health, metrics, and
//!   leakwatch's reports).
//! - [`serve`]: runs the service with leakwatch's recorder.
#![forbid(unsafe_code)]

pub mod model;
pub mod serve;
pub mod server;
pub mod sessions;
