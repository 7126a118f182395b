//! Small symbolization: return addresses to functions, files and lines, reading only
//! what the asked addresses need, and keeping only a bounded cache of results.
//!
//! A batch ([`Symbolizer::symbolize`]) groups its addresses by module, maps each
//! module's file read-only, reads its DWARF with `gimli` one compilation unit at a
//! time (each unit's root DIE to find the units that hold the asked addresses, then
//! only those units' line programs and functions, and the units their names refer to)
//! and its ELF symbol table, resolves the addresses, and drops all of it:
//! between batches the symbolizer holds only its result cache, at most
//! [`Symbolizer::with_capacity`] addresses (counted evictions beyond). Where a module's
//! file is comes from a [`Locate`]: [`LoadedFiles`] in the process, [`SymbolFiles`]
//! offline (`leakwatch report --symbols`).
//!
//! Each address gives the same frames the in-process symbolizer always gave: inlined
//! frames innermost first, then the function that holds them; names demangled without
//! the hash suffix; for a return address the call (address - 1) is looked up; the
//! outermost frame carries the ELF symbol table's name of the machine function in
//! [`Symbol::symbol`] (its full path, which line-tables-only debug info leaves out).
//!
//! ```no_run
//! use leakwatch_symbolize::{LoadedFiles, ModuleRef, Symbolizer};
//! let module = ModuleRef { path: "", base: 0x5555_0000_0000, start: 0x5555_0000_0000,
//!     end: 0x5555_0100_0000, build_id: None };
//! let mut symbolizer = Symbolizer::new();
//! let frames = symbolizer.symbolize(&[module], &[0x5555_0000_1234], &mut LoadedFiles);
//! println!("{:?}", frames[0]);
//! ```
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod dwarf;
mod elf;
mod files;
#[expect(unsafe_code)]
mod map;
#[cfg(test)]
mod tests;

pub use files::{LoadedFiles, Locate, ModuleRef, SymbolFiles, build_id};
pub use map::trim_heap;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use leakwatch_types::Symbol;

// Built field by field: `Symbol` is `#[non_exhaustive]` where it is defined for good
// (`leakwatch-types`), so no struct literal can build it from here.
pub(crate) fn symbol(
    address: u64,
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    inlined: bool,
    name: Option<String>,
) -> Symbol {
    let mut s = Symbol::default();
    s.address = address;
    s.function = function;
    s.file = file;
    s.line = line;
    s.inlined = inlined;
    s.symbol = name;
    s
}

/// The one frame of an address nothing is known of.
pub(crate) fn unknown(address: u64) -> Symbol {
    symbol(address, None, None, None, false, None)
}

/// Default number of addresses the result cache keeps.
pub const DEFAULT_CAPACITY: usize = 4096;

/// At most this many distinct warnings are kept.
const MAX_WARNINGS: usize = 16;

/// What a symbolizer did and holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SymbolizerStats {
    /// Batches run.
    pub batches: u64,
    /// Addresses asked for.
    pub lookups: u64,
    /// Of those, answered from the result cache.
    pub cache_hits: u64,
    /// Addresses resolved from module files.
    pub resolved: u64,
    /// Addresses that could not be resolved: outside every module, or their module's
    /// file missing or unreadable.
    pub unresolved: u64,
    /// Addresses in the result cache now.
    pub cached: usize,
    /// Heap bytes the result cache holds now (its entries' frames and strings, counted
    /// from their capacities, and the map's slots).
    pub cache_bytes: usize,
    /// Addresses dropped from the full result cache (oldest first).
    pub evictions: u64,
    /// Module files mapped (once per batch and module).
    pub files_mapped: u64,
    /// The largest number of file bytes mapped at once during a batch (all unmapped at
    /// its end; only the pages the lookups touch become resident).
    pub peak_mapped_bytes: u64,
    /// The largest growth of the process's resident set measured across one module of
    /// a batch (`/proc/self/statm` before mapping the file, then before each release of
    /// the mapped pages read and after the lookups): the batch's transient cost, as an
    /// upper bound (other threads' growth in the meantime counts too).
    pub peak_batch_rss_bytes: u64,
    /// Time spent in batches.
    pub time: Duration,
}

/// Resolves return addresses in batches, with a bounded result cache. See the crate
/// docs.
#[derive(Debug)]
pub struct Symbolizer {
    cache: HashMap<u64, Vec<Symbol>>,
    /// Cached addresses, oldest first.
    order: VecDeque<u64>,
    capacity: usize,
    stats: SymbolizerStats,
    warnings: Vec<String>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// A symbolizer whose cache keeps [`DEFAULT_CAPACITY`] addresses.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A symbolizer whose cache keeps at most `capacity` addresses (0: none).
    pub fn with_capacity(capacity: usize) -> Self {
        Symbolizer {
            cache: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            stats: SymbolizerStats::default(),
            warnings: Vec::new(),
        }
    }

    /// What it did and holds.
    pub fn stats(&self) -> SymbolizerStats {
        let mut stats = self.stats;
        stats.cached = self.cache.len();
        stats.cache_bytes = self.cache_bytes();
        stats
    }

    /// Why modules could not be read (each once, at most 16).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The frames of each address of `addresses` (return addresses in the process that
    /// loaded `modules`), in order: at least one frame each, without a name when
    /// nothing is known of it. Files are found with `locate`.
    pub fn symbolize(
        &mut self,
        modules: &[ModuleRef<'_>],
        addresses: &[u64],
        locate: &mut dyn Locate,
    ) -> Vec<Vec<Symbol>> {
        let started = Instant::now();
        self.stats.batches += 1;
        self.stats.lookups += addresses.len() as u64;
        let mut out: Vec<Option<Vec<Symbol>>> = addresses
            .iter()
            .map(|a| self.cache.get(a).cloned())
            .collect();
        self.stats.cache_hits += out.iter().filter(|f| f.is_some()).count() as u64;
        // The misses by module (indexes into `modules`, then into `addresses`).
        let mut by_module: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, &address) in addresses.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let call = address.saturating_sub(1);
            match modules.iter().position(|m| m.start <= call && call < m.end) {
                Some(m) => match by_module.iter_mut().find(|(k, _)| *k == m) {
                    Some((_, list)) => list.push(i),
                    None => by_module.push((m, vec![i])),
                },
                None => {
                    self.stats.unresolved += 1;
                    out[i] = Some(vec![unknown(address)]);
                }
            }
        }
        let mapped = !by_module.is_empty();
        for (m, indexes) in by_module {
            let wanted: Vec<u64> = indexes.iter().map(|&i| addresses[i]).collect();
            let frames = self.resolve_module(&modules[m], &wanted, locate);
            match frames {
                Some(frames) => {
                    self.stats.resolved += wanted.len() as u64;
                    for (i, f) in indexes.into_iter().zip(frames) {
                        out[i] = Some(f);
                    }
                }
                None => {
                    self.stats.unresolved += wanted.len() as u64;
                    for i in indexes {
                        out[i] = Some(vec![unknown(addresses[i])]);
                    }
                }
            }
        }
        let out: Vec<Vec<Symbol>> = out.into_iter().map(Option::unwrap_or_default).collect();
        if mapped {
            map::trim_heap();
        }
        for (&address, frames) in addresses.iter().zip(&out) {
            self.remember(address, frames);
        }
        self.stats.time += started.elapsed();
        out
    }

    /// Resolves `addresses`, all in `module`, from its file; `None` when the file cannot
    /// be found or read (with a warning).
    fn resolve_module(
        &mut self,
        module: &ModuleRef<'_>,
        addresses: &[u64],
        locate: &mut dyn Locate,
    ) -> Option<Vec<Vec<Symbol>>> {
        let path = match locate.locate(module) {
            Ok(path) => path,
            Err(why) => {
                self.warn(why);
                return None;
            }
        };
        let before = map::resident_bytes();
        let map = match map::MappedFile::open(&path) {
            Ok(map) => map,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return None;
            }
        };
        self.stats.files_mapped += 1;
        self.stats.peak_mapped_bytes = self.stats.peak_mapped_bytes.max(map.len() as u64);
        map.advise_random();
        // The most resident measured before each release of the pages read.
        let mut highest: Option<u64> = None;
        let mut release = || {
            if let Some(now) = map::resident_bytes() {
                highest = Some(highest.map_or(now, |h| h.max(now)));
            }
            map.release();
        };
        let frames = elf::resolve(map.bytes(), module.base, addresses, &mut release);
        drop(map);
        match frames {
            Ok((frames, after)) => {
                // Measured while the map and the parsed DWARF were live.
                let after = after.max(highest);
                if let (Some(before), Some(after)) = (before, after) {
                    self.stats.peak_batch_rss_bytes = self
                        .stats
                        .peak_batch_rss_bytes
                        .max(after.saturating_sub(before));
                }
                Some(frames)
            }
            Err(why) => {
                self.warn(format!("{}: {why}", path.display()));
                None
            }
        }
    }

    fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS && !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    /// Caches `frames`, dropping the oldest entry when full.
    fn remember(&mut self, address: u64, frames: &[Symbol]) {
        if self.capacity == 0 || self.cache.contains_key(&address) {
            return;
        }
        while self.cache.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.cache.remove(&oldest);
            self.stats.evictions += 1;
        }
        self.cache.insert(address, frames.to_vec());
        self.order.push_back(address);
    }

    fn cache_bytes(&self) -> usize {
        let strings = |s: &Symbol| {
            [&s.function, &s.file, &s.symbol]
                .into_iter()
                .map(|x| x.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
        };
        let entries: usize = self
            .cache
            .values()
            .map(|frames| {
                frames.capacity() * size_of::<Symbol>() + frames.iter().map(strings).sum::<usize>()
            })
            .sum();
        // hashbrown: one control byte and one (key, value) slot per bucket.
        let slots = self.cache.capacity() * (1 + size_of::<(u64, Vec<Symbol>)>());
        entries + slots + self.order.capacity() * size_of::<u64>()
    }
}
