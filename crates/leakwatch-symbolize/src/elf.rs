//! One module file's part of a batch: its DWARF (`dwarf.rs`: only the units that hold
//! the asked addresses) and its ELF symbol table (the machine functions' full paths),
//! both read from a memory map and dropped with it.

use crate::Symbol;
use crate::dwarf::{self, Found};
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable};

/// The frames of every address of `addresses` (return addresses, runtime), in order, from
/// the module file `bytes` loaded with bias `base`. `release` is called whenever the
/// pages read so far may leave the resident set (the bytes stay readable).
///
/// # Errors
/// When `bytes` is not an object file `object` can read, or its unit headers (or
/// `.debug_aranges`, or a unit's root DIE) are malformed.
/// Also returns the process's resident set size measured after the lookups, before the
/// symbol table is dropped.
pub(crate) fn resolve(
    bytes: &[u8],
    base: u64,
    addresses: &[u64],
    release: &mut dyn FnMut(),
) -> Result<(Vec<Vec<Symbol>>, Option<u64>), String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an object file: {e}"))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<dwarf::Reader<'_>, gimli::Error> {
        Ok(gimli::EndianSlice::new(section(&file, id.name()), endian))
    };
    let sections = gimli::Dwarf::load(load).map_err(|e| format!("bad DWARF: {e}"))?;
    let symbols = FunctionSymbols::read(&file);
    release();
    // A return address points after the call; the call itself is one byte earlier.
    let probes: Vec<Option<u64>> = addresses
        .iter()
        .map(|&address| address.saturating_sub(1).checked_sub(base))
        .collect();
    let asked: Vec<u64> = probes.iter().flatten().copied().collect();
    let found =
        dwarf::find_frames(&sections, &asked, release).map_err(|e| format!("bad DWARF: {e}"))?;
    let mut found = found.into_iter();
    let frames = addresses
        .iter()
        .zip(&probes)
        .map(|(&address, probe)| match probe {
            Some(probe) => frames(
                found.next().unwrap_or(Found::Error),
                &symbols,
                address,
                *probe,
            ),
            None => vec![crate::unknown(address)],
        })
        .collect();
    Ok((frames, crate::map::resident_bytes()))
}

/// The data of the section named `name`, empty when it is absent, has no bytes in the
/// file (a debug file's `.text`) or is compressed (this crate reads no compressed
/// sections; such a file symbolizes by its symbol table alone).
fn section<'data>(file: &object::File<'data>, name: &str) -> &'data [u8] {
    let Some(section) = file.section_by_name(name) else {
        return &[];
    };
    let compressed = section
        .compressed_file_range()
        .is_ok_and(|r| r.format != object::CompressionFormat::None);
    if compressed {
        return &[];
    }
    section.data().unwrap_or(&[])
}

/// The frames of one return address from what its DWARF gave: inlined frames innermost
/// first, then the function that holds them, which carries the symbol table's name in
/// `symbol` (and lends it to frames without a name).
fn frames(
    found: Found,
    symbols: &FunctionSymbols<'_, '_>,
    address: u64,
    probe: u64,
) -> Vec<Symbol> {
    let symbol = symbols.name_at(probe);
    let mut out: Vec<Symbol> = match found {
        Found::Frames(frames) => frames
            .into_iter()
            .map(|f| {
                let function = match f.name {
                    Some(name) => Some(demangle(&name)),
                    None => symbol.clone(),
                };
                crate::symbol(address, function, f.file, f.line, true, None)
            })
            .collect(),
        // Unreadable DWARF for this address: the symbol table alone.
        Found::Error => Vec::new(),
    };
    match out.last_mut() {
        Some(last) => {
            last.inlined = false;
            last.symbol = symbol;
        }
        None => out.push(crate::symbol(
            address,
            symbol.clone(),
            None,
            None,
            false,
            symbol,
        )),
    }
    out
}

/// A name demangled without its hash suffix (names that are not Rust-mangled unchanged).
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The defined function symbols of a file (its `.symtab`, else its `.dynsym`), sorted
/// by address: 24 bytes each, for one batch.
struct FunctionSymbols<'data, 'file> {
    table: Option<object::SymbolTable<'data, 'file>>,
    /// `(file address, size, index)`, sorted by address, then larger first.
    symbols: Vec<(u64, u64, object::SymbolIndex)>,
}

impl<'data, 'file> FunctionSymbols<'data, 'file> {
    fn read(file: &'file object::File<'data>) -> Self {
        for table in [file.symbol_table(), file.dynamic_symbol_table()]
            .into_iter()
            .flatten()
        {
            let mut symbols: Vec<_> = table
                .symbols()
                .filter(|s| {
                    s.kind() == object::SymbolKind::Text
                        && s.is_definition()
                        && s.name().is_ok_and(|n| !n.is_empty())
                })
                .map(|s| (s.address(), s.size(), s.index()))
                .collect();
            if !symbols.is_empty() {
                symbols
                    .sort_unstable_by_key(|&(address, size, _)| (address, std::cmp::Reverse(size)));
                return FunctionSymbols {
                    table: Some(table),
                    symbols,
                };
            }
        }
        FunctionSymbols {
            table: None,
            symbols: Vec::new(),
        }
    }

    /// The demangled name of the function symbol that holds file address `at`: the last
    /// one starting at or below it that contains it (a zero size: up to the next one).
    fn name_at(&self, at: u64) -> Option<String> {
        let after = self.symbols.partition_point(|&(start, ..)| start <= at);
        let (start, size, index) = *self.symbols.get(after.checked_sub(1)?)?;
        let next = self.symbols.get(after).map_or(u64::MAX, |s| s.0);
        let contains = if size == 0 {
            at < next
        } else {
            at - start < size
        };
        if !contains {
            return None;
        }
        let symbol = self.table.as_ref()?.symbol_by_index(index).ok()?;
        Some(demangle(symbol.name().ok()?))
    }
}
