//! Symbolization of return addresses into functions, files and lines, on demand, with a
//! cache. Runs with tracking suspended, so its own allocations never become sites.
//!
//! Function names come from the debug info (through `backtrace`), which names inlined
//! frames, and, in builds with line-tables-only debug info (`debug = 1`), every frame,
//! without its module path: `{closure#0}`, `generate`. The ELF symbol table names the
//! machine function that holds an address with its full path
//! (`model_server::server::generate::{{closure}}`); it is read once per process and
//! kept in [`Symbol::symbol`] of the address's outermost frame.

use crate::tracker::untracked;
use std::collections::HashMap;
use std::sync::OnceLock;

pub use leakwatch_types::Symbol;

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
    let call = address.saturating_sub(1);
    let lookup = call as usize as *mut std::ffi::c_void;
    backtrace::resolve(lookup, |symbol| {
        out.push({
            let mut frame = Symbol::default();
            frame.address = address;
            frame.function = symbol.name().map(|n| format!("{n:#}"));
            frame.file = symbol.filename().map(|p| p.display().to_string());
            frame.line = symbol.lineno();
            frame.inlined = true;
            frame.symbol = None;
            frame
        });
    });
    let symbol = symbol_name(call);
    match out.last_mut() {
        Some(last) => {
            last.inlined = false;
            last.symbol = symbol;
        }
        None => out.push({
            let mut frame = Symbol::default();
            frame.address = address;
            frame.function = symbol.clone();
            frame.file = None;
            frame.line = None;
            frame.inlined = false;
            frame.symbol = symbol;
            frame
        }),
    }
    out
}

/// The function symbols of one loaded module, sorted by address.
struct ModuleSymbols {
    /// Load bias: runtime address = file address + `base`.
    base: u64,
    /// Runtime address range of the module.
    start: u64,
    end: u64,
    /// `(file address, size, name offset, name length)` into `names`.
    symbols: Vec<(u64, u64, u32, u32)>,
    /// The mangled names, one after another.
    names: String,
}

impl ModuleSymbols {
    /// Reads the function symbols of `module` (its `.symtab`, else its `.dynsym`) from
    /// its file, reading only the ELF headers and symbol tables.
    fn read(module: &crate::Module) -> Option<ModuleSymbols> {
        use object::Object;
        let file = std::fs::File::open(&module.path).ok()?;
        let cache = object::ReadCache::new(file);
        let elf = object::read::elf::ElfFile64::<object::Endianness, _>::parse(&cache).ok()?;
        let (mut symbols, mut names) = (Vec::new(), String::new());
        add_functions(elf.symbols(), &mut symbols, &mut names);
        if symbols.is_empty() {
            add_functions(elf.dynamic_symbols(), &mut symbols, &mut names);
        }
        symbols.sort_unstable_by_key(|&(address, size, ..)| (address, std::cmp::Reverse(size)));
        Some(ModuleSymbols {
            base: module.base,
            start: module.start,
            end: module.end,
            symbols,
            names,
        })
    }

    /// The mangled name of the function that holds runtime address `address`.
    fn find(&self, address: u64) -> Option<&str> {
        let at = address.checked_sub(self.base)?;
        let after = self.symbols.partition_point(|&(start, ..)| start <= at);
        // The last symbol starting at or below `at` that contains it (a zero size: up to
        // the next symbol).
        let (start, size, offset, len) = *self.symbols.get(after.checked_sub(1)?)?;
        let next = self.symbols.get(after).map_or(u64::MAX, |s| s.0);
        let contains = if size == 0 {
            at < next
        } else {
            at - start < size
        };
        contains.then(|| self.names.get(offset as usize..(offset + len) as usize))?
    }
}

/// Appends the defined function symbols of `table` to `symbols` and their names to
/// `names`.
fn add_functions<'data>(
    table: impl Iterator<Item = impl object::ObjectSymbol<'data>>,
    symbols: &mut Vec<(u64, u64, u32, u32)>,
    names: &mut String,
) {
    for symbol in table {
        let Ok(name) = symbol.name() else { continue };
        if symbol.kind() != object::SymbolKind::Text || !symbol.is_definition() || name.is_empty() {
            continue;
        }
        let (Ok(offset), Ok(len)) = (u32::try_from(names.len()), u32::try_from(name.len())) else {
            continue;
        };
        names.push_str(name);
        symbols.push((symbol.address(), symbol.size(), offset, len));
    }
}

/// The symbol tables of the modules loaded when the first address was symbolized.
fn modules() -> &'static [ModuleSymbols] {
    static MODULES: OnceLock<Vec<ModuleSymbols>> = OnceLock::new();
    MODULES.get_or_init(|| {
        crate::os::loaded_modules()
            .iter()
            .filter_map(ModuleSymbols::read)
            .collect()
    })
}

/// The symbol-table name of the function that holds `address`, demangled without the
/// hash suffix.
fn symbol_name(address: u64) -> Option<String> {
    let module = modules()
        .iter()
        .find(|m| m.start <= address && address < m.end)?;
    let name = module.find(address)?;
    Some(format!("{:#}", rustc_demangle::demangle(name)))
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
