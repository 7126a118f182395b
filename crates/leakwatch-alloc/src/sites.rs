//! The site table: interns call stacks into small site ids and holds each site's counters.
//!
//! Fixed capacity (`max_sites`), mapped once when tracking first starts; records are
//! appended and never move or disappear, so lookups are lock-free (an open-addressing
//! index of `AtomicU32` published with release stores) and only inserting a new site takes
//! the insert lock. Site 0 is the overflow site: samples whose stack could not be interned
//! because the table (or its frame arena) was full are attributed there and reported as
//! overflow, never dropped.

use crate::os::{Mapping, Zeroable};
use crate::sampler::{Weight, mix64};
use crate::spin::SpinLock;
use crate::state::{BATCH_SLOTS, BatchSlot, NO_SITE, SiteBatch};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Id of the overflow site.
pub(crate) const OVERFLOW: u32 = 0;

/// One call site: its stack and its counters (weighted estimates in sampled mode).
#[repr(C, align(64))]
pub(crate) struct SiteRecord {
    hash: AtomicU64,
    frames_start: AtomicU32,
    /// Low 16 bits: depth; bit 16: the stack was truncated at the maximum depth.
    depth_flags: AtomicU32,
    alloc_bytes: AtomicU64,
    alloc_count: AtomicU64,
    freed_bytes: AtomicU64,
    freed_count: AtomicU64,
    /// Weighted bytes of blocks freed after living through `OLD_SNAPSHOTS` snapshots
    /// (see `tracker::EPOCH`).
    freed_old_bytes: AtomicU64,
    /// Weighted bytes of blocks freed after being live at one snapshot or more.
    freed_seen_bytes: AtomicU64,
    /// Of the blocks in `freed_old_bytes`: weight in KiB times age squared (see
    /// `SiteStats::freed_old_age_sq`).
    freed_old_age_sq: AtomicU64,
    /// The scope whose allocations this site holds (see `scope.rs`), 0 for none. Set
    /// before the site is published, never changed.
    scope: AtomicU64,
}

// SAFETY: all fields are atomics of integers; zero is a valid, empty record.
unsafe impl Zeroable for SiteRecord {}
// SAFETY: an atomic integer is valid when zeroed.
unsafe impl Zeroable for AtomicU64 {}
// SAFETY: an atomic integer is valid when zeroed.
unsafe impl Zeroable for AtomicU32 {}

const TRUNCATED: u32 = 1 << 16;

/// Counters of one site at one moment (or a batch of changes to them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SiteCounters {
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_count: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) freed_count: u64,
    /// Weighted bytes of the frees that released blocks that lived through
    /// `OLD_SNAPSHOTS` snapshots.
    pub(crate) freed_old_bytes: u64,
    /// Weighted bytes of the frees that released blocks live at an earlier snapshot.
    pub(crate) freed_seen_bytes: u64,
    /// Of the frees in `freed_old_bytes`: weight in KiB (rounded up) times age squared
    /// (wrapping).
    pub(crate) freed_old_age_sq: u64,
}

impl SiteRecord {
    /// Adds counter deltas (wrapping: a delta may be "negative", after a failed realloc).
    pub(crate) fn add(&self, delta: &SiteCounters) {
        if delta.alloc_bytes | delta.alloc_count != 0 {
            self.alloc_bytes.fetch_add(delta.alloc_bytes, Relaxed);
            self.alloc_count.fetch_add(delta.alloc_count, Relaxed);
        }
        if delta.freed_bytes | delta.freed_count != 0 {
            self.freed_bytes.fetch_add(delta.freed_bytes, Relaxed);
            self.freed_count.fetch_add(delta.freed_count, Relaxed);
        }
        if delta.freed_seen_bytes | delta.freed_old_bytes != 0 {
            // Ages before the old bytes they describe, which publish them: a reader
            // that sees these old bytes (acquire, `counters_unclamped`) sees their ages.
            self.freed_old_age_sq
                .fetch_add(delta.freed_old_age_sq, Relaxed);
            self.freed_old_bytes
                .fetch_add(delta.freed_old_bytes, Release);
            self.freed_seen_bytes
                .fetch_add(delta.freed_seen_bytes, Relaxed);
        }
    }

    /// The scope tag of this site (0: not a scope's site).
    pub(crate) fn scope(&self) -> u64 {
        self.scope.load(Relaxed)
    }

    /// Reads the counters so that freed never exceeds allocated: every free is added after
    /// its allocation, so reading the freed side first gives a consistent lower bound.
    pub(crate) fn counters(&self) -> SiteCounters {
        self.counters_unclamped().clamped()
    }

    /// Reads the counters as they are (freed side first, as in [`SiteRecord::counters`]),
    /// to be summed with pending changes before [`SiteCounters::clamped`].
    pub(crate) fn counters_unclamped(&self) -> SiteCounters {
        let freed_old_bytes = self.freed_old_bytes.load(Acquire);
        let freed_seen_bytes = self.freed_seen_bytes.load(Acquire);
        let freed_old_age_sq = self.freed_old_age_sq.load(Relaxed);
        let freed_bytes = self.freed_bytes.load(Acquire);
        let freed_count = self.freed_count.load(Acquire);
        SiteCounters {
            alloc_bytes: self.alloc_bytes.load(Acquire),
            alloc_count: self.alloc_count.load(Acquire),
            freed_bytes,
            freed_count,
            freed_old_bytes,
            freed_seen_bytes,
            freed_old_age_sq,
        }
    }
}

/// Views a published site's frames as plain integers, so they compare with `memcmp`.
fn as_plain(frames: &[AtomicU64]) -> &[u64] {
    // SAFETY: `AtomicU64` has the same size, alignment and bit validity as `u64`. The
    // frames of a published site are written once, before the release store that
    // publishes the site (which the caller observed with an acquire load), and never
    // again, so these plain reads cannot race with a write.
    unsafe { std::slice::from_raw_parts(frames.as_ptr().cast::<u64>(), frames.len()) }
}

impl SiteCounters {
    /// A batch holding one allocation of weight `w`.
    pub(crate) fn alloc(w: Weight) -> Self {
        SiteCounters {
            alloc_bytes: w.bytes,
            alloc_count: w.count,
            ..Default::default()
        }
    }

    /// A batch holding one free of weight `w` of a block that lived through `age`
    /// snapshots.
    pub(crate) fn free(w: Weight, age: u32) -> Self {
        let old = age >= leakwatch_types::OLD_SNAPSHOTS;
        SiteCounters {
            freed_bytes: w.bytes,
            freed_count: w.count,
            freed_old_bytes: if old { w.bytes } else { 0 },
            freed_seen_bytes: if age >= 1 { w.bytes } else { 0 },
            freed_old_age_sq: if old { age_sq_kib(w.bytes, age) } else { 0 },
            ..Default::default()
        }
    }

    /// A batch taking back one free of weight `w` (a failed realloc).
    pub(crate) fn unfree(w: Weight, age: u32) -> Self {
        let free = SiteCounters::free(w, age);
        SiteCounters {
            freed_bytes: free.freed_bytes.wrapping_neg(),
            freed_count: free.freed_count.wrapping_neg(),
            freed_old_bytes: free.freed_old_bytes.wrapping_neg(),
            freed_seen_bytes: free.freed_seen_bytes.wrapping_neg(),
            freed_old_age_sq: free.freed_old_age_sq.wrapping_neg(),
            ..Default::default()
        }
    }

    pub(crate) fn merge(&mut self, other: &SiteCounters) {
        self.alloc_bytes = self.alloc_bytes.wrapping_add(other.alloc_bytes);
        self.alloc_count = self.alloc_count.wrapping_add(other.alloc_count);
        self.freed_bytes = self.freed_bytes.wrapping_add(other.freed_bytes);
        self.freed_count = self.freed_count.wrapping_add(other.freed_count);
        self.freed_old_bytes = self.freed_old_bytes.wrapping_add(other.freed_old_bytes);
        self.freed_seen_bytes = self.freed_seen_bytes.wrapping_add(other.freed_seen_bytes);
        self.freed_old_age_sq = self.freed_old_age_sq.wrapping_add(other.freed_old_age_sq);
    }

    /// Freed never above allocated (a sum of readings taken at slightly different
    /// moments could say otherwise).
    pub(crate) fn clamped(self) -> Self {
        SiteCounters {
            alloc_bytes: self.alloc_bytes.max(self.freed_bytes),
            alloc_count: self.alloc_count.max(self.freed_count),
            ..self
        }
    }
}

/// One old departure's term of `freed_old_age_sq`: its weight in KiB, rounded up (so a
/// block under a KiB still counts), times its age (at most `MAX_DEPARTED_AGE`) squared.
/// At most 2^54 x 2^32 for any `u64` weight, wrapping beyond (the sum wraps anyway).
fn age_sq_kib(bytes: u64, age: u32) -> u64 {
    let kib = bytes.div_ceil(1024);
    let age = u64::from(age.min(leakwatch_types::MAX_DEPARTED_AGE));
    kib.wrapping_mul(age * age)
}

impl BatchSlot {
    fn get(&self) -> SiteCounters {
        SiteCounters {
            alloc_bytes: self.alloc_bytes.get(),
            alloc_count: self.alloc_count.get(),
            freed_bytes: self.freed_bytes.get(),
            freed_count: self.freed_count.get(),
            freed_old_bytes: self.freed_old_bytes.get(),
            freed_seen_bytes: self.freed_seen_bytes.get(),
            freed_old_age_sq: self.freed_old_age_sq.get(),
        }
    }

    fn set(&self, c: &SiteCounters) {
        self.alloc_bytes.set(c.alloc_bytes);
        self.alloc_count.set(c.alloc_count);
        self.freed_bytes.set(c.freed_bytes);
        self.freed_count.set(c.freed_count);
        self.freed_old_bytes.set(c.freed_old_bytes);
        self.freed_seen_bytes.set(c.freed_seen_bytes);
        self.freed_old_age_sq.set(c.freed_old_age_sq);
    }
}

// What a thread's [`SiteBatch`] (its storage is in `state.rs`, with the rest of the
// per-thread state) does.
impl SiteBatch {
    /// Whether adding to `site` first publishes another site's pending changes (a move).
    pub(crate) fn evicts(&self, site: u32) -> bool {
        let id = self.slots[site as usize % BATCH_SLOTS].site.get();
        id != site && id != NO_SITE
    }

    /// Adds `delta` to `site`'s pending changes. Owner thread only; inside a move when
    /// [`SiteBatch::evicts`] says so.
    pub(crate) fn add(&self, sites: &Sites, site: u32, delta: SiteCounters) {
        let slot = &self.slots[site as usize % BATCH_SLOTS];
        let id = slot.site.get();
        let mut merged = if id == site {
            slot.get()
        } else {
            if id != NO_SITE {
                sites.record(id).add(&slot.get());
            }
            slot.set(&SiteCounters::default());
            slot.site.set(site);
            SiteCounters::default()
        };
        merged.merge(&delta);
        slot.set(&merged);
    }

    /// Publishes every pending change. Owner thread only, inside a move.
    pub(crate) fn publish(&self, sites: &Sites) {
        for slot in &self.slots {
            let id = slot.site.get();
            if id != NO_SITE {
                sites.record(id).add(&slot.get());
                slot.set(&SiteCounters::default());
            }
        }
    }

    /// The pending changes, `(site, delta)` per slot (`NO_SITE` for an empty one).
    pub(crate) fn pending(&self) -> [(u32, SiteCounters); BATCH_SLOTS] {
        std::array::from_fn(|i| (self.slots[i].site.get(), self.slots[i].get()))
    }
}

/// The table's storage, mapped once.
pub(crate) struct Sites {
    records: Mapping<SiteRecord>,
    index: Mapping<AtomicU32>,
    frames: Mapping<AtomicU64>,
    len: AtomicU32,
    frames_used: AtomicU32,
    insert_lock: SpinLock<()>,
    /// Samples attributed to the overflow site, and their weighted bytes.
    pub(crate) overflow_samples: AtomicU64,
}

static SITES: OnceLock<Option<Sites>> = OnceLock::new();

/// Maps the table with room for `max_sites` sites of up to `max_depth` frames.
/// Idempotent: later calls keep the first table. Returns false if it could not be mapped.
pub(crate) fn init(max_sites: u32, max_depth: u32) -> bool {
    SITES
        .get_or_init(|| {
            let max_sites = max_sites.max(2) as usize;
            let index_len = (max_sites * 2).next_power_of_two();
            // Average stacks are far shallower than the maximum; the arena is sized for
            // half the maximum on average and overflows (counted) beyond that.
            let frames_len = (max_sites * (max_depth.max(1) as usize)).div_ceil(2);
            Some(Sites {
                records: Mapping::zeroed(max_sites)?,
                index: Mapping::zeroed(index_len)?,
                frames: Mapping::zeroed(frames_len.min(u32::MAX as usize))?,
                len: AtomicU32::new(1), // record 0 is the overflow site
                frames_used: AtomicU32::new(0),
                insert_lock: SpinLock::new(()),
                overflow_samples: AtomicU64::new(0),
            })
        })
        .is_some()
}

/// The table, once [`init`] succeeded.
pub(crate) fn get() -> Option<&'static Sites> {
    SITES.get().and_then(Option::as_ref)
}

/// Hashes a stack frame by frame, as it is captured: the frame-pointer walk waits on
/// one dependent load per frame, so hashing inside it is nearly free. Rotate-xor over
/// independently multiplied frames keeps the dependency chain at two one-cycle
/// instructions per frame, in a register (the rotation also keeps the compiler from
/// emitting SSE2 code that emulates 64-bit multiplies, measured 4x slower).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameHasher {
    state: u64,
    count: u64,
}

impl FrameHasher {
    const K: u64 = 0x517C_C1B7_2722_0A95;

    pub(crate) const fn new() -> Self {
        FrameHasher {
            state: 0x2545_F491_4F6C_DD1D,
            count: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn add(&mut self, frame: u64) {
        self.state = self.state.rotate_left(23) ^ frame.wrapping_mul(Self::K);
        self.count += 1;
    }

    pub(crate) fn finish(&self, truncated: bool) -> u64 {
        mix64(self.state ^ mix64(self.count ^ ((truncated as u64) << 63)))
    }
}

/// The hash [`Sites::intern`] expects for a stack.
#[cfg(test)]
pub(crate) fn hash_frames(frames: &[u64], truncated: bool) -> u64 {
    let mut hasher = FrameHasher::new();
    frames.iter().for_each(|&f| hasher.add(f));
    hasher.finish(truncated)
}

impl Sites {
    /// The id of the site with this stack, interning it if new; [`OVERFLOW`] when full.
    /// `h` is [`hash_frames`] of the stack (computed during capture). `scope` is the tag
    /// of the scope the stack belongs to (0 for none; a scope's stacks end in its marker
    /// frame, so they never match another scope's or an unscoped stack).
    pub(crate) fn intern(&self, frames: &[u64], truncated: bool, h: u64, scope: u64) -> u32 {
        if let Some(id) = self.find(h, frames, truncated) {
            return id;
        }
        let _guard = self.insert_lock.lock();
        if let Some(id) = self.find(h, frames, truncated) {
            return id;
        }
        let id = self.len.load(Relaxed);
        let start = self.frames_used.load(Relaxed);
        let end = start as usize + frames.len();
        if id as usize >= self.records.len() || end > self.frames.len() {
            self.overflow_samples.fetch_add(1, Relaxed);
            return OVERFLOW;
        }
        for (slot, &frame) in self.frames[start as usize..end].iter().zip(frames) {
            slot.store(frame, Relaxed);
        }
        let record = &self.records[id as usize];
        record.hash.store(h, Relaxed);
        record.scope.store(scope, Relaxed);
        record.frames_start.store(start, Relaxed);
        let flags = if truncated { TRUNCATED } else { 0 };
        record
            .depth_flags
            .store(frames.len() as u32 | flags, Relaxed);
        self.frames_used.store(end as u32, Relaxed);
        // Publish: the release stores make the record and its frames visible to any
        // thread that finds the id through an acquire load.
        self.len.store(id + 1, Release);
        // The index has at least twice as many slots as there are records, so it is at
        // most half full and the probe finds an empty slot; it is bounded all the same.
        let mask = self.index.len() - 1;
        let mut i = h as usize & mask;
        for _ in 0..self.index.len() {
            if self.index[i].load(Relaxed) == 0 {
                self.index[i].store(id + 1, Release);
                break;
            }
            i = (i + 1) & mask;
        }
        id
    }

    fn find(&self, h: u64, frames: &[u64], truncated: bool) -> Option<u32> {
        let mask = self.index.len() - 1;
        let mut i = h as usize & mask;
        for _ in 0..self.index.len() {
            let slot = self.index[i].load(Acquire);
            if slot == 0 {
                return None;
            }
            let id = slot - 1;
            let record = &self.records[id as usize];
            if record.hash.load(Relaxed) == h {
                let (stored, was_truncated) = self.frames_of(id);
                if was_truncated == truncated && as_plain(stored) == frames {
                    return Some(id);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn frames_of(&self, id: u32) -> (&[AtomicU64], bool) {
        let record = &self.records[id as usize];
        let start = record.frames_start.load(Relaxed) as usize;
        let flags = record.depth_flags.load(Relaxed);
        let depth = (flags & 0xFFFF) as usize;
        let frames = self.frames.get(start..start + depth).unwrap_or(&[]);
        (frames, flags & TRUNCATED != 0)
    }

    /// The record of a site id returned by [`Sites::intern`].
    pub(crate) fn record(&self, id: u32) -> &SiteRecord {
        &self.records[id as usize]
    }

    /// Number of ids in use, including the overflow site.
    pub(crate) fn len(&self) -> u32 {
        self.len.load(Acquire)
    }

    /// The maximum number of sites.
    pub(crate) fn capacity(&self) -> u32 {
        self.records.len() as u32
    }

    /// Copies a site's stack into `out`; returns whether it was truncated.
    pub(crate) fn copy_frames(&self, id: u32, out: &mut Vec<u64>) -> bool {
        let (frames, truncated) = self.frames_of(id);
        out.extend(frames.iter().map(|f| f.load(Relaxed)));
        truncated
    }

    /// Resident bytes of the table's mappings.
    pub(crate) fn resident_bytes(&self) -> usize {
        self.records.resident_bytes() + self.index.resident_bytes() + self.frames.resident_bytes()
    }

    /// Fork support: takes the insert lock.
    pub(crate) fn lock_for_fork(&self) {
        self.insert_lock.lock_for_fork();
    }

    /// Fork support: releases the insert lock.
    ///
    /// # Safety
    /// Only after [`Sites::lock_for_fork`] on this thread (or the thread that forked).
    pub(crate) unsafe fn unlock_after_fork(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.insert_lock.force_unlock() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_bounded() {
        assert!(init(64, 8));
        let sites = get().unwrap();
        let intern = |frames: &[u64], truncated| {
            sites.intern(frames, truncated, hash_frames(frames, truncated), 0)
        };
        let a = intern(&[1, 2, 3], false);
        let b = intern(&[1, 2, 4], false);
        let c = intern(&[1, 2, 3], true);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(intern(&[1, 2, 3], false), a);
        let mut out = Vec::new();
        assert!(!sites.copy_frames(a, &mut out));
        assert_eq!(out, [1, 2, 3]);
        // Fill the table: later stacks go to the overflow site and are counted.
        for i in 0..100u64 {
            intern(&[i, i + 1000], false);
        }
        assert_eq!(sites.len(), sites.capacity());
        assert_eq!(intern(&[5000, 5001], false), OVERFLOW);
        assert!(sites.overflow_samples.load(Relaxed) > 0);
        // Existing sites are still found.
        assert_eq!(intern(&[1, 2, 4], false), b);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn order_and_truncation_change_the_hash() {
        assert_ne!(
            hash_frames(&[1, 2, 3], false),
            hash_frames(&[2, 1, 3], false)
        );
        assert_ne!(
            hash_frames(&[1, 2, 3], false),
            hash_frames(&[1, 2, 3], true)
        );
        assert_ne!(hash_frames(&[1, 2], false), hash_frames(&[1, 2, 0], false));
        assert_eq!(
            hash_frames(&[7, 8, 9], false),
            hash_frames(&[7, 8, 9], false)
        );
    }
}
