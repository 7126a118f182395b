//! Scopes: exact tracking of the allocations one piece of code makes, whatever the
//! process-wide mode, kept apart from every other thread's. Leak checks in tests use
//! them (`leakwatch::check`): two checks running at once in two test threads never see
//! each other's allocations.
//!
//! A thread inside a scope tracks every allocation exactly (weight 1), and appends a
//! marker frame (`stack::SCOPE_FRAME | tag`, a kernel-half address no return address can be)
//! to each stack, so the scope's sites are its own: their counters count only the
//! scope's blocks, wherever those are freed. Each open scope also has a slot of
//! counters (live bytes, peak, allocations) updated on every allocation and free of its
//! blocks. Scope sites' counters are written through, not batched, so a reading never
//! waits on another thread's batch.
//!
//! With tracking off process-wide, an open scope sends allocations to the (out-of-line)
//! tracking path, where threads outside any scope return at once; the unsampled fast path
//! of sampled mode is not changed. The hot path learns that a scope is open from the
//! open-scope count kept in the state word itself (`state::SCOPES`): opening and closing
//! change that count with one atomic read-modify-write of the word ([`opened`],
//! [`closed`]), so no interleaving of opens and closes can leave a scope open while the
//! word says none is (a count in a word of its own, and a flag set or cleared after
//! changing it, could: close's decrement, open's increment and flag, close's clearing).

use crate::snapshot::site_stats;
use crate::state::{
    self, FREE_CHECK, MODE_MASK, ONE_SCOPE, SCOPES, STATE, THREAD, UNINIT, untracked,
};
use crate::tracker;
use counters::{SLOTS, slot};
use leakwatch_types::SiteStats;
use std::sync::atomic::{AtomicU64, Ordering::*};

pub(crate) mod counters;

pub use counters::MAX_SCOPES;

/// While scoped, a thread's sampling countdown is pinned this far below zero, so every
/// allocation takes the tracking path (it then only counts bytes).
pub(crate) const PINNED_COUNTDOWN: i64 = i64::MIN / 4;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The state word after a scope opened: one more open scope, and [`FREE_CHECK`] (the
/// scope's blocks are tracked, so frees must consult the filter). The count cannot
/// overflow: a scope holds one of [`MAX_SCOPES`] slots before it counts itself.
pub(crate) const fn opened(state: u32) -> u32 {
    state.wrapping_add(ONE_SCOPE) | FREE_CHECK
}

/// The state word after an open scope closed: one open scope fewer. Only a scope that
/// [`opened`] closes, so the count never goes below zero.
pub(crate) const fn closed(state: u32) -> u32 {
    if state & SCOPES == 0 {
        state
    } else {
        state.wrapping_sub(ONE_SCOPE)
    }
}

/// Applies `transition` to the state word in one atomic step ([`state::update_state`]).
fn update_state(transition: fn(u32) -> u32) {
    state::update_state(|s| Some(transition(s)));
}

/// Why a scope could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// The global allocator is not a `LeakWatch`: nothing can be tracked.
    NotInstalled,
    /// The tracker's tables could not be mapped.
    NoTables,
    /// [`MAX_SCOPES`] scopes are open already.
    TooMany,
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeError::NotInstalled => {
                "the global allocator is not leakwatch's: add `#[global_allocator] static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();` to this test crate"
            }
            ScopeError::NoTables => "the tracker could not map memory for its tables",
            ScopeError::TooMany => "too many scopes are open at once (256)",
        })
    }
}

impl std::error::Error for ScopeError {}

/// An open scope. Allocations of threads that [`enter`](ScopeHandle::enter) it are
/// tracked exactly and counted apart. Closes when dropped.
///
/// # Examples
/// ```
/// #[global_allocator]
/// static ALLOC: leakwatch_alloc::LeakWatch = leakwatch_alloc::LeakWatch::system();
///
/// let scope = leakwatch_alloc::Scope::open().unwrap();
/// let kept = {
///     let _inside = scope.handle().enter();
///     vec![0u8; 1000]
/// };
/// let stats = scope.stats();
/// assert_eq!(stats.live_bytes, 1000);
/// assert_eq!(stats.sites.iter().map(|s| s.live_bytes).sum::<u64>(), 1000);
/// assert_eq!(scope.live_bytes(), 1000);
/// drop(kept);
/// assert_eq!(scope.stats().live_bytes, 0);
/// assert_eq!(scope.live_bytes(), 0);
/// ```
#[derive(Debug)]
pub struct Scope {
    handle: ScopeHandle,
}

/// Refers to an open scope; `Copy` and `Send`, so a thread spawned by scoped code can
/// enter its parent's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopeHandle {
    tag: u64,
}

/// The calling thread is inside a scope until this is dropped (then it is back in the
/// scope it was in before, if any).
#[derive(Debug)]
#[must_use = "the thread leaves the scope when the guard is dropped"]
pub struct ScopeGuard {
    previous: u64,
    /// Not `Send`: the guard belongs to the thread it changed.
    _thread: std::marker::PhantomData<*const ()>,
}

/// What a scope holds now.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ScopeStats {
    /// Bytes allocated in the scope and not freed (wherever they were freed).
    pub live_bytes: i64,
    /// The most `live_bytes` has been since the scope opened or [`Scope::reset_peak`].
    pub peak_bytes: i64,
    /// Allocations (including reallocations) made in the scope.
    pub allocs: u64,
    /// Bytes requested by those allocations.
    pub alloc_bytes: u64,
    /// Allocations the block table had no room for: not tracked. Expected 0.
    pub untracked_blocks: u64,
    /// Allocations whose stack found no room in the site table. Expected 0.
    pub site_overflow: u64,
    /// The scope's sites (stacks without the marker frame), in id order.
    pub sites: Vec<SiteStats>,
}

impl Scope {
    /// Opens a scope.
    ///
    /// # Errors
    /// When the global allocator is not a `LeakWatch`, its tables cannot be mapped, or
    /// [`MAX_SCOPES`] scopes are open.
    pub fn open() -> Result<Scope, ScopeError> {
        if !tracker::installed() {
            return Err(ScopeError::NotInstalled);
        }
        if !tracker::ensure_tables() {
            return Err(ScopeError::NoTables);
        }
        let id = NEXT_ID.fetch_add(1, Relaxed) & ((1 << 40) - 1);
        for (index, slot) in SLOTS.iter().enumerate() {
            let tag = (id.max(1) << 8) | index as u64;
            if slot
                .tag
                .compare_exchange(0, u64::MAX, Acquire, Relaxed)
                .is_ok()
            {
                for counter in [
                    &slot.allocs,
                    &slot.alloc_bytes,
                    &slot.untracked_blocks,
                    &slot.overflow_samples,
                ] {
                    counter.store(0, Relaxed);
                }
                slot.live.store(0, Relaxed);
                slot.peak.store(0, Relaxed);
                slot.tag.store(tag, Release);
                update_state(opened);
                return Ok(Scope {
                    handle: ScopeHandle { tag },
                });
            }
        }
        Err(ScopeError::TooMany)
    }

    /// A handle to enter this scope from any thread.
    pub fn handle(&self) -> ScopeHandle {
        self.handle
    }

    /// What the scope holds now: counters and its sites. Allocates (untracked).
    pub fn stats(&self) -> ScopeStats {
        untracked(|| {
            tracker::flush_current_thread();
            let Some(s) = slot(self.handle.tag) else {
                return ScopeStats::default();
            };
            ScopeStats {
                live_bytes: s.live.load(Relaxed),
                peak_bytes: s.peak.load(Relaxed),
                allocs: s.allocs.load(Relaxed),
                alloc_bytes: s.alloc_bytes.load(Relaxed),
                untracked_blocks: s.untracked_blocks.load(Relaxed),
                site_overflow: s.overflow_samples.load(Relaxed),
                sites: scope_sites(self.handle.tag),
            }
        })
    }

    /// Bytes allocated in the scope and not freed, now ([`ScopeStats::live_bytes`]
    /// without the rest of [`Scope::stats`]: one load, no allocation). 0 once closed.
    pub fn live_bytes(&self) -> i64 {
        slot(self.handle.tag).map_or(0, |s| s.live.load(Relaxed))
    }

    /// Starts the peak over: it becomes the current live bytes.
    pub fn reset_peak(&self) {
        if let Some(s) = slot(self.handle.tag) {
            s.peak.store(s.live.load(Relaxed), Relaxed);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(s) = slot(self.handle.tag) {
            s.tag.store(0, Release);
            update_state(closed);
        }
    }
}

impl ScopeHandle {
    /// The scope the calling thread is in, if any.
    pub fn current() -> Option<ScopeHandle> {
        let tag = THREAD.with(|t| t.scope.get());
        (tag != 0).then_some(ScopeHandle { tag })
    }

    /// Whether the scope is still open.
    pub fn is_open(&self) -> bool {
        slot(self.tag).is_some()
    }

    /// Puts the calling thread in this scope until the guard drops. Entering a scope
    /// that has closed changes nothing (the thread stays where it was).
    pub fn enter(&self) -> ScopeGuard {
        let tag = if self.is_open() {
            self.tag
        } else {
            THREAD.with(|t| t.scope.get())
        };
        ScopeGuard {
            previous: switch(tag),
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        switch(self.previous);
    }
}

/// Puts the calling thread in scope `tag` (0: none); returns the one it was in.
fn switch(tag: u64) -> u64 {
    THREAD.with(|t| {
        let previous = t.scope.get();
        if previous == tag {
            return previous;
        }
        // Publish the thread's counts under the old regime, then set the countdown for
        // the new one: pinned while scoped (every allocation takes the tracking path),
        // redrawn at the next allocation when not.
        tracker::flush(t);
        t.scope.set(tag);
        if tag != 0 {
            tracker::set_countdown(t, PINNED_COUNTDOWN);
        } else if STATE.load(Relaxed) & MODE_MASK != UNINIT {
            t.rate.set(0);
            tracker::set_countdown(t, 0);
        }
        previous
    })
}

/// The sites of scope `tag`.
fn scope_sites(tag: u64) -> Vec<SiteStats> {
    let Some(table) = crate::sites::get() else {
        return Vec::new();
    };
    (1..table.len())
        .filter(|&id| table.record(id).scope() == tag)
        .filter_map(|id| site_stats(table, id, &table.record(id).counters()))
        .collect()
}

#[cfg(test)]
mod tests;
