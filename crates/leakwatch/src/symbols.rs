//! Filling a [`SymbolTable`] from the in-process [`Symbolizer`], one batch at a time.

use leakwatch_alloc::Symbolizer;
use leakwatch_report::SymbolTable;

/// Symbolizes, in one batch, every address of `stacks` that `symbols` lacks, and adds
/// them (names completed on insert). Returns how many it added.
pub(crate) fn symbolize_missing<'a>(
    symbols: &mut SymbolTable,
    symbolizer: &mut Symbolizer,
    stacks: impl IntoIterator<Item = &'a [u64]>,
) -> u64 {
    let missing = symbols.missing(stacks);
    if missing.is_empty() {
        return 0;
    }
    let frames = symbolizer.symbolize_many(&missing);
    let added = missing.len() as u64;
    for (address, frames) in missing.into_iter().zip(frames) {
        symbols.insert(address, frames);
    }
    added
}
