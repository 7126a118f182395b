//! The block table: which site and sampling rate each tracked live block belongs to.
//!
//! 64 shards, each a linear-probing hash table (backward-shift deletion, no tombstones)
//! in its own anonymous mapping behind a spin lock. Growth maps a new table with `mmap`,
//! never the global allocator, so no lock is ever held across an allocation by the
//! allocator being tracked. Entries are 24 bytes; the table grows at 3/4 load, so exact
//! mode costs 32 to 64 bytes per live block. The total number of entries is bounded
//! (`max_blocks`): a block that does not fit is counted as overflow by the caller.

use crate::os::{Mapping, Zeroable};
use crate::sampler::mix64;
use crate::spin::SpinLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
const MIN_CAPACITY: usize = 256;

/// What the tracker remembers about one live tracked block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Entry {
    /// Block address; 0 marks an empty slot (the allocator never returns null as a block).
    pub(crate) addr: usize,
    /// Site the block was allocated from.
    pub(crate) site: u32,
    /// Sampling rate in force when the block was sampled (1 = exact): fixes its weight.
    pub(crate) rate: u32,
    /// The snapshot epoch (`tracker::EPOCH`) when the block was allocated: a block with
    /// an older epoch was live at a snapshot, and its free counts in the site's
    /// `freed_old_bytes`.
    pub(crate) epoch: u32,
    /// Unused. Reserved for issue 11, which will store the block's tag-set id here.
    pub(crate) spare: u32,
}

impl Entry {
    /// An entry for a block at `addr`.
    pub(crate) const fn new(addr: usize, site: u32, rate: u32, epoch: u32) -> Entry {
        Entry {
            addr,
            site,
            rate,
            epoch,
            spare: 0,
        }
    }
}

// SAFETY: all fields are integers; zero is a valid (empty) entry.
unsafe impl Zeroable for Entry {}

struct Table {
    slots: Option<Mapping<Entry>>,
    len: usize,
}

#[repr(align(128))]
struct Shard(SpinLock<Table>);

static SHARD_TABLE: [Shard; SHARDS] = [const {
    Shard(SpinLock::new(Table {
        slots: None,
        len: 0,
    }))
}; SHARDS];

/// Maximum entries per shard (the global bound divided by the shard count).
static MAX_PER_SHARD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Hard upper bound on tracked blocks (keeps the address filter's 16-bit buckets far
/// from full on average; a bucket that fills anyway saturates, see `filter.rs`).
pub(crate) const MAX_BLOCKS_LIMIT: u64 = 1 << 30;

/// Sets the bound on tracked blocks (spread evenly over the shards).
pub(crate) fn set_max_blocks(max: u64) {
    let per_shard = (max.min(MAX_BLOCKS_LIMIT) as usize).div_ceil(SHARDS).max(1);
    MAX_PER_SHARD.store(per_shard, Relaxed);
}

/// The bound on tracked blocks.
pub(crate) fn max_blocks() -> u64 {
    (MAX_PER_SHARD.load(Relaxed) as u64).saturating_mul(SHARDS as u64)
}

#[inline]
fn hash(addr: usize) -> u64 {
    mix64(addr as u64)
}

fn shard_of(h: u64) -> &'static SpinLock<Table> {
    &SHARD_TABLE[(h as usize) & (SHARDS - 1)].0
}

/// The outcome of [`insert`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// The block is now tracked.
    New,
    /// An entry for the same address was still present (its free was never seen); it
    /// was replaced and is returned so the caller can account for it.
    Replaced(Entry),
    /// The table is at its bound (or the system refused memory): not tracked.
    Full,
}

/// Tracks a block.
pub(crate) fn insert(addr: usize, site: u32, rate: u32, epoch: u32) -> Inserted {
    let h = hash(addr);
    let mut table = shard_of(h).lock();
    let capacity = table.slots.as_ref().map_or(0, |s| s.len());
    if (table.len + 1) * 4 > capacity * 3 && !grow(&mut table) {
        return Inserted::Full;
    }
    let Table { slots, len } = &mut *table;
    let Some(slots) = slots.as_mut() else {
        return Inserted::Full;
    };
    let mask = slots.len() - 1;
    let mut i = (h >> SHARD_BITS) as usize & mask;
    loop {
        let slot = &mut slots[i];
        if slot.addr == 0 {
            if *len >= MAX_PER_SHARD.load(Relaxed) {
                return Inserted::Full;
            }
            *slot = Entry::new(addr, site, rate, epoch);
            *len += 1;
            return Inserted::New;
        }
        if slot.addr == addr {
            let old = *slot;
            *slot = Entry::new(addr, site, rate, epoch);
            return Inserted::Replaced(old);
        }
        i = (i + 1) & mask;
    }
}

/// Doubles a shard's table (or creates it). Returns false when it cannot grow.
fn grow(table: &mut Table) -> bool {
    let old_capacity = table.slots.as_ref().map_or(0, |s| s.len());
    if table.len >= MAX_PER_SHARD.load(Relaxed) {
        // At the bound: growing would not let another entry in.
        return old_capacity > table.len;
    }
    let capacity = (old_capacity * 2).max(MIN_CAPACITY);
    let Some(mut fresh) = Mapping::<Entry>::zeroed(capacity) else {
        return old_capacity > table.len;
    };
    let mask = capacity - 1;
    if let Some(old) = table.slots.take() {
        for entry in old.iter().filter(|e| e.addr != 0) {
            let mut i = (hash(entry.addr) >> SHARD_BITS) as usize & mask;
            while fresh[i].addr != 0 {
                i = (i + 1) & mask;
            }
            fresh[i] = *entry;
        }
    }
    table.slots = Some(fresh);
    true
}

/// Stops tracking a block, returning what was recorded for it.
pub(crate) fn remove(addr: usize) -> Option<Entry> {
    let h = hash(addr);
    let mut table = shard_of(h).lock();
    let Table { slots, len } = &mut *table;
    let slots = slots.as_mut()?;
    let mask = slots.len() - 1;
    let mut i = (h >> SHARD_BITS) as usize & mask;
    loop {
        let slot = slots[i];
        if slot.addr == 0 {
            return None;
        }
        if slot.addr == addr {
            break;
        }
        i = (i + 1) & mask;
    }
    let removed = slots[i];
    // Backward-shift deletion: pull later entries of the probe run into the hole when
    // their home slot does not lie cyclically in (hole, j].
    let mut hole = i;
    let mut j = i;
    loop {
        j = (j + 1) & mask;
        let entry = slots[j];
        if entry.addr == 0 {
            break;
        }
        let home = (hash(entry.addr) >> SHARD_BITS) as usize & mask;
        let stays = if hole <= j {
            hole < home && home <= j
        } else {
            hole < home || home <= j
        };
        if !stays {
            slots[hole] = entry;
            hole = j;
        }
    }
    slots[hole] = Entry::new(0, 0, 0, 0);
    *len -= 1;
    Some(removed)
}

/// Number of tracked blocks.
pub(crate) fn len() -> u64 {
    SHARD_TABLE.iter().map(|s| s.0.lock().len as u64).sum()
}

/// Resident bytes of all shard tables.
pub(crate) fn resident_bytes() -> usize {
    SHARD_TABLE
        .iter()
        .map(|s| s.0.lock().slots.as_ref().map_or(0, |t| t.resident_bytes()))
        .sum()
}

/// Calls `f` on every tracked block (shard by shard; each shard is locked while visited,
/// so `f` must not allocate through the tracked allocator).
#[cfg(test)]
pub(crate) fn for_each(mut f: impl FnMut(&Entry)) {
    for shard in &SHARD_TABLE {
        let table = shard.0.lock();
        if let Some(slots) = table.slots.as_ref() {
            slots.iter().filter(|e| e.addr != 0).for_each(&mut f);
        }
    }
}

/// Fork support: takes every shard lock.
pub(crate) fn lock_all_for_fork() {
    for shard in &SHARD_TABLE {
        shard.0.lock_for_fork();
    }
}

/// Fork support: releases every shard lock.
///
/// # Safety
/// Only after [`lock_all_for_fork`] on this thread (or the thread that forked).
pub(crate) unsafe fn unlock_all_after_fork() {
    for shard in SHARD_TABLE.iter().rev() {
        // SAFETY: the caller guarantees these locks were taken by lock_all_for_fork.
        unsafe { shard.0.force_unlock() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is global; these tests use disjoint address ranges so they can run in
    // parallel with each other.

    #[test]
    fn insert_remove_many_with_collisions() {
        let base = 0x1000_0000_0000usize;
        let n = 50_000;
        for i in 0..n {
            assert_eq!(insert(base + i * 16, i as u32, 1, 5), Inserted::New);
        }
        assert_eq!(
            insert(base, 99, 1, 6),
            Inserted::Replaced(Entry::new(base, 0, 1, 5))
        );
        for i in (0..n).rev().step_by(2) {
            let e = remove(base + i * 16).expect("tracked");
            assert_eq!(e.addr, base + i * 16);
        }
        for i in 0..n {
            let present = remove(base + i * 16).is_some();
            assert_eq!(present, (n - 1 - i) % 2 == 1, "address {i}");
        }
        assert_eq!(remove(base), None);
    }

    #[test]
    fn entries_are_twenty_four_bytes() {
        assert_eq!(size_of::<Entry>(), 24);
    }

    #[test]
    fn visits_every_entry() {
        let base = 0x2000_0000_0000usize;
        for i in 0..100 {
            insert(base + i * 64, 7, 3, 9);
        }
        let mut seen = 0;
        for_each(|e| {
            if (base..base + 6400).contains(&e.addr) {
                assert_eq!((e.site, e.rate, e.epoch), (7, 3, 9));
                seen += 1;
            }
        });
        assert_eq!(seen, 100);
        for i in 0..100 {
            remove(base + i * 64);
        }
    }
}
