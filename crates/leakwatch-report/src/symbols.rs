//! Symbols and site labels: what people read instead of return addresses.
//!
//! A [`SymbolTable`] maps return addresses to source frames (function, file, line; inlined
//! frames expanded). It is filled in the process that captured the addresses (through
//! `leakwatch_alloc::Symbolizer`) and travels with recorded files, so reports can be
//! rendered anywhere. [`LabelRules`] pick the frame that names a site: the first one that
//! is not the allocator's, the standard library's, hashbrown's, leakwatch's own or the
//! thread's start.
//!
//! Names are completed when frames enter the table: line-tables-only debug info (what
//! release builds should carry, `debug = "line-tables-only"`) names functions without
//! their module path and closures and async bodies only `{closure#0}`/`{async_fn#0}`, so
//! the symbol-table name of the machine function (`Symbol::symbol`) gives the outermost
//! frame its path, and a closure or async body takes the function it is defined in (see
//! [`SymbolTable::insert`]). Labels shorten generic arguments to `<…>`; stacks keep them.

use leakwatch_types::{Module, Symbol};
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

    /// Records the frames of `address` (replacing any earlier entry), completing their
    /// names: a frame named without a module path takes the path of its machine
    /// function's symbol (`keep<u8>` in `app::keep` is `app::keep<u8>`), and a closure or
    /// async body named only `{closure#N}`/`{async_fn#N}`/`{async_block#N}` takes the
    /// function it is defined in: the one whose closure type (`f::{closure_env#N}`) an
    /// outer frame's generic arguments name, else, when it is the machine function, its
    /// symbol (`app::f::{{closure}}`), else the nearest outer frame of the same file that
    /// is not a closure or runtime code (the function it is written in).
    pub fn insert(&mut self, address: u64, mut frames: Vec<Symbol>) {
        complete_names(&mut frames);
        self.frames.insert(address, frames);
    }

    /// The addresses of `stacks` not yet in the table, in ascending order, each once:
    /// what a batch symbolizer is to resolve.
    pub fn missing<'a>(&self, stacks: impl IntoIterator<Item = &'a [u64]>) -> Vec<u64> {
        let mut missing: Vec<u64> = stacks
            .into_iter()
            .flatten()
            .copied()
            .filter(|&a| !self.contains(a))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// Resolves every address of `stacks` not yet in the table with `resolve`, and returns
    /// the addresses it added, in ascending order.
    pub fn resolve_missing<'a>(
        &mut self,
        stacks: impl IntoIterator<Item = &'a [u64]>,
        mut resolve: impl FnMut(u64) -> Vec<Symbol>,
    ) -> Vec<u64> {
        let added = self.missing(stacks);
        for &address in &added {
            self.insert(address, resolve(address));
        }
        added
    }

    /// Bytes the table holds: its entries (a B-tree's nodes hold 11 at most; counted
    /// at their size, a lower bound), each address's frames and their names' text.
    pub fn memory_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        self.frames
            .values()
            .map(|frames| {
                std::mem::size_of::<(u64, Vec<Symbol>)>()
                    + frames.capacity() * std::mem::size_of::<Symbol>()
                    + frames
                        .iter()
                        .map(|f| text(&f.function) + text(&f.file) + text(&f.symbol))
                        .sum::<usize>()
            })
            .sum()
    }

    /// Number of addresses in the table.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Warnings about the table's frames for reports: frames of the service's code
    /// (named with a module path, not runtime code) that have no file and line, which
    /// means the binary was built without debug info, so labels cannot name lines.
    /// Empty when every such frame has a file and a line.
    pub fn warnings(&self) -> Vec<String> {
        let rules = LabelRules::default();
        let service = |symbol: &Symbol| {
            symbol.function.as_deref().is_some_and(|function| {
                strip_generics(function).contains("::")
                    && !rules.ignores(Some(function), symbol.file.as_deref())
            })
        };
        // No file: no debug info. A file without a line is debug info that names no line
        // for that code (a runtime's generated code, tokio's worker loop in release): not
        // what the hint is about.
        let lacks = |symbol: &Symbol| symbol.file.is_none();
        // Frames without a file are few in a build with debug info: look at them first.
        let frames = || self.frames.values().flatten();
        let without = frames().filter(|s| lacks(s) && service(s)).count();
        if without == 0 {
            return Vec::new();
        }
        let total = frames().filter(|s| service(s)).count();
        vec![format!(
            "{without} of {total} frames of the service's code have no file and line: the binary has no debug info, so labels name functions only; set `[profile.release] debug = \"line-tables-only\"` (or `debug = 1`) in Cargo.toml"
        )]
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
        self.label_with(|f| f.to_string())
    }

    /// [`Frame::label`] with generic arguments shortened to `<…>` (see
    /// [`short_generics`]): how a site is named. Monomorphizations of one function at one
    /// line share it.
    pub fn short_label(&self) -> String {
        self.label_with(short_generics)
    }

    fn label_with(&self, name: impl Fn(&str) -> String) -> String {
        let function = match &self.function {
            Some(f) => name(f),
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
/// A rule containing `/` matches frames whose file path contains it; a rule starting with
/// `=` matches frames whose function name is the rest (`=start_thread`), and only frames
/// without a file if it ends in ` (no file)` (`=main (no file)`: the C entry point rustc
/// generates, not the service's `main`); any other rule matches frames whose function
/// name starts with it (ignoring a leading `<`, so `alloc::` also matches
/// `<alloc::vec::Vec<T> as Clone>::clone`).
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
    // The test harness.
    "test::",
    "/library/test/",
    // The thread's start and the C runtime's (glibc's files, when it has debug info).
    "=start_thread",
    "=clone",
    "=clone3",
    "=__clone",
    "=__clone3",
    "=thread_start",
    "=__libc_start_main",
    "=__libc_start_main_impl",
    "=__libc_start_call_main",
    "=_start",
    "=main (no file)",
    "/nptl/",
    "/csu/",
    "/sysdeps/",
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
        let name = function.unwrap_or("");
        let function = name.strip_prefix('<').unwrap_or(name);
        let has_file = file.is_some();
        let file = file.unwrap_or("");
        self.ignore.iter().any(|rule| {
            if rule.contains('/') {
                file.contains(rule.as_str())
            } else if let Some(exact) = rule.strip_prefix('=') {
                match exact.strip_suffix(" (no file)") {
                    Some(exact) => !has_file && name == exact,
                    None => name == exact,
                }
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

    /// The label of `stack`: its label frame as `function (file:line)` (generic
    /// arguments shortened: [`Frame::short_label`]), or `"(no stack)"`.
    pub fn label(&self, stack: &[Frame]) -> String {
        match self.label_frame(stack) {
            Some(i) => stack[i].short_label(),
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

/// [`Frame::short_label`] of a borrowed frame.
fn ref_label(address: u64, symbol: Option<&Symbol>) -> String {
    Frame::from_ref(address, symbol).short_label()
}

/// `name` with its long generic argument lists (those naming paths, or longer than
/// [`SHORT_GENERICS`] characters) shortened to `<…>`:
/// `app::Cache<alloc::string::String, u8>::put` is `app::Cache<…>::put`, `Store<K, V>`
/// stays. A `<` that opens a qualified path (`<T as Trait>::f`, at the start or after
/// `(`, `&`, a space...) stays, with the long lists inside it shortened.
pub fn short_generics(name: &str) -> String {
    shorten_generics(name, &|arguments| {
        arguments.contains("::") || arguments.chars().count() > SHORT_GENERICS
    })
}

/// The longest generic argument list (without its brackets) labels keep as it is.
pub const SHORT_GENERICS: usize = 12;

/// `name` with the generic argument lists for which `shorten` holds replaced by `<…>`.
fn shorten_generics(name: &str, shorten: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.char_indices().peekable();
    let mut previous = ' ';
    while let Some((i, c)) = chars.next() {
        let opens_arguments =
            c == '<' && (previous.is_alphanumeric() || matches!(previous, '_' | '}' | ':' | '>'));
        if !opens_arguments {
            out.push(c);
            previous = c;
            continue;
        }
        // Find the matching `>` (a `>` after `-` is an arrow, not a bracket).
        let (mut depth, mut last, mut end) = (1usize, c, None);
        for (j, c) in chars.by_ref() {
            match c {
                '<' => depth += 1,
                '>' if last != '-' => depth -= 1,
                _ => {}
            }
            last = c;
            if depth == 0 {
                end = Some(j);
                break;
            }
        }
        let Some(end) = end else {
            // Unbalanced: keep the rest as it is.
            out.push_str(&name[i..]);
            break;
        };
        let arguments = &name[i + 1..end];
        if shorten(arguments) {
            // `f::<T>` (a turbofish) is `f<…>` too.
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            out.push_str("<…>");
        } else {
            out.push('<');
            out.push_str(&shorten_generics(arguments, shorten));
            out.push('>');
        }
        previous = '>';
    }
    out
}

/// `name` without its generic argument lists (`app::Cache<u8>::put` is `app::Cache::put`).
fn strip_generics(name: &str) -> String {
    shorten_generics(name, &|_| true).replace("<…>", "")
}

/// The kind of a closure or async body named only `{closure#N}`, `{async_fn#N}` or
/// `{async_block#N}` (generic arguments allowed after it): the name of its type's
/// environment in generic arguments, e.g. `{closure_env#N}`.
fn closure_env(name: &str) -> Option<String> {
    let bare = strip_generics(name);
    let inner = bare.strip_prefix('{')?.strip_suffix('}')?;
    let (kind, index) = inner.split_once('#')?;
    if !matches!(
        kind,
        "closure" | "async_fn" | "async_block" | "async_gen_block"
    ) || index.is_empty()
        || !index.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(format!("{{{kind}_env#{index}}}"))
}

/// Whether a symbol-table or debug-info name ends in a closure segment
/// (`::{{closure}}`, `::{closure#0}`, `::{async_fn#0}`), returning what is before it.
fn strip_closure_segment(name: &str) -> Option<&str> {
    let (parent, last) = name.rsplit_once("::")?;
    (last.starts_with('{') && last.ends_with('}') && !parent.is_empty()).then_some(parent)
}

/// Completes the names of one address's frames (see [`SymbolTable::insert`]).
fn complete_names(frames: &mut [Symbol]) {
    let Some(last) = frames.len().checked_sub(1) else {
        return;
    };
    let symbol = frames[last].symbol.clone();
    // Outermost first, so a closure can take the completed name of the function it is in.
    for i in (0..=last).rev() {
        let Some(name) = frames[i].function.clone() else {
            if i == last {
                frames[i].function = symbol.clone();
            }
            continue;
        };
        if strip_generics(&name).contains("::") {
            continue;
        }
        let completed = match closure_env(&name) {
            Some(env) => enclosing_function(frames, i, &env, symbol.as_deref())
                .map(|f| format!("{f}::{name}")),
            None if i == last => symbol.as_deref().and_then(|s| with_path_of(&name, s)),
            None => None,
        };
        if let Some(completed) = completed {
            frames[i].function = Some(completed);
        }
    }
}

/// `name` (without a module path) with the path of symbol `symbol` when the symbol's
/// last segment is the same function: `keep<u8>` in `app::keep` is `app::keep<u8>`.
fn with_path_of(name: &str, symbol: &str) -> Option<String> {
    let bare = strip_generics(name);
    let symbol_bare = strip_generics(symbol);
    let (_, last_segment) = symbol_bare.rsplit_once("::")?;
    if last_segment != bare {
        return None;
    }
    // The symbol's path before its last segment, generic arguments and all.
    let cut = symbol.len() - symbol_tail_len(symbol);
    Some(format!("{}{name}", &symbol[..cut]))
}

/// The length of the last `::` segment of `symbol` (with its generic arguments).
fn symbol_tail_len(symbol: &str) -> usize {
    let mut depth = 0usize;
    let bytes = symbol.as_bytes();
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b'>' => depth += 1,
            b'<' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && i > 0 && bytes[i - 1] == b':' => return bytes.len() - i - 1,
            _ => {}
        }
    }
    bytes.len()
}

/// The function closure or async body `frames[i]` is defined in (see
/// [`SymbolTable::insert`]).
fn enclosing_function(
    frames: &[Symbol],
    i: usize,
    env: &str,
    symbol: Option<&str>,
) -> Option<String> {
    // An outer frame generic over the closure's type names its path: `for_each<Range<
    // usize>, app::run::{closure_env#1}>`.
    // Runtime code's own closures (`Iterator::for_each::call::{closure_env#0}`) are not
    // the service's.
    // Only up to the first outer frame of the service's own code (included: a generic
    // function of its own may take the closure): the closure is called from there, so
    // frames further out are its callers, and their generic arguments name other
    // closures, perhaps with the same index (a thread's `main::{closure_env#0}` around a
    // `process_batch::{closure#0}`).
    let rules = LabelRules::default();
    let marker = format!("::{env}");
    for outer in &frames[i + 1..] {
        let Some(name) = outer.function.as_deref() else {
            continue;
        };
        for (at, _) in name.match_indices(&marker) {
            let start = name[..at]
                .rfind(['<', ',', ' ', '(', '&', '*', '[', ';'])
                .map_or(0, |p| p + 1);
            let path = &name[start..at];
            if !path.is_empty() && !rules.ignores(Some(path), None) {
                return Some(path.to_string());
            }
        }
        let own_code = closure_env(name).is_none()
            && strip_closure_segment(name).is_none()
            && !rules.ignores(Some(name), outer.file.as_deref());
        if own_code {
            break;
        }
    }
    // The machine function itself: its symbol is `app::run::{{closure}}`.
    if i + 1 == frames.len() {
        if let Some(parent) = symbol.and_then(strip_closure_segment) {
            return Some(parent.to_string());
        }
    }
    // The function it is written in: the nearest outer frame of the same file that is
    // neither a closure nor runtime code.
    let file = frames[i].file.as_deref()?;
    frames[i + 1..]
        .iter()
        .find(|f| {
            f.file.as_deref() == Some(file)
                && f.function
                    .as_deref()
                    .is_some_and(|n| closure_env(n).is_none() && strip_closure_segment(n).is_none())
                && !rules.ignores(f.function.as_deref(), f.file.as_deref())
        })
        .and_then(|f| f.function.clone())
}

/// Where a return address is without symbols: the file name of the module holding it
/// and the address of its call in that file (return address minus one, minus the load
/// bias: what `addr2line -e FILE` takes), as `model-server+0x1a2b3c`; the bare hex
/// address when no module holds it.
pub fn module_offset(address: u64, modules: &[Module]) -> String {
    match module_of(address, modules) {
        Some(module) => format!(
            "{}+{:#x}",
            module_name(module),
            address.saturating_sub(1).wrapping_sub(module.base)
        ),
        None => format!("{address:#x}"),
    }
}

/// The module whose address range holds `address`.
fn module_of(address: u64, modules: &[Module]) -> Option<&Module> {
    modules
        .iter()
        .find(|m| m.start <= address && address < m.end)
}

/// A module's file name (`model-server`, `libc.so.6`); its path when that has none.
fn module_name(module: &Module) -> &str {
    match module.path.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name,
        _ => &module.path,
    }
}

/// The label of a site none of whose addresses is symbolized (symbolization off):
/// [`module_offset`] of its innermost address and `#` with eight hex digits of a hash
/// of its whole stack, as module file names and offsets: `model-server+0x1a2b3c
/// #5e2f9a01`. Without symbols the innermost addresses are the allocator's and the
/// standard library's, which many sites share, so the hash keeps each stack its own
/// label; it does not depend on where the modules were loaded, so a site of the same
/// build has the same label in the process, offline, and after a restart.
pub fn offline_label(frames: &[u64], modules: &[Module]) -> String {
    let Some(&first) = frames.first() else {
        return "(no stack)".to_string();
    };
    // FNV-1a over each frame's module name and offset.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for &address in frames {
        match module_of(address, modules) {
            Some(module) => {
                mix(module_name(module).as_bytes());
                mix(&address.wrapping_sub(module.base).to_le_bytes());
            }
            None => mix(&address.to_le_bytes()),
        }
        mix(b"/");
    }
    let folded = (hash ^ (hash >> 32)) as u32;
    format!("{} #{folded:08x}", module_offset(first, modules))
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
