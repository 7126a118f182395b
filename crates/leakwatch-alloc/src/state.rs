//! The state every operation reads, at the bottom of the crate: the global state word
//! ([`STATE`], its bits and [`update_state`]) and the per-thread state ([`ThreadState`]
//! in the [`THREAD`] thread-local, with the [`Counts`] other threads read through the
//! registry in `threads.rs`, and the re-entrancy guard [`untracked`]).
//!
//! Nothing here imports anything else of the crate: the hot path (`hot.rs`), the cold
//! path (`tracker.rs`), scopes, tags, the thread registry and snapshots all build on
//! this module, never the other way round (docs/ARCHITECTURE.md, "Code map"; the test
//! at the end keeps it so). Nothing here takes a lock or allocates.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicI64, AtomicU32, AtomicU64,
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
/// of `hot.rs`, so each operation decides on one value.
#[inline(always)]
pub(crate) fn load() -> u32 {
    STATE.load(Relaxed)
}

macro_rules! owned {
    ($name:ident, $int:ty, $atomic:ty) => {
        /// A value only its owner thread writes (relaxed load and store, compiled like a
        /// `Cell`), which a snapshot on another thread may read.
        #[derive(Debug)]
        pub(crate) struct $name($atomic);

        impl $name {
            pub(crate) const fn new(value: $int) -> Self {
                Self(<$atomic>::new(value))
            }

            #[inline(always)]
            pub(crate) fn get(&self) -> $int {
                self.0.load(Relaxed)
            }

            /// Only the owner thread may call this.
            #[inline(always)]
            pub(crate) fn set(&self, value: $int) {
                self.0.store(value, Relaxed)
            }
        }
    };
}

owned!(OwnedI64, i64, AtomicI64);
owned!(OwnedU64, u64, AtomicU64);
owned!(OwnedU32, u32, AtomicU32);

impl OwnedU64 {
    /// Only the owner thread may call this (a load and a store, not a swap).
    #[inline(always)]
    pub(crate) fn replace(&self, value: u64) -> u64 {
        let old = self.get();
        self.set(value);
        old
    }
}

/// A thread's unpublished counts: what a snapshot reads through the registry.
pub(crate) struct Counts {
    /// Bytes until the next sampled byte. Also the allocated-bytes counter: bytes
    /// allocated since the last flush are `countdown_base - countdown`.
    pub(crate) countdown: OwnedI64,
    pub(crate) countdown_base: OwnedI64,
    /// Allocations since the last flush.
    pub(crate) allocs: OwnedU64,
    /// Bytes of frees left before the next flush; freed bytes since the last flush are
    /// `free_budget_base - free_budget`.
    pub(crate) free_budget: OwnedI64,
    pub(crate) free_budget_base: OwnedI64,
    /// Frees since the last flush.
    pub(crate) frees: OwnedU64,
    /// Pending changes to site counters.
    pub(crate) sites: SiteBatch,
}

impl Counts {
    pub(crate) const fn new() -> Self {
        Counts {
            countdown: OwnedI64::new(0),
            countdown_base: OwnedI64::new(0),
            allocs: OwnedU64::new(0),
            free_budget: OwnedI64::new(0),
            free_budget_base: OwnedI64::new(0),
            frees: OwnedU64::new(0),
            sites: SiteBatch::new(),
        }
    }

    /// Pending process totals: allocations, their bytes, frees, their bytes.
    pub(crate) fn process(&self) -> [u64; 4] {
        [
            self.allocs.get(),
            self.countdown_base.get().wrapping_sub(self.countdown.get()) as u64,
            self.frees.get(),
            self.free_budget_base
                .get()
                .wrapping_sub(self.free_budget.get()) as u64,
        ]
    }
}

/// Slots in a thread's [`SiteBatch`].
pub(crate) const BATCH_SLOTS: usize = 8;
/// Site id of an empty batch slot.
pub(crate) const NO_SITE: u32 = u32::MAX;

/// One slot of a [`SiteBatch`]: a site and its pending counter changes (read and written
/// by `sites.rs`, whose `impl SiteBatch` holds the batch's logic).
pub(crate) struct BatchSlot {
    pub(crate) site: OwnedU32,
    pub(crate) alloc_bytes: OwnedU64,
    pub(crate) alloc_count: OwnedU64,
    pub(crate) freed_bytes: OwnedU64,
    pub(crate) freed_count: OwnedU64,
    pub(crate) freed_old_bytes: OwnedU64,
    pub(crate) freed_seen_bytes: OwnedU64,
    pub(crate) freed_old_age_sq: OwnedU64,
}

/// A thread's pending changes to a few sites' counters, so that a loop allocating and
/// freeing at one site does not pay four atomic read-modify-writes per pair on a cache
/// line other threads share. Direct-mapped by site id; a slot is published when another
/// site needs it and whenever the thread publishes its process counters (at every
/// sample, every 256 KiB, at exit, and before its own snapshots). Only the owner thread
/// writes it; snapshots read it through the thread registry (`threads.rs`), and the
/// owner changes a slot's site or publishes only inside a `threads::Move`. Its storage is
/// here, with the rest of the per-thread state; what it does (`evicts`, `add`,
/// `publish`, `pending`) is in `sites.rs`, next to the site table it publishes to.
pub(crate) struct SiteBatch {
    pub(crate) slots: [BatchSlot; BATCH_SLOTS],
}

impl SiteBatch {
    pub(crate) const fn new() -> Self {
        SiteBatch {
            slots: [const {
                BatchSlot {
                    site: OwnedU32::new(NO_SITE),
                    alloc_bytes: OwnedU64::new(0),
                    alloc_count: OwnedU64::new(0),
                    freed_bytes: OwnedU64::new(0),
                    freed_count: OwnedU64::new(0),
                    freed_old_bytes: OwnedU64::new(0),
                    freed_seen_bytes: OwnedU64::new(0),
                    freed_old_age_sq: OwnedU64::new(0),
                }
            }; BATCH_SLOTS],
        }
    }
}

/// Runs `f` with tracking suspended on this thread.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD.with(|t| t.busy.set(self.0));
        }
    }
    let _restore = Restore(THREAD.with(|t| t.busy.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_cells_behave_like_cells() {
        let c = OwnedU64::new(5);
        assert_eq!(c.replace(3), 5);
        c.set(c.get() - 1);
        assert_eq!(c.get(), 2);
    }

    /// The code lines of `source` (before its tests) that name another module of the
    /// crate.
    fn crate_imports(source: &str) -> Vec<&str> {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        code.lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .filter(|line| line.contains("crate::") || line.contains("super::"))
            .collect()
    }

    /// The layering of docs/ARCHITECTURE.md's code map: this module is the bottom one,
    /// and the scopes' counters sit below the tracker, so neither names another module
    /// of the crate.
    #[test]
    fn bottom_modules_import_nothing_of_the_crate() {
        for (name, source) in [
            ("state.rs", include_str!("state.rs")),
            ("scope/counters.rs", include_str!("scope/counters.rs")),
        ] {
            let found = crate_imports(source);
            assert!(
                found.is_empty(),
                "{name} must not import the crate: {found:?}"
            );
        }
        // The check sees an import when there is one.
        let sample = "use crate::tracker;\n/// [`STATE`](crate::Scope)\nfn f() {}\n";
        assert_eq!(crate_imports(sample), ["use crate::tracker;"]);
    }
}
