//! Symbolization of return addresses into functions, files and lines, on demand, in
//! batches. Runs with tracking suspended, so its own allocations never become sites.
//!
//! The work is `leakwatch-symbolize`'s: each batch maps the files of the loaded modules
//! that hold its addresses, reads only the DWARF units and the symbol table those
//! addresses need, and drops them; only a bounded cache of results stays between
//! batches. Function names come from the debug info, which names inlined frames and,
//! in builds with line-tables-only debug info (`debug = 1`), every frame without its
//! module path (`{closure#0}`, `generate`); the ELF symbol table names the machine
//! function that holds an address with its full path
//! (`model_server::server::generate::{{closure}}`), kept in [`Symbol::symbol`] of the
//! address's outermost frame.

use crate::state::untracked;
pub use leakwatch_symbolize::SymbolizerStats;
use leakwatch_symbolize::{LoadedFiles, ModuleRef};
pub use leakwatch_types::Symbol;

/// Resolves addresses of this process to [`Symbol`]s, with a bounded cache (see
/// [`leakwatch_symbolize::Symbolizer`]).
#[derive(Debug, Default)]
pub struct Symbolizer {
    inner: leakwatch_symbolize::Symbolizer,
    /// The frames of the last single address asked for.
    last: Vec<Symbol>,
}

impl Symbolizer {
    /// An empty symbolizer whose cache keeps
    /// [`leakwatch_symbolize::DEFAULT_CAPACITY`] addresses.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty symbolizer whose cache keeps at most `capacity` addresses.
    pub fn with_capacity(capacity: usize) -> Self {
        Symbolizer {
            inner: leakwatch_symbolize::Symbolizer::with_capacity(capacity),
            last: Vec::new(),
        }
    }

    /// The frames for one return address (at least one, possibly without a name). A
    /// batch of one: prefer [`symbolize_many`](Self::symbolize_many) for many addresses.
    pub fn symbolize(&mut self, address: u64) -> &[Symbol] {
        let frames = self.symbolize_many(&[address]);
        untracked(|| self.last = frames.into_iter().next().unwrap_or_default());
        &self.last
    }

    /// The frames of each of `addresses`, in order, resolved in one batch.
    ///
    /// The batch runs on a thread of its own (inline if none can be spawned): the C
    /// allocator gives a new thread its own arena, so the debug info parsed and freed
    /// there is not interleaved with what the caller keeps, and trimming after the batch
    /// hands it all back. The results are copied on the calling thread.
    pub fn symbolize_many(&mut self, addresses: &[u64]) -> Vec<Vec<Symbol>> {
        untracked(|| {
            let modules = crate::os::loaded_modules();
            let refs: Vec<ModuleRef<'_>> = modules.iter().map(ModuleRef::from).collect();
            let inner = &mut self.inner;
            let apart = std::thread::scope(|scope| {
                let worker = std::thread::Builder::new()
                    .name("leakwatch-symbolize".into())
                    .spawn_scoped(scope, || {
                        untracked(|| inner.symbolize(&refs, addresses, &mut LoadedFiles))
                    });
                worker.ok().map(|w| w.join())
            });
            match apart {
                // Copied here: the worker's copies are freed with its arena's other
                // memory.
                Some(Ok(frames)) => {
                    let copies = frames.iter().map(|f| f.to_vec()).collect();
                    drop(frames);
                    leakwatch_symbolize::trim_heap();
                    copies
                }
                _ => self.inner.symbolize(&refs, addresses, &mut LoadedFiles),
            }
        })
    }

    /// The frames for a whole stack, innermost first, inlined frames expanded.
    pub fn symbolize_stack(&mut self, frames: &[u64]) -> Vec<Symbol> {
        untracked(|| self.symbolize_many(frames).into_iter().flatten().collect())
    }

    /// Number of cached addresses.
    pub fn cached(&self) -> usize {
        self.inner.stats().cached
    }

    /// What it did and holds: batches, cache size and bytes, evictions, the files
    /// mapped and the resident set's growth during a batch.
    pub fn stats(&self) -> SymbolizerStats {
        self.inner.stats()
    }

    /// Why modules could not be read (each once, at most 16).
    pub fn warnings(&self) -> &[String] {
        self.inner.warnings()
    }
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
        // The symbol table names the machine function, with its module path.
        let outer = frames
            .iter()
            .find(|s| s.address == ours.address && !s.inlined)
            .unwrap();
        assert_eq!(
            outer.symbol.as_deref(),
            Some("leakwatch_alloc::symbolize::tests::a_known_function"),
            "{frames:#?}"
        );
        assert_eq!(
            symbolizer.cached(),
            ips.iter().collect::<std::collections::HashSet<_>>().len()
        );
    }
}
