//! Series files: snapshots appended one JSON line at a time, for analysis after the fact
//! (`leakwatch report SERIES.jsonl`).
//!
//! Each line is one snapshot, written by [`SeriesWriter`] and read back by
//! [`Recording::read`]. To keep hours of recording small, a line carries only what changed
//! since the previous line of the same process: a site's frames once (`new_sites`), each
//! return address's symbols once (`symbols`), and a site's counters only when they moved
//! (`sites`). The format is documented in docs/report-format.md.

use crate::error::{Error, Result, describe_json};
use crate::history::{Header, History};
use crate::symbols::SymbolTable;
use leakwatch_alloc::{SiteStats, Snapshot, Symbol};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, Read};

/// The version of the series line format (the value of every line's
/// `leakwatch_series` field).
pub const SERIES_VERSION: u32 = 1;

/// The longest series line read (256 MiB): a process's first line lists every site and
/// symbol seen so far, which for the largest processes is tens of MiB.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// One line of a series file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    /// [`SERIES_VERSION`]: marks the line as ours.
    leakwatch_series: u32,
    /// The snapshot's time, process, mode, tracker, overflow and warnings; its modules on
    /// a process's first line only.
    #[serde(flatten)]
    header: Header,
    /// The process's memory limit, when the writer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_limit: Option<u64>,
    /// Sites seen for the first time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    new_sites: Vec<NewSite>,
    /// Symbols of return addresses seen for the first time, one list per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    symbols: Vec<Vec<Symbol>>,
    /// Counters of the sites that changed: `[id, alloc_bytes, alloc_blocks, freed_bytes,
    /// freed_blocks]`.
    #[serde(default)]
    sites: Vec<(u32, u64, f64, u64, f64)>,
    /// Departures (cumulative) of the sites whose counts changed: `[id,
    /// freed_old_bytes, freed_seen_bytes]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    departed: Vec<(u32, u64, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NewSite {
    id: u32,
    frames: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

type Counters = (u64, f64, u64, f64, (u64, u64));

fn counters(s: &SiteStats) -> Counters {
    (
        s.alloc_bytes,
        s.alloc_blocks,
        s.freed_bytes,
        s.freed_blocks,
        (s.freed_old_bytes, s.freed_seen_bytes),
    )
}

/// Turns snapshots of one process into series-file lines, each carrying only what
/// changed since the previous one.
#[derive(Debug, Default)]
pub struct SeriesWriter {
    pid: Option<u32>,
    /// Last written counters, by site id.
    written: std::collections::HashMap<u32, Counters>,
    symbols_written: HashSet<u64>,
    limit_written: Option<Option<u64>>,
}

impl SeriesWriter {
    /// A writer whose first line will describe everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line (JSON, ending in `\n`) for `snapshot`. Symbols of new return addresses
    /// are taken from `symbols` (resolve them first; missing ones are written as
    /// unknown). `memory_limit` is written when it changes.
    pub fn line(
        &mut self,
        snapshot: &Snapshot,
        symbols: &SymbolTable,
        memory_limit: Option<u64>,
    ) -> String {
        if self.pid != Some(snapshot.pid) {
            // A new process (or a forked child writing on): start over.
            *self = SeriesWriter::new();
            self.pid = Some(snapshot.pid);
        }
        let first = self.limit_written.is_none();
        let mut header = Header::of(snapshot);
        if !first {
            header.modules = Vec::new();
        }
        let mut line = Line {
            leakwatch_series: SERIES_VERSION,
            header,
            memory_limit: None,
            new_sites: Vec::new(),
            symbols: Vec::new(),
            sites: Vec::new(),
            departed: Vec::new(),
        };
        if self.limit_written != Some(memory_limit) {
            line.memory_limit = memory_limit;
            self.limit_written = Some(memory_limit);
        }
        for site in &snapshot.sites {
            let now = counters(site);
            match self.written.get(&site.id).copied() {
                Some(before) if before == now => continue,
                Some(_) => {}
                None => {
                    line.new_sites.push(NewSite {
                        id: site.id,
                        frames: site.frames.clone(),
                        truncated: site.truncated,
                    });
                    for &address in &site.frames {
                        if self.symbols_written.insert(address) {
                            line.symbols.push(symbol_list(symbols, address));
                        }
                    }
                }
            }
            let departed_before = self.written.get(&site.id).map_or((0, 0), |c| c.4);
            self.written.insert(site.id, now);
            line.sites.push((site.id, now.0, now.1, now.2, now.3));
            if now.4 != departed_before {
                line.departed.push((site.id, now.4.0, now.4.1));
            }
        }
        // Lines hold plain numbers and strings: serializing cannot fail.
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The symbols of `address` to write: the table's entry, or one unknown frame.
fn symbol_list(symbols: &SymbolTable, address: u64) -> Vec<Symbol> {
    match symbols.get(address) {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => {
            let mut unknown = Symbol::default();
            unknown.address = address;
            vec![unknown]
        }
    }
}

/// A series file read back: the history of the last process in it, and the symbols.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Live bytes per site over time (the file's last process).
    pub history: History,
    /// Symbols of every address the file describes.
    pub symbols: SymbolTable,
    /// The memory limit the writer recorded, if any.
    pub memory_limit: Option<u64>,
    /// Earlier processes in the file (a restart appends to the same file); only the
    /// last one is kept.
    pub earlier_processes: usize,
    /// Snapshot lines read.
    pub lines: usize,
}

impl Recording {
    /// Reads a series file. `origin` names it in errors. Blank lines are skipped.
    ///
    /// # Errors
    /// An [`Error`] naming the line for anything that is not a complete series line
    /// (truncated or corrupt JSON, another format, an unknown version, counters of a
    /// site never described) and for an empty input.
    pub fn read(origin: &str, input: impl BufRead) -> Result<Recording> {
        Self::read_into(origin, input, History::default())
    }

    /// [`Recording::read`] into a history with chosen bounds (see [`History::new`]).
    ///
    /// # Errors
    /// As [`Recording::read`].
    pub fn read_into(origin: &str, input: impl BufRead, empty: History) -> Result<Recording> {
        let mut reader = Reader {
            template: empty.clone(),
            recording: Recording {
                history: empty,
                symbols: SymbolTable::new(),
                memory_limit: None,
                earlier_processes: 0,
                lines: 0,
            },
            current: Snapshot::default(),
            index: std::collections::HashMap::new(),
            pid: None,
        };
        let mut input = input;
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            // At most MAX_LINE_BYTES (and its newline) per line: a file without newlines
            // (`/dev/zero`, a corrupt copy) fails instead of growing without bound.
            let read = (&mut input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::at(origin, Some(number), format!("read error: {e}")))?;
            if read == 0 {
                break;
            }
            if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
                return Err(Error::at(
                    origin,
                    Some(number),
                    format!(
                        "line longer than {} MiB: not a series file",
                        MAX_LINE_BYTES >> 20
                    ),
                ));
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                return Err(Error::at(
                    origin,
                    Some(number),
                    "not UTF-8 text: not a series file",
                ));
            };
            if text.trim().is_empty() {
                continue;
            }
            reader
                .apply(text.trim_end_matches(['\n', '\r']))
                .map_err(|message| Error::at(origin, Some(number), message))?;
        }
        if reader.recording.lines == 0 {
            return Err(Error::at(origin, None, "empty file: no snapshots recorded"));
        }
        Ok(reader.recording)
    }
}

struct Reader {
    template: History,
    recording: Recording,
    /// The process's state as of the last line.
    current: Snapshot,
    /// Position in `current.sites` of each site id (a map: ids in a file can be any
    /// `u32`, and a table indexed by them as long as the largest).
    index: std::collections::HashMap<u32, usize>,
    pid: Option<u32>,
}

impl Reader {
    fn apply(&mut self, text: &str) -> std::result::Result<(), String> {
        let line: Line = match serde_json::from_str(text) {
            Ok(line) => line,
            Err(e) => return Err(self.explain(text, &e)),
        };
        if line.leakwatch_series != SERIES_VERSION {
            return Err(format!(
                "series version {} is not supported (this build reads {SERIES_VERSION})",
                line.leakwatch_series
            ));
        }
        if self.pid != Some(line.header.pid) {
            if self.pid.is_some() {
                self.recording.earlier_processes += 1;
                self.recording.history = self.template.clone();
                self.current = Snapshot::default();
                self.index.clear();
            }
            self.pid = Some(line.header.pid);
        }
        for list in line.symbols {
            if let Some(address) = list.first().map(|s| s.address) {
                self.recording.symbols.insert(address, list);
            }
        }
        for new in line.new_sites {
            if self.index.contains_key(&new.id) {
                return Err(format!("site {} is described twice", new.id));
            }
            let mut site = SiteStats::default();
            site.id = new.id;
            site.frames = new.frames;
            site.truncated = new.truncated;
            // In the order described (the history keys sites by id, in any order): an
            // insert in id order would cost a shift per site, quadratic in sites.
            self.index.insert(new.id, self.current.sites.len());
            self.current.sites.push(site);
        }
        for (id, alloc_bytes, alloc_blocks, freed_bytes, freed_blocks) in line.sites {
            let Some(&position) = self.index.get(&id) else {
                return Err(format!(
                    "counters for site {id}, which no earlier line describes (is the file missing its beginning?)"
                ));
            };
            let site = &mut self.current.sites[position];
            site.alloc_bytes = alloc_bytes;
            site.alloc_blocks = alloc_blocks;
            site.freed_bytes = freed_bytes;
            site.freed_blocks = freed_blocks;
            site.live_bytes = alloc_bytes.saturating_sub(freed_bytes);
            site.live_blocks = (alloc_blocks - freed_blocks).max(0.0);
        }
        for (id, freed_old_bytes, freed_seen_bytes) in line.departed {
            let Some(&position) = self.index.get(&id) else {
                return Err(format!(
                    "departures for site {id}, which no earlier line describes"
                ));
            };
            self.current.sites[position].freed_old_bytes = freed_old_bytes;
            self.current.sites[position].freed_seen_bytes = freed_seen_bytes;
        }
        if line.memory_limit.is_some() {
            self.recording.memory_limit = line.memory_limit;
        }
        line.header.write_to(&mut self.current);
        self.recording.history.push(&self.current);
        self.recording.lines += 1;
        Ok(())
    }

    /// Why a line did not parse, in terms of the file rather than of serde.
    fn explain(&self, text: &str, e: &serde_json::Error) -> String {
        let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
        match value {
            None => describe_json(e),
            Some(v) if v.get("leakwatch_series").is_none() => {
                if v.get("format").and_then(|f| f.as_str()) == Some(crate::report::REPORT_FORMAT) {
                    "this is a JSON report, not a series file (compare reports with `leakwatch diff`)".into()
                } else if v.get("schema_version").is_some() && v.get("sites").is_some() {
                    "this is a single snapshot, not a series file (record with leakwatch's Recorder)".into()
                } else {
                    "not a leakwatch series line (no \"leakwatch_series\" field)".into()
                }
            }
            Some(_) => format!("not a valid series line: {}", describe_json(e)),
        }
    }
}

#[cfg(test)]
mod tests;
