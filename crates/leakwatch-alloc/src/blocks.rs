//! The block table: which site and sampling rate each tracked live block belongs to.
//!
//! 64 shards, each a linear-probing hash table (backward-shift deletion, no tombstones)
//! in its own anonymous mapping behind a spin lock. Entries are 24 bytes; a shard grows
//! at 3/4 load, so exact mode costs 32 to 64 bytes per live block. The total number of
//! entries is bounded (`max_blocks`): a block that does not fit is counted as overflow
//! by the caller.
//!
//! Growth never stalls other threads for more than a probe:
//! - The larger table is mapped (`mmap`, never the global allocator) with the lock
//!   released, then made resident 64 KiB per operation on the shard, also with the lock
//!   released, and installed once whole: no page fault of it is taken under the lock.
//!   Meanwhile the shard keeps taking entries up to a hard limit of 7/8 full (reached
//!   first, it installs the staged table at once).
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
    /// The block's size ([`Entry::size`]): bytes below 2^31, else 4 KiB pages with the
    /// top bit set (up to 8 TiB). What snapshots weigh its age by (`snapshot::ages`).
    pub(crate) size: u32,
}

/// The top bit of [`Entry::size`]: the rest counts 4 KiB pages, not bytes.
const SIZE_IN_PAGES: u32 = 1 << 31;

impl Entry {
    /// An empty slot.
    const EMPTY: Entry = Entry::new(0, 0, 0, 0);

    /// An entry for a block at `addr` (of no recorded size: see [`Entry::sized`]).
    pub(crate) const fn new(addr: usize, site: u32, rate: u32, epoch: u32) -> Entry {
        Entry {
            addr,
            site,
            rate,
            epoch,
            size: 0,
        }
    }

    /// This entry for a block of `size` bytes.
    pub(crate) const fn sized(mut self, size: usize) -> Entry {
        self.size = if size < SIZE_IN_PAGES as usize {
            size as u32
        } else {
            let pages = size >> 12;
            SIZE_IN_PAGES
                | if pages < SIZE_IN_PAGES as usize {
                    pages as u32
                } else {
                    SIZE_IN_PAGES - 1
                }
        };
        self
    }

    /// The block's size in bytes (rounded down to 4 KiB from 2 GiB up).
    pub(crate) const fn size(&self) -> usize {
        if self.size & SIZE_IN_PAGES == 0 {
            self.size as usize
        } else {
            ((self.size & !SIZE_IN_PAGES) as usize) << 12
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
    /// Threads populating a slice of `pending` with the lock released.
    populating: u32,
    /// Threads populating a slice of a table installed before it was whole (their
    /// table may be any of this shard's): while any is, a drained table waits in
    /// `retired` too.
    stale_populating: u32,
    /// A drained old table that a pinned thread may still be touching; the last
    /// pinned thread to finish unmaps it. The shard installs no other table meanwhile.
    retired: Option<Mapping<Entry>>,
    /// The next, larger table: mapped with the lock released, then made resident
    /// [`POPULATE_BYTES`] per operation on the shard (with the lock released, each
    /// populating thread counted), and installed once whole, so that no page
    /// of it faults in under the lock. Installed at once, instead, if the current table
    /// reaches its hard limit first.
    pending: Option<Mapping<Entry>>,
    /// Bytes of `pending` handed out to populate.
    handed: usize,
    /// Bytes of `pending` populated.
    populated: usize,
    /// Counts staged tables: a populated slice counts toward the table it came from only.
    staged: u64,
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
        populating: 0,
        stale_populating: 0,
        retired: None,
        pending: None,
        handed: 0,
        populated: 0,
        staged: 0,
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
    /// with the shard's lock released).
    pub discards: u64,
    /// Nanoseconds spent in those `madvise` calls.
    pub discard_ns: u64,
    /// Slices of a staged table this thread made resident (`madvise`, outside the lock).
    pub populates: u64,
    /// Nanoseconds spent in those `madvise` calls.
    pub populate_ns: u64,
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
        populates: 0,
        populate_ns: 0,
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
            populates: self.populates.wrapping_sub(earlier.populates),
            populate_ns: self.populate_ns.wrapping_sub(earlier.populate_ns),
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

/// Bytes of a staged table each operation on the shard makes resident (16 pages at
/// 4 KiB). The current table has room for 1/8 of its capacity after its growth
/// threshold, and the next table takes one operation per 64 KiB, that is per 1,365 of
/// its own slots, so it is whole long before the current one is full.
const POPULATE_BYTES: usize = 64 << 10;

/// Migrated old slots are returned to the system in chunks of this many (48 KiB of
/// entries, whole pages at 4 KiB), so unmapping the drained table costs little.
const DISCARD_SLOTS: usize = 2048;

impl Table {
    fn capacity(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| s.len())
    }

    /// One operation's share of the shard's growth: migrates up to [`MIGRATE_SLOTS`]
    /// slots of the old table, and hands out a slice of the staged table to populate.
    /// Returns what is left to do once the lock is released (see [`finish`]).
    fn migrate(&mut self) -> Migrated {
        let mut migrated = self.migrate_old();
        migrated.populate = self.populate_step();
        migrated
    }

    /// Hands out the next [`POPULATE_BYTES`] of `pending` to populate, counting the
    /// caller in `populating`; once all are handed out, installs `pending` when they are
    /// done.
    fn populate_step(&mut self) -> Option<(Pages, u64)> {
        let pending = self.pending.as_ref()?;
        match pending.pages_at(self.handed, POPULATE_BYTES) {
            Some(pages) => {
                self.handed += POPULATE_BYTES;
                self.populating += 1;
                Some((pages, self.staged))
            }
            None => {
                self.install_if_populated();
                None
            }
        }
    }

    /// Installs `pending` if every slice of it has been populated (and the shard can
    /// install: see `install`; if not, a later operation tries again).
    fn install_if_populated(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| self.populated >= p.bytes())
        {
            self.install_pending();
        }
    }

    /// Installs `pending`, whole or not; its populating threads, if any, become stale.
    fn install_pending(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.pending = self.install(pending);
            if self.pending.is_none() {
                self.stale_populating += std::mem::take(&mut self.populating);
            }
        }
    }

    /// Whether no thread works on one of this shard's tables with the lock released,
    /// other than populating `pending`: a drained table may be unmapped.
    fn unpinned(&self) -> bool {
        self.pins == 0 && self.stale_populating == 0
    }

    /// Whether the current table is at its hard limit (or there is none).
    fn at_hard_limit(&self) -> bool {
        self.slots.is_none() || (self.len + 1) * 8 > self.capacity() * 7
    }

    /// Takes `fresh`, mapped by a thread that set out to grow the shard: staged to be
    /// populated, or installed at once where the shard has no room meanwhile. Returns
    /// it when it is not needed (another table is staged already: that one is installed
    /// now if there is no room).
    fn stage(&mut self, fresh: Mapping<Entry>) -> Option<Mapping<Entry>> {
        if self.pending.is_some() {
            if self.at_hard_limit() {
                self.install_pending();
            }
            return Some(fresh);
        }
        let full = self.at_hard_limit();
        if full {
            return self.install(fresh);
        }
        self.pending = Some(fresh);
        self.handed = 0;
        self.populated = 0;
        self.staged = self.staged.wrapping_add(1);
        None
    }

    /// Migrates up to [`MIGRATE_SLOTS`] slots of the old table: returns the chunk of the
    /// old table the walk just passed, and the old table once it is empty.
    fn migrate_old(&mut self) -> Migrated {
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
            if self.unpinned() {
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
        Migrated {
            drained,
            pages,
            populate: None,
        }
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
    /// A slice of the staged table to populate (and the `staged` count it belongs to);
    /// `pins` counts this thread until it has.
    populate: Option<(Pages, u64)>,
}

/// Finishes an operation's share of the growth with the shard's lock released: returns
/// the passed chunk to the system and populates the handed-out slice (system calls that
/// can take long, with page faults and TLB shootdowns, in a virtual machine especially:
/// not under the lock), then unpins, installs a staged table that is now whole, and
/// unmaps what was drained.
fn finish(shard: &SpinLock<Table>, migrated: Migrated) {
    let Migrated {
        mut drained,
        pages,
        populate,
    } = migrated;
    if pages.is_none() && populate.is_none() {
        unmap(drained);
        return;
    }
    let discarded = pages.is_some();
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
    }
    let staged = populate.map(|(pages, staged)| {
        let start = Instant::now();
        // SAFETY: the staged table stays mapped while this thread is counted in the
        // shard's `pins`: installed meanwhile, it is unmapped only once drained, and a
        // table drained while pins remain waits in `retired` for the last of them.
        // Populating leaves its bytes as they are, so threads using it meanwhile (if it
        // was installed early) see no change.
        unsafe { pages.populate() };
        let took = nanos_since(start);
        probe(|p| {
            p.populates += 1;
            p.populate_ns += took;
        });
        staged
    });
    let mut table = lock(shard);
    if discarded {
        table.pins -= 1;
    }
    if let Some(staged) = staged {
        if staged == table.staged && table.pending.is_some() {
            table.populating -= 1;
            table.populated += POPULATE_BYTES;
            table.install_if_populated();
        } else {
            table.stale_populating -= 1;
        }
    }
    if table.unpinned() {
        // `drained` is None here: a step that pins leaves a drained table in `retired`.
        drained = drained.or_else(|| table.retired.take());
    }
    drop(table);
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

/// Tracks a block of `size` bytes.
pub(crate) fn insert(addr: usize, site: u32, rate: u32, epoch: u32, size: usize) -> Inserted {
    let h = hash(addr);
    insert_into(
        shard_of(h),
        h,
        Entry::new(addr, site, rate, epoch).sized(size),
        Mapping::zeroed,
    )
}

/// Times an insert that found no room only because a drained table still waits for a
/// pinned thread (see `retired`) yields and tries again before it counts the block as
/// untracked. That takes a pinned thread stalled for a whole growth (its slice of work
/// is a few microseconds): a thread preempted on an overloaded machine, which can be
/// off its core for tens of milliseconds (seen: 50 ms). So the first `PINNED_YIELDS`
/// retries yield, the rest sleep `PINNED_SLEEP` each: at least 200 ms in all before a
/// block goes untracked (counted), and never an unbounded wait.
const PINNED_YIELDS: usize = 1000;
const PINNED_SLEEPS: usize = 2000;
const PINNED_SLEEP: std::time::Duration = std::time::Duration::from_micros(100);

/// [`insert`] into one shard, mapping tables with `map`.
fn insert_into(
    shard: &SpinLock<Table>,
    h: u64,
    entry: Entry,
    mut map: impl FnMut(usize) -> Option<Mapping<Entry>>,
) -> Inserted {
    for attempt in 0..PINNED_YIELDS + PINNED_SLEEPS {
        match insert_once(shard, h, entry, &mut map) {
            // sched_yield and nanosleep: no allocation, no lock held.
            (Inserted::Full, true) if attempt < PINNED_YIELDS => std::thread::yield_now(),
            (Inserted::Full, true) => std::thread::sleep(PINNED_SLEEP),
            (inserted, _) => return inserted,
        }
    }
    Inserted::Full
}

/// One attempt of [`insert_into`]; also tells whether a lack of room was only the
/// shard waiting for a pinned thread.
fn insert_once(
    shard: &SpinLock<Table>,
    h: u64,
    entry: Entry,
    map: &mut impl FnMut(usize) -> Option<Mapping<Entry>>,
) -> (Inserted, bool) {
    let mut table = lock(shard);
    let migrated = table.migrate();
    let mut placed = table.place(h, entry, true);
    if matches!(placed, Placed::NoRoom(_)) && table.pending.is_some() {
        // The current table reached its hard limit before the staged one was whole:
        // install that now (its pages still absent fault in as touched).
        table.install_pending();
        placed = match table.place(h, entry, false) {
            Placed::NoRoom(_) => Placed::Done(Inserted::Full),
            other => other,
        };
    }
    let capacity = (table.capacity() * 2).max(MIN_CAPACITY);
    let pinned = table.retired.is_some();
    drop(table);
    finish(shard, migrated);
    let (done, generation) = match placed {
        Placed::Done(inserted) => return (inserted, pinned),
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
        Some(fresh) if table.generation == generation => table.stage(fresh),
        other => other, // refused, or another thread grew the shard first
    };
    if table.generation == generation && table.pending.is_none() {
        table.growing = false; // this growth did not happen
    }
    let inserted = done.unwrap_or_else(|| match table.place(h, entry, false) {
        Placed::Done(inserted) | Placed::Grow(inserted, _) => inserted,
        Placed::NoRoom(_) => Inserted::Full,
    });
    let pinned = table.retired.is_some();
    drop(table);
    unmap(unused);
    (inserted, pinned)
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
                table.pending.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|t| t.resident_bytes())
            .sum::<usize>()
        })
        .sum()
}

/// Calls `f` on every tracked block (shard by shard; each shard is locked while visited,
/// so `f` must not allocate, and takes no other lock).
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
        table.stale_populating = 0;
        // Slices the gone threads were populating count as done (pages they did not
        // reach fault in when touched).
        table.populating = 0;
        table.populated = table.handed;
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
