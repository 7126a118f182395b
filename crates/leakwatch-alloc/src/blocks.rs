//! The block table: which site and sampling rate each tracked live block belongs to.
//!
//! 64 shards, each a linear-probing hash table (backward-shift deletion, no tombstones)
//! in its own anonymous mapping behind a spin lock. Entries are 24 bytes; a shard grows
//! at 3/4 load, so exact mode costs 32 to 64 bytes per live block. The total number of
//! entries is bounded (`max_blocks`): a block that does not fit is counted as overflow
//! by the caller.
//!
//! Growth never stalls other threads for more than a probe:
//! - The larger table is mapped (`mmap`, never the global allocator) and made resident
//!   (`MAP_POPULATE`) with the lock released, so no page fault of it is taken under the
//!   lock later; meanwhile the shard keeps taking entries up to a hard limit of 7/8 full.
//!   A thread that finds it at that limit maps a table too; the first to retake the lock
//!   installs its table (a generation count tells the others), the rest unmap theirs.
//! - Entries move to the new table a few at a time: every operation on the shard visits
//!   [`MIGRATE_SLOTS`] slots of the old table, and lookups look in both. The walk goes
//!   down from an empty slot, so the slot after the one being moved is always empty and
//!   moving it shifts nothing; drained pages go back to the system as the walk passes
//!   them, with the lock released (a pin count keeps their table mapped meanwhile), and
//!   the empty old table is unmapped after the lock is released.
//! - When the system refuses memory (`ulimit -v`, `vm.overcommit_memory=2`) the shard
//!   stops at its hard limit: blocks beyond it are counted as untracked, an empty slot
//!   always remains, and every probe is bounded by the capacity anyway.

use crate::os::{Mapping, Pages, Zeroable};
use crate::sampler::mix64;
use crate::spin::{SpinGuard, SpinLock};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

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
    /// An empty slot.
    const EMPTY: Entry = Entry::new(0, 0, 0, 0);

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

/// One shard: the table new entries go to and, after a growth, the smaller table being
/// drained into it a few slots per operation.
struct Table {
    slots: Option<Mapping<Entry>>,
    /// Entries in `slots`.
    len: usize,
    /// The table before the last growth, while entries remain in it.
    old: Option<Mapping<Entry>>,
    /// Entries in `old`.
    old_len: usize,
    /// The next slot of `old` to migrate. Migration walks down from an empty slot,
    /// cyclically, so the slot after the cursor is always empty (or visited, so empty):
    /// taking an entry out never shifts another.
    cursor: usize,
    /// The empty slot migration started at.
    start: usize,
    /// Counts installed tables: a thread that mapped a table with the lock released
    /// installs it only if nobody grew the shard meanwhile.
    generation: u64,
    /// A thread is mapping a larger table (a hint: others keep inserting into this one
    /// up to the hard limit, and then map one themselves).
    growing: bool,
    /// Threads returning a passed chunk of `old` to the system with the lock released
    /// (see [`finish`]): while any is, a drained old table waits in `retired` instead of
    /// being unmapped under it.
    pins: u32,
    /// A drained old table that a discard in flight may still be touching; the last
    /// thread to finish its discard unmaps it. The shard does not grow meanwhile.
    retired: Option<Mapping<Entry>>,
}

impl Table {
    const EMPTY: Table = Table {
        slots: None,
        len: 0,
        old: None,
        old_len: 0,
        cursor: 0,
        start: 0,
        generation: 0,
        growing: false,
        pins: 0,
        retired: None,
    };
}

#[repr(align(128))]
struct Shard(SpinLock<Table>);

static SHARD_TABLE: [Shard; SHARDS] = [const { Shard(SpinLock::new(Table::EMPTY)) }; SHARDS];

/// Maximum entries per shard (the global bound divided by the shard count).
static MAX_PER_SHARD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Times the system refused a mapping for a larger table.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// What one thread's block-table operations did, counted since it started: benchmark
/// support (`grow_stall` reads it around every operation to tell what a slow one did).
/// Only the waits and the system calls are timed, so an operation that does neither
/// pays for no clock read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockProbes {
    /// Larger tables this thread mapped (it set out to grow a shard).
    pub maps: u64,
    /// Nanoseconds spent in those `mmap` calls.
    pub map_ns: u64,
    /// Tables this thread unmapped (drained, or mapped in vain: another thread grew the
    /// shard first).
    pub unmaps: u64,
    /// Nanoseconds spent in those `munmap` calls.
    pub unmap_ns: u64,
    /// Entries this thread moved from a shard's old table to its new one.
    pub moves: u64,
    /// Drained chunks of old tables this thread returned to the system (`madvise`,
    /// under the shard's lock).
    pub discards: u64,
    /// Nanoseconds spent in those `madvise` calls.
    pub discard_ns: u64,
    /// Times this thread found a shard's lock taken and waited for it.
    pub waits: u64,
    /// Nanoseconds spent waiting.
    pub wait_ns: u64,
}

impl BlockProbes {
    const ZERO: BlockProbes = BlockProbes {
        maps: 0,
        map_ns: 0,
        unmaps: 0,
        unmap_ns: 0,
        moves: 0,
        discards: 0,
        discard_ns: 0,
        waits: 0,
        wait_ns: 0,
    };

    /// What happened between `earlier` (of the same thread) and `self`.
    pub fn since(&self, earlier: &BlockProbes) -> BlockProbes {
        BlockProbes {
            maps: self.maps.wrapping_sub(earlier.maps),
            map_ns: self.map_ns.wrapping_sub(earlier.map_ns),
            unmaps: self.unmaps.wrapping_sub(earlier.unmaps),
            unmap_ns: self.unmap_ns.wrapping_sub(earlier.unmap_ns),
            moves: self.moves.wrapping_sub(earlier.moves),
            discards: self.discards.wrapping_sub(earlier.discards),
            discard_ns: self.discard_ns.wrapping_sub(earlier.discard_ns),
            waits: self.waits.wrapping_sub(earlier.waits),
            wait_ns: self.wait_ns.wrapping_sub(earlier.wait_ns),
        }
    }
}

thread_local! {
    /// This thread's [`BlockProbes`] (no destructor, so usable until the thread is gone).
    static PROBES: Cell<BlockProbes> = const { Cell::new(BlockProbes::ZERO) };
}

/// This thread's [`BlockProbes`] so far.
pub(crate) fn probes() -> BlockProbes {
    PROBES.with(Cell::get)
}

fn probe(f: impl FnOnce(&mut BlockProbes)) {
    PROBES.with(|p| {
        let mut probes = p.get();
        f(&mut probes);
        p.set(probes);
    });
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Takes a shard's lock, counting the wait (if any) in this thread's probes.
fn lock(shard: &SpinLock<Table>) -> SpinGuard<'_, Table> {
    if let Some(table) = shard.try_lock() {
        return table;
    }
    let start = Instant::now();
    let table = shard.lock();
    let waited = nanos_since(start);
    probe(|p| {
        p.waits += 1;
        p.wait_ns += waited;
    });
    table
}

/// Unmaps a table (if any), with the shard's lock released.
fn unmap(table: Option<Mapping<Entry>>) {
    if let Some(table) = table {
        let start = Instant::now();
        drop(table);
        let took = nanos_since(start);
        probe(|p| {
            p.unmaps += 1;
            p.unmap_ns += took;
        });
    }
}

/// Times the system refused memory for a larger table.
pub(crate) fn refused_mappings() -> u64 {
    REFUSED.load(Relaxed)
}

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

/// Old slots visited per operation on a shard while it migrates. Two would do: the new
/// table reaches its own growth threshold only after inserts numbering 3/4 of the old
/// capacity, and at two slots an insert the walk covers the old table in 1/2. Eight
/// drains it within the first sixth of that stretch (both tables are resident only
/// meanwhile), for at most eight slot reads and eight probes of the new table per
/// operation.
const MIGRATE_SLOTS: usize = 8;

/// Migrated old slots are returned to the system in chunks of this many (48 KiB of
/// entries, whole pages at 4 KiB), so unmapping the drained table costs little.
const DISCARD_SLOTS: usize = 2048;

impl Table {
    fn capacity(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| s.len())
    }

    /// Migrates up to [`MIGRATE_SLOTS`] slots of the old table. Returns what is left to
    /// do once the lock is released (see [`finish`]): the chunk of the old table the walk
    /// just passed, and the old table once it is empty.
    fn migrate(&mut self) -> Migrated {
        let (Some(slots), Some(old)) = (self.slots.as_deref_mut(), self.old.as_mut()) else {
            return Migrated::default();
        };
        let mask = old.len().wrapping_sub(1);
        let mut moves = 0;
        let mut pages = None;
        for _ in 0..MIGRATE_SLOTS {
            if self.old_len == 0 {
                break;
            }
            let c = self.cursor & mask;
            let entry = old[c];
            if entry.addr != 0 {
                // The slot after `c` is empty (see `cursor`), so no later entry of a probe
                // run depends on this one: emptying it is a complete deletion.
                let Some(i) = vacancy(slots, hash(entry.addr)) else {
                    break; // the new table has no room: leave the entry where it is
                };
                slots[i] = entry;
                self.len += 1;
                old[c] = Entry::EMPTY;
                self.old_len -= 1;
                moves += 1;
            }
            self.cursor = c.wrapping_sub(1) & mask;
            if c % DISCARD_SLOTS == 0
                && c / DISCARD_SLOTS != self.start / DISCARD_SLOTS
                && pages.is_none()
            {
                // Every slot of this chunk has been visited (the walk goes down), and
                // visited slots stay empty. (A second chunk in one step cannot happen,
                // as MIGRATE_SLOTS < DISCARD_SLOTS; it would stay resident until the
                // table is unmapped.)
                pages = old.pages_within(c..c + DISCARD_SLOTS);
            }
        }
        probe(|p| p.moves += moves);
        if pages.is_some() {
            self.pins += 1;
        }
        let drained = if self.old_len == 0 {
            let drained = self.old.take();
            if self.pins == 0 {
                drained
            } else {
                // Not both: `install` waits for `retired` to go.
                debug_assert!(self.retired.is_none());
                self.retired = drained;
                None
            }
        } else {
            None
        };
        Migrated { drained, pages }
    }

    /// Makes `fresh` the table new entries go to; the current one, if any, starts to
    /// drain into it. Returns `fresh` instead when the current table cannot start a
    /// migration (no empty slot: never, as tables stay at most 7/8 full).
    fn install(&mut self, fresh: Mapping<Entry>) -> Option<Mapping<Entry>> {
        let start = match self.slots.as_deref() {
            None => 0,
            Some(_) if self.old.is_some() || self.retired.is_some() => return Some(fresh),
            Some(slots) => match slots.iter().position(|e| e.addr == 0) {
                Some(start) => start,
                None => return Some(fresh),
            },
        };
        self.generation = self.generation.wrapping_add(1);
        self.growing = false;
        self.old = self.slots.replace(fresh);
        self.old_len = std::mem::replace(&mut self.len, 0);
        self.start = start;
        self.cursor = start;
        None
    }

    /// Tracks `entry` (or replaces the entry for its address) if there is room.
    /// `may_grow`: whether the caller would map a larger table when asked to.
    fn place(&mut self, h: u64, entry: Entry, may_grow: bool) -> Placed {
        if let Some(slots) = self.slots.as_deref_mut() {
            if let Some(i) = find(slots, h, entry.addr) {
                return Placed::Done(Inserted::Replaced(std::mem::replace(&mut slots[i], entry)));
            }
        }
        if let Some(old) = self.old_for(h) {
            if let Some(i) = find(old, h, entry.addr) {
                return Placed::Done(Inserted::Replaced(std::mem::replace(&mut old[i], entry)));
            }
        }
        let total = self.len + self.old_len;
        let max = MAX_PER_SHARD.load(Relaxed);
        if total >= max {
            return Placed::Done(Inserted::Full);
        }
        let capacity = self.capacity();
        let vacant = match self.slots.as_deref() {
            // The hard limit: 7/8 full, so probes stay short and an empty slot remains.
            Some(slots) if (self.len + 1) * 8 <= capacity * 7 => vacancy(slots, h),
            _ => None,
        };
        let (Some(i), Some(slots)) = (vacant, self.slots.as_deref_mut()) else {
            return if may_grow && self.old.is_none() {
                Placed::NoRoom(self.generation)
            } else {
                Placed::Done(Inserted::Full)
            };
        };
        slots[i] = entry;
        self.len += 1;
        if may_grow
            && (total + 1) * 4 > capacity * 3
            && total + 1 < max
            && self.old.is_none()
            && !self.growing
        {
            self.growing = true;
            return Placed::Grow(Inserted::New, self.generation);
        }
        Placed::Done(Inserted::New)
    }

    /// Whether migration has visited slot `i` of the old table: the walk went down from
    /// `start` to just above `cursor`. Visited slots are empty, and no entry of the old
    /// table has its home there (its probe run would start in an empty slot), so a lookup
    /// whose home is visited need not read the old table (nor fault its discarded pages
    /// back in).
    fn visited(&self, i: usize) -> bool {
        let mask = self.old.as_ref().map_or(0, |o| o.len()).wrapping_sub(1);
        self.start.wrapping_sub(i) & mask < self.start.wrapping_sub(self.cursor) & mask
    }

    /// The old table, unless migration has passed the home of hash `h` (see `visited`).
    fn old_for(&mut self, h: u64) -> Option<&mut [Entry]> {
        let capacity = self.old.as_ref()?.len();
        if self.visited(home(h, capacity.wrapping_sub(1))) {
            return None;
        }
        self.old.as_deref_mut()
    }

    /// Stops tracking `addr`, returning its entry.
    fn take(&mut self, h: u64, addr: usize) -> Option<Entry> {
        if let Some(slots) = self.slots.as_deref_mut() {
            if let Some(i) = find(slots, h, addr) {
                let entry = slots[i];
                delete(slots, i);
                self.len -= 1;
                return Some(entry);
            }
        }
        let old = self.old_for(h)?;
        let i = find(old, h, addr)?;
        let entry = old[i];
        // The shifts of this deletion stay among unvisited slots: the run from `i` ends
        // at the latest at the empty slot after the cursor.
        delete(old, i);
        self.old_len -= 1;
        Some(entry)
    }
}

/// What an operation's migration step leaves for after the shard's lock is released.
#[derive(Default)]
struct Migrated {
    /// The drained old table, to unmap.
    drained: Option<Mapping<Entry>>,
    /// A chunk of the old table the walk passed, to return to the system; the shard's
    /// `pins` counts this thread until it has.
    pages: Option<Pages>,
}

/// Finishes an operation's migration step with the shard's lock released: returns the
/// passed chunk to the system (`madvise` is a system call, and its TLB shootdown can
/// take a long while, in a virtual machine especially: not under the lock), then unmaps
/// what was drained.
fn finish(shard: &SpinLock<Table>, migrated: Migrated) {
    let Migrated { mut drained, pages } = migrated;
    if let Some(pages) = pages {
        let start = Instant::now();
        // SAFETY: the old table these pages belong to stays mapped while this thread is
        // counted in the shard's `pins` (once drained it waits in `retired`, and only the
        // last thread to unpin unmaps it, below). The migration walk visited every slot
        // of the chunk, and visited slots stay empty (zero): other threads' lookups may
        // read them meanwhile (a probe run ends at the empty slot after the cursor), but
        // neither migration nor deletion writes them.
        unsafe { pages.discard() };
        let took = nanos_since(start);
        probe(|p| {
            p.discards += 1;
            p.discard_ns += took;
        });
        let mut table = lock(shard);
        table.pins -= 1;
        if table.pins == 0 {
            // `drained` is None here: the step that took a chunk left a drained table
            // in `retired`.
            drained = drained.or_else(|| table.retired.take());
        }
        drop(table);
    }
    unmap(drained);
}

/// What [`Table::place`] did.
enum Placed {
    /// Finished.
    Done(Inserted),
    /// Finished, and the shard reached its growth threshold: map a larger table (this
    /// caller set `growing`) as of this generation.
    Grow(Inserted, u64),
    /// No room: a larger table is needed first (as of this generation).
    NoRoom(u64),
}

fn home(h: u64, mask: usize) -> usize {
    (h >> SHARD_BITS) as usize & mask
}

/// The slot holding `addr`, probing at most the whole table.
fn find(slots: &[Entry], h: u64, addr: usize) -> Option<usize> {
    let mask = slots.len().wrapping_sub(1);
    let mut i = home(h, mask);
    for _ in 0..slots.len() {
        match slots[i].addr {
            0 => return None,
            a if a == addr => return Some(i),
            _ => i = (i + 1) & mask,
        }
    }
    None
}

/// The first empty slot on the probe sequence of hash `h`, probing at most the whole
/// table.
fn vacancy(slots: &[Entry], h: u64) -> Option<usize> {
    let mask = slots.len().wrapping_sub(1);
    let mut i = home(h, mask);
    for _ in 0..slots.len() {
        if slots[i].addr == 0 {
            return Some(i);
        }
        i = (i + 1) & mask;
    }
    None
}

/// Backward-shift deletion of the entry at `i`: pulls later entries of the probe run
/// into the hole when their home slot does not lie cyclically in (hole, j].
fn delete(slots: &mut [Entry], i: usize) {
    let mask = slots.len().wrapping_sub(1);
    let mut hole = i & mask;
    let mut j = hole;
    for _ in 1..slots.len() {
        j = (j + 1) & mask;
        let entry = slots[j];
        if entry.addr == 0 {
            break;
        }
        let home = home(hash(entry.addr), mask);
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
    slots[hole] = Entry::EMPTY;
}

/// Tracks a block.
pub(crate) fn insert(addr: usize, site: u32, rate: u32, epoch: u32) -> Inserted {
    let h = hash(addr);
    insert_into(
        shard_of(h),
        h,
        Entry::new(addr, site, rate, epoch),
        // Resident at once, by the thread that grows the shard and outside the lock:
        // migration and inserts then never take a page fault under the lock (on a
        // virtual machine a first touch can cost milliseconds: the host may have to
        // supply the page). The memory is the same: half full after migration, the
        // table has entries on every page.
        Mapping::populated,
    )
}

/// [`insert`] into one shard, mapping tables with `map`.
fn insert_into(
    shard: &SpinLock<Table>,
    h: u64,
    entry: Entry,
    map: impl FnOnce(usize) -> Option<Mapping<Entry>>,
) -> Inserted {
    let mut table = lock(shard);
    let migrated = table.migrate();
    let placed = table.place(h, entry, true);
    let capacity = (table.capacity() * 2).max(MIN_CAPACITY);
    drop(table);
    finish(shard, migrated);
    let (done, generation) = match placed {
        Placed::Done(inserted) => return inserted,
        Placed::Grow(inserted, generation) => (Some(inserted), generation),
        Placed::NoRoom(generation) => (None, generation),
    };
    // Map the larger table with the lock released: meanwhile other threads keep using
    // the current one (inserting up to its hard limit).
    let start = Instant::now();
    let fresh = map(capacity);
    let took = nanos_since(start);
    probe(|p| {
        p.maps += 1;
        p.map_ns += took;
    });
    if fresh.is_none() {
        REFUSED.fetch_add(1, Relaxed);
    }
    let mut table = lock(shard);
    let unused = match fresh {
        Some(fresh) if table.generation == generation => table.install(fresh),
        other => other, // refused, or another thread grew the shard first
    };
    if table.generation == generation {
        table.growing = false; // this growth did not happen
    }
    let inserted = done.unwrap_or_else(|| match table.place(h, entry, false) {
        Placed::Done(inserted) | Placed::Grow(inserted, _) => inserted,
        Placed::NoRoom(_) => Inserted::Full,
    });
    drop(table);
    unmap(unused);
    inserted
}

/// Stops tracking a block, returning what was recorded for it.
pub(crate) fn remove(addr: usize) -> Option<Entry> {
    let h = hash(addr);
    remove_from(shard_of(h), h, addr)
}

/// [`remove`] from one shard.
fn remove_from(shard: &SpinLock<Table>, h: u64, addr: usize) -> Option<Entry> {
    let mut table = lock(shard);
    let migrated = table.migrate();
    let removed = table.take(h, addr);
    drop(table);
    finish(shard, migrated);
    removed
}

/// Number of tracked blocks.
pub(crate) fn len() -> u64 {
    SHARD_TABLE
        .iter()
        .map(|s| {
            let table = s.0.lock();
            (table.len + table.old_len) as u64
        })
        .sum()
}

/// Resident bytes of all shard tables.
pub(crate) fn resident_bytes() -> usize {
    SHARD_TABLE
        .iter()
        .map(|s| {
            let table = s.0.lock();
            [
                table.slots.as_ref(),
                table.old.as_ref(),
                table.retired.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|t| t.resident_bytes())
            .sum::<usize>()
        })
        .sum()
}

/// Calls `f` on every tracked block (shard by shard; each shard is locked while visited,
/// so `f` must not allocate through the tracked allocator).
#[cfg(test)]
pub(crate) fn for_each(mut f: impl FnMut(&Entry)) {
    for shard in &SHARD_TABLE {
        let table = shard.0.lock();
        for slots in [table.slots.as_ref(), table.old.as_ref()]
            .into_iter()
            .flatten()
        {
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

/// Fork support, in the child after the locks are released: the threads that were
/// returning chunks of old tables to the system are gone, so nobody else will unpin:
/// drops their pins and unmaps a drained table that waited for them.
pub(crate) fn forget_pins_after_fork_child() {
    for shard in &SHARD_TABLE {
        let mut table = shard.0.lock();
        table.pins = 0;
        let retired = table.retired.take();
        drop(table);
        unmap(retired);
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
mod tests;
