//! Flame graph: a snapshot's live bytes by stack as an SVG, for a browser (on its own or
//! inline in an HTML page), drawn by the `inferno` crate.
//!
//! Every site with live bytes becomes one folded stack, outermost frame first, inlined
//! frames expanded, weighted by its live bytes (estimates in sampled mode). Frames are
//! named by function (the hex address when unknown). leakwatch's own allocator frames at
//! the top of a stack are dropped; the runtime frames between the allocator and the
//! service's code (`alloc::raw_vec`, `hashbrown`, ...) stay, as they say how the memory
//! was allocated.
//!
//! The SVG is self-contained: no external DTD, stylesheet, font or script. Its
//! interactive part (zoom, search) is inferno's inline script.

use crate::symbols::{Frame, LabelRules, SymbolTable};
use inferno::flamegraph::{self, Options, Palette};
use leakwatch_types::{Mode, Snapshot};
use std::collections::BTreeMap;

/// Frames of leakwatch's allocator (rules as in [`LabelRules`]): the tracking allocator
/// itself and the global allocator shims that call it. The flame graph and the
/// [pprof](super::pprof) profile leave out the top of every stack down to the outermost
/// of these frames, searching only the frames at the top that are runtime frames under
/// [`LabelRules::default`] (optimised builds inline standard library code, such as
/// thread-local access, into the allocator, and the allocator into the caller).
pub const ALLOCATOR_FRAMES: &[&str] = &[
    "leakwatch_alloc::",
    "/leakwatch-alloc",
    "__rust_alloc",
    "__rust_realloc",
    "__rg_",
    "__rdl_",
    "__rustc::__rust_alloc",
    "__rustc::__rust_realloc",
    "__rustc::__rg_",
    "__rustc::__rdl_",
];

/// Finds leakwatch's own allocator frames at the top of stacks (see
/// [`ALLOCATOR_FRAMES`]).
#[derive(Debug)]
pub(crate) struct AllocatorFrames {
    allocator: LabelRules,
    runtime: LabelRules,
}

impl AllocatorFrames {
    pub(crate) fn new() -> Self {
        AllocatorFrames {
            allocator: LabelRules {
                ignore: ALLOCATOR_FRAMES.iter().map(|s| s.to_string()).collect(),
            },
            runtime: LabelRules::default(),
        }
    }

    /// Whether `frame` may be part of the allocator's top of a stack: a runtime or an
    /// allocator frame. [`AllocatorFrames::count`] looks no further than the first frame
    /// that is not.
    pub(crate) fn may_be_top(&self, frame: &Frame) -> bool {
        self.runtime.is_ignored(frame) || self.allocator.is_ignored(frame)
    }

    /// How many frames at the top of `stack` (innermost first) are the allocator's:
    /// those down to the outermost allocator frame among the leading runtime frames.
    pub(crate) fn count(&self, stack: &[Frame]) -> usize {
        stack
            .iter()
            .take_while(|f| self.may_be_top(f))
            .enumerate()
            .filter(|(_, f)| self.allocator.is_ignored(f))
            .last()
            .map_or(0, |(i, _)| i + 1)
    }
}

/// Renders the live bytes of `snapshot` by stack as an SVG flame graph titled `title`,
/// naming frames from `symbols`.
///
/// A snapshot without live bytes gives a small SVG that says so.
///
/// # Examples
///
/// ```
/// use leakwatch_types::Snapshot;
/// use leakwatch_report::SymbolTable;
/// use leakwatch_report::render::flamegraph::flamegraph;
///
/// let svg = flamegraph(&Snapshot::default(), &SymbolTable::new(), "idle service");
/// assert!(svg.contains("no live bytes"));
/// ```
pub fn flamegraph(snapshot: &Snapshot, symbols: &SymbolTable, title: &str) -> String {
    let stacks = folded_stacks(snapshot, symbols);
    if stacks.is_empty() {
        return message_svg(title, "no live bytes to show");
    }
    let lines: Vec<String> = stacks
        .iter()
        .map(|(stack, bytes)| format!("{stack} {bytes}"))
        .collect();

    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(subtitle(snapshot));
    options.count_name = "bytes".to_string();
    options.colors = Palette::Basic(flamegraph::color::BasicPalette::Mem);
    // Colors from a hash of the name: the same graph for the same snapshot.
    options.deterministic = true;
    let mut svg = Vec::new();
    match flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg) {
        Ok(()) => self_contained(&String::from_utf8_lossy(&svg)),
        Err(e) => message_svg(title, &format!("no flame graph: {e}")),
    }
}

/// What the numbers are, under the title.
fn subtitle(snapshot: &Snapshot) -> String {
    match snapshot.mode {
        Mode::Sampled => format!(
            "live bytes by stack (sampled every {} bytes on average: estimates)",
            snapshot.sample_rate
        ),
        Mode::Exact => "live bytes by stack (exact)".to_string(),
        _ => "live bytes by stack".to_string(),
    }
}

/// Folded stacks (`outer;...;inner`) and their live bytes, merged where equal.
fn folded_stacks(snapshot: &Snapshot, symbols: &SymbolTable) -> BTreeMap<String, u64> {
    let allocator = AllocatorFrames::new();
    let mut stacks = BTreeMap::new();
    for site in &snapshot.sites {
        if site.live_bytes == 0 {
            continue;
        }
        let frames = symbols.stack(&site.frames);
        let ours = allocator.count(&frames);
        // Keep the outermost frame should every frame be the allocator's.
        let kept = &frames[ours.min(frames.len().saturating_sub(1))..];
        let stack = if kept.is_empty() {
            "(no stack)".to_string()
        } else {
            let names: Vec<String> = kept.iter().rev().map(frame_name).collect();
            names.join(";")
        };
        let total: &mut u64 = stacks.entry(stack).or_default();
        *total = total.saturating_add(site.live_bytes);
    }
    stacks
}

/// A frame's name in a folded stack: its function (the hex address when unknown), with
/// the characters that would break the folded format replaced (`;` separates frames, a
/// line ends a stack).
fn frame_name(frame: &Frame) -> String {
    let name = match frame.function.as_deref() {
        Some(f) if !f.trim().is_empty() => f.to_string(),
        _ => format!("{:#x}", frame.address),
    };
    name.chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// inferno's SVG made safe to embed and free of external references: its DOCTYPE (which
/// names the external SVG DTD) and its comments (links to FlameGraph's home) are
/// removed, and `://` in its script (a link in a comment and in an error message)
/// becomes `:/\/`, which is the same text in a JavaScript string and harmless in a
/// comment.
fn self_contained(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    loop {
        let next = ["<!DOCTYPE", "<!--", "<![CDATA["]
            .iter()
            .filter_map(|open| rest.find(open).map(|at| (at, *open)))
            .min();
        let Some((at, open)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let (close, keep) = match open {
            "<!DOCTYPE" => (">", false),
            "<!--" => ("-->", false),
            _ => ("]]>", true),
        };
        let body = &rest[at..];
        let end = body.find(close).map_or(body.len(), |i| i + close.len());
        if keep {
            out.push_str(&body[..end].replace("://", r":/\/"));
        }
        rest = &body[end..];
    }
}

/// A small SVG saying `message` under `title`.
fn message_svg(title: &str, message: &str) -> String {
    format!(
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="64" viewBox="0 0 1200 64" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="#f8f8f8"/>
<text x="50%" y="24" text-anchor="middle" font-family="monospace" font-size="17">{}</text>
<text x="50%" y="50" text-anchor="middle" font-family="monospace" font-size="12">{}</text>
</svg>
"##,
        escape(title),
        escape(message)
    )
}

/// `s` escaped for XML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
