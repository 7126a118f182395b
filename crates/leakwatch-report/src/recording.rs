//! Series files: snapshots appended one JSON line at a time, for analysis after the fact
//! (`leakwatch report SERIES.jsonl`).
//!
//! Each line is one snapshot, written by [`SeriesWriter`] and read back by
//! [`Recording::read`]. To keep hours of recording small, a line carries only what changed
//! since the previous line of the same process: a site's frames once (`new_sites`), each
//! return address's symbols once (`symbols`), and a site's counters only when they moved
//! (`sites`). The format is documented in docs/report-format.md.
//!
//! An address without an entry in `symbols` was not symbolized (a recorder with
//! symbolization off, `LEAKWATCH_SYMBOLIZE=0`): [`Recording::symbols`] then lacks it
//! ([`SymbolTable::contains`] is false), while an address the symbolizer could not name
//! has an entry with one unknown frame. The modules of the first line (path, load bias,
//! address range, build id) are what offline tools resolve unsymbolized addresses with.

use crate::error::{Error, Result, describe_json};
use crate::history::{Header, History};
use crate::symbols::SymbolTable;
use leakwatch_types::{SiteStats, Snapshot, Symbol, Tags};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The version of the series line format (the value of every line's
/// `leakwatch_series` field).
pub const SERIES_VERSION: u32 = 1;

/// The longest series line read (256 MiB): a process's first line lists every site and
/// symbol seen so far, which for the largest processes is tens of MiB.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// The most sites a series file may describe (per process): twice the allocator's
/// default table (`LEAKWATCH_MAX_SITES`, 65,536). A report costs a few KiB per site, so
/// this keeps any file within a few hundred MB; more is refused, never dropped.
pub const MAX_SITES: usize = 100_000;

/// The most frames a site may have: the allocator's deepest stack
/// (`LEAKWATCH_MAX_DEPTH` is at most 256).
pub const MAX_FRAMES: usize = 256;

/// The most return addresses whose symbols a series file may list, and the most
/// symbols (inlined frames) one address may have.
pub const MAX_SYMBOLS: usize = 200_000;
const MAX_INLINED: usize = 1_024;
/// The most warnings a line or a report may carry (the tracker has a handful).
pub const MAX_WARNINGS: usize = 1_000;
/// The largest block count read (2^64).
const BLOCKS_MAX: f64 = 18_446_744_073_709_551_616.0;

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
    #[serde(deserialize_with = "bounded::sites")]
    new_sites: Vec<NewSite>,
    /// Symbols of return addresses seen for the first time, one list per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::symbols")]
    symbols: Vec<SymbolList>,
    /// Counters of the sites that changed: `[id, alloc_bytes, alloc_blocks, freed_bytes,
    /// freed_blocks]`.
    #[serde(default, deserialize_with = "bounded::sites")]
    sites: Vec<(u32, u64, f64, u64, f64)>,
    /// Departures (cumulative) of the sites whose counts changed: `[id,
    /// freed_old_bytes, freed_seen_bytes]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::sites")]
    departed: Vec<(u32, u64, u64)>,
    /// Ages of the departures above, where counted: `[id, freed_old_age_sq]`
    /// (`SiteStats::freed_old_age_sq`). Lines without it (from before) leave them
    /// unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::sites")]
    departed_ages: Vec<(u32, u64)>,
    /// Ages of the sites whose ages changed: `[id, old_bytes, [age_bytes...]]`
    /// (`SiteStats::old_bytes` and `age_bytes`). Lines without it (from before ages)
    /// leave ages unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::sites")]
    ages: Vec<(u32, u64, AgeBuckets)>,
}

/// A site's live bytes by age bucket, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct AgeBuckets(#[serde(deserialize_with = "bounded::age_buckets")] Vec<u64>);

/// Lists read with a bound on their length, checked as they are read: a line must not
/// make the reader hold more than the limits allow before it can refuse it.
pub(crate) mod bounded {
    use super::{MAX_FRAMES, MAX_INLINED, MAX_SITES, MAX_SYMBOLS, MAX_WARNINGS};
    use leakwatch_types::{MAX_TAG_BYTES, MAX_TAGS, Tags};
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct Bounded<T> {
        max: usize,
        what: &'static str,
        item: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {} {}", self.max, self.what)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == self.max {
                    return Err(A::Error::custom(format_args!(
                        "more than {} {} (more than a recorder writes)",
                        self.max, self.what
                    )));
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    fn at_most<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Bounded {
            max,
            what,
            item: PhantomData,
        })
    }

    pub(super) fn sites<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        at_most(d, MAX_SITES, "sites in one line")
    }

    pub(super) fn frames<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        at_most(d, MAX_FRAMES, "frames in one site")
    }

    pub(super) fn symbols<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        at_most(d, MAX_SYMBOLS, "addresses' symbols in one line")
    }

    /// The tracker's warnings on a line (a handful in practice).
    pub(crate) fn warnings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        at_most(d, MAX_WARNINGS, "warnings")
    }

    /// A site's tags: at most `MAX_TAGS`, each key and value at most `MAX_TAG_BYTES`
    /// (what the tracker writes; the line's own length bounds what is read first).
    pub(crate) fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        let tags = Tags::deserialize(d)?;
        if tags.len() > MAX_TAGS {
            return Err(serde::de::Error::custom(format!(
                "more than {MAX_TAGS} tags in one site"
            )));
        }
        if tags
            .iter()
            .any(|(k, v)| k.len() > MAX_TAG_BYTES || v.len() > MAX_TAG_BYTES)
        {
            return Err(serde::de::Error::custom(format!(
                "a tag longer than {MAX_TAG_BYTES} bytes"
            )));
        }
        Ok(tags)
    }

    /// A site's age buckets (five today; a few more allowed for later bounds).
    pub(super) fn age_buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        at_most(d, 16, "age buckets in one site")
    }

    pub(super) fn inlined<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        at_most(d, MAX_INLINED, "symbols of one address")
    }
}

/// One return address's symbols (more than one when calls were inlined there).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct SymbolList(#[serde(deserialize_with = "bounded::inlined")] Vec<Symbol>);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NewSite {
    id: u32,
    #[serde(deserialize_with = "bounded::frames")]
    frames: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[serde(deserialize_with = "bounded::tags")]
    tags: Tags,
}

type Counters = (u64, f64, u64, f64, (u64, u64, u64));

fn counters(s: &SiteStats) -> Counters {
    (
        s.alloc_bytes,
        s.alloc_blocks,
        s.freed_bytes,
        s.freed_blocks,
        (s.freed_old_bytes, s.freed_seen_bytes, s.freed_old_age_sq),
    )
}

/// Turns snapshots of one process into series-file lines, each carrying only what
/// changed since the previous one.
#[derive(Debug, Default)]
pub struct SeriesWriter {
    pid: Option<u32>,
    /// Last written counters, by site id.
    written: std::collections::HashMap<u32, Counters>,
    /// Last written ages (`old_bytes`, `age_bytes`), by site id, for sites that had any.
    ages_written: std::collections::HashMap<u32, (u64, AgeBuckets)>,
    symbols_written: HashSet<u64>,
    limit_written: Option<Option<u64>>,
}

impl SeriesWriter {
    /// A writer whose first line will describe everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets what was written: the next line describes everything its snapshot
    /// lists (header and modules, each site's frames, the symbols of their addresses,
    /// their counters), as a file's first line does. For a new file (rotation), or after
    /// a line that may not have landed.
    pub fn restart(&mut self) {
        *self = SeriesWriter::new();
    }

    /// Bytes the writer holds to know what it wrote (each site's last counters, the
    /// addresses whose symbols it wrote): one entry per site and address, so bounded
    /// by the tracker's sites (`LEAKWATCH_MAX_SITES`) and their frames.
    pub fn memory_bytes(&self) -> usize {
        // A hashbrown table holds its capacity in (key, value) slots plus a control
        // byte each.
        self.written.capacity() * (std::mem::size_of::<(u32, Counters)>() + 1)
            + self.ages_written.capacity() * (std::mem::size_of::<(u32, (u64, AgeBuckets))>() + 1)
            + self
                .ages_written
                .values()
                .map(|(_, b)| b.0.capacity() * 8)
                .sum::<usize>()
            + self.symbols_written.capacity() * (std::mem::size_of::<u64>() + 1)
    }

    /// The line (JSON, ending in `\n`) for `snapshot`. Symbols of new return addresses
    /// are taken from `symbols` (resolve them first). An address `symbols` lacks is not
    /// symbolized (the recorder's symbolization is off): it is written without symbols,
    /// so readers resolve it from its module (`leakwatch report --symbols`); should it
    /// enter `symbols` later, the next new site with it writes them. An address with
    /// an empty entry (symbolized, nothing found) is written as one unknown frame.
    /// `memory_limit` is written when it changes.
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
            departed_ages: Vec::new(),
            ages: Vec::new(),
        };
        if self.limit_written != Some(memory_limit) {
            line.memory_limit = memory_limit;
            self.limit_written = Some(memory_limit);
        }
        for site in &snapshot.sites {
            let now = counters(site);
            // Ages change as blocks age, with no allocation or free: such a site is
            // written for them alone.
            let ages = site
                .old_bytes
                .map(|old| (old, AgeBuckets(site.age_bytes.clone())));
            let ages_changed = ages.is_some() && self.ages_written.get(&site.id) != ages.as_ref();
            match self.written.get(&site.id).copied() {
                Some(before) if before == now && !ages_changed => continue,
                Some(_) => {}
                None => {
                    line.new_sites.push(NewSite {
                        id: site.id,
                        frames: site.frames.clone(),
                        truncated: site.truncated,
                        tags: site.tags.clone(),
                    });
                    for &address in &site.frames {
                        // An address the table lacks was not symbolized (symbolization
                        // off): it is left out, and written once it is in the table.
                        let Some(list) = symbols.get(address) else {
                            continue;
                        };
                        if self.symbols_written.insert(address) {
                            line.symbols.push(SymbolList(symbol_list(list, address)));
                        }
                    }
                }
            }
            let departed_before = self.written.get(&site.id).map_or((0, 0, 0), |c| c.4);
            self.written.insert(site.id, now);
            line.sites.push((site.id, now.0, now.1, now.2, now.3));
            if now.4 != departed_before {
                line.departed.push((site.id, now.4.0, now.4.1));
            }
            if now.4.2 != departed_before.2 {
                line.departed_ages.push((site.id, now.4.2));
            }
            if let Some((old, buckets)) = ages.filter(|_| ages_changed) {
                line.ages.push((site.id, old, buckets.clone()));
                self.ages_written.insert(site.id, (old, buckets));
            }
        }
        // Lines hold plain numbers and strings: serializing cannot fail.
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The symbols of `address` to write: the table's entry, or, when the symbolizer found
/// nothing there, one unknown frame ("symbolized, unknown", unlike an address left out:
/// "not symbolized").
fn symbol_list(list: &[Symbol], address: u64) -> Vec<Symbol> {
    if list.is_empty() {
        let mut unknown = Symbol::default();
        unknown.address = address;
        vec![unknown]
    } else {
        list.to_vec()
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
        let mut reader = Reader::new(empty);
        reader.read(origin, input)?;
        reader.finish(origin)
    }

    /// Reads a rotated set of series files (see [`rotated_set`]) as one recording, in
    /// the order given (oldest first). Each file starts with everything a reader needs,
    /// so the history read equals that of one unrotated file of the same snapshots,
    /// less what the deleted files held. Errors name the file and line.
    ///
    /// # Errors
    /// As [`Recording::read`], for any of the files; an empty list is an error too.
    pub fn read_files<R: BufRead>(files: Vec<(String, R)>, empty: History) -> Result<Recording> {
        let mut reader = Reader::new(empty);
        let mut last = String::from("<no files>");
        for (origin, input) in files {
            reader.read(&origin, input)?;
            last = origin;
        }
        reader.finish(&last)
    }
}

/// The files of the rotated set of series file `path`, oldest first: `path.N`, ...,
/// `path.1` (those that exist, numbered from 1 without a gap), then `path` itself. A
/// recorder that rotates (`RecorderBuilder::rotate`) renames `path` to `path.1` when it
/// is full, after moving each `path.K` to `path.K+1`; given a rotated name such as
/// `path.2`, this lists just that file (no `path.2.1` exists).
pub fn rotated_set(path: &Path) -> Vec<PathBuf> {
    let mut set = vec![path.to_path_buf()];
    for n in 1.. {
        let older = rotated_path(path, n);
        if !older.is_file() {
            break;
        }
        set.push(older);
    }
    set.reverse();
    set
}

/// The name of the `n`th rotated file of `path` (`n` = 1 is the newest): `path.n`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

struct Reader {
    template: History,
    recording: Recording,
    /// The last line as a snapshot: its header and the sites it named (the history
    /// holds every site's latest counters).
    current: Snapshot,
    pid: Option<u32>,
}

impl Reader {
    fn new(empty: History) -> Reader {
        Reader {
            template: empty.clone(),
            recording: Recording {
                history: empty,
                symbols: SymbolTable::new(),
                memory_limit: None,
                earlier_processes: 0,
                lines: 0,
            },
            current: Snapshot::default(),
            pid: None,
        }
    }

    /// Applies every line of one file. `origin` names it in errors.
    fn read(&mut self, origin: &str, mut input: impl BufRead) -> Result<()> {
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
            self.apply(text.trim_end_matches(['\n', '\r']))
                .map_err(|message| Error::at(origin, Some(number), message))?;
        }
        Ok(())
    }

    /// The recording read, or an error when no line was.
    fn finish(self, origin: &str) -> Result<Recording> {
        if self.recording.lines == 0 {
            return Err(Error::at(origin, None, "empty file: no snapshots recorded"));
        }
        Ok(self.recording)
    }

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
            }
            self.pid = Some(line.header.pid);
        }
        for SymbolList(list) in line.symbols {
            if let Some(address) = list.first().map(|s| s.address) {
                self.recording.symbols.insert(address, list);
            }
        }
        if self.recording.symbols.len() > MAX_SYMBOLS {
            return Err(format!(
                "symbols of more than {MAX_SYMBOLS} return addresses: more than this reader holds"
            ));
        }
        // The sites this line names, new or changed: the history keeps the others as
        // they were, so a line costs what it lists, not every site seen so far.
        let mut changed: Vec<SiteStats> = std::mem::take(&mut self.current.sites);
        changed.clear();
        let mut position: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for new in line.new_sites {
            if position.contains_key(&new.id) {
                return Err(format!("site {} is described twice in one line", new.id));
            }
            // A rotated file (or the line after a failed write) describes every site
            // again, so that it stands alone: the same frames are no news.
            if let Some(known) = self.recording.history.site(new.id) {
                if known.frames != new.frames
                    || known.truncated != new.truncated
                    || known.tags != new.tags
                {
                    return Err(format!(
                        "site {} is described twice, with different frames",
                        new.id
                    ));
                }
                continue;
            }
            let mut site = SiteStats::default();
            site.id = new.id;
            site.frames = new.frames;
            site.truncated = new.truncated;
            site.tags = new.tags;
            position.insert(new.id, changed.len());
            changed.push(site);
        }
        let sites = self.recording.history.site_count() + changed.len();
        if sites > MAX_SITES {
            return Err(format!(
                "more than {MAX_SITES} sites in one process ({sites} so far): more than this reader holds"
            ));
        }
        let history = &self.recording.history;
        for (id, alloc_bytes, alloc_blocks, freed_bytes, freed_blocks) in line.sites {
            // Estimated block counts: sums of weights, never negative, and far below
            // 2^64 (an estimate above that would overflow every sum made of it).
            if !(0.0..=BLOCKS_MAX).contains(&alloc_blocks)
                || !(0.0..=BLOCKS_MAX).contains(&freed_blocks)
            {
                return Err(format!(
                    "site {id}: block counts {alloc_blocks:?} and {freed_blocks:?} are not between 0 and 2^64"
                ));
            }
            let i = named(&mut changed, &mut position, history, id, "counters")?;
            let site = &mut changed[i];
            site.alloc_bytes = alloc_bytes;
            site.alloc_blocks = alloc_blocks;
            site.freed_bytes = freed_bytes;
            site.freed_blocks = freed_blocks;
            site.live_bytes = alloc_bytes.saturating_sub(freed_bytes);
            site.live_blocks = (alloc_blocks - freed_blocks).max(0.0);
        }
        for (id, freed_old_bytes, freed_seen_bytes) in line.departed {
            let i = named(&mut changed, &mut position, history, id, "departures")?;
            changed[i].freed_old_bytes = freed_old_bytes;
            changed[i].freed_seen_bytes = freed_seen_bytes;
        }
        for (id, freed_old_age_sq) in line.departed_ages {
            let i = named(&mut changed, &mut position, history, id, "departure ages")?;
            changed[i].freed_old_age_sq = freed_old_age_sq;
        }
        for (id, old_bytes, AgeBuckets(age_bytes)) in line.ages {
            let i = named(&mut changed, &mut position, history, id, "ages")?;
            changed[i].old_bytes = Some(old_bytes);
            changed[i].age_bytes = age_bytes;
        }
        self.current.sites = changed;
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
        // What the line is, read without keeping it: a JSON tree of a line of
        // hundreds of MB would cost several times that.
        #[derive(Default, Deserialize)]
        struct Probe {
            leakwatch_series: Option<IgnoredAny>,
            format: Option<IgnoredString>,
            schema_version: Option<IgnoredAny>,
            sites: Option<IgnoredAny>,
        }
        /// A string field, compared and dropped.
        #[derive(Default)]
        struct IgnoredString(bool);
        impl<'de> Deserialize<'de> for IgnoredString {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                struct IsReport;
                impl<'de> serde::de::Visitor<'de> for IsReport {
                    type Value = IgnoredString;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("anything")
                    }
                    fn visit_str<E>(self, v: &str) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(v == crate::report::REPORT_FORMAT))
                    }
                    fn visit_bool<E>(self, _: bool) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(false))
                    }
                    fn visit_i64<E>(self, _: i64) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(false))
                    }
                    fn visit_u64<E>(self, _: u64) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(false))
                    }
                    fn visit_f64<E>(self, _: f64) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(false))
                    }
                    fn visit_unit<E>(self) -> std::result::Result<IgnoredString, E> {
                        Ok(IgnoredString(false))
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> std::result::Result<IgnoredString, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(IgnoredString(false))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> std::result::Result<IgnoredString, A::Error> {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(IgnoredString(false))
                    }
                }
                d.deserialize_any(IsReport)
            }
        }
        if serde_json::from_str::<IgnoredAny>(text).is_err() {
            return describe_json(e);
        }
        let probe = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Probe>(text).unwrap_or_default()
        } else {
            Probe::default()
        };
        if probe.leakwatch_series.is_some() {
            format!("not a valid series line: {}", describe_json(e))
        } else if probe.format.is_some_and(|f| f.0) {
            "this is a JSON report, not a series file (compare reports with `leakwatch diff`)"
                .into()
        } else if probe.schema_version.is_some() && probe.sites.is_some() {
            "this is a single snapshot, not a series file (record with leakwatch's Recorder)".into()
        } else {
            "not a leakwatch series line (no \"leakwatch_series\" field)".into()
        }
    }
}

/// Where site `id` is in `changed`: added there with its latest counters (not its
/// frames: the history keeps those) when the line has not named it yet.
fn named(
    changed: &mut Vec<SiteStats>,
    position: &mut std::collections::HashMap<u32, usize>,
    history: &History,
    id: u32,
    what: &str,
) -> std::result::Result<usize, String> {
    if let Some(&i) = position.get(&id) {
        return Ok(i);
    }
    let Some(known) = history.site(id) else {
        return Err(format!(
            "{what} for site {id}, which no earlier line describes (is the file missing its beginning?)"
        ));
    };
    let mut site = SiteStats::default();
    site.id = id;
    site.live_bytes = known.live_bytes;
    site.live_blocks = known.live_blocks;
    site.alloc_bytes = known.alloc_bytes;
    site.alloc_blocks = known.alloc_blocks;
    site.freed_bytes = known.freed_bytes;
    site.freed_blocks = known.freed_blocks;
    site.freed_old_bytes = known.freed_old_bytes;
    site.freed_seen_bytes = known.freed_seen_bytes;
    site.freed_old_age_sq = known.freed_old_age_sq;
    site.old_bytes = known.old_bytes;
    site.age_bytes.clone_from(&known.age_bytes);
    position.insert(id, changed.len());
    changed.push(site);
    Ok(changed.len() - 1)
}

#[cfg(test)]
mod tests;
