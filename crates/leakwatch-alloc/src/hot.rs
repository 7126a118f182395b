//! The hot path: what every allocation and free pays.
//!
//! An allocation costs one relaxed load of the global state word (compared with `OFF`,
//! then its `SAMPLING` bit tested), an increment and a subtraction on thread-local
//! counters (the allocation count and the sampling
//! countdown: owner-written atomics that snapshots may read, see `threads.rs`, updated
//! with a relaxed load and store, like a `Cell`), and a branch. A free costs the same
//! load, two thread-local updates, and one relaxed load from the sampled-address filter.
//! Nothing here takes a lock, writes shared memory, or allocates; everything else is
//! behind `#[cold]` calls into `tracker`.

use crate::blocks::Entry;
use crate::config::Config;
use crate::filter;
use crate::stack::stack_pointer;
use crate::threads::Counts;
use crate::tracker;
use std::cell::Cell;
use std::sync::atomic::{
    AtomicU32,
    Ordering::{AcqRel, Relaxed},
};

/// Mode bits of [`STATE`]: not yet configured (first allocation pending).
pub(crate) const UNINIT: u32 = 0;
/// Mode bits of [`STATE`]: not tracking.
pub(crate) const OFF: u32 = 1;
/// Mode bits of [`STATE`]: byte-weighted sampling.
pub(crate) const SAMPLED: u32 = 2;
/// Mode bits of [`STATE`]: every allocation tracked.
pub(crate) const EXACT: u32 = 3;
/// Mask of the mode bits.
pub(crate) const MODE_MASK: u32 = 3;
/// Set once any block has been tracked: frees must consult the filter from then on, even
/// with tracking off, so that tracked blocks are always accounted when freed.
pub(crate) const FREE_CHECK: u32 = 4;
/// Set in [`STATE`] exactly when the rest of the word is [`SAMPLED`] with [`FREE_CHECK`]
/// and no scope open: the steady state of sampled tracking, the only one whose
/// operations may take the fast paths below. Derived by [`update_state`] after every
/// change, so the hot path decides it by one bit test (an equality compare would let
/// the compiler merge it with the [`OFF`] compare into one switch, and order it first).
pub(crate) const SAMPLING: u32 = 8;
/// One open [`Scope`](crate::Scope) in [`STATE`]: bits 8 and up count the open scopes.
pub(crate) const ONE_SCOPE: u32 = 1 << 8;
/// The open-scope count of [`STATE`]. Non-zero while any scope is open: with tracking
/// off, allocations then still go to the tracking path, where threads outside a scope
/// return at once. Being part of the word the hot path reads, the count and what the
/// hot path sees change in one atomic step (`scope.rs`).
pub(crate) const SCOPES: u32 = !(ONE_SCOPE - 1);

/// The tracker's global state: mode bits, [`FREE_CHECK`], [`SAMPLING`] and the
/// open-scope count ([`SCOPES`]). Read on every allocation and free (one relaxed load),
/// written only when the configuration changes or a scope opens or closes, always
/// through [`update_state`] (one atomic read-modify-write of the whole word, which keeps
/// [`SAMPLING`] true to the rest).
pub(crate) static STATE: AtomicU32 = AtomicU32::new(UNINIT);

/// `state` with its [`SAMPLING`] bit derived from the rest.
pub(crate) const fn with_sampling_bit(state: u32) -> u32 {
    let state = state & !SAMPLING;
    if state == SAMPLED | FREE_CHECK {
        state | SAMPLING
    } else {
        state
    }
}

/// Changes [`STATE`] by `transition` in one atomic step (a compare-and-swap loop: every
/// retry means another thread changed the word meanwhile, so some thread always makes
/// progress; only scopes and configuration changes write the word). `transition` sees
/// the word without its [`SAMPLING`] bit (`None`: leave it as it is); the bit is derived
/// from the result.
pub(crate) fn update_state(transition: impl Fn(u32) -> Option<u32>) {
    let _ = STATE.fetch_update(AcqRel, Relaxed, |s| {
        transition(s & !SAMPLING).map(with_sampling_bit)
    });
}

/// Whether `state` says a scope is open.
#[inline(always)]
pub(crate) const fn scoped(state: u32) -> bool {
    state & SCOPES != 0
}

/// `state` with its mode bits set to `mode`, everything else kept.
pub(crate) const fn with_mode(state: u32, mode: u32) -> u32 {
    (state & !MODE_MASK) | (mode & MODE_MASK)
}

/// Thread phase: no allocation seen yet on this thread.
pub(crate) const NEW: u8 = 0;
/// Thread phase: running normally.
pub(crate) const LIVE: u8 = 1;
/// Thread phase: its exit flush has run; counters are published on every operation.
pub(crate) const EXITED: u8 = 2;

/// Per-thread tracking state. `const`-initialised with no destructor, so access compiles
/// to a plain thread-pointer-relative load and can never fail, even during thread exit.
pub(crate) struct ThreadState {
    /// The counts a snapshot reads through the thread registry (`threads.rs`): the
    /// countdown, allocation and free counters, and the site batch.
    pub(crate) counts: Counts,
    /// Re-entrancy guard: set while the tracker itself runs (or inside `untracked`).
    pub(crate) busy: Cell<bool>,
    pub(crate) phase: Cell<u8>,
    /// Sampling rate the countdown was drawn with.
    pub(crate) rate: Cell<u32>,
    pub(crate) rng: Cell<u64>,
    pub(crate) stack_lo: Cell<usize>,
    pub(crate) stack_hi: Cell<usize>,
    /// Tag of the scope the thread is in (0: none); see `scope.rs`.
    pub(crate) scope: Cell<u64>,
    /// The thread's current tag set (`leakwatch::tag`; 0: none), read only when an
    /// allocation is sampled; see `tags.rs`.
    pub(crate) tags: Cell<u32>,
    /// The thread's registry slot plus one (0: not registered).
    pub(crate) slot: Cell<u32>,
    /// Set while this thread reads the registry for a snapshot.
    pub(crate) reading: Cell<bool>,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            counts: Counts::new(),
            busy: Cell::new(false),
            phase: Cell::new(NEW),
            rate: Cell::new(0),
            rng: Cell::new(0),
            stack_lo: Cell::new(0),
            stack_hi: Cell::new(0),
            scope: Cell::new(0),
            tags: Cell::new(0),
            slot: Cell::new(0),
            reading: Cell::new(false),
        }
    }
}

thread_local! {
    pub(crate) static THREAD: ThreadState = const { ThreadState::new() };
}

/// The state word, read once per operation (one relaxed load) and passed to the checks
/// below, so each operation decides on one value.
#[inline(always)]
pub(crate) fn state() -> u32 {
    STATE.load(Relaxed)
}

/// Whether `state` says tracking is off and nothing was ever tracked: allocations and
/// frees then need no bookkeeping at all.
#[inline(always)]
pub(crate) const fn is_off(state: u32) -> bool {
    state == OFF
}

/// The common case of an allocation while tracking: [`SAMPLING`] set, and the countdown does
/// not run out. Counts the allocation (of `size` bytes, about to be made) and returns
/// true; returns false, changing nothing, when the allocation needs [`on_alloc`].
///
/// Deciding before the inner allocator runs lets the entry point tail-call it. If that
/// allocation then fails, it stays counted: at most one countdown (about `R` bytes) per
/// failed small allocation; larger ones run out the countdown and take the exact path.
#[inline(always)]
pub(crate) fn try_count_unsampled_alloc(state: u32, size: usize) -> bool {
    if state & SAMPLING == 0 {
        return false;
    }
    THREAD.with(|t| {
        // `size` is at most `isize::MAX` (a `Layout`'s bound), so it fits; with the
        // countdown above it, the subtraction cannot overflow, and the compare and the
        // subtraction are one instruction.
        let size = size as i64;
        let before = t.counts.countdown.get();
        if before <= size {
            return false;
        }
        t.counts.countdown.set(before - size);
        t.counts.allocs.set(t.counts.allocs.get().wrapping_add(1));
        true
    })
}

/// The common case of a free while tracking: [`SAMPLING`] set, the block is not tracked and
/// no batch is due. Counts the free and returns true; returns false, changing nothing,
/// when the free needs [`on_free`].
#[inline(always)]
pub(crate) fn try_count_untracked_free(state: u32, addr: usize, size: usize) -> bool {
    if state & SAMPLING == 0 || filter::may_contain(addr) {
        return false;
    }
    THREAD.with(|t| {
        // As in `try_count_unsampled_alloc`: no overflow, one instruction.
        let size = size as i64;
        let before = t.counts.free_budget.get();
        if before <= size {
            return false;
        }
        t.counts.free_budget.set(before - size);
        t.counts.frees.set(t.counts.frees.get().wrapping_add(1));
        true
    })
}

/// Records an allocation of `size` bytes at `addr` (after the inner allocator succeeded).
#[inline(always)]
pub(crate) fn on_alloc(addr: usize, size: usize, config: &Config) {
    let mut state = STATE.load(Relaxed);
    if state & MODE_MASK == OFF {
        if scoped(state) {
            // Tracking is off, but a scope is open: track this thread's allocation if it
            // is in one.
            let sp = stack_pointer();
            THREAD.with(|t| {
                if t.scope.get() != 0 {
                    tracker::on_alloc_slow(t, addr, size, sp);
                }
            });
        }
        return;
    }
    if state & MODE_MASK == UNINIT {
        state = tracker::first_use(config);
        if state & MODE_MASK <= OFF {
            return;
        }
    }
    // Read here, in the allocator entry point, so the capture can skip our own frames.
    let sp = stack_pointer();
    THREAD.with(|t| {
        t.counts.allocs.set(t.counts.allocs.get().wrapping_add(1));
        let left = t.counts.countdown.get().wrapping_sub(size as i64);
        t.counts.countdown.set(left);
        if left <= 0 || state & MODE_MASK == EXACT {
            tracker::on_alloc_slow(t, addr, size, sp);
        }
    });
}

/// Records a free of `size` bytes at `addr` (before the inner allocator frees it).
#[inline(always)]
pub(crate) fn on_free(addr: usize, size: usize) {
    let state = STATE.load(Relaxed);
    count_free(state, size);
    take_tracked(state, addr, size);
}

/// Counts a free in the process totals.
#[inline(always)]
pub(crate) fn count_free(state: u32, size: usize) {
    if state & MODE_MASK >= SAMPLED {
        THREAD.with(|t| {
            t.counts.frees.set(t.counts.frees.get().wrapping_add(1));
            let left = t.counts.free_budget.get().wrapping_sub(size as i64);
            t.counts.free_budget.set(left);
            if left <= 0 {
                tracker::on_free_budget_spent(t);
            }
        });
    }
}

/// If `addr` is a tracked block, stops tracking it and returns its entry. Must run
/// before the inner allocator frees the block: once freed, the address can be handed
/// out (and tracked) again by another thread.
#[inline(always)]
pub(crate) fn take_tracked(state: u32, addr: usize, size: usize) -> Option<Entry> {
    if state & FREE_CHECK != 0 && filter::may_contain(addr) {
        tracker::on_tracked_free(addr, size)
    } else {
        None
    }
}
