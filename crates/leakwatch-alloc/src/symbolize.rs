//! Symbolization of return addresses into functions, files and lines, on demand, with a
//! cache. Runs with tracking suspended, so its own allocations never become sites.

use crate::tracker::untracked;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One source-level frame. A return address can map to several: the inlined calls
/// first, innermost first, then the function that contains them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Symbol {
    /// The address this frame came from (a return address, as in `SiteStats::frames`).
    pub address: u64,
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Line in `file`.
    pub line: Option<u32>,
    /// This frame was inlined into the next one.
    pub inlined: bool,
}

/// Resolves addresses to [`Symbol`]s, caching each address.
#[derive(Debug, Default)]
pub struct Symbolizer {
    cache: HashMap<u64, Vec<Symbol>>,
}

impl Symbolizer {
    /// An empty symbolizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames for one return address (at least one, possibly without a name).
    pub fn symbolize(&mut self, address: u64) -> &[Symbol] {
        let cache = &mut self.cache;
        // The cache's own growth must not be tracked either.
        untracked(move || &**cache.entry(address).or_insert_with(|| resolve(address)))
    }

    /// The frames for a whole stack, innermost first, inlined frames expanded.
    pub fn symbolize_stack(&mut self, frames: &[u64]) -> Vec<Symbol> {
        untracked(|| {
            frames
                .iter()
                .flat_map(|&a| self.symbolize(a).to_vec())
                .collect()
        })
    }

    /// Number of cached addresses.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

fn resolve(address: u64) -> Vec<Symbol> {
    let mut out = Vec::new();
    // A return address points after the call; the call itself is one byte earlier.
    let lookup = address.saturating_sub(1) as usize as *mut std::ffi::c_void;
    backtrace::resolve(lookup, |symbol| {
        out.push(Symbol {
            address,
            function: symbol.name().map(|n| format!("{n:#}")),
            file: symbol.filename().map(|p| p.display().to_string()),
            line: symbol.lineno(),
            inlined: true,
        });
    });
    match out.last_mut() {
        Some(last) => last.inlined = false,
        None => out.push(Symbol {
            address,
            function: None,
            file: None,
            line: None,
            inlined: false,
        }),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_known_function() -> Vec<u64> {
        let mut ips = Vec::new();
        backtrace::trace(|f| {
            ips.push(f.ip() as u64);
            true
        });
        std::hint::black_box(ips)
    }

    #[test]
    fn resolves_return_addresses_to_functions_files_and_lines() {
        let ips = a_known_function();
        let mut symbolizer = Symbolizer::new();
        let frames = symbolizer.symbolize_stack(&ips);
        let ours = frames
            .iter()
            .find(|s| {
                s.function
                    .as_deref()
                    .is_some_and(|f| f.ends_with("a_known_function"))
            })
            .unwrap_or_else(|| panic!("{frames:#?}"));
        assert!(
            ours.file
                .as_deref()
                .is_some_and(|f| f.ends_with("symbolize.rs")),
            "{ours:?}"
        );
        assert!(ours.line.is_some());
        assert_eq!(
            symbolizer.cached(),
            ips.iter().collect::<std::collections::HashSet<_>>().len()
        );
    }
}
