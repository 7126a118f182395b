//! A tracking global allocator: live heap bytes by call site, sampled or exact.
//!
//! `leakwatch-alloc` wraps any [`GlobalAlloc`](std::alloc::GlobalAlloc) (the system
//! allocator, mimalloc, jemalloc) and records, for the allocations it samples, the stack
//! of return addresses that made them. A [`snapshot`] then tells how many bytes are live
//! at each call site. Sampling is byte-weighted (one sample per `R` allocated bytes on
//! average, `R` = 512 KiB by default) and unbiased; `R = 1` tracks every allocation
//! exactly. Most services depend on the `leakwatch` crate, which re-exports this one.
//!
//! # Quick start
//! ```
//! use leakwatch_alloc::LeakWatch;
//!
//! #[global_allocator]
//! static ALLOC: LeakWatch = LeakWatch::system();
//!
//! leakwatch_alloc::set_sample_rate(1); // exact: track every allocation
//! leakwatch_alloc::enable();
//! let kept: Vec<u8> = vec![7; 4096];
//! let snap = leakwatch_alloc::snapshot();
//! assert!(snap.sites.iter().any(|s| s.live_bytes >= 4096));
//! # drop(kept);
//! ```
//!
//! # Turning it on
//! Tracking is off until one of: `LEAKWATCH=1` (sampled) or `LEAKWATCH=exact` in the
//! environment; `LeakWatch::system().enabled()` in the `static`; or [`enable`] at run
//! time. Off costs one relaxed load per allocation and free. For staging-only builds,
//! put the `static` behind a cargo feature:
//! ```
//! #[cfg(feature = "leakwatch")]
//! #[global_allocator]
//! static ALLOC: leakwatch_alloc::LeakWatch = leakwatch_alloc::LeakWatch::system();
//! ```
//! Environment variables (read once, at the first allocation): `LEAKWATCH`,
//! `LEAKWATCH_SAMPLE` (bytes, `512k`, `1m`; `1` = exact), `LEAKWATCH_MAX_DEPTH`,
//! `LEAKWATCH_MAX_SITES`, `LEAKWATCH_MAX_BLOCKS`, `LEAKWATCH_UNWINDER`
//! (`auto|fp|cached-dwarf|backtrace`), `LEAKWATCH_SEED`. Invalid values are ignored and reported in
//! [`Snapshot::warnings`].
//!
//! # Stack capture
//! Build with `RUSTFLAGS="-C force-frame-pointers=yes"` (or the same in
//! `.cargo/config.toml`): stacks are then captured by walking frame pointers (about 51 ns
//! for 20 frames). Without frame pointers leakwatch detects it and falls back to DWARF
//! unwinding, and says so in every snapshot's warnings: on x86_64 Linux its own unwinder,
//! with each return address's rule cached (docs/BENCHMARKS.md has its cost), elsewhere
//! `backtrace` (libgcc), about 47 times slower per sample than frame pointers.
//!
//! # How it works
//! The hot path (every allocation and free) is one relaxed load of a global byte plus a
//! few thread-local updates; it takes no lock and writes no shared cache line. When a
//! thread's sampling countdown runs out, the cold path captures the stack, interns it in
//! a bounded site table, and records the block in a sharded block table. A free checks a
//! read-mostly filter of sampled addresses and only goes to the block table when the
//! filter says the block may be tracked. Threads publish their counts in batches; a
//! snapshot also reads every thread's unpublished batches (through a registry of
//! per-thread slots), so it sees every live thread as of that moment. See
//! docs/ARCHITECTURE.md.
//!
//! # Caveats
//! - Linux on x86_64 or aarch64 is the supported platform (frame-pointer capture, stack
//!   bounds, module list); elsewhere stacks use the `backtrace` crate.
//! - Process totals ([`ProcessStats`]) count from when tracking started.
//! - Only Rust allocations are seen: C libraries calling `malloc` directly are not.

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[expect(unsafe_code)]
mod blocks;
mod config;
mod filter;
#[expect(unsafe_code)]
mod global_alloc;
mod hot;
#[expect(unsafe_code)]
mod os;
mod sampler;
mod scope;
#[expect(unsafe_code)]
mod sites;
mod snapshot;
#[expect(unsafe_code)]
mod spin;
#[expect(unsafe_code)]
mod stack;
mod state;
mod symbolize;
#[expect(unsafe_code)]
mod tags;
#[expect(unsafe_code)]
mod threads;
#[expect(unsafe_code)]
mod tracker;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[expect(unsafe_code)]
mod unwind;

#[doc(hidden)]
pub use blocks::BlockProbes;
pub use config::{
    Config, DEFAULT_MAX_BLOCKS, DEFAULT_MAX_DEPTH, DEFAULT_MAX_SITES, DEFAULT_SAMPLE_RATE,
};
pub use global_alloc::LeakWatch;
pub use scope::{MAX_SCOPES, Scope, ScopeError, ScopeGuard, ScopeHandle, ScopeStats};
pub use tags::{TagGuard, TagSet, tag};
// The plain data types live in `leakwatch-types`, which report readers use without
// depending on the allocator.
pub use leakwatch_types::{
    AGE_BOUNDS_SECONDS, MAX_TAG_BYTES, MAX_TAG_SETS, MAX_TAGS, Mode, Module, OLD_SNAPSHOTS,
    OVERFLOW_TAGS, OverflowStats, ProcessStats, SCHEMA_VERSION, SiteStats, Snapshot, Symbol, Tags,
    TrackerStats, Unwinder, parse_size,
};
pub use symbolize::{Symbolizer, SymbolizerStats};

/// Takes a snapshot of the tracker: process totals, live bytes per call site, the
/// tracker's own memory and overflow counters. Cheap enough to call every second
/// (it copies the site table; it does not walk the block table).
pub fn snapshot() -> Snapshot {
    state::untracked(snapshot::build)
}

/// Turns tracking on at the current sample rate. Returns `false` when the tracker's
/// tables could not be allocated (tracking then stays off) or when the global allocator
/// is not a [`LeakWatch`] (then nothing is tracked; see [`is_installed`]).
pub fn enable() -> bool {
    let installed = is_installed();
    tracker::start() && installed
}

/// Turns tracking off. Blocks already tracked are still accounted when freed.
pub fn disable() {
    tracker::stop();
}

/// The current tracking mode.
pub fn mode() -> Mode {
    match state::load() & state::MODE_MASK {
        state::SAMPLED => Mode::Sampled,
        state::EXACT => Mode::Exact,
        _ => Mode::Off,
    }
}

/// Sets the sampling rate `R` in bytes: on average one sample per `R` allocated bytes.
/// `1` (or `0`) tracks every allocation exactly. Takes effect immediately if tracking
/// is on; blocks already sampled keep the weight of the rate they were sampled at.
pub fn set_sample_rate(bytes: u32) {
    tracker::set_rate(bytes.max(1));
}

/// The sampling rate `R` in bytes (1 = exact).
pub fn sample_rate() -> u32 {
    tracker::RATE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets the maximum number of frames kept per stack (1 to 256).
pub fn set_max_depth(frames: u32) {
    tracker::set_max_depth(frames);
}

/// Chooses the stack unwinder for later samples (`Auto` probes again).
pub fn set_unwinder(unwinder: Unwinder) {
    stack::set_unwinder(unwinder);
}

/// The unwinder in use (`Auto` until the first sample has probed).
pub fn unwinder() -> Unwinder {
    stack::unwinder()
}

/// Whether the global allocator is a [`LeakWatch`]. (It allocates once to find out.)
pub fn is_installed() -> bool {
    tracker::installed()
}

/// Runs `f` with tracking suspended on the calling thread: its allocations are counted
/// in the process totals but never attributed to a site. Nests.
pub fn untracked<R>(f: impl FnOnce() -> R) -> R {
    state::untracked(f)
}

/// Publishes the calling thread's batched process counters now (threads publish at
/// least every 256 KiB of frees, at every sample, and when they exit; snapshots read
/// every registered thread's unpublished batches anyway, so this is rarely needed).
pub fn flush_thread() {
    tracker::flush_current_thread();
}

/// Test support, not part of the API: holds every lock of the tracker's tables for
/// `duration` (allocations of other threads that need them wait). Lets tests fork while
/// a lock is held.
#[doc(hidden)]
pub fn __hold_tracker_locks_for_test(duration: std::time::Duration) {
    tracker::hold_locks_for(duration);
}

/// Test support, not part of the API: puts the tracker back before its first use, so
/// the next allocation (on any thread) configures it again, and holds that
/// configuration (or the tables' creation, if they are still to be made) until
/// [`__release_init_for_test`]. Lets tests fork while another thread initialises.
#[doc(hidden)]
pub fn __restart_first_use_for_test() {
    tracker::restart_first_use_for_test();
}

/// Test support, not part of the API: the next initialisation step (the configuration
/// at first use, or the creation of the tables) waits until [`__release_init_for_test`].
#[doc(hidden)]
pub fn __hold_init_for_test() {
    tracker::hold_init_for_test();
}

/// Test support, not part of the API: lets a held initialisation go on.
#[doc(hidden)]
pub fn __release_init_for_test() {
    tracker::release_init_for_test();
}

/// Test support, not part of the API: whether a thread is running an initialisation
/// step (in a forked child: whether its parent was, when it forked).
#[doc(hidden)]
pub fn __init_running_for_test() -> bool {
    tracker::init_running_for_test()
}

/// Test support, not part of the API: how many times threads have published their
/// batched counts to the process totals so far.
#[doc(hidden)]
pub fn __publications_for_test() -> u64 {
    threads::PROCESS
        .publications
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Test support, not part of the API: while `refuse` is true, every memory mapping the
/// tracker asks for fails, as when the system refuses memory (`ulimit -v`,
/// `vm.overcommit_memory=2`): the block table then cannot grow.
#[doc(hidden)]
pub fn __refuse_mappings_for_test(refuse: bool) {
    os::refuse_mappings(refuse);
}

/// Benchmark support, not part of the API: what this thread's operations on the block
/// table did so far (tables mapped and unmapped, entries migrated, lock waits).
#[doc(hidden)]
pub fn __block_probes_for_bench() -> BlockProbes {
    blocks::probes()
}

/// Test support, not part of the API: the caller's stack captured by the cached DWARF
/// unwinder into `fast` and by `backtrace` into `slow`, the same frames skipped (both
/// start at the caller's return address into its own caller); their lengths, `None`
/// for `fast` when the cached unwinder fell back or does not run here.
#[doc(hidden)]
pub fn __capture_both_unwinders(fast: &mut [u64], slow: &mut [u64]) -> (Option<usize>, usize) {
    tracker::capture_both_for_test(fast, slow)
}

/// Benchmark support, not part of the API: captures the caller's stack with `unwinder`
/// into `out` and returns the number of frames.
#[doc(hidden)]
pub fn __capture_for_bench(unwinder: Unwinder, out: &mut [u64]) -> usize {
    tracker::capture_for_bench(unwinder, out)
}
