//! Workloads shared by the allocator benchmarks, and their criterion registration.
//!
//! Every bench binary installs a different global allocator and calls [`register`]
//! with its configuration's name, so the same workloads run against each.
#![forbid(unsafe_code)]

#[cfg(feature = "criterion")]
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

pub mod instructions;
pub mod rank_series;

/// Alloc+free pairs per churn iteration.
pub const CHURN_BATCH: u64 = 1_000;
/// Blocks kept by the retained-growth workload.
pub const RETAINED_BLOCKS: usize = 1_000_000;
/// Distinct sites of the retained-growth workload.
pub const RETAINED_SITES: usize = 50;
/// Stack depth at which the churn workloads allocate.
pub const DEPTH: u32 = 20;

/// Runs `f` about `depth` frames deeper than the caller.
#[inline(never)]
pub fn at_depth<R>(depth: u32, f: &mut dyn FnMut() -> R) -> R {
    if depth == 0 {
        return f();
    }
    let r = at_depth(depth - 1, f);
    black_box(depth);
    r
}

/// `n` alloc+free pairs of 16 to 256 bytes.
#[inline(never)]
pub fn churn(n: u64) {
    for i in 0..n {
        let size = 16 + (i as usize * 47) % 241;
        let v: Vec<u8> = Vec::with_capacity(size);
        black_box(&v);
    }
}

macro_rules! retained_sites {
    ($($name:ident)*) => {
        $(
            #[inline(never)]
            fn $name(keep: &mut Vec<Box<[u8]>>, n: usize, salt: usize) {
                for i in 0..n {
                    let size = 16 + ((i + salt) * 31) % 241;
                    keep.push(vec![0u8; size].into_boxed_slice());
                }
            }
        )*
        /// The retained-growth sites: 50 distinct functions.
        const SITES: [fn(&mut Vec<Box<[u8]>>, usize, usize); 50] = [$($name),*];
    };
}

retained_sites!(
    s00 s01 s02 s03 s04 s05 s06 s07 s08 s09 s10 s11 s12 s13 s14 s15 s16 s17 s18 s19
    s20 s21 s22 s23 s24 s25 s26 s27 s28 s29 s30 s31 s32 s33 s34 s35 s36 s37 s38 s39
    s40 s41 s42 s43 s44 s45 s46 s47 s48 s49
);

/// Allocates `RETAINED_BLOCKS` blocks of 16 to 256 bytes from `RETAINED_SITES` sites and
/// returns them (the caller frees them by dropping).
pub fn retained_growth() -> Vec<Box<[u8]>> {
    retained_blocks(RETAINED_BLOCKS)
}

/// Allocates `blocks` blocks of 16 to 256 bytes from `RETAINED_SITES` sites (as evenly
/// as they divide, the first sites taking one more) and returns them.
pub fn retained_blocks(blocks: usize) -> Vec<Box<[u8]>> {
    let mut keep = Vec::with_capacity(blocks);
    let per_site = blocks / RETAINED_SITES;
    let one_more = blocks % RETAINED_SITES;
    for (salt, site) in SITES.iter().enumerate() {
        site(&mut keep, per_site + usize::from(salt < one_more), salt);
    }
    keep
}

/// Grows 1,000 vectors to 1,000 elements each by pushing (about 10 reallocs each).
#[inline(never)]
pub fn vec_growth() -> usize {
    let mut total = 0;
    for _ in 0..1_000 {
        let mut v: Vec<u32> = Vec::new();
        for i in 0..1_000 {
            v.push(i);
        }
        total += black_box(v).len();
    }
    total
}

/// Two threads each doing `pairs` churn pairs at depth 20; returns the wall time of the
/// parallel part.
pub fn two_threads_churn(pairs: u64) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                at_depth(DEPTH, &mut || churn(pairs));
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// Registers every workload under `config` (the allocator configuration's name).
#[cfg(feature = "criterion")]
pub fn register(c: &mut Criterion, config: &str) {
    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(CHURN_BATCH));
    group.bench_function(BenchmarkId::from_parameter(config), |b| {
        b.iter(|| at_depth(DEPTH, &mut || churn(CHURN_BATCH)))
    });
    group.finish();

    let mut group = c.benchmark_group("two_threads_churn");
    group.throughput(Throughput::Elements(CHURN_BATCH));
    group.bench_function(BenchmarkId::from_parameter(config), |b| {
        b.iter_custom(|iters| two_threads_churn(iters * CHURN_BATCH))
    });
    group.finish();

    let mut group = c.benchmark_group("vec_growth");
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function(BenchmarkId::from_parameter(config), |b| b.iter(vec_growth));
    group.finish();

    let mut group = c.benchmark_group("retained_growth");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RETAINED_BLOCKS as u64));
    group.bench_function(BenchmarkId::from_parameter(config), |b| {
        b.iter(|| drop(black_box(retained_growth())))
    });
    group.finish();
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Current resident set size of this process in bytes (Linux `VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory measurements, run once per process (one allocator configuration each).
pub mod memory {
    use super::{peak_rss_bytes, retained_growth, rss_bytes};
    use std::hint::black_box;
    use std::time::Instant;

    /// Runs the retained-growth workload and returns a JSON row: peak and baseline RSS,
    /// the workload's heap bytes, and (from `tracker`, when given) the tracker's memory
    /// and tracked blocks.
    pub fn measure(config: &str, tracker: impl Fn() -> Option<(u64, u64)>) -> String {
        let baseline = rss_bytes().unwrap_or(0);
        let kept = retained_growth();
        let heap: u64 =
            kept.iter().map(|b| b.len() as u64).sum::<u64>() + (kept.capacity() * 16) as u64;
        let tracked = tracker();
        let peak = peak_rss_bytes().unwrap_or(0);
        black_box(&kept);
        let mut row = serde_json::json!({
            "config": config,
            "blocks": kept.len(),
            "heap_bytes": heap,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak,
            "peak_rss_over_baseline_bytes": peak.saturating_sub(baseline),
        });
        if let Some((tracker_bytes, tracked_blocks)) = tracked {
            row["tracker_bytes"] = tracker_bytes.into();
            row["tracked_blocks"] = tracked_blocks.into();
            row["tracker_bytes_per_tracked_block"] =
                (tracker_bytes as f64 / tracked_blocks.max(1) as f64).into();
            row["tracker_percent_of_heap"] = (100.0 * tracker_bytes as f64 / heap as f64).into();
        }
        drop(kept);
        row.to_string()
    }

    /// Allocates one block from each of 2^depth distinct call stacks (a binary tree of
    /// calls through two functions), keeps them, and returns the stacks' count.
    #[inline(never)]
    fn left(depth: u32, path: u32, keep: &mut Vec<Vec<u8>>) {
        branch(depth, path, keep);
        black_box(path);
    }

    #[inline(never)]
    fn right(depth: u32, path: u32, keep: &mut Vec<Vec<u8>>) {
        branch(depth, path, keep);
        black_box(path);
    }

    fn branch(depth: u32, path: u32, keep: &mut Vec<Vec<u8>>) {
        if depth == 0 {
            keep.push(vec![1u8; 64]);
        } else if path & 1 == 0 {
            left(depth - 1, path >> 1, keep);
        } else {
            right(depth - 1, path >> 1, keep);
        }
    }

    /// Process CPU time (user + system) so far, from `/proc/self/stat`.
    fn process_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Builds `sites` live sites (at most 16,384), runs a recorder at its defaults (a
    /// snapshot a second, a ranking every 10 s) for `seconds` while the program does
    /// nothing else, and returns a JSON row with the process CPU time it used.
    pub fn recorder_cost(sites: u32, seconds: u64) -> String {
        let mut keep = Vec::with_capacity(sites as usize);
        for path in 0..sites.min(1 << 14) {
            branch(14, path, &mut keep);
        }
        let recorder = leakwatch::Recorder::builder()
            .memory_limit(Some(8 << 30))
            .start()
            .expect("start the recorder");
        // Let it take its first snapshot, then rank once to symbolize every site (a
        // one-time cost, measured apart).
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let first_ranking = Instant::now();
        recorder.check_alerts();
        let first_ranking_ms = first_ranking.elapsed().as_secs_f64() * 1e3;
        let warm = recorder.stats();
        let cpu_before = process_cpu_seconds().unwrap_or(0.0);
        let wall = Instant::now();
        std::thread::sleep(std::time::Duration::from_secs(seconds));
        let cpu = process_cpu_seconds().unwrap_or(0.0) - cpu_before;
        let wall = wall.elapsed().as_secs_f64();
        let stats = recorder.stats();
        let (points, history_bytes) = recorder.history_size();
        recorder.stop();
        let snapshots = (stats.snapshots - warm.snapshots).max(1) as f64;
        let rankings = (stats.rankings - warm.rankings).max(1) as f64;
        black_box(&keep);
        serde_json::json!({
            "config": "leakwatch-exact",
            "live_sites": leakwatch::snapshot().sites.len(),
            "seconds": wall,
            "cpu_seconds": cpu,
            "cpu_percent_of_one_core": 100.0 * cpu / wall,
            "first_ranking_with_symbolization_ms": first_ranking_ms,
            "record_ms_mean": (stats.record_time - warm.record_time).as_secs_f64() * 1e3 / snapshots,
            "ranking_ms_mean": (stats.ranking_time - warm.ranking_time).as_secs_f64() * 1e3 / rankings,
            "history_points": points,
            "history_bytes": history_bytes,
        })
        .to_string()
    }

    /// Builds 16,384 live sites, then times snapshots: a JSON row with the median and
    /// maximum of 20.
    pub fn snapshot_cost() -> String {
        let mut keep = Vec::with_capacity(1 << 14);
        for path in 0..(1u32 << 14) {
            branch(14, path, &mut keep);
        }
        let mut times: Vec<f64> = (0..20)
            .map(|_| {
                let start = Instant::now();
                let snapshot = leakwatch::snapshot();
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                black_box(snapshot);
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let sites = leakwatch::snapshot().sites.len();
        black_box(&keep);
        serde_json::json!({
            "config": "leakwatch-exact",
            "sites": sites,
            "snapshot_ms_median": times[times.len() / 2],
            "snapshot_ms_max": times[times.len() - 1],
        })
        .to_string()
    }
}
