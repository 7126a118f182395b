//! Snapshots: a plain, serializable copy of everything the tracker knows at one moment.

use crate::Module;
use serde::{Deserialize, Serialize};

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
    /// How long the blocks counted in `freed_old_bytes` had lived: the sum, over them,
    /// of each one's weight in KiB (rounded up) times the square of the snapshots it
    /// lived through (at most [`MAX_DEPARTED_AGE`]); wrapping, so only differences
    /// between two snapshots mean anything. Over an interval, 1024 times its growth over
    /// `freed_old_bytes`' growth is the mean square life of the old blocks that
    /// departed, which tells the ranking how far they moved a level (a block living
    /// seconds in a window of minutes hardly at all). 0 in recordings made before it was
    /// counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freed_old_age_sq: u64,
    /// The scope (`leakwatch_alloc::Scope`) whose allocations this site holds, 0 for
    /// none. A scope's sites count only its own allocations, tracked exactly.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scope: u64,
    /// The tags (`leakwatch::tag`) in force on the allocating thread when this site's
    /// blocks were allocated: a site is one stack under one tag set, so the same stack
    /// under two tag sets is two sites. Empty for untagged allocations.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Live bytes by age (weighted as `live_bytes` is): younger than each bound of
    /// [`AGE_BOUNDS_SECONDS`] in turn, then older than the last; coarse, from the snapshot
    /// a block was allocated after. Taken from the live blocks at the snapshot, so it may
    /// differ from `live_bytes` by what threads were doing meanwhile. Empty when not
    /// measured (a snapshot of tracking off, a series file from before ages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub age_bytes: Vec<u64>,
    /// Old bytes: live bytes (weighted as `live_bytes` is) in blocks that have lived
    /// through [`OLD_SNAPSHOTS`] snapshots, the age from which their departures count in
    /// `freed_old_bytes`. A leak's old bytes pile up at its rate; a cache's turn over.
    /// `None` when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_bytes: Option<u64>,
}

/// The upper bounds, in seconds, of the age buckets of [`SiteStats::age_bytes`]: under
/// 10 s, 1 min, 10 min, 1 h, and older (five buckets).
pub const AGE_BOUNDS_SECONDS: [u64; 4] = [10, 60, 600, 3600];

/// A tag set: keys and values, at most [`MAX_TAGS`] pairs, each key and value at most
/// [`MAX_TAG_BYTES`] bytes.
pub type Tags = std::collections::BTreeMap<String, String>;

/// The most tags one tag set holds (setting more replaces none and is counted).
pub const MAX_TAGS: usize = 8;

/// The longest key or value of a tag, in bytes (longer ones are cut at a character
/// boundary).
pub const MAX_TAG_BYTES: usize = 64;

/// The most distinct tag sets a process interns; tagging beyond it runs under the
/// overflow set [`OVERFLOW_TAGS`], counted in [`OverflowStats::tag_sets_full`].
pub const MAX_TAG_SETS: usize = 1024;

/// The key of the one tag of the overflow tag set (its value says why).
pub const OVERFLOW_TAGS: &str = "leakwatch.overflow";

fn is_zero(x: &u64) -> bool {
    *x == 0
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
    /// Tag sets interned (`leakwatch::tag`), at most [`MAX_TAG_SETS`]; their bytes count
    /// in `memory_bytes`.
    #[serde(default)]
    pub tag_sets: u32,
    /// Stacks captured by the slow unwinder (`backtrace`) while
    /// [`Unwinder::CachedDwarf`] was chosen: the ones it could not unwind (an address in
    /// no loaded module, a rule it does not follow, a signal frame).
    #[serde(default)]
    pub slow_captures: u64,
    /// Unwind rules [`Unwinder::CachedDwarf`] has computed from `.eh_frame` (its cache
    /// misses; a hit costs a lookup).
    #[serde(default)]
    pub unwind_rules_computed: u64,
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
    /// Tag sets refused because [`MAX_TAG_SETS`] were interned already, or tags refused
    /// because a set held [`MAX_TAGS`]: allocations under them carry the overflow set.
    #[serde(default)]
    pub tag_sets_full: u64,
}

impl Snapshot {
    /// Live bytes over all sites, plus what overflowed the site table: the tracked heap.
    pub fn tracked_live_bytes(&self) -> u64 {
        self.sites.iter().map(|s| s.live_bytes).sum::<u64>()
            + self.overflow.site_table_full_live_bytes
    }
}

/// Which unwinder captures stacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Unwinder {
    /// Probe at the first sample and use frame pointers when they work.
    #[default]
    Auto,
    /// Walk frame pointers (fast; needs `-C force-frame-pointers=yes`).
    FramePointers,
    /// DWARF unwinding through the `backtrace` crate (slow; always correct).
    Backtrace,
    /// leakwatch's own DWARF unwinder with rules cached per return address (x86_64
    /// Linux; fast after the first capture of each address). Stacks it cannot unwind are
    /// captured by `backtrace` instead, counted in
    /// [`TrackerStats::slow_captures`].
    CachedDwarf,
}

/// Snapshots a freed block must have lived through for its free to count as a
/// departure (`freed_old_bytes`). The ranking bounds how much a sampled estimate wanders
/// between two levels by the blocks that departed between them; a block seen at fewer
/// snapshots moves only a few neighbouring points, which the series' own jitter covers.
pub const OLD_SNAPSHOTS: u32 = 8;

/// The most snapshots a departed block's age counts as in `freed_old_age_sq` (each old
/// departure adds its weight in KiB, rounded up, times its age squared): older blocks
/// count as this old, which bounds one block's term (a TiB block: 2^30 KiB x 2^32)
/// within a `u64`. Lives this long (18 hours at a snapshot a second) move every level as
/// much as longer ones do.
pub const MAX_DEPARTED_AGE: u32 = 65_535;
