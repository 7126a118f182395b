//! The thread registry: lets a snapshot read every live thread's unpublished counts.
//!
//! A thread batches its process totals and site counter changes (see `tracker::flush`,
//! `sites.rs`). Those batches live in the thread's [`Counts`] (`state.rs`), whose fields are
//! atomics that only the owner writes, with a relaxed load and a plain store (the same
//! instructions as a `Cell`; no read-modify-write, no shared cache line). On its first
//! cold-path allocation a thread claims one of [`MAX_THREADS`] slots here and stores a
//! pointer to its `Counts` in it; a snapshot adds every registered thread's pending
//! counts to the published ones. Threads that find every slot taken keep publishing in
//! batches only, and snapshots say how many did.
//!
//! A *move* (a flush, a batch slot handed to another site, a countdown reset) changes a
//! thread's pending counts and the published ones together, so a snapshot must not read
//! in the middle of one. The owner brackets each move with its slot's `seq` (odd while
//! moving) and a snapshot brackets its reading with the global `SNAP` (odd while
//! reading); each side stores its own word, fences, then loads the other's (Dekker), so
//! either the owner sees the snapshot and waits until that snapshot has finished, or the
//! snapshot sees the move and waits until it ends. A snapshot therefore reads, for every
//! registered thread, the published counters and the pending ones with no move between
//! them: nothing is counted twice or missed. Both waits are bounded: a snapshot skips a
//! thread stuck in a move for too long (and says so), an owner that waited too long
//! moves anyway (counted, and reported by the next snapshot).
//!
//! A thread's `Counts` live in its TLS, freed when it exits: its exit flush runs first,
//! then it releases the slot: it marks it `RELEASING`, fences, and if a snapshot is
//! reading it waits for that one snapshot to finish (later ones skip the slot). No
//! snapshot can dereference the pointer afterwards. After `fork`, the child merges the
//! counts of every other thread's slot (those threads do not exist there) into the
//! published counters and frees their slots; the fork handlers hold `SNAP` across
//! `fork`, so no move is half done.

use crate::sites::{self, SiteCounters};
use crate::spin::SpinLock;
use crate::state::{BATCH_SLOTS, Counts, NO_SITE, THREAD, ThreadState};
use std::sync::atomic::{
    AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering::*, compiler_fence, fence,
};

/// Threads that can be registered at once.
pub(crate) const MAX_THREADS: usize = 1024;

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
const OWNED: u32 = 2;
const RELEASING: u32 = 3;

/// Spins before a waiting side starts yielding.
const SPINS: u32 = 128;
/// Rounds a snapshot waits for one thread's move to end before skipping the thread.
const READER_ROUNDS: u32 = 20_000;
/// Rounds an owner waits for snapshots before moving anyway.
const OWNER_ROUNDS: u32 = 20_000;

#[repr(align(64))]
struct Slot {
    state: AtomicU32,
    /// Odd while the owner moves counts.
    seq: AtomicU32,
    counts: AtomicPtr<Counts>,
}

static SLOTS: [Slot; MAX_THREADS] = [const {
    Slot {
        state: AtomicU32::new(FREE),
        seq: AtomicU32::new(0),
        counts: AtomicPtr::new(std::ptr::null_mut()),
    }
}; MAX_THREADS];

/// One more than the highest slot index ever claimed (snapshots scan up to it).
static HIGH: AtomicU32 = AtomicU32::new(0);
/// Odd while a snapshot (or `fork`) reads the registry.
static SNAP: AtomicU32 = AtomicU32::new(0);
/// Serializes readers.
static READERS: SpinLock<()> = SpinLock::new(());
/// Bytes of the registry (a static array: only the slots in use are ever touched).
pub(crate) const BYTES: usize = MAX_THREADS * size_of::<Slot>();

/// Bytes of the registry touched so far, in whole pages (an estimate of its resident
/// memory).
pub(crate) fn touched_bytes() -> usize {
    (high() * size_of::<Slot>())
        .next_multiple_of(4096)
        .min(BYTES)
}

/// Process-wide totals, published by threads in batches.
pub(crate) struct ProcessCounters {
    pub(crate) allocs: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
    pub(crate) peak_live: AtomicI64,
    /// Publications so far (flushes that wrote these counters): lets tests tell a thread
    /// that batches from one that publishes every operation. On the same cache line as
    /// the counters each publication writes anyway.
    pub(crate) publications: AtomicU64,
}

pub(crate) static PROCESS: ProcessCounters = ProcessCounters {
    allocs: AtomicU64::new(0),
    alloc_bytes: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    freed_bytes: AtomicU64::new(0),
    peak_live: AtomicI64::new(0),
    publications: AtomicU64::new(0),
};

/// Threads that found every slot taken.
pub(crate) static UNREGISTERED: AtomicU64 = AtomicU64::new(0);
/// Moves made while a snapshot may have been reading (an owner gave up waiting).
pub(crate) static FORCED: AtomicU64 = AtomicU64::new(0);

fn pause(round: u32) {
    if round < SPINS {
        std::hint::spin_loop();
    } else {
        // sched_yield: no allocation, no lock of its own.
        std::thread::yield_now();
    }
}

/// Registers the calling thread (once, from `thread_start`). Counts it as unregistered
/// when every slot is taken.
pub(crate) fn register(t: &ThreadState) {
    if t.slot.get() != 0 {
        return;
    }
    for (index, slot) in SLOTS.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, CLAIMING, Acquire, Relaxed)
            .is_ok()
        {
            slot.counts
                .store(std::ptr::from_ref(&t.counts).cast_mut(), Relaxed);
            slot.seq.store(0, Relaxed);
            HIGH.fetch_max(index as u32 + 1, Relaxed);
            slot.state.store(OWNED, Release);
            t.slot.set(index as u32 + 1);
            return;
        }
    }
    UNREGISTERED.fetch_add(1, Relaxed);
}

/// Releases the calling thread's slot (after its exit flush). When this returns no
/// snapshot reads the thread's `Counts` any more.
pub(crate) fn release(t: &ThreadState) {
    let Some(slot) = own_slot(t) else { return };
    t.slot.set(0);
    slot.state.store(RELEASING, Relaxed);
    fence(SeqCst);
    let reading = SNAP.load(Relaxed);
    if reading & 1 != 0 {
        // A snapshot that started before it could see RELEASING may be reading our
        // counts: wait for that one to end. Later snapshots skip the slot, and the
        // reader's section is bounded (at most MAX_THREADS x READER_ROUNDS waits), so
        // this wait is bounded like a spin lock's.
        let mut round = 0u32;
        while SNAP.load(Acquire) == reading {
            pause(round);
            round = round.saturating_add(1);
        }
    }
    slot.counts.store(std::ptr::null_mut(), Relaxed);
    slot.state.store(FREE, Release);
}

fn own_slot(t: &ThreadState) -> Option<&'static Slot> {
    let index = t.slot.get();
    if index == 0 {
        return None;
    }
    SLOTS.get(index as usize - 1)
}

/// While alive, the owner may move counts: no snapshot reads its thread in between.
pub(crate) struct Move {
    slot: Option<&'static Slot>,
    seq: u32,
}

impl Drop for Move {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.seq.store(self.seq.wrapping_add(1), Release);
        }
    }
}

/// Starts a move of the calling thread's counts (a no-op for unregistered threads,
/// which no snapshot reads).
pub(crate) fn begin_move(t: &ThreadState) -> Move {
    let Some(slot) = own_slot(t) else {
        return Move { slot: None, seq: 0 };
    };
    let mut seq = slot.seq.load(Relaxed) & !1;
    if t.reading.get() {
        // This thread is the reader (it should not allocate while reading, but if it
        // did, waiting for itself would never end).
        slot.seq.store(seq | 1, Relaxed);
        return Move {
            slot: Some(slot),
            seq: seq | 1,
        };
    }
    let mut round = 0u32;
    loop {
        slot.seq.store(seq | 1, Relaxed);
        fence(SeqCst);
        let reading = SNAP.load(Relaxed);
        if reading & 1 == 0 || round >= OWNER_ROUNDS {
            if reading & 1 != 0 {
                FORCED.fetch_add(1, Relaxed);
            }
            // Keep the moves after the seq store and the check.
            compiler_fence(SeqCst);
            return Move {
                slot: Some(slot),
                seq: seq | 1,
            };
        }
        // A snapshot is reading: step back (seq even) until it is done.
        seq = seq.wrapping_add(2);
        slot.seq.store(seq, Release);
        while SNAP.load(Acquire) == reading && round < OWNER_ROUNDS {
            pause(round);
            round += 1;
        }
        round = round.saturating_add(1);
    }
}

/// Holds `SNAP` odd, and `READERS`, with every registered thread outside a move, until
/// [`Reading::end`].
struct Reading;

impl Reading {
    /// Takes the registry for reading. The calling thread is marked as the reader, so
    /// that a move of its own (it should make none) would not wait for itself.
    fn start() -> Reading {
        READERS.lock_for_fork();
        THREAD.with(|t| t.reading.set(true));
        Reading::quiesce()
    }

    /// `SNAP` odd, then wait (bounded) for every owner to leave its move. (One that
    /// does not is counted when its slot is read.)
    fn quiesce() -> Reading {
        SNAP.fetch_add(1, AcqRel);
        fence(SeqCst);
        for slot in &SLOTS[..high()] {
            if slot.state.load(Acquire) == OWNED {
                wait_even(slot);
            }
        }
        Reading
    }

    fn end(self) {
        SNAP.fetch_add(1, Release);
        THREAD.with(|t| t.reading.set(false));
        // SAFETY: `start` took READERS with `lock_for_fork` on this thread and nothing
        // else releases it.
        unsafe { READERS.force_unlock() };
    }
}

fn high() -> usize {
    (HIGH.load(Acquire) as usize).min(MAX_THREADS)
}

/// Waits (bounded) for a slot's owner to leave its move; false if it did not.
fn wait_even(slot: &Slot) -> bool {
    for round in 0..READER_ROUNDS {
        if slot.seq.load(Acquire) & 1 == 0 {
            return true;
        }
        pause(round);
    }
    false
}

/// What a quiesced reader finds in a slot.
enum Found<'a> {
    /// Free, being claimed, or being released: nothing to read.
    Nothing,
    /// Owned, but its seq stayed odd (an owner moving anyway, or stuck in a move).
    Busy,
    /// Owned, and its owner is not moving (nor can start to until the reading ends).
    Counts(&'a Counts),
}

fn readable(slot: &Slot) -> Found<'_> {
    if slot.state.load(Acquire) != OWNED {
        return Found::Nothing;
    }
    // An owner that saw SNAP odd makes its seq odd only for an instant, to step back;
    // one registered during this reading may be doing that now.
    if !wait_even(slot) {
        return Found::Busy;
    }
    let counts = slot.counts.load(Acquire);
    // SAFETY: the slot is OWNED, so `counts` points to its owner's live TLS `Counts`
    // (set before the Release store of OWNED, which our Acquire load saw). The owner
    // cannot free it while we read: it frees its TLS only after `release`, which,
    // seeing SNAP odd (we made it odd and fenced before this load, and it fences after
    // storing RELEASING), waits until this reading ends. `Counts` is all atomics, so
    // reading it while the owner writes is not a data race.
    match unsafe { counts.as_ref() } {
        Some(counts) => Found::Counts(counts),
        None => Found::Nothing,
    }
}

/// What a snapshot reads from the registry: the published process totals and every
/// registered thread's pending counts, with no move between them.
pub(crate) struct Pending {
    /// Published process totals (allocs, alloc bytes, frees, freed bytes) plus every
    /// registered thread's pending ones.
    pub(crate) process: [u64; 4],
    /// Pending site changes `(site, published counters, pending sum)`, sorted by site,
    /// one entry per site.
    pub(crate) sites: Vec<(u32, SiteCounters, SiteCounters)>,
    /// Registered threads read.
    pub(crate) threads: u32,
    /// Registered threads not read: stuck in a move, or no room in `sites`.
    pub(crate) skipped: u32,
}

/// Reads every registered thread's pending counts together with the published ones.
/// Allocates only before and after the registry is held.
pub(crate) fn read_pending() -> Pending {
    let capacity = (high() + 16).min(MAX_THREADS) * BATCH_SLOTS;
    let mut entries: Vec<(u32, SiteCounters, SiteCounters)> = Vec::with_capacity(capacity);
    let table = sites::get();
    let reading = Reading::start();
    let mut skipped = 0;
    let mut threads = 0;
    let mut process = [
        PROCESS.allocs.load(Relaxed),
        PROCESS.alloc_bytes.load(Relaxed),
        PROCESS.frees.load(Relaxed),
        PROCESS.freed_bytes.load(Relaxed),
    ];
    for slot in &SLOTS[..high()] {
        let counts = match readable(slot) {
            Found::Counts(counts) => counts,
            Found::Nothing => continue,
            Found::Busy => {
                skipped += 1;
                continue;
            }
        };
        let batch = counts.sites.pending();
        let used = batch.iter().filter(|(site, _)| *site != NO_SITE).count();
        if entries.len() + used > entries.capacity() {
            // No room without allocating while readers hold the registry.
            skipped += 1;
            continue;
        }
        threads += 1;
        for (sum, add) in process.iter_mut().zip(counts.process()) {
            *sum = sum.wrapping_add(add);
        }
        for (site, pending) in batch.into_iter().filter(|(s, _)| *s != NO_SITE) {
            let published = table.map_or_else(SiteCounters::default, |t| {
                t.record(site).counters_unclamped()
            });
            entries.push((site, published, pending));
        }
    }
    reading.end();
    // One entry per site: the first published reading (every one was taken with no
    // registered thread moving), plus the sum of the pending changes.
    entries.sort_unstable_by_key(|e| e.0);
    entries.dedup_by(|later, first| {
        if later.0 == first.0 {
            first.2.merge(&later.2);
            true
        } else {
            false
        }
    });
    Pending {
        process,
        sites: entries,
        threads,
        skipped,
    }
}

/// Fork support: hold the registry (no move in progress) across `fork`.
pub(crate) fn lock_for_fork() {
    // Held until `unlock_after_fork_*` ends it (in the parent, or in the child).
    let _held: Reading = Reading::start();
}

/// Fork support, parent side: release what [`lock_for_fork`] took.
///
/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork_parent() {
    Reading.end();
}

/// Fork support, child side: the other threads do not exist here. Publish their
/// pending counts (their operations happened before `fork`, in memory the child has),
/// free their slots, then release what [`lock_for_fork`] took.
///
/// # Safety
/// Only in the child of a `fork` whose prepare handler ran [`lock_for_fork`].
pub(crate) unsafe fn unlock_after_fork_child() {
    let own = THREAD.with(|t| t.slot.get());
    let table = sites::get();
    for (index, slot) in SLOTS[..high()].iter().enumerate() {
        if index as u32 + 1 == own {
            continue;
        }
        let state = slot.state.load(Acquire);
        if state == FREE {
            continue;
        }
        if state == OWNED {
            // SAFETY: in the child right after fork the parent's other threads' TLS is
            // still mapped (the address space was copied and nothing has reused it yet;
            // glibc only marks their stacks free) and no thread can write it.
            if let Some(counts) = unsafe { slot.counts.load(Acquire).as_ref() } {
                let [allocs, alloc_bytes, frees, freed_bytes] = counts.process();
                PROCESS.allocs.fetch_add(allocs, Relaxed);
                PROCESS.alloc_bytes.fetch_add(alloc_bytes, Relaxed);
                PROCESS.frees.fetch_add(frees, Relaxed);
                PROCESS.freed_bytes.fetch_add(freed_bytes, Relaxed);
                if let Some(table) = table {
                    for (site, pending) in counts.sites.pending() {
                        if site != NO_SITE {
                            table.record(site).add(&pending);
                        }
                    }
                }
            }
        }
        // OWNED, CLAIMING or RELEASING: its thread is gone in the child.
        slot.counts.store(std::ptr::null_mut(), Relaxed);
        slot.seq.store(0, Relaxed);
        slot.state.store(FREE, Release);
    }
    Reading.end();
}
