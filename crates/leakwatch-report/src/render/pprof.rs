//! pprof: a snapshot as a gzipped protobuf profile for `go tool pprof`, and so for
//! Pyroscope, Parca, Datadog and the other tools that read Go's heap profiles.
//!
//! The format is `profile.proto` of github.com/google/pprof. Each site becomes one
//! sample with four values, in the order of Go's heap profiles: `inuse_space` (bytes),
//! `inuse_objects` (count), `alloc_space` (bytes), `alloc_objects` (count); `inuse_space`
//! is the default. Its locations are the site's return addresses, innermost first,
//! without the runtime frames at the top (leakwatch's allocator, `__rust_alloc`, the
//! standard library's allocation code: the frames [`LabelRules`] ignores, up to the frame
//! that labels the site), so pprof's flat bytes land where the service allocates, on the
//! function its reports name, as in Go's heap profiles. Each address is one location whose
//! lines are the frames inlined there (innermost first, as pprof wants; where runtime
//! code is inlined into its caller, its lines are left out), and which points to the
//! mapping of the module holding it. A location's address is the return address minus
//! one: inside the call instruction, the address of the call that pprof and the tools
//! that read its profiles expect (and the one leakwatch symbolizes). Every recorded
//! address is a return address, the innermost one too (the return into the service from
//! its allocating call). Sites with nothing to show (all four values 0) are left out.
//! Each sample carries its site id as the numeric label `site`, the site's tags
//! (`leakwatch::tag`) as string labels, so `go tool pprof -tagfocus model=2` keeps one
//! model version's memory, and its live bytes by age as numeric labels in bytes
//! (`live_age_under_10s` ... `live_age_older`) when the snapshot measured them.
//!
//! Functions carry the name reports show (full path: the symbol table's for machine
//! functions, see [`SymbolTable::insert`]) and, for the machine function of an address,
//! its symbol-table name as `system_name` when that differs. A name that is not its
//! system name tells pprof it is already demangled, so pprof keeps Rust's
//! `<T as Trait>::method` intact instead of stripping what looks like C++ template
//! arguments; inlined frames have no system name.
//!
//! In sampled mode the snapshot's numbers are already unbiased estimates, so they are
//! written as they are: pprof must not scale them again (and does not: it scales only
//! legacy-format heap profiles).
//!
//! The protobuf encoding is written here by hand: the profile needs only varints and
//! length-delimited fields.

use crate::symbols::{LabelRules, SymbolTable};
use flate2::Compression;
use flate2::write::GzEncoder;
use leakwatch_types::{Mode, Module, SiteStats, Snapshot};
use std::collections::HashMap;
use std::io::Write;

/// The sample types of every profile, as `(type, unit)`, in value order.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("inuse_space", "bytes"),
    ("inuse_objects", "count"),
    ("alloc_space", "bytes"),
    ("alloc_objects", "count"),
];

/// Renders `snapshot` as a gzipped pprof profile, naming frames from `symbols`.
///
/// Addresses missing from `symbols` still get a location (with only the address), so
/// pprof can show them or symbolize them itself from the module's file.
///
/// # Examples
///
/// ```
/// use leakwatch_types::Snapshot;
/// use leakwatch_report::SymbolTable;
/// use leakwatch_report::render::pprof::pprof;
///
/// let profile = pprof(&Snapshot::default(), &SymbolTable::new());
/// assert_eq!(&profile[..2], &[0x1f, 0x8b]); // gzip
/// ```
pub fn pprof(snapshot: &Snapshot, symbols: &SymbolTable) -> Vec<u8> {
    render(snapshot, symbols, SAMPLE_TYPES[0].0)
}

/// [`pprof`] with `alloc_space` as the default sample type: what Go serves as
/// `/debug/pprof/allocs`, so `go tool pprof` shows the bytes allocated at each site since
/// tracking began (the same samples and values as [`pprof`]; `-sample_index` picks
/// another).
///
/// # Examples
///
/// ```
/// use leakwatch_types::Snapshot;
/// use leakwatch_report::SymbolTable;
/// use leakwatch_report::render::pprof::pprof_allocs;
///
/// let profile = pprof_allocs(&Snapshot::default(), &SymbolTable::new());
/// assert_eq!(&profile[..2], &[0x1f, 0x8b]); // gzip
/// ```
pub fn pprof_allocs(snapshot: &Snapshot, symbols: &SymbolTable) -> Vec<u8> {
    render(snapshot, symbols, SAMPLE_TYPES[2].0)
}

/// The gzipped profile with `default_type` (one of [`SAMPLE_TYPES`]) as its default.
fn render(snapshot: &Snapshot, symbols: &SymbolTable, default_type: &str) -> Vec<u8> {
    let raw = Profile::build(snapshot, symbols).encode(snapshot, default_type);
    // Writing to a Vec cannot fail; should it anyway, pprof also reads an uncompressed
    // profile.
    gzip(&raw).unwrap_or(raw)
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 2), Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The profile's tables, before encoding. Ids are 1-based indexes into the tables.
#[derive(Debug, Default)]
struct Profile {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    samples: Vec<Sample>,
    mappings: Vec<Mapping>,
    /// Module indexes sorted by start address, for finding an address's mapping.
    by_start: Vec<usize>,
    locations: Vec<Location>,
    /// By address and the number of its first frames left out (allocator frames):
    /// always 0 but for the address where the allocator is inlined into its caller.
    location_ids: HashMap<(u64, usize), u64>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64, i64), u64>,
    comments: Vec<i64>,
}

#[derive(Debug)]
struct Sample {
    location_ids: Vec<u64>,
    values: [i64; 4],
    site_id: u32,
    /// The site's tags as string ids of (key, value): a label each.
    tags: Vec<(i64, i64)>,
    /// The site's live bytes by age as (key's string id, bytes): a numeric label each.
    ages: Vec<(i64, i64)>,
}

/// The keys of the age labels, one per bucket of `SiteStats::age_bytes`.
const AGE_LABELS: [&str; 5] = [
    "live_age_under_10s",
    "live_age_under_1m",
    "live_age_under_10m",
    "live_age_under_1h",
    "live_age_older",
];

#[derive(Debug)]
struct Mapping {
    start: u64,
    limit: u64,
    /// The file offset mapped at `start`.
    offset: u64,
    filename: i64,
    build_id: i64,
    has_functions: bool,
    has_filenames: bool,
    has_line_numbers: bool,
    has_inline_frames: bool,
}

#[derive(Debug)]
struct Location {
    mapping_id: u64,
    address: u64,
    /// `(function id, line)`, innermost inlined frame first.
    lines: Vec<(u64, i64)>,
}

#[derive(Debug)]
struct Function {
    name: i64,
    system_name: i64,
    filename: i64,
}

/// Bytes as a profile value (saturating: pprof values are signed).
fn bytes_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A block-count estimate as a profile value: rounded (NaN becomes 0, and `as`
/// saturates).
fn blocks_value(blocks: f64) -> i64 {
    blocks.round() as i64
}

fn mode_comment(snapshot: &Snapshot) -> String {
    match snapshot.mode {
        Mode::Exact => "leakwatch heap profile, exact mode: every allocation tracked \
                        (sample rate 1 byte)"
            .to_string(),
        Mode::Sampled => format!(
            "leakwatch heap profile, sampled mode: one sample per {} bytes allocated on \
             average; values are unbiased estimates, already scaled",
            snapshot.sample_rate
        ),
        _ => format!(
            "leakwatch heap profile, tracking off (sample rate {} bytes)",
            snapshot.sample_rate
        ),
    }
}

impl Profile {
    fn build(snapshot: &Snapshot, symbols: &SymbolTable) -> Profile {
        let mut p = Profile::default();
        p.string(""); // index 0, as the format requires
        for (kind, unit) in SAMPLE_TYPES {
            p.string(kind);
            p.string(unit);
        }
        p.string("space");
        p.string("site");
        p.string("bytes");

        let comment = p.string(&mode_comment(snapshot));
        p.comments.push(comment);
        for warning in &snapshot.warnings {
            let comment = p.string(&format!("warning: {warning}"));
            p.comments.push(comment);
        }

        p.add_mappings(&snapshot.modules);
        let runtime = LabelRules::default();
        for site in &snapshot.sites {
            p.add_sample(site, &snapshot.modules, symbols, &runtime);
        }
        p
    }

    /// The string table index of `s`, adding it if new.
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    /// One mapping per module, in the snapshot's order (the main program first, which
    /// pprof takes as the main binary): its executable segment, from its first byte (as
    /// the program header gives it, not rounded to a page) and with its file offset.
    /// Offline symbolizers map addresses back to the file through it: `go tool pprof
    /// BINARY` as `address - start + vaddr of the file's executable segment` (it ignores
    /// the offset), pprof proper as `address - start + offset`, a file offset. The
    /// module's whole range with offset 0 would put a PIE's code off by where its
    /// executable segment starts within its page (Rust binaries linked by lld: 0x330
    /// bytes, say). Modules without a known executable segment (recorded before it
    /// was) map their whole range from offset 0.
    fn add_mappings(&mut self, modules: &[Module]) {
        for module in modules {
            let filename = self.string(&module.path);
            let build_id = self.string(module.build_id.as_deref().unwrap_or(""));
            let (start, limit, offset) = if module.text_start < module.text_end {
                (module.text_start, module.text_end, module.text_offset)
            } else {
                (module.start, module.end, 0)
            };
            self.mappings.push(Mapping {
                start,
                limit,
                offset,
                filename,
                build_id,
                has_functions: false,
                has_filenames: false,
                has_line_numbers: false,
                has_inline_frames: false,
            });
        }
        self.by_start = (0..modules.len()).collect();
        self.by_start.sort_by_key(|&i| modules[i].start);
    }

    /// The id of the mapping holding `address` (0: none).
    fn mapping_of(&self, address: u64, modules: &[Module]) -> u64 {
        // The last module starting at or below the address is the only candidate, unless
        // modules overlap; then fall back to a scan.
        let after = self
            .by_start
            .partition_point(|&i| modules[i].start <= address);
        let contains = |i: usize| modules[i].start <= address && address < modules[i].end;
        let found = after
            .checked_sub(1)
            .map(|k| self.by_start[k])
            .filter(|&i| contains(i))
            .or_else(|| (0..modules.len()).find(|&i| contains(i)));
        found.map_or(0, |i| i as u64 + 1)
    }

    fn add_sample(
        &mut self,
        site: &SiteStats,
        modules: &[Module],
        symbols: &SymbolTable,
        runtime: &LabelRules,
    ) {
        let values = [
            bytes_value(site.live_bytes),
            blocks_value(site.live_blocks),
            bytes_value(site.alloc_bytes),
            blocks_value(site.alloc_blocks),
        ];
        if values == [0; 4] {
            return;
        }
        // Leave out the runtime frames at the top: whole addresses, and the first
        // inlined frames of the address where they end. The outermost frame stays
        // should every frame be runtime code.
        // `SymbolTable::stack` gives at least one frame per address.
        let frame_count = |address: u64| symbols.get(address).map_or(1, |s| s.len().max(1));
        let mut leading = 0;
        'top: for &address in &site.frames {
            for frame in symbols.stack(&[address]) {
                if !runtime.is_ignored(&frame) {
                    break 'top;
                }
                leading += 1;
            }
        }
        let total: usize = site.frames.iter().map(|&a| frame_count(a)).sum();
        let cut = leading.min(total.saturating_sub(1));
        let mut location_ids = Vec::with_capacity(site.frames.len());
        let mut above = 0; // frames of the addresses before this one
        for &address in &site.frames {
            let count = frame_count(address);
            let skip = cut.saturating_sub(above);
            above += count;
            if skip < count {
                location_ids.push(self.location(address, skip, modules, symbols));
            }
        }
        let tags = site
            .tags
            .iter()
            .map(|(key, value)| (self.string(key), self.string(value)))
            .collect();
        let ages = AGE_LABELS
            .iter()
            .zip(&site.age_bytes)
            .map(|(key, &bytes)| (self.string(key), bytes.min(i64::MAX as u64) as i64))
            .collect();
        self.samples.push(Sample {
            location_ids,
            values,
            site_id: site.id,
            tags,
            ages,
        });
    }

    /// The id of the location of `address` without its first `skip` (inlined) frames,
    /// adding it (and its functions) if new.
    fn location(
        &mut self,
        address: u64,
        skip: usize,
        modules: &[Module],
        symbols: &SymbolTable,
    ) -> u64 {
        if let Some(&id) = self.location_ids.get(&(address, skip)) {
            return id;
        }
        let mapping_id = self.mapping_of(address, modules);
        let mut lines = Vec::new();
        let (mut has_file, mut has_line) = (false, false);
        for symbol in symbols.get(address).unwrap_or(&[]).iter().skip(skip) {
            let Some(function) = symbol.function.as_deref() else {
                continue;
            };
            let name = self.string(function);
            let system_name = match symbol.symbol.as_deref() {
                Some(system) if !symbol.inlined && system != function => self.string(system),
                _ => 0,
            };
            let filename = self.string(symbol.file.as_deref().unwrap_or(""));
            has_file |= filename != 0;
            has_line |= symbol.line.is_some();
            let function_id = self.function(name, system_name, filename);
            lines.push((function_id, i64::from(symbol.line.unwrap_or(0))));
        }
        let slot = usize::try_from(mapping_id)
            .ok()
            .and_then(|id| id.checked_sub(1));
        if let Some(mapping) = slot.and_then(|i| self.mappings.get_mut(i)) {
            mapping.has_functions |= !lines.is_empty();
            mapping.has_filenames |= has_file;
            mapping.has_line_numbers |= has_line;
            mapping.has_inline_frames |= lines.len() > 1;
        }
        self.locations.push(Location {
            mapping_id,
            // The call instruction, not the return address after it.
            address: address.saturating_sub(1),
            lines,
        });
        let id = self.locations.len() as u64;
        self.location_ids.insert((address, skip), id);
        id
    }

    /// The id of the function `(name, system_name, filename)`, adding it if new.
    fn function(&mut self, name: i64, system_name: i64, filename: i64) -> u64 {
        let key = (name, system_name, filename);
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        self.functions.push(Function {
            name,
            system_name,
            filename,
        });
        let id = self.functions.len() as u64;
        self.function_ids.insert(key, id);
        id
    }

    fn encode(&self, snapshot: &Snapshot, default_type: &str) -> Vec<u8> {
        let mut w = Writer::default();
        let id = |s: &str| self.string_ids.get(s).copied().unwrap_or(0);
        for (kind, unit) in SAMPLE_TYPES {
            w.message(field::SAMPLE_TYPE, |m| {
                m.int(1, id(kind));
                m.int(2, id(unit));
            });
        }
        for sample in &self.samples {
            w.message(field::SAMPLE, |m| {
                m.packed(1, sample.location_ids.iter().copied());
                m.packed(2, sample.values.iter().map(|&v| v as u64));
                m.message(3, |label| {
                    label.int(1, id("site"));
                    label.int(3, i64::from(sample.site_id));
                });
                // Tags as string labels: `go tool pprof -tagfocus model=2`.
                for &(key, value) in &sample.tags {
                    m.message(3, |label| {
                        label.int(1, key);
                        label.int(2, value);
                    });
                }
                // Live bytes by age as numeric labels (`go tool pprof -tags`).
                for &(key, bytes) in &sample.ages {
                    m.message(3, |label| {
                        label.int(1, key);
                        label.int(3, bytes);
                        label.int(4, id("bytes"));
                    });
                }
            });
        }
        for (i, mapping) in self.mappings.iter().enumerate() {
            w.message(field::MAPPING, |m| {
                m.uint(1, i as u64 + 1);
                m.uint(2, mapping.start);
                m.uint(3, mapping.limit);
                m.uint(4, mapping.offset);
                m.int(5, mapping.filename);
                m.int(6, mapping.build_id);
                m.bool(7, mapping.has_functions);
                m.bool(8, mapping.has_filenames);
                m.bool(9, mapping.has_line_numbers);
                m.bool(10, mapping.has_inline_frames);
            });
        }
        for (i, location) in self.locations.iter().enumerate() {
            w.message(field::LOCATION, |m| {
                m.uint(1, i as u64 + 1);
                m.uint(2, location.mapping_id);
                m.uint(3, location.address);
                for &(function_id, line) in &location.lines {
                    m.message(4, |l| {
                        l.uint(1, function_id);
                        l.int(2, line);
                    });
                }
            });
        }
        for (i, function) in self.functions.iter().enumerate() {
            w.message(field::FUNCTION, |m| {
                m.uint(1, i as u64 + 1);
                m.int(2, function.name);
                // Empty for inlined frames: see the module's documentation.
                m.int(3, function.system_name);
                m.int(4, function.filename);
            });
        }
        for s in &self.strings {
            w.bytes(field::STRING_TABLE, s.as_bytes());
        }
        let nanos = snapshot.timestamp_ms.saturating_mul(1_000_000);
        w.int(field::TIME_NANOS, bytes_value(nanos));
        w.message(field::PERIOD_TYPE, |m| {
            m.int(1, id("space"));
            m.int(2, id("bytes"));
        });
        w.int(field::PERIOD, i64::from(snapshot.sample_rate));
        w.packed(field::COMMENT, self.comments.iter().map(|&c| c as u64));
        w.int(field::DEFAULT_SAMPLE_TYPE, id(default_type));
        w.buf
    }
}

/// Field numbers of `Profile` in profile.proto.
mod field {
    pub const SAMPLE_TYPE: u32 = 1;
    pub const SAMPLE: u32 = 2;
    pub const MAPPING: u32 = 3;
    pub const LOCATION: u32 = 4;
    pub const FUNCTION: u32 = 5;
    pub const STRING_TABLE: u32 = 6;
    pub const TIME_NANOS: u32 = 9;
    pub const PERIOD_TYPE: u32 = 11;
    pub const PERIOD: u32 = 12;
    pub const COMMENT: u32 = 13;
    pub const DEFAULT_SAMPLE_TYPE: u32 = 14;
}

/// A protobuf writer: just the wire types the profile uses.
#[derive(Debug, Default)]
struct Writer {
    buf: Vec<u8>,
}

const VARINT: u64 = 0;
const LEN: u64 = 2;

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u64) {
        self.varint((u64::from(field) << 3) | wire_type);
    }

    /// An unsigned scalar field, left out when 0 (the default).
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// A signed scalar field: `int64` encodes negative values as their 64-bit two's
    /// complement.
    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn bool(&mut self, field: u32, v: bool) {
        self.uint(field, u64::from(v));
    }

    /// A length-delimited field (strings, bytes, messages, packed lists); always written,
    /// so an empty string still takes its place in a repeated field.
    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, LEN);
        self.varint(data.len() as u64);
        self.buf.extend_from_slice(data);
    }

    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        body(&mut inner);
        self.bytes(field, &inner.buf);
    }

    /// A packed repeated varint field, left out when empty.
    fn packed(&mut self, field: u32, values: impl Iterator<Item = u64>) {
        let mut inner = Writer::default();
        for v in values {
            inner.varint(v);
        }
        if !inner.buf.is_empty() {
            self.bytes(field, &inner.buf);
        }
    }
}

#[cfg(test)]
mod tests;
