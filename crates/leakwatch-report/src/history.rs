//! A bounded history of snapshots: live bytes per site over time, in a fixed memory
//! budget.
//!
//! Every snapshot adds a point: its time, the process totals, and one `f32` of live bytes
//! per site (a site's column starts when the site first appears; it reads 0 before). When
//! the points would outgrow the budget, every second point of the older half is dropped:
//! recent history stays at full resolution, older history thins out geometrically, so
//! hours fit in a few megabytes and the window still reaches back to the start.
//!
//! The history also keeps what the reports need from the latest snapshot: each site's
//! frames and counters, the tracker's own statistics and its warnings.

use crate::series::Series;
use leakwatch_alloc::Unwinder;
use leakwatch_alloc::{
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
#[derive(Debug, Clone)]
pub struct History {
    budget_bytes: usize,
    max_points: usize,
    start_ms: Option<u64>,
    /// Seconds since `start_ms`, one per point, non-decreasing.
    times: Vec<f64>,
    process: Vec<ProcessStats>,
    /// Each site id's slot in the per-site vectors below, in the order sites appeared
    /// (ids come from the allocator, or from a file: dense slots keep a crafted id of
    /// 4,294,967,295 from costing a table that long).
    slots: std::collections::HashMap<u32, usize>,
    /// Live bytes per point, by slot.
    columns: Vec<Option<Vec<f32>>>,
    /// The latest counters and the frames of every site seen, by slot.
    sites: Vec<Option<SiteStats>>,
    /// Per site, the bytes that departed since the point before: of blocks that lived
    /// through `OLD_SNAPSHOTS` snapshots (`SiteStats::freed_old_bytes`), and of blocks
    /// seen at any snapshot (`freed_seen_bytes`).
    departed_old: Departures,
    departed_seen: Departures,
    /// Whether every snapshot counted departures (a snapshot epoch above 0); recordings
    /// from before that did not.
    departures_known: bool,
    site_count: usize,
    latest: Header,
    thinned: u64,
    /// How the time axis was kept monotonic (see [`History::push`]).
    clock: ClockRepair,
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
        snapshot.schema_version = leakwatch_alloc::SCHEMA_VERSION;
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
            columns: Vec::new(),
            sites: Vec::new(),
            departed_old: Departures::default(),
            departed_seen: Departures::default(),
            slots: std::collections::HashMap::new(),
            departures_known: true,
            site_count: 0,
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
    pub fn push(&mut self, snapshot: &Snapshot) {
        let index = self.times.len();
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
        self.departures_known &= snapshot.epoch > 0;
        for site in &snapshot.sites {
            let next = self.columns.len();
            let id = *self.slots.entry(site.id).or_insert(next);
            if id >= self.columns.len() {
                self.columns.resize_with(id + 1, || None);
                self.sites.resize_with(id + 1, || None);
            }
            let new_site = self.columns[id].is_none();
            let column = self.columns[id].get_or_insert_with(|| {
                self.site_count += 1;
                vec![0.0; index]
            });
            column.push(site.live_bytes as f32);
            self.departed_old
                .push(id, index, site.freed_old_bytes, new_site);
            self.departed_seen
                .push(id, index, site.freed_seen_bytes, new_site);
            match &mut self.sites[id] {
                Some(known) => {
                    // Frames never change for an id; copy only the counters.
                    known.live_bytes = site.live_bytes;
                    known.live_blocks = site.live_blocks;
                    known.alloc_bytes = site.alloc_bytes;
                    known.alloc_blocks = site.alloc_blocks;
                    known.freed_bytes = site.freed_bytes;
                    known.freed_blocks = site.freed_blocks;
                    known.freed_old_bytes = site.freed_old_bytes;
                    known.freed_seen_bytes = site.freed_seen_bytes;
                }
                slot => *slot = Some(site.clone()),
            }
        }
        // Sites missing from this snapshot keep their last value.
        for (id, column) in self.columns.iter_mut().enumerate() {
            if let Some(column) = column {
                if column.len() == index {
                    let last = self.sites[id].as_ref().map_or(0, |s| s.live_bytes);
                    column.push(last as f32);
                }
            }
        }
        self.departed_old.pad(index + 1);
        self.departed_seen.pad(index + 1);
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

    /// How many points the budget allows with the sites seen so far.
    pub fn capacity(&self) -> usize {
        let per_point = std::mem::size_of::<f64>()
            + std::mem::size_of::<ProcessStats>()
            + (self.site_count + self.departed_old.columns + self.departed_seen.columns)
                * std::mem::size_of::<f32>();
        (self.budget_bytes / per_point).clamp(MIN_POINTS, self.max_points)
    }

    /// Drops every second point of the older half (never the first point).
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
        for column in self.columns.iter_mut().flatten() {
            retain_by(column, keep);
        }
        self.departed_old.thin(half, |c| retain_by(c, keep));
        self.departed_seen.thin(half, |c| retain_by(c, keep));
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
    pub fn column(&self, id: u32) -> Option<&[f32]> {
        self.columns.get(*self.slots.get(&id)?)?.as_deref()
    }

    /// Every site seen, with its frames and latest counters, in id order.
    pub fn sites(&self) -> impl Iterator<Item = &SiteStats> {
        let mut sites: Vec<&SiteStats> = self.sites.iter().flatten().collect();
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
            + self
                .columns
                .iter()
                .flatten()
                .map(|c| c.capacity() * std::mem::size_of::<f32>())
                .sum::<usize>()
            + self.departed_old.memory_bytes()
            + self.departed_seen.memory_bytes()
    }

    /// Bytes that departed from site `id` up to each point, cumulative from the first
    /// (`None` when the snapshots did not count departures).
    pub fn departed(&self, id: u32) -> Option<crate::series::Departed> {
        if !self.departures_known {
            return None;
        }
        let n = self.times.len();
        Some(crate::series::Departed {
            old: self
                .departed_old
                .cumulative(self.slots.get(&id).copied(), n),
            seen: self
                .departed_seen
                .cumulative(self.slots.get(&id).copied(), n),
        })
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
            let sum = series
                .sites
                .entry(key)
                .or_insert_with(|| vec![0.0; column.len()]);
            for (s, &v) in sum.iter_mut().zip(column) {
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

/// Per site, bytes that departed in each interval, as `f32` columns kept only for sites
/// that had any (`None`: none so far, zeros). Thinning adds a dropped point's
/// departures to the next kept point.
#[derive(Debug, Clone, Default)]
struct Departures {
    per_point: Vec<Option<Vec<f32>>>,
    /// Each site's cumulative count at its latest point.
    totals: Vec<u64>,
    columns: usize,
}

impl Departures {
    /// Records site `id`'s cumulative count `total` at point `index`. A site's first
    /// point only sets the baseline: what departed before the window does not matter.
    fn push(&mut self, id: usize, index: usize, total: u64, new_site: bool) {
        if id >= self.totals.len() {
            self.per_point.resize_with(id + 1, || None);
            self.totals.resize(id + 1, 0);
        }
        let departed = total.saturating_sub(self.totals[id]);
        self.totals[id] = total;
        if departed > 0 && !new_site {
            let columns = &mut self.columns;
            let column = self.per_point[id].get_or_insert_with(|| {
                *columns += 1;
                vec![0.0; index]
            });
            column.resize(index, 0.0);
            column.push(departed as f32);
        }
    }

    /// Pads every column to `len` points.
    fn pad(&mut self, len: usize) {
        for column in self.per_point.iter_mut().flatten() {
            column.resize(len, 0.0);
        }
    }

    fn thin(&mut self, half: usize, mut retain: impl FnMut(&mut Vec<f32>)) {
        for column in self.per_point.iter_mut().flatten() {
            for i in (1..half).step_by(2) {
                if i + 1 < column.len() {
                    column[i + 1] += column[i];
                }
            }
            retain(column);
        }
    }

    fn memory_bytes(&self) -> usize {
        self.per_point
            .iter()
            .flatten()
            .map(|c| c.capacity() * std::mem::size_of::<f32>())
            .sum()
    }

    /// The cumulative departures of the site in `slot` at each of `n` points.
    fn cumulative(&self, slot: Option<usize>, n: usize) -> Vec<f64> {
        let mut total = 0.0;
        match slot.and_then(|slot| self.per_point.get(slot)?.as_ref()) {
            Some(column) => column
                .iter()
                .map(|&d| {
                    total += f64::from(d);
                    total
                })
                .collect(),
            None => vec![0.0; n],
        }
    }
}

#[cfg(test)]
mod tests;
