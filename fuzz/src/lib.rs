//! What the fuzz targets check, beyond "does not panic". The same checks replay the
//! checked-in corpus on stable (`crates/leakwatch-cli/tests/corpus.rs` includes
//! `checks.rs` by path).

#[allow(dead_code)]
#[path = "../../crates/leakwatch-cli/src/args.rs"]
mod args;
mod checks;

pub use checks::{check_args, check_report, check_series};
