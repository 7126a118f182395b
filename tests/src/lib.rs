//! Shared helpers for leakwatch's integration tests: a tiny sequential test runner
//! (our test binaries install their own global allocator and run without libtest's
//! threads), lookups of sites by the functions in their stacks, a fork helper, and the
//! concurrency torture test (`torture`).

#[expect(unsafe_code)]
mod process;
#[expect(unsafe_code)]
pub mod torture;
pub use process::in_forked_child;

use leakwatch::{Snapshot, Symbol, Symbolizer};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs each named test in order, prints `test NAME ... ok|FAILED` and a closing
/// `N passed, N failed` line, and exits non-zero if any failed.
pub fn run(tests: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match catch_unwind(AssertUnwindSafe(test)) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// What the sites whose stacks pass through one function add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Number of distinct sites.
    pub sites: usize,
    /// Live bytes summed over those sites.
    pub live_bytes: u64,
    /// Live blocks summed over those sites.
    pub live_blocks: f64,
    /// Allocated bytes summed over those sites.
    pub alloc_bytes: u64,
    /// Allocated blocks summed over those sites.
    pub alloc_blocks: f64,
}

/// Sums the sites whose first frame inside this test crate is the function named
/// `function` (the path's last segment). Frames of std, alloc and leakwatch are skipped.
pub fn totals_for(snapshot: &Snapshot, symbolizer: &mut Symbolizer, function: &str) -> Totals {
    let mut totals = Totals::default();
    for site in sites_of(snapshot, symbolizer, function) {
        totals.sites += 1;
        totals.live_bytes += site.live_bytes;
        totals.live_blocks += site.live_blocks;
        totals.alloc_bytes += site.alloc_bytes;
        totals.alloc_blocks += site.alloc_blocks;
    }
    totals
}

/// The sites whose first frame inside this test crate is the function named `function`.
fn sites_of<'a>(
    snapshot: &'a Snapshot,
    symbolizer: &mut Symbolizer,
    function: &str,
) -> Vec<&'a leakwatch::SiteStats> {
    snapshot
        .sites
        .iter()
        .zip(stacks_of(snapshot, symbolizer))
        .filter(|(_, stack)| {
            stack
                .iter()
                .filter(|s| !is_runtime_frame(s))
                .find_map(|s| s.function.as_deref())
                .is_some_and(|f| last_segment(f) == function)
        })
        .map(|(site, _)| site)
        .collect()
}

/// The symbolized stack of every site of `snapshot` (inlined frames expanded), in one
/// batch: a batch maps and parses the binary's debug info, so one per site would cost
/// that per site.
pub fn stacks_of(snapshot: &Snapshot, symbolizer: &mut Symbolizer) -> Vec<Vec<Symbol>> {
    let all: Vec<u64> = snapshot
        .sites
        .iter()
        .flat_map(|s| s.frames.iter().copied())
        .collect();
    let mut frames = symbolizer.symbolize_many(&all).into_iter();
    snapshot
        .sites
        .iter()
        .map(|s| frames.by_ref().take(s.frames.len()).flatten().collect())
        .collect()
}

/// Freed bytes and "old" freed bytes ([`leakwatch::SiteStats::freed_old_bytes`]) summed
/// over the sites [`totals_for`] would sum.
pub fn freed_for(snapshot: &Snapshot, symbolizer: &mut Symbolizer, function: &str) -> (u64, u64) {
    sites_of(snapshot, symbolizer, function)
        .into_iter()
        .fold((0, 0), |(freed, old), site| {
            (freed + site.freed_bytes, old + site.freed_old_bytes)
        })
}

/// [`leakwatch::SiteStats::freed_old_age_sq`] summed over the sites [`totals_for`] would
/// sum.
pub fn old_age_sq_for(snapshot: &Snapshot, symbolizer: &mut Symbolizer, function: &str) -> u64 {
    sites_of(snapshot, symbolizer, function)
        .into_iter()
        .fold(0u64, |sum, site| sum.wrapping_add(site.freed_old_age_sq))
}

/// Frames that belong to the allocator machinery rather than to the code under test:
/// std/core/alloc (by their `/rustc/` sources or names), leakwatch's own crates, and the
/// `__rust_alloc` shims. Inlined frames carry short names, so files are checked too.
pub fn is_runtime_frame(symbol: &Symbol) -> bool {
    const FILES: [&str; 3] = ["/rustc/", "crates/leakwatch-alloc/", "crates/leakwatch/"];
    const NAMES: [&str; 10] = [
        "std::",
        "core::",
        "alloc::",
        "leakwatch",
        "<leakwatch",
        "__rust",
        "__rdl",
        "<alloc::",
        "<std::",
        "<core::",
    ];
    let file = symbol.file.as_deref().unwrap_or("");
    let function = symbol.function.as_deref().unwrap_or("");
    FILES.iter().any(|f| file.contains(f)) || NAMES.iter().any(|p| function.starts_with(p))
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// The message of the panic `f` raises (a failed leak check's), or empty; panics if `f`
/// does not.
pub fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .expect_err("the check should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A synthetic exact-mode snapshot at `t_seconds` (after a fixed epoch) with one site,
/// its only frame `frame`, holding `live` bytes in blocks of 1,000 bytes; the process
/// holds the same and has made 100 allocations a second.
pub fn snapshot_at(t_seconds: u64, frame: u64, live: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.timestamp_ms = 1_800_000_000_000 + t_seconds * 1000;
    s.epoch = t_seconds + 1;
    s.pid = 1;
    s.mode = leakwatch::Mode::Exact;
    s.sample_rate = 1;
    let mut site = leakwatch::SiteStats::default();
    site.id = 1;
    site.frames = vec![frame];
    site.live_bytes = live;
    site.alloc_bytes = live;
    site.live_blocks = (live / 1000) as f64;
    site.alloc_blocks = site.live_blocks;
    s.sites = vec![site];
    s.process.live_bytes = live as i64;
    s.process.allocs = t_seconds * 100;
    s.process.alloc_bytes = live;
    s
}
