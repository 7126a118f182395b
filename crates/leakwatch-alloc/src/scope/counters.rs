//! The open scopes' counters: one slot per open scope (its tag, live bytes, peak,
//! allocations), which the cold path (`tracker.rs`) updates on every allocation and free
//! of a scope's blocks, and the scope API (`scope.rs`) claims, reads and frees. Kept
//! apart from the API so that the tracker, which the API calls, does not depend on it
//! back: this module imports nothing of the crate.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::*};

/// Scopes open at once, at most.
pub const MAX_SCOPES: usize = 256;

#[repr(align(64))]
pub(super) struct Slot {
    /// The open scope's tag (`id << 8 | slot`), 0 when the slot is free.
    pub(super) tag: AtomicU64,
    pub(super) live: AtomicI64,
    pub(super) peak: AtomicI64,
    pub(super) allocs: AtomicU64,
    pub(super) alloc_bytes: AtomicU64,
    pub(super) untracked_blocks: AtomicU64,
    pub(super) overflow_samples: AtomicU64,
}

pub(super) static SLOTS: [Slot; MAX_SCOPES] = [const {
    Slot {
        tag: AtomicU64::new(0),
        live: AtomicI64::new(0),
        peak: AtomicI64::new(0),
        allocs: AtomicU64::new(0),
        alloc_bytes: AtomicU64::new(0),
        untracked_blocks: AtomicU64::new(0),
        overflow_samples: AtomicU64::new(0),
    }
}; MAX_SCOPES];

/// The slot of an open scope, `None` once it closed (its tag no longer matches).
pub(super) fn slot(tag: u64) -> Option<&'static Slot> {
    let slot = &SLOTS[(tag & 0xFF) as usize];
    (tag != 0 && slot.tag.load(Acquire) == tag).then_some(slot)
}

/// A block of `size` bytes was allocated in scope `tag` (or a freed one restored).
pub(crate) fn note_alloc(tag: u64, size: usize, counted: bool) {
    if let Some(s) = slot(tag) {
        let live = s.live.fetch_add(size as i64, Relaxed) + size as i64;
        s.peak.fetch_max(live, Relaxed);
        if counted {
            s.allocs.fetch_add(1, Relaxed);
            s.alloc_bytes.fetch_add(size as u64, Relaxed);
        }
    }
}

/// A block of scope `tag` was freed.
pub(crate) fn note_free(tag: u64, size: usize) {
    if let Some(s) = slot(tag) {
        s.live.fetch_sub(size as i64, Relaxed);
    }
}

/// A scope allocation the block table had no room for.
pub(crate) fn note_untracked(tag: u64) {
    if let Some(s) = slot(tag) {
        s.untracked_blocks.fetch_add(1, Relaxed);
    }
}

/// A scope allocation whose stack found no room in the site table.
pub(crate) fn note_site_overflow(tag: u64) {
    if let Some(s) = slot(tag) {
        s.overflow_samples.fetch_add(1, Relaxed);
    }
}
