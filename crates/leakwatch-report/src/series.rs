//! Series: live bytes per site over a sequence of snapshots, as columns of numbers.

use leakwatch_types::Snapshot;
use std::collections::BTreeMap;
use std::hash::Hash;

/// Live bytes of each keyed site at each point in time. Sites absent from a snapshot
/// (not yet allocated from) count as 0 bytes there.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<K> {
    /// Seconds since the first point.
    pub times: Vec<f64>,
    /// Wall-clock time of the first point, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Process-wide live bytes at each point.
    pub process: Vec<f64>,
    /// Per-site live bytes, one value per point.
    pub sites: BTreeMap<K, Vec<f64>>,
    /// Per-site bytes freed from blocks that had been alive at an earlier snapshot,
    /// cumulative (any origin), one value per point, where known: the ranking bounds how
    /// much a sampled estimate wanders between two points by the blocks that departed
    /// between them (blocks born and freed between two snapshots move it by nothing).
    pub departed: BTreeMap<K, Departed>,
    /// Per-site old bytes: live bytes in blocks that have lived through `OLD_SNAPSHOTS`
    /// snapshots (`SiteStats::old_bytes`), one value per point, where known: the
    /// ranking's second leak signal (a leak's old bytes pile up; a cache's turn over).
    /// The same age as [`Departed::old`]'s, so those departures are what moves them down.
    pub aged: BTreeMap<K, Vec<f64>>,
}

impl<K: Ord + Clone> Series<K> {
    /// An empty series.
    pub fn new() -> Self {
        Series {
            times: Vec::new(),
            start_ms: 0,
            process: Vec::new(),
            sites: BTreeMap::new(),
            departed: BTreeMap::new(),
            aged: BTreeMap::new(),
        }
    }

    /// A series with the given points' times (seconds since `start_ms`) and no sites yet;
    /// process live bytes are 0 until set.
    pub fn with_times(start_ms: u64, times: Vec<f64>) -> Self {
        Series {
            process: vec![0.0; times.len()],
            times,
            start_ms,
            sites: BTreeMap::new(),
            departed: BTreeMap::new(),
            aged: BTreeMap::new(),
        }
    }

    /// Appends one point: its time (ms since the epoch), process live bytes, and the live
    /// bytes of each site present.
    pub fn push(
        &mut self,
        timestamp_ms: u64,
        process_live: f64,
        sites: impl IntoIterator<Item = (K, f64)>,
    ) {
        if self.times.is_empty() {
            self.start_ms = timestamp_ms;
        }
        let index = self.times.len();
        self.times
            .push(timestamp_ms.saturating_sub(self.start_ms) as f64 / 1000.0);
        self.process.push(process_live);
        for (key, live) in sites {
            let column = self.sites.entry(key).or_insert_with(|| vec![0.0; index]);
            // A key seen twice in one point (two sites with one label) adds up: each
            // site's estimate is unbiased, so their sum is too.
            if column.len() == index + 1 {
                column[index] += live;
            } else {
                column.push(live);
            }
        }
        for column in self.sites.values_mut() {
            column.resize(index + 1, 0.0);
        }
    }

    /// The series from point `first` on (times still counted from the original start).
    pub fn since(&self, first: usize) -> Series<K> {
        let first = first.min(self.times.len());
        Series {
            times: self.times[first..].to_vec(),
            start_ms: self.start_ms,
            process: self.process.get(first..).unwrap_or(&[]).to_vec(),
            sites: self
                .sites
                .iter()
                .map(|(k, v)| (k.clone(), v.get(first..).unwrap_or(&[]).to_vec()))
                .collect(),
            departed: self
                .departed
                .iter()
                .map(|(k, d)| (k.clone(), d.since(first)))
                .collect(),
            aged: self
                .aged
                .iter()
                .map(|(k, v)| (k.clone(), v.get(first..).unwrap_or(&[]).to_vec()))
                .collect(),
        }
    }

    /// The last `seconds` of the series.
    pub fn last_seconds(&self, seconds: f64) -> Series<K> {
        let end = self.times.last().copied().unwrap_or(0.0);
        let first = self.times.partition_point(|&t| t < end - seconds.max(0.0));
        self.since(first)
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The same series with sites merged under new keys (summing live bytes), e.g. to
    /// merge every site with the same label.
    pub fn regroup<K2: Ord + Clone + Hash>(&self, mut key_of: impl FnMut(&K) -> K2) -> Series<K2> {
        let mut sites: BTreeMap<K2, Vec<f64>> = BTreeMap::new();
        let mut departed: BTreeMap<K2, Departed> = BTreeMap::new();
        let mut aged: BTreeMap<K2, Vec<f64>> = BTreeMap::new();
        let mut unknown: Vec<K2> = Vec::new();
        let mut unaged: Vec<K2> = Vec::new();
        for (key, column) in &self.sites {
            let new_key = key_of(key);
            // A merged key knows its departures (and ages) only if every part does.
            match self.departed.get(key) {
                Some(d) => departed.entry(new_key.clone()).or_default().add(d),
                None => unknown.push(new_key.clone()),
            }
            match self.aged.get(key) {
                Some(old) => add_column(aged.entry(new_key.clone()).or_default(), old),
                None => unaged.push(new_key.clone()),
            }
            let merged = sites
                .entry(new_key)
                .or_insert_with(|| vec![0.0; column.len()]);
            for (sum, value) in merged.iter_mut().zip(column) {
                *sum += value;
            }
        }
        Series {
            times: self.times.clone(),
            start_ms: self.start_ms,
            process: self.process.clone(),
            sites,
            departed: {
                for key in unknown {
                    departed.remove(&key);
                }
                departed
            },
            aged: {
                for key in unaged {
                    aged.remove(&key);
                }
                aged
            },
        }
    }
}

/// A site's departures, cumulative, one value per point: bytes freed from blocks that
/// had lived through `OLD_SNAPSHOTS` snapshots (`old`), and from blocks seen at any
/// snapshot (`seen`, which includes `old`), and how long the old ones had lived
/// (`old_age_sq`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Departed {
    /// Departures of blocks that lived through `OLD_SNAPSHOTS` snapshots or more.
    pub old: Vec<f64>,
    /// Departures of blocks seen at one snapshot or more.
    pub seen: Vec<f64>,
    /// The same old departures, each block's bytes times the square of the snapshots it
    /// lived through (at most [`leakwatch_types::MAX_DEPARTED_AGE`]): divided by the old
    /// bytes that departed in an interval, their mean square life in snapshots. Empty
    /// where unknown (recordings made before the allocator counted it).
    pub old_age_sq: Vec<f64>,
}

impl Departed {
    /// Adds `other` point by point.
    pub fn add(&mut self, other: &Departed) {
        // Known only where every part knows it: a sum missing a part would understate it.
        let ages_known =
            self.old_age_sq.len() == self.old.len() && other.old_age_sq.len() == other.old.len();
        add_column(&mut self.old, &other.old);
        add_column(&mut self.seen, &other.seen);
        if ages_known {
            add_column(&mut self.old_age_sq, &other.old_age_sq);
        } else {
            self.old_age_sq.clear();
        }
    }

    /// The departures that move a site's old bytes (`Series::aged`): only those of old
    /// blocks, since a block younger than `OLD_SNAPSHOTS` snapshots was never in them.
    pub fn of_old_blocks(&self) -> Departed {
        Departed {
            old: self.old.clone(),
            seen: self.old.clone(),
            old_age_sq: self.old_age_sq.clone(),
        }
    }

    /// From point `first` on.
    pub fn since(&self, first: usize) -> Departed {
        Departed {
            old: self.old.get(first..).unwrap_or(&[]).to_vec(),
            seen: self.seen.get(first..).unwrap_or(&[]).to_vec(),
            old_age_sq: self.old_age_sq.get(first..).unwrap_or(&[]).to_vec(),
        }
    }
}

fn add_column(sum: &mut Vec<f64>, column: &[f64]) {
    if sum.len() < column.len() {
        sum.resize(column.len(), 0.0);
    }
    for (s, v) in sum.iter_mut().zip(column) {
        *s += v;
    }
}

impl<K: Ord + Clone> Default for Series<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl Series<u32> {
    /// A series keyed by site id from snapshots of one process, in time order.
    pub fn from_snapshots<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> Self {
        let mut series = Series::new();
        for snapshot in snapshots {
            series.push(
                snapshot.timestamp_ms,
                snapshot.process.live_bytes as f64,
                snapshot.sites.iter().map(|s| (s.id, s.live_bytes as f64)),
            );
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_sites_are_zero_before_they_appear_and_keys_add_up() {
        let mut s: Series<&str> = Series::new();
        s.push(1_000, 10.0, [("a", 1.0)]);
        s.push(2_000, 20.0, [("a", 2.0), ("b", 5.0), ("b", 1.0)]);
        s.push(3_500, 30.0, [("b", 7.0)]);
        assert_eq!(s.times, vec![0.0, 1.0, 2.5]);
        assert_eq!(s.sites["a"], vec![1.0, 2.0, 0.0]);
        assert_eq!(s.sites["b"], vec![0.0, 6.0, 7.0]);
        let merged = s.regroup(|_| "all");
        assert_eq!(merged.sites["all"], vec![1.0, 8.0, 7.0]);
    }
}
