//! One module file's part of a batch: its DWARF (through `addr2line`, parsed lazily: only
//! the units that hold the asked addresses) and its ELF symbol table (the machine
//! functions' full paths), both read from a memory map and dropped with it.

use crate::Symbol;
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable};

/// The frames of every address of `addresses` (return addresses, runtime), in order, from
/// the module file `bytes` loaded with bias `base`.
///
/// # Errors
/// When `bytes` is not an object file `object` can read, or its DWARF is malformed
/// beyond the unit headers.
/// Also returns the process's resident set size measured after the lookups, before the
/// parsed DWARF is dropped.
pub(crate) fn resolve(
    bytes: &[u8],
    base: u64,
    addresses: &[u64],
) -> Result<(Vec<Vec<Symbol>>, Option<u64>), String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an object file: {e}"))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'_, gimli::RunTimeEndian>, gimli::Error> {
        Ok(gimli::EndianSlice::new(section(&file, id.name()), endian))
    };
    let dwarf = gimli::Dwarf::load(load).map_err(|e| format!("bad DWARF: {e}"))?;
    let context = addr2line::Context::from_dwarf(dwarf).map_err(|e| format!("bad DWARF: {e}"))?;
    let symbols = FunctionSymbols::read(&file);
    let frames = addresses
        .iter()
        .map(|&address| frames(&context, &symbols, base, address))
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

type Context<'data> = addr2line::Context<gimli::EndianSlice<'data, gimli::RunTimeEndian>>;

/// The frames of one return address: inlined frames innermost first, then the function
/// that holds them, which carries the symbol table's name in `symbol`.
fn frames(
    context: &Context<'_>,
    symbols: &FunctionSymbols<'_, '_>,
    base: u64,
    address: u64,
) -> Vec<Symbol> {
    // A return address points after the call; the call itself is one byte earlier.
    let call = address.saturating_sub(1);
    let Some(probe) = call.checked_sub(base) else {
        return vec![crate::unknown(address)];
    };
    let symbol = symbols.name_at(probe);
    let mut out = Vec::new();
    if let Ok(mut iter) = context.find_frames(probe).skip_all_loads() {
        while let Ok(Some(frame)) = iter.next() {
            let function = match &frame.function {
                Some(f) => f.raw_name().ok().map(|name| demangle(&name)),
                None => symbol.clone(),
            };
            let (file, line) = match &frame.location {
                Some(l) => (l.file.map(str::to_owned), l.line),
                None => (None, None),
            };
            out.push(crate::symbol(address, function, file, line, true, None));
        }
    }
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
