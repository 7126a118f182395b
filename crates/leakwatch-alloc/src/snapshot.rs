//! Snapshots: a plain, serializable copy of everything the tracker knows at one moment.

use crate::filter;
use crate::hot::{EXACT, MODE_MASK, SAMPLED, STATE};
use crate::os::{self, Module};
use crate::sampler::COUNT_ONE;
use crate::sites;
use crate::stack::{self, Unwinder};
use crate::threads;
use crate::tracker::{self, ENV_INVALID, MAX_DEPTH, MAX_SITES, OVERFLOW, PROCESS, RATE};
use crate::{blocks, config};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;

/// Version of the [`Snapshot`] serialization format.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether and how allocations are tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// Not tracking (also before the first allocation through a `LeakWatch`).
    #[default]
    Off,
    /// Byte-weighted sampling: per-site numbers are unbiased estimates.
    Sampled,
    /// Every allocation tracked: per-site numbers are exact.
    Exact,
}

/// Everything the tracker knows at one moment.
///
/// `Default` gives an empty snapshot, for building one field by field (in tests, or
/// from a recorded file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`] of this value.
    pub schema_version: u32,
    /// Wall-clock time the snapshot was taken, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Process id.
    pub pid: u32,
    /// Tracking mode when the snapshot was taken.
    pub mode: Mode,
    /// Sampling rate `R` in bytes (1 in exact mode).
    pub sample_rate: u32,
    /// Unwinder capturing stacks (`auto` until the first sample has probed).
    pub unwinder: Unwinder,
    /// Process-wide totals (every allocation, sampled or not).
    pub process: ProcessStats,
    /// One entry per call site that has had a sampled allocation, in site-id order.
    pub sites: Vec<SiteStats>,
    /// Loaded modules, to symbolize `frames` offline.
    pub modules: Vec<Module>,
    /// The tracker's own memory and bounds.
    pub tracker: TrackerStats,
    /// What the tracker could not record: never dropped silently.
    pub overflow: OverflowStats,
    /// Human-readable problems (invalid settings, full tables, slow unwinder).
    pub warnings: Vec<String>,
    /// Which snapshot of the process this is: 1 for the first `snapshot()` call, one
    /// more for each later one. (0 in snapshots written before epochs existed.)
    #[serde(default)]
    pub epoch: u64,
}

/// Process-wide totals, counted for every allocation while tracking is on. Threads
/// publish their counts in batches (at each sample and every 256 KiB of frees), and a
/// snapshot adds the batches not yet published of every registered thread (every
/// thread, unless more than 1,024 run at once: see
/// [`OverflowStats::unregistered_threads`]), so the totals are current as of the
/// snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Bytes allocated minus bytes freed since tracking started (frees of blocks
    /// allocated before then make this smaller).
    pub live_bytes: i64,
    /// Highest `live_bytes` observed at a batch publication or snapshot.
    pub peak_live_bytes: i64,
    /// Allocations (including reallocations) since tracking started.
    pub allocs: u64,
    /// Bytes requested by those allocations.
    pub alloc_bytes: u64,
    /// Frees (including reallocations) since tracking started.
    pub frees: u64,
    /// Bytes released by those frees.
    pub freed_bytes: u64,
    /// The process's resident memory (RSS) when the snapshot was taken, from
    /// `/proc/self/statm`; 0 where unknown. Includes what the heap does not: code,
    /// stacks, allocator slack, memory from C libraries.
    #[serde(default)]
    pub resident_bytes: u64,
}

/// One call site: a distinct stack of return addresses, and its heap usage. In sampled
/// mode every number is an unbiased estimate built from weighted samples; in exact mode
/// every number is exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiteStats {
    /// Site id, stable for the life of the process.
    pub id: u32,
    /// Return addresses, innermost first, starting at the allocator's caller.
    pub frames: Vec<u64>,
    /// The stack was deeper than the maximum depth and was cut.
    pub truncated: bool,
    /// Bytes allocated here and still live.
    pub live_bytes: u64,
    /// Blocks allocated here and still live.
    pub live_blocks: f64,
    /// Bytes allocated here in total.
    pub alloc_bytes: u64,
    /// Blocks allocated here in total.
    pub alloc_blocks: f64,
    /// Bytes allocated here and since freed.
    pub freed_bytes: u64,
    /// Blocks allocated here and since freed.
    pub freed_blocks: f64,
    /// Bytes (weighted in sampled mode) of blocks allocated here that lived through
    /// [`OLD_SNAPSHOTS`](crate::OLD_SNAPSHOTS) snapshots or more and have since been
    /// freed: the departures that move a sampled estimate between two levels. Blocks
    /// freed younger do not count.
    #[serde(default)]
    pub freed_old_bytes: u64,
    /// Bytes (weighted in sampled mode) of blocks allocated here that were live at one
    /// snapshot or more and have since been freed: departures of any age, for windows
    /// too short for [`OLD_SNAPSHOTS`](crate::OLD_SNAPSHOTS) to mean long-lived.
    #[serde(default)]
    pub freed_seen_bytes: u64,
    /// The scope ([`Scope`](crate::Scope)) whose allocations this site holds, 0 for
    /// none. A scope's sites count only its own allocations, tracked exactly.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scope: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// A site's stats from the table with counters `c` (`None` for a site with no
/// allocation yet). A scope's marker frame is not part of the frames.
pub(crate) fn site_stats(
    table: &sites::Sites,
    id: u32,
    c: &sites::SiteCounters,
) -> Option<SiteStats> {
    let record = table.record(id);
    if c.alloc_count == 0 {
        return None;
    }
    let mut frames = Vec::new();
    let truncated = table.copy_frames(id, &mut frames);
    let scope = record.scope();
    if scope != 0
        && frames
            .last()
            .is_some_and(|&f| f >= crate::scope::SCOPE_FRAME)
    {
        frames.pop();
    }
    Some(SiteStats {
        id,
        frames,
        truncated,
        live_bytes: c.alloc_bytes - c.freed_bytes,
        live_blocks: blocks_of(c.alloc_count - c.freed_count),
        alloc_bytes: c.alloc_bytes,
        alloc_blocks: blocks_of(c.alloc_count),
        freed_bytes: c.freed_bytes,
        freed_blocks: blocks_of(c.freed_count),
        freed_old_bytes: c.freed_old_bytes,
        freed_seen_bytes: c.freed_seen_bytes,
        scope,
    })
}

/// The tracker's own memory and bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Bytes of memory the tracker's tables occupy (resident pages).
    pub memory_bytes: u64,
    /// Bytes of address space reserved for the tables (most of it never touched).
    pub reserved_bytes: u64,
    /// Distinct call sites recorded.
    pub sites: u32,
    /// Bound on call sites.
    pub max_sites: u32,
    /// Live blocks currently tracked.
    pub tracked_blocks: u64,
    /// Bound on tracked blocks.
    pub max_blocks: u64,
    /// Maximum frames per stack.
    pub max_depth: u32,
    /// Threads whose unpublished counts this snapshot read (registered threads).
    #[serde(default)]
    pub threads: u32,
}

/// What could not be recorded, and how much of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OverflowStats {
    /// Samples whose stack found no room in the site table.
    pub site_table_full_samples: u64,
    /// Live bytes of those samples (weighted), attributed to no site.
    pub site_table_full_live_bytes: u64,
    /// Sampled blocks not tracked because the block table was full.
    pub untracked_blocks: u64,
    /// Bytes (weighted) of those blocks.
    pub untracked_bytes: u64,
    /// Samples whose stack was cut at the maximum depth (still recorded).
    pub truncated_stacks: u64,
    /// Tracked blocks whose free was never seen (an address handed out again while
    /// still tracked). Expected to stay 0.
    pub replaced_entries: u64,
    /// Threads started while all 1,024 thread slots were taken: a snapshot does not see
    /// their unpublished counts (at most 256 KiB of frees, or one sample, per thread).
    #[serde(default)]
    pub unregistered_threads: u64,
    /// Threads whose unpublished counts this snapshot could not read (caught in the
    /// middle of publishing for too long), plus publications made while it read.
    #[serde(default)]
    pub unread_threads: u64,
    /// Buckets of the sampled-address filter that filled up (65,535 tracked blocks'
    /// addresses hashed to one): they stay set for good, so frees of addresses in them
    /// always look the block up. Slower, never wrong. Expected to stay 0.
    #[serde(default)]
    pub saturated_filter_buckets: u64,
    /// Times the system refused memory for a larger block table (`ulimit -v`,
    /// `vm.overcommit_memory=2`, `vm.max_map_count`): the shard kept its table, and blocks
    /// that found no room in it are counted in `untracked_blocks`.
    #[serde(default)]
    pub refused_mappings: u64,
}

impl Snapshot {
    /// Live bytes over all sites, plus what overflowed the site table: the tracked heap.
    pub fn tracked_live_bytes(&self) -> u64 {
        self.sites.iter().map(|s| s.live_bytes).sum::<u64>()
            + self.overflow.site_table_full_live_bytes
    }
}

fn blocks_of(fixed_point: u64) -> f64 {
    fixed_point as f64 / COUNT_ONE as f64
}

/// Builds a snapshot. Allocates: call only with tracking suspended.
pub(crate) fn build() -> Snapshot {
    let epoch = tracker::next_epoch();
    tracker::flush_current_thread();
    let state = STATE.load(Relaxed);
    let mode = match state & MODE_MASK {
        SAMPLED => Mode::Sampled,
        EXACT => Mode::Exact,
        _ => Mode::Off,
    };
    let forced_before = threads::FORCED.load(Relaxed);
    let pending = threads::read_pending();
    let unread =
        u64::from(pending.skipped) + threads::FORCED.load(Relaxed).wrapping_sub(forced_before);
    let [allocs, alloc_bytes, frees, freed_bytes] = pending.process;
    let live_bytes = alloc_bytes.wrapping_sub(freed_bytes) as i64;
    let peak = PROCESS
        .peak_live
        .fetch_max(live_bytes, Relaxed)
        .max(live_bytes);
    let process = ProcessStats {
        live_bytes,
        peak_live_bytes: peak,
        allocs,
        alloc_bytes,
        frees,
        freed_bytes,
        resident_bytes: os::resident_bytes(),
    };

    let mut sites_out = Vec::new();
    let mut overflow_live = 0;
    let (mut site_count, mut max_sites, mut table_bytes) = (0, MAX_SITES.load(Relaxed), 0);
    let mut overflow_samples = 0;
    if let Some(table) = sites::get() {
        site_count = table.len().saturating_sub(1);
        max_sites = table.capacity().saturating_sub(1);
        table_bytes = table.resident_bytes();
        overflow_samples = table.overflow_samples.load(Relaxed);
        // A site with changes pending in some thread: its counters as read together with
        // those changes; any other: as it is now.
        let mut batched = pending.sites.iter().peekable();
        let mut counters = |id: u32| {
            while batched.next_if(|e| e.0 < id).is_some() {}
            match batched.next_if(|e| e.0 == id) {
                Some((_, published, delta)) => {
                    let mut c = *published;
                    c.merge(delta);
                    c.clamped()
                }
                None => table.record(id).counters(),
            }
        };
        let o = counters(sites::OVERFLOW);
        overflow_live = o.alloc_bytes - o.freed_bytes;
        sites_out.reserve(site_count as usize);
        for id in 1..table.len() {
            let c = counters(id);
            sites_out.extend(site_stats(table, id, &c));
        }
    }
    let tracked_blocks = blocks::len();
    let tracker = TrackerStats {
        memory_bytes: (table_bytes
            + blocks::resident_bytes()
            + filter::BYTES
            + threads::touched_bytes()) as u64,
        reserved_bytes: (os::mapped_bytes() + filter::BYTES + threads::BYTES) as u64,
        sites: site_count,
        max_sites,
        tracked_blocks,
        max_blocks: blocks::max_blocks(),
        max_depth: MAX_DEPTH.load(Relaxed),
        threads: pending.threads,
    };
    let overflow = OverflowStats {
        site_table_full_samples: overflow_samples,
        site_table_full_live_bytes: overflow_live,
        untracked_blocks: OVERFLOW.untracked_blocks.load(Relaxed),
        untracked_bytes: OVERFLOW.untracked_bytes.load(Relaxed),
        truncated_stacks: OVERFLOW.truncated_stacks.load(Relaxed),
        replaced_entries: OVERFLOW.replaced_entries.load(Relaxed),
        unregistered_threads: threads::UNREGISTERED.load(Relaxed),
        unread_threads: unread,
        saturated_filter_buckets: filter::saturated_buckets(),
        refused_mappings: blocks::refused_mappings(),
    };
    let unwinder = stack::unwinder();
    let warnings = warnings(&overflow, unwinder);
    Snapshot {
        schema_version: SCHEMA_VERSION,
        timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        pid: std::process::id(),
        mode,
        sample_rate: if mode == Mode::Exact {
            1
        } else {
            RATE.load(Relaxed)
        },
        unwinder,
        process,
        sites: sites_out,
        modules: os::loaded_modules(),
        tracker,
        overflow,
        warnings,
        epoch,
    }
}

fn warnings(overflow: &OverflowStats, unwinder: Unwinder) -> Vec<String> {
    let mut out = Vec::new();
    let invalid = ENV_INVALID.load(Relaxed);
    for (i, name) in config::ENV_NAMES.iter().enumerate() {
        if invalid & (1 << i) != 0 {
            out.push(format!("{name} has an invalid value and was ignored"));
        }
    }
    if tracker::tables_failed() {
        out.push("the tracker could not map memory for its tables: tracking is off".into());
    }
    if tracker::tables_abandoned() {
        out.push("this process was forked while another thread was creating the tracker's tables: tracking is off in it".into());
    }
    if overflow.site_table_full_samples > 0 {
        out.push(format!(
            "the site table is full: {} samples ({} live bytes) are attributed to no site; raise LEAKWATCH_MAX_SITES",
            overflow.site_table_full_samples, overflow.site_table_full_live_bytes
        ));
    }
    if overflow.untracked_blocks > 0 {
        let cause = if overflow.refused_mappings > 0 {
            format!(
                "the system refused memory for a larger block table {} times",
                overflow.refused_mappings
            )
        } else {
            "raise LEAKWATCH_MAX_BLOCKS".into()
        };
        out.push(format!(
            "the block table is full: {} blocks ({} bytes) were not tracked; {cause}",
            overflow.untracked_blocks, overflow.untracked_bytes
        ));
    }
    if overflow.unregistered_threads > 0 {
        out.push(format!(
            "{} threads started while all {} thread slots were taken: snapshots miss their unpublished counts (up to 256 KiB of frees or one sample each)",
            overflow.unregistered_threads,
            threads::MAX_THREADS
        ));
    }
    if overflow.unread_threads > 0 {
        out.push(format!(
            "{} threads were publishing while this snapshot read: their last batch may be missing or counted twice",
            overflow.unread_threads
        ));
    }
    if overflow.saturated_filter_buckets > 0 {
        out.push(format!(
            "{} buckets of the sampled-address filter are full: frees of addresses in them always look the block up (slower, still exact)",
            overflow.saturated_filter_buckets
        ));
    }
    if unwinder == Unwinder::Backtrace {
        out.push(
            "stacks are captured by DWARF unwinding (slow); build with RUSTFLAGS=\"-C force-frame-pointers=yes\" for fast capture"
                .into(),
        );
    }
    out
}
