//! Builds [`Snapshot`]s (the types are in `leakwatch-types`) from the tracker's tables.

use crate::filter;
use crate::os;
use crate::sampler::COUNT_ONE;
use crate::sampler::Weight;
use crate::sites;
use crate::stack;
use crate::state::{EXACT, MODE_MASK, SAMPLED, STATE};
use crate::tags;
use crate::threads::{self, PROCESS};
use crate::tracker::{self, ENV_INVALID, MAX_DEPTH, MAX_SITES, OVERFLOW, RATE};
use crate::{blocks, config};
use leakwatch_types::AGE_BOUNDS_SECONDS;
use leakwatch_types::{
    Mode, OverflowStats, ProcessStats, SCHEMA_VERSION, SiteStats, Snapshot, TrackerStats, Unwinder,
};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

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
    if scope != 0 && frames.last().is_some_and(|&f| f >= stack::SCOPE_FRAME) {
        frames.pop();
    }
    // A tagged stack's marker names its tag set.
    let mut tags = leakwatch_types::Tags::new();
    if let Some(&last) = frames.last() {
        if (tags::TAG_FRAME..stack::SCOPE_FRAME).contains(&last) {
            frames.pop();
            if let Some(set) = tags::tags_of((last - tags::TAG_FRAME) as u32) {
                tags = set.clone();
            }
        }
    }
    Some({
        let mut site = SiteStats::default();
        site.id = id;
        site.frames = frames;
        site.truncated = truncated;
        site.live_bytes = c.alloc_bytes - c.freed_bytes;
        site.live_blocks = blocks_of(c.alloc_count - c.freed_count);
        site.alloc_bytes = c.alloc_bytes;
        site.alloc_blocks = blocks_of(c.alloc_count);
        site.freed_bytes = c.freed_bytes;
        site.freed_blocks = blocks_of(c.freed_count);
        site.freed_old_bytes = c.freed_old_bytes;
        site.freed_seen_bytes = c.freed_seen_bytes;
        site.freed_old_age_sq = c.freed_old_age_sq;
        site.scope = scope;
        site.tags = tags;
        site
    })
}

/// Snapshot start times (`clock_ms` plus one; 0: not known) by epoch, modulo this: an
/// hour and eight minutes of snapshots at one a second.
const EPOCH_TIMES_KEPT: usize = 4096;
static EPOCH_TIMES: [AtomicU64; EPOCH_TIMES_KEPT] = [const { AtomicU64::new(0) }; EPOCH_TIMES_KEPT];

/// Milliseconds on a monotonic clock that starts at the first call.
fn clock_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Each site's live bytes by age bucket ([`AGE_BOUNDS_SECONDS`]), by site id (`sites`
/// ids), from every tracked block, weighted as its site's counters are. A block carries
/// the epoch it was allocated in; its age is at most the time since that epoch's
/// snapshot began (blocks of epoch 0, before the first snapshot, count from it). A block
/// older than the kept snapshot times is at least as old as the oldest kept.
///
/// Walks the block table shard by shard (each locked while walked; the walk neither
/// allocates nor takes another lock): about as long as the live tracked blocks (sampled
/// mode: a few thousand; exact mode: every live block).
fn ages(sites: usize, now_epoch: u64, now_ms: u64) -> Vec<SiteAges> {
    let mut ages = vec![SiteAges::default(); sites];
    let oldest_kept = now_epoch.saturating_sub(EPOCH_TIMES_KEPT as u64 - 1);
    let time_of = |epoch: u64| {
        let stamp = EPOCH_TIMES[epoch as usize % EPOCH_TIMES_KEPT].load(Relaxed);
        stamp.checked_sub(1)
    };
    let oldest_ms = time_of(oldest_kept.max(1)).unwrap_or(0);
    let now32 = now_epoch as u32;
    blocks::for_each(|entry| {
        let Some(slot) = ages.get_mut(entry.site as usize) else {
            return;
        };
        let behind = u64::from(now32.wrapping_sub(entry.epoch));
        let allocated_ms = if entry.epoch == 0 || behind >= now_epoch {
            // Before the first snapshot: as old as it, at least.
            time_of(1).unwrap_or(0)
        } else if behind >= EPOCH_TIMES_KEPT as u64 - 1 {
            oldest_ms
        } else {
            time_of(now_epoch - behind).unwrap_or(oldest_ms)
        };
        let age_s = now_ms.saturating_sub(allocated_ms) / 1000;
        let bucket = AGE_BOUNDS_SECONDS
            .iter()
            .position(|&bound| age_s < bound)
            .unwrap_or(AGE_BOUNDS_SECONDS.len());
        let bytes = Weight::of(entry.size(), entry.rate).bytes;
        slot.buckets[bucket] += bytes;
        // Lived through OLD_SNAPSHOTS snapshots (epoch 0: before the first): should it be
        // freed from now on, its bytes count in `freed_old_bytes`.
        if behind >= u64::from(tracker::OLD_SNAPSHOTS) {
            slot.old += bytes;
        }
    });
    ages
}

/// Age buckets: one per bound, and one for older.
const AGE_BUCKETS: usize = AGE_BOUNDS_SECONDS.len() + 1;

/// One site's live bytes by age.
#[derive(Debug, Clone, Copy, Default)]
struct SiteAges {
    /// By [`AGE_BOUNDS_SECONDS`] bucket.
    buckets: [u64; AGE_BUCKETS],
    /// In blocks that lived through `OLD_SNAPSHOTS` snapshots.
    old: u64,
}

fn blocks_of(fixed_point: u64) -> f64 {
    fixed_point as f64 / COUNT_ONE as f64
}

/// Builds a snapshot. Allocates: call only with tracking suspended.
pub(crate) fn build() -> Snapshot {
    let epoch = tracker::next_epoch();
    let started_ms = clock_ms();
    // Blocks allocated from now on carry `epoch`: they are at most this old.
    EPOCH_TIMES[epoch as usize % EPOCH_TIMES_KEPT].store(started_ms + 1, Relaxed);
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
    let process = {
        let mut process = ProcessStats::default();
        process.live_bytes = live_bytes;
        process.peak_live_bytes = peak;
        process.allocs = allocs;
        process.alloc_bytes = alloc_bytes;
        process.frees = frees;
        process.freed_bytes = freed_bytes;
        process.resident_bytes = os::resident_bytes();
        process
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
        let ages = ages(table.len() as usize, epoch, clock_ms());
        for site in &mut sites_out {
            if let Some(age) = ages.get(site.id as usize) {
                site.age_bytes = age.buckets.to_vec();
                site.old_bytes = Some(age.old);
            }
        }
    }
    let tracked_blocks = blocks::len();
    let tracker = {
        let mut tracker = TrackerStats::default();
        tracker.memory_bytes =
            (table_bytes + blocks::resident_bytes() + filter::BYTES + threads::touched_bytes())
                as u64
                + tags::memory_bytes();
        tracker.reserved_bytes = (os::mapped_bytes() + filter::BYTES + threads::BYTES) as u64;
        tracker.sites = site_count;
        tracker.max_sites = max_sites;
        tracker.tracked_blocks = tracked_blocks;
        tracker.max_blocks = blocks::max_blocks();
        tracker.max_depth = MAX_DEPTH.load(Relaxed);
        tracker.threads = pending.threads;
        tracker.tag_sets = tags::count() as u32;
        tracker.slow_captures = stack::SLOW_CAPTURES.load(Relaxed);
        tracker.unwind_rules_computed = stack::RULES_COMPUTED.load(Relaxed);
        tracker
    };
    let overflow = {
        let mut overflow = OverflowStats::default();
        overflow.site_table_full_samples = overflow_samples;
        overflow.site_table_full_live_bytes = overflow_live;
        overflow.untracked_blocks = OVERFLOW.untracked_blocks.load(Relaxed);
        overflow.untracked_bytes = OVERFLOW.untracked_bytes.load(Relaxed);
        overflow.truncated_stacks = OVERFLOW.truncated_stacks.load(Relaxed);
        overflow.replaced_entries = OVERFLOW.replaced_entries.load(Relaxed);
        overflow.unregistered_threads = threads::UNREGISTERED.load(Relaxed);
        overflow.unread_threads = unread;
        overflow.saturated_filter_buckets = filter::saturated_buckets();
        overflow.refused_mappings = blocks::refused_mappings();
        overflow.tag_sets_full = tags::REFUSED.load(Relaxed);
        overflow
    };
    let unwinder = stack::unwinder();
    let warnings = warnings(&overflow, unwinder, tracker.slow_captures);
    {
        let mut snapshot = Snapshot::default();
        snapshot.schema_version = SCHEMA_VERSION;
        snapshot.timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        snapshot.pid = std::process::id();
        snapshot.mode = mode;
        snapshot.sample_rate = if mode == Mode::Exact {
            1
        } else {
            RATE.load(Relaxed)
        };
        snapshot.unwinder = unwinder;
        snapshot.process = process;
        snapshot.sites = sites_out;
        snapshot.modules = os::loaded_modules();
        snapshot.tracker = tracker;
        snapshot.overflow = overflow;
        snapshot.warnings = warnings;
        snapshot.epoch = epoch;
        snapshot
    }
}

fn warnings(overflow: &OverflowStats, unwinder: Unwinder, slow_captures: u64) -> Vec<String> {
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
    if overflow.tag_sets_full > 0 {
        out.push(format!(
            "tags: {} tag sets or tags were refused ({} sets interned at most, {} tags per set); their allocations carry {}=tag sets full",
            overflow.tag_sets_full,
            leakwatch_types::MAX_TAG_SETS,
            leakwatch_types::MAX_TAGS,
            leakwatch_types::OVERFLOW_TAGS
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
    if unwinder == Unwinder::CachedDwarf {
        out.push(
            "stacks are captured by leakwatch's DWARF unwinder with cached rules (no frame pointers); build with RUSTFLAGS=\"-C force-frame-pointers=yes\" for the fastest capture"
                .into(),
        );
    }
    if slow_captures > 0 {
        out.push(format!(
            "{slow_captures} stacks were captured by the slow DWARF unwinder (backtrace/libgcc): the cached unwinder could not follow them (code outside loaded modules, rules it does not cache, signal frames)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bytes_are_bucketed_by_the_age_of_their_snapshot() {
        // Epochs far from those the other tests' snapshots use, and a site id none uses.
        const SITE: u32 = 65_000;
        let now_epoch = 10_000u64;
        let now_ms = 10_000_000u64;
        let stamp = |epoch: u64, ms_ago: u64| {
            EPOCH_TIMES[epoch as usize % EPOCH_TIMES_KEPT].store(now_ms - ms_ago + 1, Relaxed);
        };
        stamp(10_000, 0);
        stamp(9_999, 5_000); // 5 s
        stamp(9_993, 6_000); // 7 snapshots back: not yet old
        stamp(9_992, 7_000); // 8 snapshots back: old
        stamp(9_950, 30_000); // 30 s
        stamp(9_000, 1_000_000); // 16 min
        // Blocks of 100 to 2,000 bytes (exact: weight 1), the last from before
        // the kept snapshot times (as old as the oldest kept, at least).
        stamp(now_epoch - EPOCH_TIMES_KEPT as u64 + 1, 7_200_000); // 2 h
        let base = 0x6a00_0000_0000usize;
        let blocks = [
            (9_999u32, 100usize),
            (9_950, 200),
            (9_000, 400),
            (10, 800),
            (9_993, 1_000),
            (9_992, 2_000),
        ];
        for (i, &(epoch, size)) in blocks.iter().enumerate() {
            assert_eq!(
                blocks::insert(base + i * 64, SITE, 1, epoch, size),
                blocks::Inserted::New
            );
        }
        let ages = ages(SITE as usize + 1, now_epoch, now_ms);
        for i in 0..blocks.len() {
            blocks::remove(base + i * 64);
        }
        let site = ages[SITE as usize];
        assert_eq!(site.buckets, [3_100, 200, 0, 400, 800]);
        // Lived through OLD_SNAPSHOTS (8) snapshots: all but the two youngest blocks.
        assert_eq!(site.old, 200 + 400 + 800 + 2_000);
    }
}
