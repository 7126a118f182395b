//! The hot path: what every allocation and free pays.
//!
//! An allocation costs one relaxed load of the global state word (compared with `OFF`,
//! then its `SAMPLING` bit tested), an increment and a subtraction on thread-local
//! counters (the allocation count and the sampling countdown: owner-written atomics that
//! snapshots may read, see `state.rs` and `threads.rs`, updated with a relaxed load and
//! store, like a `Cell`), and a branch. A free costs the same
//! load, two thread-local updates, and one relaxed load from the sampled-address filter.
//! Nothing here takes a lock, writes shared memory, or allocates; everything else is
//! behind `#[cold]` calls into `tracker`. The state read here (the state word, the
//! thread-local counters) lives in `state.rs`, the bottom of the crate.

use crate::blocks::Entry;
use crate::config::Config;
use crate::filter;
use crate::stack::stack_pointer;
use crate::state::{
    EXACT, FREE_CHECK, MODE_MASK, OFF, SAMPLED, SAMPLING, STATE, THREAD, UNINIT, scoped,
};
use crate::tracker;
use std::sync::atomic::Ordering::Relaxed;

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
