//! Nothing here: the checks are in `tests/labels.rs` (one test binary, libtest's threads).
