//! Symbols and site labels: what people read instead of return addresses.
//!
//! A [`SymbolTable`] maps return addresses to source frames (function, file, line; inlined
//! frames expanded). It is filled in the process that captured the addresses (through
//! `leakwatch_alloc::Symbolizer`) and travels with recorded files, so reports can be
//! rendered anywhere. [`LabelRules`] pick the frame that names a site: the first one that
//! is not the allocator's, the standard library's, hashbrown's or leakwatch's own.

use leakwatch_alloc::Symbol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Source frames of return addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SymbolTable {
    frames: BTreeMap<u64, Vec<Symbol>>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames of `address` (innermost inlined frame first), if known.
    pub fn get(&self, address: u64) -> Option<&[Symbol]> {
        self.frames.get(&address).map(Vec::as_slice)
    }

    /// Whether `address` has an entry.
    pub fn contains(&self, address: u64) -> bool {
        self.frames.contains_key(&address)
    }

    /// Records the frames of `address` (replacing any earlier entry).
    pub fn insert(&mut self, address: u64, frames: Vec<Symbol>) {
        self.frames.insert(address, frames);
    }

    /// Resolves every address of `stacks` not yet in the table with `resolve`, and returns
    /// the addresses it added, in ascending order.
    pub fn resolve_missing<'a>(
        &mut self,
        stacks: impl IntoIterator<Item = &'a [u64]>,
        mut resolve: impl FnMut(u64) -> Vec<Symbol>,
    ) -> Vec<u64> {
        let mut added = Vec::new();
        for stack in stacks {
            for &address in stack {
                if let std::collections::btree_map::Entry::Vacant(slot) = self.frames.entry(address)
                {
                    slot.insert(resolve(address));
                    added.push(address);
                }
            }
        }
        added.sort_unstable();
        added
    }

    /// Number of addresses in the table.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// A whole stack as borrowed source frames, innermost first, inlined frames
    /// expanded: `(address, symbol)`, with `None` for an address without an entry. What
    /// [`SymbolTable::stack`] builds, without copying any string.
    pub fn stack_refs<'a>(
        &'a self,
        addresses: &'a [u64],
    ) -> impl Iterator<Item = (u64, Option<&'a Symbol>)> + 'a {
        addresses.iter().flat_map(move |&address| {
            let symbols = self.frames.get(&address).map_or(&[][..], Vec::as_slice);
            let unknown = symbols.is_empty().then_some((address, None));
            symbols
                .iter()
                .map(move |s| (address, Some(s)))
                .chain(unknown)
        })
    }

    /// A whole stack as source frames, innermost first, inlined frames expanded. An
    /// address without an entry becomes one frame with only its address.
    pub fn stack(&self, addresses: &[u64]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(addresses.len());
        for &address in addresses {
            match self.frames.get(&address) {
                Some(symbols) if !symbols.is_empty() => {
                    out.extend(symbols.iter().map(|s| Frame::from_symbol(address, s)))
                }
                _ => out.push(Frame::unknown(address)),
            }
        }
        out
    }
}

/// One source-level frame of a symbolized stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The return address it came from.
    pub address: u64,
    /// Demangled function name, without the hash suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// This frame was inlined into the next one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
}

impl Frame {
    fn from_symbol(address: u64, s: &Symbol) -> Frame {
        Frame {
            address,
            function: s.function.clone(),
            file: s.file.clone(),
            line: s.line,
            inlined: s.inlined,
        }
    }

    /// The frame of one item of [`SymbolTable::stack_refs`].
    pub(crate) fn from_ref(address: u64, symbol: Option<&Symbol>) -> Frame {
        match symbol {
            Some(s) => Frame::from_symbol(address, s),
            None => Frame::unknown(address),
        }
    }

    fn unknown(address: u64) -> Frame {
        Frame {
            address,
            function: None,
            file: None,
            line: None,
            inlined: false,
        }
    }

    /// `function (file:line)` with the file shortened (see [`short_path`]); the hex
    /// address when nothing is known.
    pub fn label(&self) -> String {
        let function = match &self.function {
            Some(f) => f.clone(),
            None => format!("{:#x}", self.address),
        };
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{function} ({}:{line})", short_path(file)),
            (Some(file), None) => format!("{function} ({})", short_path(file)),
            _ => function,
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A source path shortened for reports: from the package directory that holds its
/// `src/` (`leaky-sites/src/main.rs`, `hashbrown-0.15.2/src/map.rs`); the Rust standard
/// library's paths from `library/`; other paths as they are.
pub fn short_path(path: &str) -> &str {
    if let Some(i) = path.find("/library/") {
        return &path[i + 1..];
    }
    let Some(src) = path.rfind("/src/") else {
        return path;
    };
    match path[..src].rfind('/') {
        Some(start) => &path[start + 1..],
        None => path,
    }
}

/// Which frames are runtime (allocator, standard library, collections, leakwatch) rather
/// than the service's own code. The first frame that matches no rule labels a site.
///
/// A rule containing `/` matches frames whose file path contains it; any other rule
/// matches frames whose function name starts with it (ignoring a leading `<`, so
/// `alloc::` also matches `<alloc::vec::Vec<T> as Clone>::clone`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRules {
    /// The rules; see the type's documentation.
    pub ignore: Vec<String>,
}

/// The rules of [`LabelRules::default`].
pub const DEFAULT_IGNORE: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "hashbrown::",
    "leakwatch_alloc::",
    "leakwatch_report::",
    "__rust",
    "__rdl_",
    "__rg_",
    "/rustc/",
    "/library/std/",
    "/library/core/",
    "/library/alloc/",
    "/hashbrown-",
    // Both the workspace's `crates/leakwatch-alloc/` and the registry's
    // `leakwatch-alloc-0.1.0/`: release builds name inlined frames without their module
    // path, so runtime frames are told by their files too.
    "/leakwatch-alloc",
    "/leakwatch-report",
];

impl Default for LabelRules {
    fn default() -> Self {
        LabelRules {
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LabelRules {
    /// The default rules plus `extra` (e.g. a service's own allocation wrappers).
    pub fn with_extra<S: Into<String>>(extra: impl IntoIterator<Item = S>) -> Self {
        let mut rules = LabelRules::default();
        rules.ignore.extend(extra.into_iter().map(Into::into));
        rules
    }

    /// Whether `frame` is runtime code under these rules. Frames without a function name
    /// are never runtime here (an unknown frame is more likely the service's than ours);
    /// but see [`LabelRules::label_frame`], which prefers a named frame.
    pub fn is_ignored(&self, frame: &Frame) -> bool {
        self.ignores(frame.function.as_deref(), frame.file.as_deref())
    }

    fn ignores(&self, function: Option<&str>, file: Option<&str>) -> bool {
        let function = function.unwrap_or("");
        let function = function.strip_prefix('<').unwrap_or(function);
        let file = file.unwrap_or("");
        self.ignore.iter().any(|rule| {
            if rule.contains('/') {
                file.contains(rule.as_str())
            } else {
                function.starts_with(rule.as_str())
            }
        })
    }

    /// The index of the frame that labels `stack`: the first named frame no rule ignores;
    /// failing that the first frame no rule ignores; failing that the first frame.
    /// `None` for an empty stack.
    pub fn label_frame(&self, stack: &[Frame]) -> Option<usize> {
        let kept = |f: &&Frame| !self.is_ignored(f);
        stack
            .iter()
            .position(|f| f.function.is_some() && kept(&f))
            .or_else(|| stack.iter().position(|f| kept(&f)))
            .or(if stack.is_empty() { None } else { Some(0) })
    }

    /// [`LabelRules::label_frame`] and [`LabelRules::label`] of a stack of return
    /// addresses, symbolized with `symbols` (the same results as on
    /// `symbols.stack(addresses)`, without building it).
    pub fn label_of(&self, symbols: &SymbolTable, addresses: &[u64]) -> (String, usize) {
        let mut first_kept: Option<(usize, u64, Option<&Symbol>)> = None;
        let mut first: Option<(u64, Option<&Symbol>)> = None;
        for (i, (address, symbol)) in symbols.stack_refs(addresses).enumerate() {
            first.get_or_insert((address, symbol));
            let function = symbol.and_then(|s| s.function.as_deref());
            let file = symbol.and_then(|s| s.file.as_deref());
            if self.ignores(function, file) {
                continue;
            }
            if function.is_some() {
                return (ref_label(address, symbol), i);
            }
            first_kept.get_or_insert((i, address, symbol));
        }
        match (first_kept, first) {
            (Some((i, address, symbol)), _) => (ref_label(address, symbol), i),
            (None, Some((address, symbol))) => (ref_label(address, symbol), 0),
            (None, None) => ("(no stack)".to_string(), 0),
        }
    }

    /// The label of `stack`: its label frame as `function (file:line)`, or `"(no
    /// stack)"`.
    pub fn label(&self, stack: &[Frame]) -> String {
        match self.label_frame(stack) {
            Some(i) => stack[i].label(),
            None => "(no stack)".to_string(),
        }
    }

    /// The service's part of `stack`: from its label frame outwards, with recursion
    /// collapsed (see [`collapse_recursion`]).
    pub fn user_stack(&self, stack: &[Frame]) -> Vec<Frame> {
        let start = self.label_frame(stack).unwrap_or(0);
        collapse_recursion(&stack[start.min(stack.len())..])
    }
}

/// [`Frame::label`] of a borrowed frame.
fn ref_label(address: u64, symbol: Option<&Symbol>) -> String {
    Frame::from_ref(address, symbol).label()
}

/// `stack` (innermost first) with every recursive cycle removed: wherever a frame (same
/// function, file and line) appears again further out, the frames between the two
/// occurrences and the inner occurrence are dropped, so a recursion of any depth gives
/// the same stack as one level of it.
pub fn collapse_recursion(stack: &[Frame]) -> Vec<Frame> {
    let same = |a: &Frame, b: &Frame| match (&a.function, &b.function) {
        (None, None) => a.address == b.address,
        _ => a.function == b.function && a.file == b.file && a.line == b.line,
    };
    // Walk from the outermost frame inwards; on meeting a frame already on the path, cut
    // the path back to that frame.
    let mut path: Vec<&Frame> = Vec::with_capacity(stack.len());
    for frame in stack.iter().rev() {
        match path.iter().position(|f| same(f, frame)) {
            Some(i) => path.truncate(i + 1),
            None => path.push(frame),
        }
    }
    path.into_iter().rev().cloned().collect()
}

#[cfg(test)]
mod tests;
