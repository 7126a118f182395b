//! The DWARF part of a batch: the frames (function, file, line, inlined calls) of a set
//! of file addresses, reading only the compilation units that hold them.
//!
//! What it computes is what one `addr2line::Context` over the whole file gives (the
//! crate this replaced, and the reference its tests compare with), by the same rules:
//!
//! - **which units** hold an address: every unit's root DIE is read once, its
//!   `DW_AT_ranges`, else its `.debug_aranges` set, else `DW_AT_low_pc`/`DW_AT_high_pc`,
//!   else its line program's sequences; the units that hold an address are tried in
//!   the order of the end of the range that holds it (then in file order), and the first
//!   one that knows a function or a line for it answers. Only the root DIE and its range
//!   list are read here: nothing of a unit is kept past its turn but its offset.
//! - **in a unit**: its subprograms' ranges (one pass over its DIEs), the line program's
//!   rows of the sequences that hold one of the addresses, and, for the subprogram that
//!   holds an address, its name and its tree of inlined calls.
//! - **names** follow `DW_AT_abstract_origin` and `DW_AT_specification` (16 levels at
//!   most), into another unit through `DW_FORM_ref_addr`: that unit's header and
//!   abbreviations are read (a few are kept for the batch), nothing more of it.
//!
//! Everything is bounded by the input: each DIE, row and range read consumes bytes of
//! its section; the inlining depth, the kept rows, the candidate units of an address and
//! the units kept for references have explicit limits, past which the address (or the
//! unit) gets an error, which the caller turns into the symbol table's name alone.

use std::cmp::Ordering;
use std::collections::BTreeMap;

pub(crate) type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;
type Dwarf<'a> = gimli::Dwarf<Reader<'a>>;
type Unit<'a> = gimli::Unit<Reader<'a>>;
type UnitRef<'u, 'a> = gimli::UnitRef<'u, Reader<'a>>;
type Error = gimli::Error;

/// Inlined calls nested deeper than this in one function make its addresses an error.
const MAX_INLINE_DEPTH: usize = 256;
/// At most this many units are tried for one address (overlapping units).
const MAX_CANDIDATES: usize = 64;
/// At most this many line rows are kept for one unit's lookups.
const MAX_ROWS: usize = 1 << 22;
/// At most this many other units are kept parsed for `DW_FORM_ref_addr` names.
const MAX_REF_UNITS: usize = 16;
/// Every this many units of the walk over the unit headers, the caller's `release`
/// runs (it drops the mapped pages read so far from the resident set: each unit's root
/// DIE, abbreviations, line program header and range list).
const RELEASE_UNITS: usize = 32;
/// So does every this many DIEs of a unit's walk over its subprograms, and every this
/// many rows of its line program (a large unit's pages would pile up otherwise).
const RELEASE_DIES: usize = 1 << 15;
const RELEASE_ROWS: usize = 1 << 16;
/// And every this many addresses resolved in one unit (their names may read many other
/// units' headers and abbreviations).
const RELEASE_ADDRESSES: usize = 16;

/// One frame: the function's raw (mangled) name, the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) name: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// What one address got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Its frames, innermost first (empty: no unit knows it).
    Frames(Vec<Frame>),
    /// Its unit's DWARF could not be read.
    Error,
}

/// The frames of each of `probes` (file addresses, any order). `release` is called
/// between units (and during the header walk): the caller may drop the pages read so
/// far from the resident set; the sections stay readable.
///
/// # Errors
/// When the unit headers or `.debug_aranges` cannot be read (no address is resolved).
pub(crate) fn find_frames(
    dwarf: &Dwarf<'_>,
    probes: &[u64],
    release: &mut dyn FnMut(),
) -> Result<Vec<Found>, Error> {
    // The distinct probes, sorted.
    let mut sorted: Vec<u64> = probes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let units = Units::walk(dwarf, &sorted, release)?;
    let mut results: Vec<Option<Found>> = vec![None; sorted.len()];
    // Which candidate each probe is at, and the probes waiting for each unit.
    let mut cursor = vec![0usize; sorted.len()];
    let mut queue: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (p, candidates) in units.candidates.iter().enumerate() {
        match candidates.first() {
            Some(&(_, unit)) => queue.entry(unit).or_default().push(p),
            None => results[p] = Some(Found::Frames(Vec::new())),
        }
    }
    let mut refs = RefUnits::default();
    while let Some((u, waiting)) = queue.pop_first() {
        let addresses: Vec<u64> = waiting.iter().map(|&p| sorted[p]).collect();
        let answers = match dwarf
            .debug_info
            .header_from_offset(units.offsets[u])
            .and_then(|header| dwarf.unit(header))
        {
            Ok(unit) => in_unit(dwarf, &unit, &units.offsets, &mut refs, &addresses, release),
            Err(_) => vec![Some(Found::Error); addresses.len()],
        };
        for (p, answer) in waiting.into_iter().zip(answers) {
            if let Some(answer) = answer {
                results[p] = Some(answer);
                continue;
            }
            // Nothing in this unit: the next candidate, if any.
            cursor[p] += 1;
            match units.candidates[p].get(cursor[p]) {
                Some(&(_, next)) => queue.entry(next).or_default().push(p),
                None => results[p] = Some(Found::Frames(Vec::new())),
            }
        }
        release();
    }
    Ok(probes
        .iter()
        .map(|probe| {
            let p = sorted.partition_point(|s| s < probe);
            results[p].clone().unwrap_or(Found::Frames(Vec::new()))
        })
        .collect())
}

/// The units of the file as `addr2line` lists them, and the candidate units of each
/// probe.
struct Units {
    /// The offsets of the units kept (compile, skeleton and partial units that parse),
    /// in file order.
    offsets: Vec<gimli::DebugInfoOffset>,
    /// For each sorted probe: `(end of the range that holds it, unit)`, sorted, one per
    /// unit.
    candidates: Vec<Vec<(u64, usize)>>,
}

impl Units {
    fn walk(dwarf: &Dwarf<'_>, probes: &[u64], release: &mut dyn FnMut()) -> Result<Self, Error> {
        let mut aranges = Vec::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Some(header) = headers.next()? {
            aranges.push((header.debug_info_offset(), header.offset()));
        }
        aranges.sort_by_key(|a| a.0);

        let mut offsets = Vec::new();
        let mut candidates: Vec<Vec<(u64, usize)>> = vec![Vec::new(); probes.len()];
        let mut walked = 0usize;
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let Some(offset) = header.offset().as_debug_info_offset() else {
                continue;
            };
            walked += 1;
            if walked % RELEASE_UNITS == 0 {
                release();
            }
            let needs_ranges = match header.type_() {
                gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } => continue,
                // Partial units are only referred to; they hold no addresses.
                gimli::UnitType::Partial => false,
                _ => true,
            };
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let index = offsets.len();
            if needs_ranges {
                let unit_ref = UnitRef::new(dwarf, &unit);
                let mut add = |range: gimli::Range| {
                    let first = probes.partition_point(|&p| p < range.begin);
                    for (i, _) in probes[first..]
                        .iter()
                        .enumerate()
                        .take_while(|&(_, &p)| p < range.end)
                    {
                        let list = &mut candidates[first + i];
                        if list.len() < MAX_CANDIDATES {
                            list.push((range.end, index));
                        }
                    }
                };
                if !unit_ranges(dwarf, unit_ref, offset, &aranges, &mut add)? {
                    continue;
                }
            }
            offsets.push(offset);
        }
        for list in &mut candidates {
            list.sort_unstable();
            // One entry per unit: a unit tried again would answer the same.
            let mut seen = Vec::with_capacity(list.len());
            list.retain(|&(_, unit)| {
                let new = !seen.contains(&unit);
                seen.push(unit);
                new
            });
        }
        Ok(Units {
            offsets,
            candidates,
        })
    }
}

/// Calls `add` with each address range of `unit` (by `addr2line`'s preference: the root
/// DIE's `DW_AT_ranges`, its `.debug_aranges` set, its low and high pc, its line
/// program's sequences). `Ok(false)`: the unit has no root DIE and is left out.
fn unit_ranges(
    dwarf: &Dwarf<'_>,
    unit: UnitRef<'_, '_>,
    offset: gimli::DebugInfoOffset,
    aranges: &[(gimli::DebugInfoOffset, gimli::DebugArangesOffset)],
    add: &mut dyn FnMut(gimli::Range),
) -> Result<bool, Error> {
    let mut entries = unit.entries_raw(None)?;
    let Some(abbrev) = entries.read_abbreviation()? else {
        return Ok(false);
    };
    let mut ranges = Ranges::default();
    for spec in abbrev.attributes() {
        let attr = entries.read_attribute(*spec)?;
        ranges.note(unit, &attr)?;
    }
    let mut found = false;
    if ranges.offset.is_none() {
        let first = aranges.partition_point(|a| a.0 < offset);
        for &(_, at) in aranges[first..].iter().take_while(|a| a.0 == offset) {
            let header = dwarf.debug_aranges.header(at)?;
            let mut entries = header.entries();
            // Errors are skipped (an address overflow in one entry); the iterator
            // stops at those it cannot go past.
            while let Some(entry) = entries.next().transpose() {
                let Ok(entry) = entry else { continue };
                if entry.length() != 0 {
                    add(entry.range());
                    found = true;
                }
            }
        }
    }
    if !found {
        found = ranges.each(unit, add)?;
    }
    let program = if found {
        None
    } else {
        unit.line_program.clone()
    };
    if let Some(program) = program {
        // The unit declares no ranges: its line program's sequences (errors ignored).
        if let Ok(lines) = Lines::parse(unit, program, &mut |_, _| false, &mut || {}) {
            for &(begin, end, _) in &lines.sequences {
                add(gimli::Range { begin, end });
            }
        }
    }
    Ok(true)
}

/// The address attributes of a DIE.
#[derive(Default)]
struct Ranges {
    low: Option<u64>,
    high: Option<u64>,
    size: Option<u64>,
    offset: Option<gimli::RangeListsOffset>,
}

impl Ranges {
    /// Notes `attr` if it is one of the address attributes.
    fn note<'a>(
        &mut self,
        unit: UnitRef<'_, 'a>,
        attr: &gimli::Attribute<Reader<'a>>,
    ) -> Result<(), Error> {
        match attr.name() {
            gimli::DW_AT_low_pc => match attr.value() {
                gimli::AttributeValue::Addr(v) => self.low = Some(v),
                gimli::AttributeValue::DebugAddrIndex(i) => self.low = Some(unit.address(i)?),
                _ => {}
            },
            gimli::DW_AT_high_pc => match attr.value() {
                gimli::AttributeValue::Addr(v) => self.high = Some(v),
                gimli::AttributeValue::DebugAddrIndex(i) => self.high = Some(unit.address(i)?),
                gimli::AttributeValue::Udata(v) => self.size = Some(v),
                _ => {}
            },
            gimli::DW_AT_ranges => self.offset = unit.attr_ranges_offset(attr.value())?,
            _ => {}
        }
        Ok(())
    }

    /// Calls `add` with each non-empty range; whether there was one.
    fn each(
        &self,
        unit: UnitRef<'_, '_>,
        add: &mut dyn FnMut(gimli::Range),
    ) -> Result<bool, Error> {
        let mut any = false;
        let mut push = |range: gimli::Range| {
            if range.begin < range.end {
                add(range);
                any = true;
            }
        };
        if let Some(offset) = self.offset {
            let mut list = unit.ranges(offset)?;
            while let Some(range) = list.next()? {
                push(range);
            }
        } else if let (Some(begin), Some(end)) = (self.low, self.high) {
            push(gimli::Range { begin, end });
        } else if let (Some(begin), Some(size)) = (self.low, self.size) {
            // A -1 tombstone wraps around and is left out as empty.
            push(gimli::Range {
                begin,
                end: begin.wrapping_add(size),
            });
        }
        Ok(any)
    }
}

/// The line rows a unit's lookups need.
struct Lines {
    /// Every sequence `(start, end, rows)`, sorted by start; `rows` indexes `rows`
    /// (empty for the sequences no probe falls in).
    sequences: Vec<(u64, u64, std::ops::Range<usize>)>,
    /// `(address, file index, line)`.
    rows: Vec<(u64, u64, u32)>,
    /// The unit's files, by index (index 0 empty when the table has none there).
    files: Vec<String>,
}

impl Lines {
    /// Runs `program`, keeping the rows of the sequences `keep(start, end)` accepts,
    /// calling `release` every [`RELEASE_ROWS`] rows.
    fn parse<'a>(
        unit: UnitRef<'_, 'a>,
        program: gimli::IncompleteLineProgram<Reader<'a>>,
        keep: &mut dyn FnMut(u64, u64) -> bool,
        release: &mut dyn FnMut(),
    ) -> Result<Self, Error> {
        let mut sequences = Vec::new();
        let mut rows = Vec::new();
        let mut current: Vec<(u64, u64, u32)> = Vec::new();
        let mut program = program.rows();
        let mut read = 0usize;
        while let Some((_, row)) = program.next_row()? {
            read += 1;
            if read % RELEASE_ROWS == 0 {
                release();
            }
            if row.end_sequence() {
                if let Some(&(start, ..)) = current.first() {
                    let end = row.address();
                    let kept = if keep(start, end) {
                        if rows.len() + current.len() > MAX_ROWS {
                            return Err(Error::UnsupportedOffset);
                        }
                        let at = rows.len();
                        rows.append(&mut current);
                        at..rows.len()
                    } else {
                        0..0
                    };
                    current.clear();
                    sequences.push((start, end, kept));
                }
                continue;
            }
            let address = row.address();
            // As addr2line: the low 32 bits.
            let line = row.line().map_or(0, std::num::NonZeroU64::get) as u32;
            // A row at the same address as the one before replaces it.
            match current.last_mut() {
                Some(last) if last.0 == address => {
                    *last = (address, row.file_index(), line);
                    continue;
                }
                _ => {}
            }
            if current.len() >= MAX_ROWS {
                return Err(Error::UnsupportedOffset);
            }
            current.push((address, row.file_index(), line));
        }
        sequences.sort_by_key(|s| s.0);
        let header = program.header();
        let mut files = Vec::new();
        match header.file(0) {
            Some(file) => files.push(render_file(unit, file, header)?),
            None => files.push(String::new()),
        }
        let mut index = 1;
        while let Some(file) = header.file(index) {
            files.push(render_file(unit, file, header)?);
            index += 1;
        }
        Ok(Lines {
            sequences,
            rows,
            files,
        })
    }

    /// The file and line of `probe`: the last row at or before it in the sequence that
    /// holds it.
    fn find(&self, probe: u64) -> Option<(Option<&str>, Option<u32>)> {
        let s = self
            .sequences
            .binary_search_by(|&(start, end, _)| {
                if probe < start {
                    Ordering::Greater
                } else if probe >= end {
                    Ordering::Less
                } else {
                    Ordering::Equal
                }
            })
            .ok()?;
        let rows = &self.rows[self.sequences[s].2.clone()];
        let i = match rows.binary_search_by(|row| row.0.cmp(&probe)) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let (_, file, line) = rows[i];
        let file = self.file(file);
        Some((file, (line != 0).then_some(line)))
    }

    fn file(&self, index: u64) -> Option<&str> {
        self.files
            .get(usize::try_from(index).ok()?)
            .map(String::as_str)
    }
}

/// A file's path: the unit's directory, the file's directory (unless index 0), the
/// name; an absolute part replaces what is before it.
fn render_file<'a>(
    unit: UnitRef<'_, 'a>,
    file: &gimli::FileEntry<Reader<'a>>,
    header: &gimli::LineProgramHeader<Reader<'a>>,
) -> Result<String, Error> {
    let mut path = match unit.comp_dir {
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => String::new(),
    };
    let directory = match file.directory_index() {
        0 => None,
        _ => file.directory(header),
    };
    if let Some(directory) = directory {
        push_path(&mut path, &unit.attr_string(directory)?.to_string_lossy());
    }
    push_path(
        &mut path,
        &unit.attr_string(file.path_name())?.to_string_lossy(),
    );
    Ok(path)
}

fn push_path(path: &mut String, part: &str) {
    let unix_root = |p: &str| p.starts_with('/') || p.get(1..3) == Some(":/");
    let windows_root = |p: &str| p.starts_with('\\') || p.get(1..3) == Some(":\\");
    if unix_root(part) || windows_root(part) {
        *path = part.to_owned();
    } else {
        let separator = if windows_root(path) { '\\' } else { '/' };
        if !path.is_empty() && !path.ends_with(separator) {
            path.push(separator);
        }
        path.push_str(part);
    }
}

/// A subprogram or inlined call as a frame needs it.
struct Inlined<'a> {
    name: Option<Reader<'a>>,
    call_file: Option<u64>,
    call_line: u32,
}

/// A subprogram: its name, and its inlined calls with their ranges sorted by depth,
/// then start (so the call at each depth is one binary search).
struct Function<'a> {
    name: Option<Reader<'a>>,
    inlined: Vec<Inlined<'a>>,
    /// `(depth, range, index into inlined)`.
    ranges: Vec<(usize, gimli::Range, usize)>,
}

/// The answers of `addresses` (sorted) in `unit`: `None` for an address the unit knows
/// nothing of (neither a function nor a line).
fn in_unit<'a>(
    dwarf: &Dwarf<'a>,
    unit: &Unit<'a>,
    offsets: &[gimli::DebugInfoOffset],
    refs: &mut RefUnits<'a>,
    addresses: &[u64],
    release: &mut dyn FnMut(),
) -> Vec<Option<Found>> {
    let unit_ref = UnitRef::new(dwarf, unit);
    let functions = match subprograms(unit_ref, release) {
        Ok(f) => f,
        Err(_) => return vec![Some(Found::Error); addresses.len()],
    };
    let lines = match unit.line_program.clone() {
        Some(program) => {
            let mut keep = |start: u64, end: u64| {
                let first = addresses.partition_point(|&a| a < start);
                addresses.get(first).is_some_and(|&a| a < end)
            };
            match Lines::parse(unit_ref, program, &mut keep, release) {
                Ok(lines) => Some(lines),
                Err(_) => return vec![Some(Found::Error); addresses.len()],
            }
        }
        None => None,
    };
    // Parsed subprograms, by DIE offset (several addresses may share one).
    let mut parsed: Vec<(gimli::UnitOffset, Result<Function<'a>, Error>)> = Vec::new();
    addresses
        .iter()
        .enumerate()
        .map(|(i, &probe)| {
            if i > 0 && i % RELEASE_ADDRESSES == 0 {
                release();
            }
            let location = lines.as_ref().and_then(|l| l.find(probe));
            let Some(die) = find_subprogram(&functions, probe) else {
                return location.map(|(file, line)| {
                    Found::Frames(vec![Frame {
                        name: None,
                        file: file.map(str::to_owned),
                        line,
                    }])
                });
            };
            let at = match parsed.iter().position(|(o, _)| *o == die) {
                Some(at) => at,
                None => {
                    let function = Function::parse(dwarf, unit_ref, die, offsets, refs);
                    parsed.push((die, function));
                    parsed.len() - 1
                }
            };
            let Ok(function) = &parsed[at].1 else {
                return Some(Found::Error);
            };
            Some(Found::Frames(function.frames(
                probe,
                location,
                lines.as_ref(),
            )))
        })
        .collect()
}

/// Every subprogram range of the unit `(range, DIE offset)`, sorted by start; `release`
/// is called every [`RELEASE_DIES`] DIEs.
fn subprograms(
    unit: UnitRef<'_, '_>,
    release: &mut dyn FnMut(),
) -> Result<Vec<(gimli::Range, gimli::UnitOffset)>, Error> {
    let mut out = Vec::new();
    let mut entries = unit.entries_raw(None)?;
    let mut read = 0usize;
    while !entries.is_empty() {
        read += 1;
        if read % RELEASE_DIES == 0 {
            release();
        }
        let offset = entries.next_offset();
        let Some(abbrev) = entries.read_abbreviation()? else {
            continue;
        };
        if abbrev.tag() != gimli::DW_TAG_subprogram {
            entries.skip_attributes(abbrev.attributes())?;
            continue;
        }
        let mut ranges = Ranges::default();
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            ranges.note(unit, &attr)?;
        }
        ranges.each(unit, &mut |range| out.push((range, offset)))?;
    }
    // Stable: subprograms with the same start stay in DIE order.
    out.sort_by_key(|f| f.0.begin);
    Ok(out)
}

fn find_subprogram(
    functions: &[(gimli::Range, gimli::UnitOffset)],
    probe: u64,
) -> Option<gimli::UnitOffset> {
    let i = functions
        .binary_search_by(|(range, _)| {
            if probe < range.begin {
                Ordering::Greater
            } else if probe >= range.end {
                Ordering::Less
            } else {
                Ordering::Equal
            }
        })
        .ok()?;
    Some(functions[i].1)
}

impl<'a> Function<'a> {
    /// The subprogram at `die`: its name and its inlined calls.
    fn parse(
        dwarf: &Dwarf<'a>,
        unit: UnitRef<'_, 'a>,
        die: gimli::UnitOffset,
        offsets: &[gimli::DebugInfoOffset],
        refs: &mut RefUnits<'a>,
    ) -> Result<Self, Error> {
        let mut entries = unit.entries_raw(Some(die))?;
        let depth = entries.next_depth();
        let abbrev = entries
            .read_abbreviation()?
            .ok_or(Error::NoEntryAtGivenOffset)?;
        let mut name = None;
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            note_name(dwarf, unit, &attr, &mut name, offsets, refs)?;
        }
        let mut function = Function {
            name,
            inlined: Vec::new(),
            ranges: Vec::new(),
        };
        // `(depth of the DIE whose children these are, inlining depth)`.
        let mut stack = vec![(depth, 0usize)];
        while let Some(&(parent, inlining)) = stack.last() {
            if entries.next_depth() <= parent {
                stack.pop();
                continue;
            }
            let child_depth = entries.next_depth();
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            match abbrev.tag() {
                gimli::DW_TAG_subprogram => {
                    // A nested subprogram and its children are its own.
                    entries.skip_attributes(abbrev.attributes())?;
                    while entries.next_depth() > child_depth {
                        if let Some(abbrev) = entries.read_abbreviation()? {
                            entries.skip_attributes(abbrev.attributes())?;
                        }
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    if stack.len() > MAX_INLINE_DEPTH {
                        return Err(Error::UnsupportedOffset);
                    }
                    let mut ranges = Ranges::default();
                    let mut call = Inlined {
                        name: None,
                        call_file: None,
                        call_line: 0,
                    };
                    for spec in abbrev.attributes() {
                        let attr = entries.read_attribute(*spec)?;
                        ranges.note(unit, &attr)?;
                        note_name(dwarf, unit, &attr, &mut call.name, offsets, refs)?;
                        match attr.name() {
                            gimli::DW_AT_call_file => {
                                // DWARF 5 numbers files from 0; before, 0 is none.
                                match attr.value() {
                                    gimli::AttributeValue::FileIndex(f)
                                        if f > 0 || unit.header.version() >= 5 =>
                                    {
                                        call.call_file = Some(f);
                                    }
                                    _ => {}
                                }
                            }
                            gimli::DW_AT_call_line => {
                                // As addr2line: the low 32 bits.
                                let line = attr.udata_value().unwrap_or(0) as u32;
                                call.call_line = line;
                            }
                            _ => {}
                        }
                    }
                    let index = function.inlined.len();
                    function.inlined.push(call);
                    let calls = &mut function.ranges;
                    ranges.each(unit, &mut |range| calls.push((inlining, range, index)))?;
                    stack.push((child_depth, inlining + 1));
                }
                _ => entries.skip_attributes(abbrev.attributes())?,
            }
        }
        function
            .ranges
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.begin.cmp(&b.1.begin)));
        Ok(function)
    }

    /// The frames of `probe` in this function, innermost first: each inlined call at
    /// the location inside it (the innermost at `location`), then the function at the
    /// outermost call's site.
    fn frames(
        &self,
        probe: u64,
        location: Option<(Option<&str>, Option<u32>)>,
        lines: Option<&Lines>,
    ) -> Vec<Frame> {
        // The calls that hold `probe`, outermost first.
        let mut chain = Vec::new();
        let mut rest = &self.ranges[..];
        loop {
            let depth = chain.len();
            let found = rest.binary_search_by(|(d, range, _)| {
                d.cmp(&depth).then_with(|| {
                    if range.begin > probe {
                        Ordering::Greater
                    } else if range.end <= probe {
                        Ordering::Less
                    } else {
                        Ordering::Equal
                    }
                })
            });
            let Ok(i) = found else { break };
            chain.push(&self.inlined[rest[i].2]);
            rest = &rest[i + 1..];
        }
        let name = |n: &Option<Reader<'_>>| n.map(|n| n.to_string_lossy().into_owned());
        let mut out = Vec::with_capacity(chain.len() + 1);
        let mut at = location.map(|(file, line)| (file.map(str::to_owned), line));
        for call in chain.iter().rev() {
            let (file, line) = at.take().unwrap_or((None, None));
            out.push(Frame {
                name: name(&call.name),
                file,
                line,
            });
            let call_file = call
                .call_file
                .and_then(|f| lines.and_then(|l| l.file(f)))
                .map(str::to_owned);
            at = Some((call_file, (call.call_line != 0).then_some(call.call_line)));
        }
        let (file, line) = at.unwrap_or((None, None));
        out.push(Frame {
            name: name(&self.name),
            file,
            line,
        });
        out
    }
}

/// Notes the name `attr` gives a subprogram or inlined call, as `addr2line` does: a
/// linkage name always, a plain name or the origin's name when none is known yet.
fn note_name<'a>(
    dwarf: &Dwarf<'a>,
    unit: UnitRef<'_, 'a>,
    attr: &gimli::Attribute<Reader<'a>>,
    name: &mut Option<Reader<'a>>,
    offsets: &[gimli::DebugInfoOffset],
    refs: &mut RefUnits<'a>,
) -> Result<(), Error> {
    match attr.name() {
        gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
            if let Ok(value) = unit.attr_string(attr.value()) {
                *name = Some(value);
            }
        }
        gimli::DW_AT_name if name.is_none() => {
            *name = unit.attr_string(attr.value()).ok();
        }
        gimli::DW_AT_abstract_origin | gimli::DW_AT_specification if name.is_none() => {
            *name = origin_name(dwarf, unit, attr.value(), offsets, refs)?;
        }
        _ => {}
    }
    Ok(())
}

/// The name of the DIE `value` refers to (following its own origin, 16 levels at most).
fn origin_name<'a>(
    dwarf: &Dwarf<'a>,
    unit: UnitRef<'_, 'a>,
    value: gimli::AttributeValue<Reader<'a>>,
    offsets: &[gimli::DebugInfoOffset],
    refs: &mut RefUnits<'a>,
) -> Result<Option<Reader<'a>>, Error> {
    // Where to read next: a DIE of this unit, or of another one (an index into `refs`).
    enum At {
        Here(gimli::UnitOffset),
        There(usize, gimli::UnitOffset),
    }
    let mut value = value;
    for _ in 0..16 {
        let at = match value {
            gimli::AttributeValue::UnitRef(offset) => At::Here(offset),
            gimli::AttributeValue::DebugInfoRef(offset) => {
                let (index, offset) = refs.find(dwarf, offsets, offset)?;
                At::There(index, offset)
            }
            _ => return Ok(None),
        };
        let (found, next) = match at {
            At::Here(offset) => name_entry(unit, offset)?,
            At::There(index, offset) => {
                let other = UnitRef::new(dwarf, &refs.units[index].1);
                name_entry(other, offset)?
            }
        };
        if let Some(found) = found {
            return Ok(Some(found));
        }
        match (next, at) {
            (Some(next), At::Here(_)) => value = next,
            (Some(next), At::There(index, _)) => {
                // A unit-relative reference from the other unit: into that unit.
                value = match next {
                    gimli::AttributeValue::UnitRef(offset) => {
                        let other = &refs.units[index].1;
                        match offset.to_debug_info_offset(&other.header) {
                            Some(o) => gimli::AttributeValue::DebugInfoRef(o),
                            None => return Err(Error::NoEntryAtGivenOffset),
                        }
                    }
                    other => other,
                };
            }
            (None, _) => return Ok(None),
        }
    }
    Ok(None)
}

/// The name at a DIE (its linkage name, else its name), or where to look next.
fn name_entry<'a>(
    unit: UnitRef<'_, 'a>,
    offset: gimli::UnitOffset,
) -> Result<
    (
        Option<Reader<'a>>,
        Option<gimli::AttributeValue<Reader<'a>>>,
    ),
    Error,
> {
    let mut entries = unit.entries_raw(Some(offset))?;
    let abbrev = entries
        .read_abbreviation()?
        .ok_or(Error::NoEntryAtGivenOffset)?;
    let mut name = None;
    let mut next = None;
    for spec in abbrev.attributes() {
        let attr = entries.read_attribute(*spec)?;
        match attr.name() {
            gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                if let Ok(value) = unit.attr_string(attr.value()) {
                    return Ok((Some(value), None));
                }
            }
            gimli::DW_AT_name => {
                if let Ok(value) = unit.attr_string(attr.value()) {
                    name = Some(value);
                }
            }
            gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                next = Some(attr.value());
            }
            _ => {}
        }
    }
    if name.is_some() {
        return Ok((name, None));
    }
    Ok((None, next))
}

/// Other units parsed for `DW_FORM_ref_addr` names: their header and abbreviations (and
/// line program header, which parsing a unit reads), at most [`MAX_REF_UNITS`].
#[derive(Default)]
struct RefUnits<'a> {
    units: Vec<(gimli::DebugInfoOffset, Unit<'a>)>,
}

impl<'a> RefUnits<'a> {
    /// The unit holding `offset` (an index into `units`) and the offset in it.
    fn find(
        &mut self,
        dwarf: &Dwarf<'a>,
        offsets: &[gimli::DebugInfoOffset],
        offset: gimli::DebugInfoOffset,
    ) -> Result<(usize, gimli::UnitOffset), Error> {
        // The last unit starting before `offset` (a DIE is never at a unit's start).
        let start = match offsets.binary_search(&offset) {
            Ok(_) | Err(0) => return Err(Error::NoEntryAtGivenOffset),
            Err(i) => offsets[i - 1],
        };
        let index = match self.units.iter().position(|(o, _)| *o == start) {
            Some(index) => index,
            None => {
                let unit = dwarf.unit(dwarf.debug_info.header_from_offset(start)?)?;
                if self.units.len() >= MAX_REF_UNITS {
                    self.units.remove(0);
                }
                self.units.push((start, unit));
                self.units.len() - 1
            }
        };
        let unit_offset = offset
            .to_unit_offset(&self.units[index].1.header)
            .ok_or(Error::NoEntryAtGivenOffset)?;
        Ok((index, unit_offset))
    }
}
