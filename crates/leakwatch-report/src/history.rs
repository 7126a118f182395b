//! A bounded history of snapshots: live bytes per site over time, in a fixed memory
//! budget.
//!
//! Every snapshot adds a point: its time, the process totals, and for each site it lists
//! whose live bytes changed, one `(point, f32)` entry (a site's column starts when the
//! site first appears; it reads 0 before, and its last value at points that do not list
//! it). A point costs what changed at it: a series line naming 1 of 100,000 sites is one
//! entry, not 100,000. When the points would outgrow the budget (counted as if every
//! site changed at every point), every second point of the older half is dropped:
//! recent history stays at full resolution, older history thins out geometrically, so
//! hours fit in a few megabytes and the window still reaches back to the start.
//!
//! The history also keeps what the reports need from the latest snapshot: each site's
//! frames and counters, the tracker's own statistics and its warnings.

use crate::series::Series;
use leakwatch_types::Unwinder;
use leakwatch_types::{
    Mode, Module, OverflowStats, ProcessStats, SiteStats, Snapshot, TrackerStats,
};

/// Default memory budget of a [`History`]: 16 MiB.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;
/// Default maximum number of points of a [`History`] (an hour at one a second before any
/// thinning).
pub const DEFAULT_MAX_POINTS: usize = 3600;
/// Fewest points a [`History`] thins down to, whatever the budget.
pub const MIN_POINTS: usize = 32;

/// A bounded history of snapshots of one process.
///
/// Points are numbered in the order they were pushed (`seqs`); a site's values are kept
/// only where they changed (`Column`), so a point costs what changed at it, and a
/// snapshot that lists a few of many sites is a few entries. Thinning drops points from
/// the time axis alone; a column's entries are mapped onto the points still kept the next
/// time the column grows (`Column::trim`).
#[derive(Debug, Clone)]
pub struct History {
    budget_bytes: usize,
    max_points: usize,
    start_ms: Option<u64>,
    /// Seconds since `start_ms`, one per point, non-decreasing.
    times: Vec<f64>,
    process: Vec<ProcessStats>,
    /// Each point's number, increasing (renumbered from 0 before they would overflow).
    seqs: Vec<u32>,
    next_seq: u32,
    /// Each site id's slot in the per-site vectors below, in the order sites appeared
    /// (ids come from the allocator, or from a file: dense slots keep a crafted id of
    /// 4,294,967,295 from costing a table that long).
    slots: std::collections::HashMap<u32, usize>,
    /// Live bytes and departures, by slot.
    columns: Vec<Column>,
    /// The latest counters and the frames of every site seen, by slot.
    sites: Vec<SiteStats>,
    /// Sites that had departures of blocks that lived through `OLD_SNAPSHOTS` snapshots
    /// (`SiteStats::freed_old_bytes`), and of blocks seen at any snapshot
    /// (`freed_seen_bytes`): what the budget counts for them.
    old_columns: usize,
    seen_columns: usize,
    /// Sites whose old departures' ages were counted (`SiteStats::freed_old_age_sq`).
    old_age_columns: usize,
    /// Whether any interval had old departures, and whether any counted their ages
    /// (every old departure adds to `freed_old_age_sq`; recordings from before it never
    /// do). Not "every interval": a snapshot may read a site's old bytes a moment before
    /// their ages, which the next interval then holds.
    old_departures_seen: bool,
    departure_ages_seen: bool,
    /// Sites that had old bytes at some point: what the budget counts for them.
    aged_columns: usize,
    /// Whether every snapshot measured its sites' old bytes (`SiteStats::old_bytes`).
    ages_known: bool,
    /// Whether every snapshot counted departures (a snapshot epoch above 0); recordings
    /// from before that did not.
    departures_known: bool,
    latest: Header,
    thinned: u64,
    /// How the time axis was kept monotonic (see [`History::push`]).
    clock: ClockRepair,
}

/// `(point number, value)` pairs, in point order.
type Entries = Vec<(u32, f32)>;

/// One site's values over the points.
#[derive(Debug, Clone, Default)]
struct Column {
    /// Live bytes where they changed: an entry's value holds until the next entry (0
    /// before the first).
    live: Entries,
    /// Bytes that departed in the interval ending at an entry's point (0 at points
    /// without one): of old blocks, and of blocks seen at a snapshot.
    old: Entries,
    seen: Entries,
    /// For the old departures of an entry's interval: their bytes times their age in
    /// snapshots squared (1024 x the growth of `SiteStats::freed_old_age_sq`).
    old_age_sq: Entries,
    /// Old bytes (`SiteStats::old_bytes`) where they changed, held as `live` is.
    aged: Entries,
    /// Entries after the last trim: the next comes when they have doubled.
    trimmed: usize,
}

impl Column {
    fn len(&self) -> usize {
        self.live.len() + self.old.len() + self.seen.len() + self.old_age_sq.len() + self.aged.len()
    }

    /// Trims once the entries have grown by half since the last trim (amortized: a
    /// trim costs a few steps per entry it looks at).
    fn maybe_trim(&mut self, seqs: &[u32]) {
        if self.len() >= self.trimmed + self.trimmed / 2 + 16 {
            self.trim(seqs);
        }
    }

    /// Maps the entries onto the kept points `seqs`: a live value onto the first kept
    /// point it holds at (dropped when a later value replaces it before one), a
    /// departure onto the first kept point at or after its own (summed there, as
    /// thinning adds a dropped point's departures to the next kept point).
    fn trim(&mut self, seqs: &[u32]) {
        let kept_at = |seq: u32| seqs.partition_point(|&s| s < seq);
        for levels in [&mut self.live, &mut self.aged] {
            let mut kept = Entries::with_capacity(levels.len());
            for (i, &(seq, value)) in levels.iter().enumerate() {
                let from = kept_at(seq);
                let until = levels
                    .get(i + 1)
                    .map_or(seqs.len(), |&(next, _)| kept_at(next));
                if from < until && from < seqs.len() {
                    kept.push((seqs[from], value));
                }
            }
            *levels = kept;
        }
        for departures in [&mut self.old, &mut self.seen, &mut self.old_age_sq] {
            let mut merged = Entries::with_capacity(departures.len());
            for &(seq, bytes) in departures.iter() {
                let Some(&kept) = seqs.get(kept_at(seq)) else {
                    continue;
                };
                match merged.last_mut() {
                    Some((last, sum)) if *last == kept => *sum += bytes,
                    _ => merged.push((kept, bytes)),
                }
            }
            *departures = merged;
        }
        self.trimmed = self.len();
    }

    /// Appends an entry, growing by half rather than doubling (columns are most of a
    /// history's memory).
    fn push(entries: &mut Entries, entry: (u32, f32)) {
        if entries.len() == entries.capacity() {
            entries.reserve_exact(entries.len() / 2 + 4);
        }
        entries.push(entry);
    }

    fn memory_bytes(&self) -> usize {
        (self.live.capacity()
            + self.old.capacity()
            + self.seen.capacity()
            + self.old_age_sq.capacity()
            + self.aged.capacity())
            * std::mem::size_of::<(u32, f32)>()
    }
}

/// Live bytes at each kept point `seqs` (0 before the first entry).
fn live_at(entries: &[(u32, f32)], seqs: &[u32]) -> Vec<f32> {
    let mut next = 0;
    let mut value = 0.0;
    seqs.iter()
        .map(|&seq| {
            while let Some(&(_, v)) = entries.get(next).filter(|&&(s, _)| s <= seq) {
                value = v;
                next += 1;
            }
            value
        })
        .collect()
}

/// Departures up to each kept point `seqs`, cumulative.
fn cumulative_at(entries: &[(u32, f32)], seqs: &[u32]) -> Vec<f64> {
    let mut next = 0;
    let mut total = 0.0;
    seqs.iter()
        .map(|&seq| {
            while let Some(&(_, bytes)) = entries.get(next).filter(|&&(s, _)| s <= seq) {
                total += f64::from(bytes);
                next += 1;
            }
            total
        })
        .collect()
}

/// What [`History::push`] did about timestamps that went backwards or stood still: each
/// such point is placed one typical interval (the median of the recent positive ones, or
/// 1 s without any) after the one before, and later points keep their spacing from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClockRepair {
    /// Points whose timestamp was earlier than the one before.
    pub backwards: u64,
    /// Points whose timestamp equalled the one before.
    pub stood_still: u64,
    /// The interval, in seconds, the latest such point was placed at.
    pub interval_seconds: f64,
    /// Timestamp of the latest point as given, ms since the Unix epoch.
    last_ms: u64,
    /// Seconds added to `(timestamp - start)` for the points since the latest repair.
    offset_seconds: f64,
    /// The latest positive intervals between points, seconds (at most
    /// [`ClockRepair::KEPT`]).
    intervals: std::collections::VecDeque<f64>,
}

impl ClockRepair {
    /// Positive intervals kept for the median.
    const KEPT: usize = 64;

    /// Whether any point was moved.
    pub fn repaired(&self) -> bool {
        self.backwards + self.stood_still > 0
    }

    /// The median of the kept positive intervals, or 1 s without any.
    fn typical_interval(&self) -> f64 {
        let mut kept: Vec<f64> = self.intervals.iter().copied().collect();
        crate::stats::median(&mut kept).unwrap_or(1.0)
    }
}

/// What a snapshot says besides its sites: the tracker and the process. (Also the head
/// of every series-file line, field for field.)
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Wall-clock time of the latest point, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Process id.
    pub pid: u32,
    /// Tracking mode.
    pub mode: Mode,
    /// Sampling rate in bytes (1 = exact).
    pub sample_rate: u32,
    /// The snapshot's epoch (0: written before the allocator counted departures).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// Unwinder in use.
    pub unwinder: Unwinder,
    /// Process totals.
    pub process: ProcessStats,
    /// The tracker's own memory and bounds.
    pub tracker: TrackerStats,
    /// What the tracker could not record.
    pub overflow: OverflowStats,
    /// The tracker's warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "crate::recording::bounded::warnings")]
    pub warnings: Vec<String>,
    /// Loaded modules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Header {
    /// The header of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Header {
        Header {
            timestamp_ms: snapshot.timestamp_ms,
            pid: snapshot.pid,
            mode: snapshot.mode,
            sample_rate: snapshot.sample_rate,
            epoch: snapshot.epoch,
            unwinder: snapshot.unwinder,
            process: snapshot.process,
            tracker: snapshot.tracker,
            overflow: snapshot.overflow,
            warnings: snapshot.warnings.clone(),
            modules: snapshot.modules.clone(),
        }
    }

    /// Writes this header into `snapshot` (its sites stay as they are).
    pub fn write_to(self, snapshot: &mut Snapshot) {
        snapshot.schema_version = leakwatch_types::SCHEMA_VERSION;
        snapshot.timestamp_ms = self.timestamp_ms;
        snapshot.pid = self.pid;
        snapshot.mode = self.mode;
        snapshot.sample_rate = self.sample_rate;
        snapshot.epoch = self.epoch;
        snapshot.unwinder = self.unwinder;
        snapshot.process = self.process;
        snapshot.tracker = self.tracker;
        snapshot.overflow = self.overflow;
        snapshot.warnings = self.warnings;
        snapshot.modules = self.modules;
    }
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_BUDGET_BYTES, DEFAULT_MAX_POINTS)
    }
}

impl History {
    /// An empty history that keeps at most `max_points` points and about `budget_bytes`
    /// of memory for them (never fewer than [`MIN_POINTS`] points).
    pub fn new(budget_bytes: usize, max_points: usize) -> Self {
        History {
            budget_bytes,
            max_points: max_points.max(MIN_POINTS),
            start_ms: None,
            times: Vec::new(),
            process: Vec::new(),
            seqs: Vec::new(),
            next_seq: 0,
            slots: std::collections::HashMap::new(),
            columns: Vec::new(),
            sites: Vec::new(),
            old_columns: 0,
            seen_columns: 0,
            old_age_columns: 0,
            old_departures_seen: false,
            departure_ages_seen: false,
            aged_columns: 0,
            ages_known: true,
            departures_known: true,
            latest: Header::default(),
            thinned: 0,
            clock: ClockRepair::default(),
        }
    }

    /// Adds a snapshot as the newest point. Time only moves forward: a snapshot whose
    /// timestamp is earlier than or equal to the one before (a wall clock stepped back,
    /// or stood still) is placed one typical interval after the newest point, and the
    /// points after it keep their own spacing from there; [`History::clock_repair`] counts
    /// such points.
    ///
    /// Sites missing from the snapshot keep their last counters (and live bytes): a
    /// snapshot may list only the sites that changed, and costs only what it lists.
    pub fn push(&mut self, snapshot: &Snapshot) {
        if self.next_seq == u32::MAX {
            self.renumber();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let ms = snapshot.timestamp_ms;
        let start = *self.start_ms.get_or_insert(ms);
        let clock = &mut self.clock;
        let given = (ms as f64 - start as f64) / 1000.0;
        let time = match self.times.last() {
            None => 0.0,
            Some(&last) if ms > clock.last_ms => {
                let interval = (ms - clock.last_ms) as f64 / 1000.0;
                if clock.intervals.len() == ClockRepair::KEPT {
                    clock.intervals.pop_front();
                }
                clock.intervals.push_back(interval);
                (given + clock.offset_seconds).max(last)
            }
            Some(&last) => {
                if ms < clock.last_ms {
                    clock.backwards += 1;
                } else {
                    clock.stood_still += 1;
                }
                clock.interval_seconds = clock.typical_interval();
                let time = last + clock.interval_seconds;
                clock.offset_seconds = time - given;
                time
            }
        };
        clock.last_ms = ms;
        self.times.push(time);
        self.process.push(snapshot.process);
        self.seqs.push(seq);
        self.departures_known &= snapshot.epoch > 0;
        self.ages_known &= snapshot.sites.iter().all(|s| s.old_bytes.is_some());
        for site in &snapshot.sites {
            let next = self.columns.len();
            let slot = *self.slots.entry(site.id).or_insert(next);
            let (departed_old, departed_seen, departed_age_sq) = if slot == next {
                // A site's first point only sets the baseline: what departed before
                // the window does not matter.
                self.columns.push(Column::default());
                self.sites.push(site.clone());
                (0, 0, 0)
            } else {
                let known = &mut self.sites[slot];
                let departed = (
                    site.freed_old_bytes.saturating_sub(known.freed_old_bytes),
                    site.freed_seen_bytes.saturating_sub(known.freed_seen_bytes),
                    // A wrapping sum: its difference is what the interval added.
                    site.freed_old_age_sq.wrapping_sub(known.freed_old_age_sq),
                );
                known.freed_old_age_sq = site.freed_old_age_sq;
                // Frames never change for an id; copy only the counters.
                known.live_bytes = site.live_bytes;
                known.live_blocks = site.live_blocks;
                known.alloc_bytes = site.alloc_bytes;
                known.alloc_blocks = site.alloc_blocks;
                known.freed_bytes = site.freed_bytes;
                known.freed_blocks = site.freed_blocks;
                known.freed_old_bytes = site.freed_old_bytes;
                known.freed_seen_bytes = site.freed_seen_bytes;
                // Ages are the latest snapshot's (series files carry none).
                known.age_bytes.clone_from(&site.age_bytes);
                known.old_bytes = site.old_bytes;
                departed
            };
            let column = &mut self.columns[slot];
            let live = site.live_bytes as f32;
            if column.live.last().is_none_or(|&(_, last)| last != live) {
                Column::push(&mut column.live, (seq, live));
            }
            let old = site.old_bytes.unwrap_or(0) as f32;
            if column
                .aged
                .last()
                .map_or(old != 0.0, |&(_, last)| last != old)
            {
                self.aged_columns += usize::from(column.aged.is_empty());
                Column::push(&mut column.aged, (seq, old));
            }
            if departed_old > 0 {
                self.old_columns += usize::from(column.old.is_empty());
                Column::push(&mut column.old, (seq, departed_old as f32));
            }
            if departed_seen > 0 {
                self.seen_columns += usize::from(column.seen.is_empty());
                Column::push(&mut column.seen, (seq, departed_seen as f32));
            }
            // Every old departure adds at least its KiB times OLD_SNAPSHOTS squared:
            // old departures and never an age come from an allocator that did not count
            // ages.
            self.old_departures_seen |= departed_old > 0;
            self.departure_ages_seen |= departed_age_sq > 0;
            if departed_age_sq > 0 {
                self.old_age_columns += usize::from(column.old_age_sq.is_empty());
                let bytes_age_sq = departed_age_sq as f64 * 1024.0;
                Column::push(&mut column.old_age_sq, (seq, bytes_age_sq as f32));
            }
            column.maybe_trim(&self.seqs);
        }
        let modules = std::mem::take(&mut self.latest.modules);
        self.latest = Header::of(snapshot);
        // Modules are listed once (a series file's first line): keep the last list.
        if self.latest.modules.is_empty() {
            self.latest.modules = modules;
        }
        while self.times.len() > self.capacity() {
            self.thin();
        }
    }

    /// Numbers the kept points from 0 again (every column trimmed onto them first).
    fn renumber(&mut self) {
        for column in &mut self.columns {
            column.trim(&self.seqs);
            for entries in [
                &mut column.live,
                &mut column.old,
                &mut column.seen,
                &mut column.old_age_sq,
                &mut column.aged,
            ] {
                for (seq, _) in entries.iter_mut() {
                    *seq = self.seqs.partition_point(|&s| s < *seq) as u32;
                }
            }
        }
        self.next_seq = self.seqs.len() as u32;
        for (i, seq) in self.seqs.iter_mut().enumerate() {
            *seq = i as u32;
        }
    }

    /// How many points the budget allows with the sites seen so far (counting, as if
    /// every site changed at every point, one entry per site and point).
    pub fn capacity(&self) -> usize {
        let per_point = std::mem::size_of::<f64>()
            + std::mem::size_of::<ProcessStats>()
            + std::mem::size_of::<u32>()
            + (self.sites.len()
                + self.old_columns
                + self.seen_columns
                + self.old_age_columns
                + self.aged_columns)
                * std::mem::size_of::<(u32, f32)>();
        (self.budget_bytes / per_point).clamp(MIN_POINTS, self.max_points)
    }

    /// Drops every second point of the older half (never the first point) from the
    /// time axis; columns follow when they are next trimmed.
    fn thin(&mut self) {
        let n = self.times.len();
        let half = n / 2;
        let keep = |i: usize| i >= half || i % 2 == 0;
        fn retain_by<T>(v: &mut Vec<T>, keep: impl Fn(usize) -> bool) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep(i);
                i += 1;
                k
            });
        }
        retain_by(&mut self.times, keep);
        retain_by(&mut self.process, keep);
        retain_by(&mut self.seqs, keep);
        self.thinned += (n - self.times.len()) as u64;
    }

    /// Number of points kept.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether no snapshot was added.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// What was done about timestamps that went backwards or stood still.
    pub fn clock_repair(&self) -> &ClockRepair {
        &self.clock
    }

    /// Points dropped by thinning so far.
    pub fn thinned(&self) -> u64 {
        self.thinned
    }

    /// Seconds since the first point, one per point.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Wall-clock time of the first point, ms since the Unix epoch (0 when empty).
    pub fn start_ms(&self) -> u64 {
        self.start_ms.unwrap_or(0)
    }

    /// Process totals, one per point.
    pub fn process(&self) -> &[ProcessStats] {
        &self.process
    }

    /// Live bytes of site `id` at each point (0 before it appeared).
    pub fn column(&self, id: u32) -> Option<Vec<f32>> {
        let column = &self.columns[*self.slots.get(&id)?];
        Some(live_at(&column.live, &self.seqs))
    }

    /// Number of sites seen.
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// Site `id`'s frames and latest counters.
    pub fn site(&self, id: u32) -> Option<&SiteStats> {
        Some(&self.sites[*self.slots.get(&id)?])
    }

    /// Every site seen, with its frames and latest counters, in id order.
    pub fn sites(&self) -> impl Iterator<Item = &SiteStats> {
        let mut sites: Vec<&SiteStats> = self.sites.iter().collect();
        sites.sort_unstable_by_key(|s| s.id);
        sites.into_iter()
    }

    /// The latest snapshot's header.
    pub fn latest(&self) -> &Header {
        &self.latest
    }

    /// Memory held by the points, in bytes (what the budget bounds).
    pub fn memory_bytes(&self) -> usize {
        self.times.capacity() * std::mem::size_of::<f64>()
            + self.process.capacity() * std::mem::size_of::<ProcessStats>()
            + self.seqs.capacity() * std::mem::size_of::<u32>()
            + self.columns.iter().map(Column::memory_bytes).sum::<usize>()
    }

    /// Memory held by the record of each site (its frames, tags, latest counters and
    /// age buckets, and its slot), in bytes: one record per site seen, outside the
    /// points' budget.
    pub fn sites_memory_bytes(&self) -> usize {
        self.sites.capacity() * std::mem::size_of::<SiteStats>()
            + self
                .sites
                .iter()
                .map(|s| {
                    s.frames.capacity() * std::mem::size_of::<u64>()
                        + s.age_bytes.capacity() * std::mem::size_of::<u64>()
                        + s.tags
                            .iter()
                            .map(|(k, v)| k.capacity() + v.capacity() + 64)
                            .sum::<usize>()
                })
                .sum::<usize>()
            + self.columns.capacity() * std::mem::size_of::<Column>()
            + self.slots.capacity() * (std::mem::size_of::<(u32, usize)>() + 1)
    }

    /// The memory budget of the points (see [`History::new`]).
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Bytes that departed from site `id` up to each point, cumulative from the first
    /// (`None` when the snapshots did not count departures).
    pub fn departed(&self, id: u32) -> Option<crate::series::Departed> {
        if !self.departures_known {
            return None;
        }
        let column = self.slots.get(&id).map(|&slot| &self.columns[slot]);
        let none: &[(u32, f32)] = &[];
        Some(crate::series::Departed {
            old: cumulative_at(column.map_or(none, |c| &c.old), &self.seqs),
            seen: cumulative_at(column.map_or(none, |c| &c.seen), &self.seqs),
            old_age_sq: if self.departure_ages_seen || !self.old_departures_seen {
                cumulative_at(column.map_or(none, |c| &c.old_age_sq), &self.seqs)
            } else {
                Vec::new()
            },
        })
    }

    /// Old bytes of site `id` at each point (`SiteStats::old_bytes`; `None` when some
    /// snapshot did not measure them).
    pub fn aged(&self, id: u32) -> Option<Vec<f64>> {
        if !self.ages_known {
            return None;
        }
        let column = &self.columns[*self.slots.get(&id)?];
        Some(
            live_at(&column.aged, &self.seqs)
                .into_iter()
                .map(f64::from)
                .collect(),
        )
    }

    /// The history as a series keyed by site id (live bytes as `f64`).
    pub fn series(&self) -> Series<u32> {
        self.series_by(|site| site.id)
    }

    /// The history as a series with sites merged under `key_of(site)`, summing their live
    /// bytes (each site's estimate is unbiased, so the sums are too).
    pub fn series_by<K: Ord + Clone>(&self, mut key_of: impl FnMut(&SiteStats) -> K) -> Series<K> {
        let mut series = Series::with_times(self.start_ms(), self.times.clone());
        let mut unknown = std::collections::BTreeSet::new();
        series.process = self.process.iter().map(|p| p.live_bytes as f64).collect();
        for site in self.sites() {
            let Some(column) = self.column(site.id) else {
                continue;
            };
            let key = key_of(site);
            // A merged key knows its departures only if every part does.
            match self.departed(site.id) {
                Some(d) if !unknown.contains(&key) => {
                    series.departed.entry(key.clone()).or_default().add(&d);
                }
                _ => {
                    series.departed.remove(&key);
                    unknown.insert(key.clone());
                }
            }
            // Ages are known for every site or none.
            if let Some(old) = self.aged(site.id) {
                let sum = series
                    .aged
                    .entry(key.clone())
                    .or_insert_with(|| vec![0.0; old.len()]);
                for (s, v) in sum.iter_mut().zip(&old) {
                    *s += v;
                }
            }
            let sum = series
                .sites
                .entry(key)
                .or_insert_with(|| vec![0.0; column.len()]);
            for (s, &v) in sum.iter_mut().zip(&column) {
                *s += f64::from(v);
            }
        }
        series
    }

    /// The latest state as a [`Snapshot`] (every site with its frames and counters).
    pub fn latest_snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        self.latest.clone().write_to(&mut s);
        s.sites = self.sites().cloned().collect();
        s
    }
}

#[cfg(test)]
mod tests;
