//! The `GlobalAlloc` wrapper. Each method calls the inner allocator, passes a null
//! through unchanged, and tells the hot path what happened: allocations after the inner
//! call succeeds, frees before the inner allocator gets the block back (so its address
//! cannot be reused and tracked by another thread before we forget it).

use crate::config::Config;
use crate::hot;
use crate::stack::Unwinder;
use crate::state::{self, STATE};
use crate::tracker;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::compiler_fence;

/// A global allocator that wraps `A` and tracks live allocations by call site.
///
/// Install it with `#[global_allocator]`; tracking stays off (costing one relaxed load
/// per call) until `LEAKWATCH=1` is set in the environment, [`LeakWatch::enabled`] is
/// used in the `static`, or [`enable`](crate::enable) is called.
///
/// # Examples
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leakwatch_alloc::LeakWatch = leakwatch_alloc::LeakWatch::system();
/// ```
#[derive(Debug)]
pub struct LeakWatch<A = System> {
    inner: A,
    config: Config,
}

impl LeakWatch<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        LeakWatch::new(System)
    }
}

impl<A> LeakWatch<A> {
    /// Wraps `inner` (for example `mimalloc::MiMalloc` or `tikv_jemallocator::Jemalloc`).
    pub const fn new(inner: A) -> Self {
        LeakWatch {
            inner,
            config: Config::DEFAULT,
        }
    }

    /// Starts tracking at the first allocation, without waiting for `LEAKWATCH=1`
    /// (`LEAKWATCH=0` still turns it off).
    pub const fn enabled(mut self) -> Self {
        self.config.enabled = true;
        self
    }

    /// Sets the sampling rate `R`: on average one sample per `R` allocated bytes.
    /// `1` tracks every allocation exactly. Overridden by `LEAKWATCH_SAMPLE`.
    pub const fn sample_rate(mut self, bytes: u32) -> Self {
        self.config.sample_rate = if bytes == 0 { 1 } else { bytes };
        self
    }

    /// Tracks every allocation exactly (the same as `sample_rate(1)`).
    pub const fn exact(self) -> Self {
        self.sample_rate(1)
    }

    /// Maximum frames kept per stack (1 to 256; default 32). Overridden by
    /// `LEAKWATCH_MAX_DEPTH`.
    pub const fn max_depth(mut self, frames: u32) -> Self {
        self.config.max_depth = frames;
        self
    }

    /// Bound on distinct call sites (default 65,536). Overridden by `LEAKWATCH_MAX_SITES`.
    pub const fn max_sites(mut self, sites: u32) -> Self {
        self.config.max_sites = sites;
        self
    }

    /// Bound on tracked live blocks (default 32 Mi). Overridden by `LEAKWATCH_MAX_BLOCKS`.
    pub const fn max_blocks(mut self, blocks: u64) -> Self {
        self.config.max_blocks = blocks;
        self
    }

    /// Chooses the stack unwinder (default: probe, prefer frame pointers). Overridden by
    /// `LEAKWATCH_UNWINDER`.
    pub const fn unwinder(mut self, unwinder: Unwinder) -> Self {
        self.config.unwinder = unwinder;
        self
    }

    /// Seeds the sampling random numbers (0, the default, seeds from the clock).
    /// Overridden by `LEAKWATCH_SEED`.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `A` with the caller's arguments unchanged and returns
// `A`'s result unchanged, so `A`'s implementation upholds the `GlobalAlloc` contract. The
// hooks around the calls never unwind (no panicking code paths), never allocate except
// through re-entrant calls that the `busy` guard keeps from being tracked, and never hold
// a lock across a call into `A`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for LeakWatch<A> {
    // Each method tests and tail-calls: with tracking off, or for the allocations and
    // frees that sampling skips, the entry point needs no stack frame of its own and the
    // inner allocator is jumped to, not called. Everything else is out of line.

    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let state = state::load();
        if hot::is_off(state) || hot::try_count_unsampled_alloc(state, layout.size()) {
            // SAFETY: our caller guarantees `layout` has non-zero size, as `A::alloc` requires.
            return unsafe { self.inner.alloc(layout) };
        }
        // SAFETY: as above.
        unsafe { self.alloc_tracked(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let state = state::load();
        if hot::is_off(state) || hot::try_count_unsampled_alloc(state, layout.size()) {
            // SAFETY: as for `alloc`.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: as for `alloc`.
        unsafe { self.alloc_zeroed_tracked(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let state = state::load();
        if hot::is_off(state) || hot::try_count_untracked_free(state, ptr as usize, layout.size()) {
            // SAFETY: our caller guarantees `ptr` was allocated by this allocator (hence by
            // `A`, which produced every pointer we returned) with `layout`.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: as above.
        unsafe { self.dealloc_tracked(ptr, layout) };
        // Keeps the call above a call, not a tail call: the one block that then needs a
        // stack frame is this one, so the frame pointer's prologue moves into it and the
        // fast path above needs none (measured: 3 instructions a free, see BENCHMARKS).
        // Emits no instruction.
        compiler_fence(SeqCst);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if hot::is_off(state::load()) {
            // SAFETY: our caller guarantees `ptr` came from this allocator (so from `A`)
            // with `layout`, and that `new_size` is valid for `layout.align()`.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: as above.
        let new_ptr = unsafe { self.realloc_tracked(ptr, layout, new_size) };
        // As in `dealloc`: the frame only where the call is.
        compiler_fence(SeqCst);
        new_ptr
    }
}

/// The tracking paths, out of line so the entry points above stay frameless.
impl<A: GlobalAlloc> LeakWatch<A> {
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    #[inline(never)]
    unsafe fn alloc_tracked(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller, who upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            hot::on_alloc(ptr as usize, layout.size(), &self.config);
        }
        ptr
    }

    /// # Safety
    /// As [`GlobalAlloc::alloc_zeroed`].
    #[inline(never)]
    unsafe fn alloc_zeroed_tracked(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller, who upholds `alloc_zeroed`'s contract.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            hot::on_alloc(ptr as usize, layout.size(), &self.config);
        }
        ptr
    }

    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    #[inline(never)]
    unsafe fn dealloc_tracked(&self, ptr: *mut u8, layout: Layout) {
        // Forget the block before `A` can hand its address to another thread.
        hot::on_free(ptr as usize, layout.size());
        // SAFETY: forwarded from our caller, who upholds `dealloc`'s contract.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// # Safety
    /// As [`GlobalAlloc::realloc`].
    #[inline(never)]
    unsafe fn realloc_tracked(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let state = STATE.load(Relaxed);
        // Forget the old block before `A` can hand its address to another thread.
        let taken = hot::take_tracked(state, ptr as usize, layout.size());
        // SAFETY: forwarded from our caller, who upholds `realloc`'s contract.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new_ptr.is_null() {
            // The old block is untouched and still live: track it again.
            if let Some(entry) = taken {
                tracker::restore(ptr as usize, layout.size(), entry);
            }
            return new_ptr;
        }
        hot::count_free(STATE.load(Relaxed), layout.size());
        hot::on_alloc(new_ptr as usize, new_size, &self.config);
        new_ptr
    }
}
