//! The cold path: configuration, sampling decisions, stack capture, the site and block
//! tables, batched process counters, thread exit and fork. Reached from `hot` only
//! through `#[cold] #[inline(never)]` functions.
//!
//! Invariants:
//! - While `busy` is set on a thread, its allocations are counted in the process totals
//!   but never sampled, so nothing the tracker does can recurse into tracking.
//! - No lock is held across a call to any allocator: the tables grow with `mmap`.
//! - Nothing here panics on any input (wrapping arithmetic, checked indexing).

use crate::blocks::{self, Entry, Inserted};
use crate::config::{self, Config};
use crate::filter;
use crate::os;
use crate::sampler::{Rng, Weight, mix64, next_countdown, sample_probability};
use crate::scope::counters as scope_counters;
use crate::sites::{self, SiteCounters};
use crate::stack::{self, Stack};
use crate::state::{
    self, EXACT, EXITED, FREE_CHECK, LIVE, MODE_MASK, NEW, OFF, SAMPLED, STATE, THREAD,
    ThreadState, UNINIT, untracked, with_mode,
};
use crate::tags;
use crate::threads::{self, PROCESS};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::*};

/// Bytes of frees (and, in exact mode, of allocations) a thread batches before
/// publishing them to the process totals.
const FLUSH_BYTES: i64 = 256 * 1024;

pub(crate) static RATE: AtomicU32 = AtomicU32::new(config::DEFAULT_SAMPLE_RATE);
pub(crate) static MAX_DEPTH: AtomicU32 = AtomicU32::new(config::DEFAULT_MAX_DEPTH);
pub(crate) static MAX_SITES: AtomicU32 = AtomicU32::new(config::DEFAULT_MAX_SITES);
static SEED: AtomicU64 = AtomicU64::new(0);
static THREAD_SEQ: AtomicU64 = AtomicU64::new(0);
/// Snapshots taken so far (each `snapshot()` increments it first). A tracked block
/// records its low 32 bits at allocation; a block freed [`OLD_SNAPSHOTS`] or more epochs
/// later lived through that many snapshots (its bytes go to `freed_old_bytes`).
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(0);

pub use leakwatch_types::OLD_SNAPSHOTS;

/// Snapshots a block allocated in `epoch` has lived through, now.
fn age(epoch: u32) -> u32 {
    current_epoch().wrapping_sub(epoch)
}

/// Starts a snapshot's epoch; returns it.
pub(crate) fn next_epoch() -> u64 {
    EPOCH.fetch_add(1, Relaxed).wrapping_add(1)
}

fn current_epoch() -> u32 {
    EPOCH.load(Relaxed) as u32
}

/// Bit mask of `LEAKWATCH*` variables that were set to invalid values.
pub(crate) static ENV_INVALID: AtomicU32 = AtomicU32::new(0);

/// A one-time initialisation that a forked child can take over.
///
/// Its word is [`NOT_STARTED`](Self::NOT_STARTED), [`DONE`](Self::DONE), or the pid of
/// the process one of whose threads is running it. A child forked while another thread
/// ran it finds its parent's pid there: that thread does not exist in the child and
/// never finishes, so the child takes the initialisation over (one compare-and-swap
/// from the parent's pid to its own: one thread of the child wins) instead of waiting
/// forever. Fork handlers could not do this: they are registered during initialisation.
struct InitOnce(AtomicU32);

/// Whose turn an initialisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The calling thread runs it: the first to come, or the first of a forked child
    /// whose parent was running it (`taken_over`).
    Run { taken_over: bool },
    /// It has finished.
    Done,
    /// Another thread of this process runs it.
    Wait,
}

impl InitOnce {
    const NOT_STARTED: u32 = 0;
    const DONE: u32 = u32::MAX;

    const fn new() -> InitOnce {
        InitOnce(AtomicU32::new(Self::NOT_STARTED))
    }

    fn turn(&self) -> Turn {
        let word = self.0.load(Acquire);
        if word == Self::DONE {
            return Turn::Done;
        }
        let me = os::pid();
        if word == me {
            return Turn::Wait;
        }
        match self.0.compare_exchange(word, me, Acquire, Acquire) {
            Ok(_) => Turn::Run {
                taken_over: word != Self::NOT_STARTED,
            },
            Err(Self::DONE) => Turn::Done,
            Err(_) => Turn::Wait,
        }
    }

    /// Marks it finished (`Done` for everyone from now on).
    fn finish(&self) {
        self.0.store(Self::DONE, Release);
    }

    /// Marks it not run, so that the next turn runs it again.
    fn reset(&self) {
        self.0.store(Self::NOT_STARTED, Release);
    }

    fn running(&self) -> bool {
        !matches!(self.0.load(Acquire), Self::NOT_STARTED | Self::DONE)
    }
}

/// Waits for another thread's initialisation: yields a few times, then sleeps a
/// millisecond per step (neither allocates).
fn wait_step(step: u32) {
    if step < 64 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Steps of [`wait_step`] after which a waiter gives up (about 10 s): the allocation it
/// was for then goes untracked, or the scope or `enable` it was for fails. A thread of
/// this process running an initialisation only parses the environment and maps tables,
/// so this bound is never reached unless that thread is stopped (a debugger).
const WAIT_STEPS: u32 = 64 + 10_000;

/// The one-time configuration at the first allocation.
static INIT: InitOnce = InitOnce::new();

const TABLES_NONE: u8 = 0;
const TABLES_READY: u8 = 1;
const TABLES_FAILED: u8 = 2;
/// The tables were being created when this process was forked from its parent: the
/// child does not use them (a half-initialised table cannot be finished safely), so
/// tracking stays off in it.
const TABLES_ABANDONED: u8 = 3;
static TABLES: AtomicU8 = AtomicU8::new(TABLES_NONE);
static TABLES_INIT: InitOnce = InitOnce::new();

/// Test support: the next initialisation step (the configuration at first use, or the
/// creation of the tables) waits while [`INIT_HOLD`] is set.
static INIT_PAUSE: AtomicBool = AtomicBool::new(false);
static INIT_HOLD: AtomicBool = AtomicBool::new(false);

/// Test support: waits while a test holds the initialisation (at most 10 s).
fn pause_for_test() {
    if INIT_PAUSE.swap(false, Relaxed) {
        for _ in 0..10_000 {
            if !INIT_HOLD.load(Acquire) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Overflow and anomaly counters: what the tracker could not record, and how much.
pub(crate) struct OverflowCounters {
    pub(crate) untracked_blocks: AtomicU64,
    pub(crate) untracked_bytes: AtomicU64,
    pub(crate) truncated_stacks: AtomicU64,
    pub(crate) replaced_entries: AtomicU64,
}

pub(crate) static OVERFLOW: OverflowCounters = OverflowCounters {
    untracked_blocks: AtomicU64::new(0),
    untracked_bytes: AtomicU64::new(0),
    truncated_stacks: AtomicU64::new(0),
    replaced_entries: AtomicU64::new(0),
};

// ---------------------------------------------------------------------------------------
// Configuration and mode changes.

/// Runs at the first allocation through a `LeakWatch`: applies its `const` config and the
/// environment. Returns the resulting state.
#[cold]
#[inline(never)]
pub(crate) fn first_use(config: &Config) -> u32 {
    let reentrant = THREAD.with(|t| t.busy.get());
    if reentrant {
        return STATE.load(Relaxed);
    }
    for step in 0..WAIT_STEPS {
        match INIT.turn() {
            Turn::Run { .. } => {
                // Running it again in a forked child is harmless: it only stores the
                // configuration and maps tables (which `ensure_tables` guards itself).
                THREAD.with(|t| t.busy.set(true));
                pause_for_test();
                configure(config);
                INIT.finish();
                THREAD.with(|t| t.busy.set(false));
                break;
            }
            Turn::Done => break,
            // Another thread is configuring: it only parses the environment and maps
            // tables, so this wait is short and cannot depend on this thread.
            Turn::Wait => wait_step(step),
        }
    }
    STATE.load(Relaxed)
}

/// Applies `config` and the environment, and starts tracking if enabled.
fn configure(config: &Config) {
    let mut config = *config;
    ENV_INVALID.store(config::apply_env(&mut config), Relaxed);
    apply(&config);
    if config.enabled {
        start();
    } else {
        state::update_state(|s| (s & MODE_MASK == UNINIT).then_some(with_mode(s, OFF)));
    }
}

/// Test support: puts the tracker back before its first use, so the next allocation
/// configures it again; that configuration (or, if the tables are still to be made,
/// their creation) waits until [`release_init_for_test`].
pub(crate) fn restart_first_use_for_test() {
    hold_init_for_test();
    INIT.reset();
    state::update_state(|s| Some(with_mode(s, UNINIT)));
}

/// Test support: the next initialisation step waits until [`release_init_for_test`].
pub(crate) fn hold_init_for_test() {
    INIT_HOLD.store(true, Release);
    INIT_PAUSE.store(true, Release);
}

/// Test support: lets a held initialisation go on.
pub(crate) fn release_init_for_test() {
    INIT_HOLD.store(false, Release);
}

/// Test support: whether a thread is running an initialisation step.
pub(crate) fn init_running_for_test() -> bool {
    INIT.running() || TABLES_INIT.running()
}

fn apply(config: &Config) {
    RATE.store(config.sample_rate.max(1), Relaxed);
    MAX_DEPTH.store(
        config.max_depth.clamp(1, stack::MAX_DEPTH_LIMIT as u32),
        Relaxed,
    );
    MAX_SITES.store(config.max_sites.max(2), Relaxed);
    blocks::set_max_blocks(config.max_blocks);
    stack::set_unwinder(config.unwinder);
    SEED.store(config.seed, Relaxed);
}

/// Whether a `LeakWatch` global allocator has configured itself (seen an allocation).
pub(crate) fn installed() -> bool {
    if STATE.load(Relaxed) & MODE_MASK == UNINIT {
        // Allocate once to trigger `first_use` if we are the global allocator.
        drop(std::hint::black_box(Box::new(0u64)));
    }
    STATE.load(Relaxed) & MODE_MASK != UNINIT
}

/// Maps the tables (once) and registers the fork handlers. Returns false on failure.
/// (Scopes call it too: they need the tables while tracking may stay off.) In a child
/// forked while another thread of its parent was creating them, the tables are
/// abandoned: tracking stays off there.
pub(crate) fn ensure_tables() -> bool {
    for step in 0..WAIT_STEPS {
        match TABLES.load(Acquire) {
            TABLES_READY => return true,
            TABLES_FAILED | TABLES_ABANDONED => return false,
            _ => {}
        }
        match TABLES_INIT.turn() {
            Turn::Run { taken_over: true } => {
                // The parent's thread may have been inside the site table's `OnceLock`
                // or `pthread_atfork`: neither can be finished or redone safely here.
                TABLES.store(TABLES_ABANDONED, Release);
                TABLES_INIT.finish();
                return false;
            }
            Turn::Run { taken_over: false } => {
                pause_for_test();
                let ok = sites::init(MAX_SITES.load(Relaxed), MAX_DEPTH.load(Relaxed))
                    && os::register_fork_handlers(fork_prepare, fork_release, fork_child);
                TABLES.store(if ok { TABLES_READY } else { TABLES_FAILED }, Release);
                TABLES_INIT.finish();
            }
            Turn::Done => {}
            Turn::Wait => wait_step(step),
        }
    }
    false
}

/// Whether the tables could not be created (tracking then stays off).
pub(crate) fn tables_failed() -> bool {
    TABLES.load(Relaxed) == TABLES_FAILED
}

/// Whether this process was forked while its parent created the tables (tracking then
/// stays off).
pub(crate) fn tables_abandoned() -> bool {
    TABLES.load(Relaxed) == TABLES_ABANDONED
}

fn mode_for_rate() -> u32 {
    if RATE.load(Relaxed) <= 1 {
        EXACT
    } else {
        SAMPLED
    }
}

/// Turns tracking on at the current rate. Returns false if the tables could not be mapped.
pub(crate) fn start() -> bool {
    if !ensure_tables() {
        set_mode(OFF);
        return false;
    }
    set_mode(mode_for_rate());
    true
}

/// Turns tracking off (frees of tracked blocks are still accounted).
pub(crate) fn stop() {
    set_mode(OFF);
}

fn set_mode(mode: u32) {
    state::update_state(|s| Some(moded(s, mode)));
}

/// The state word after a change to `mode`: the open-scope count kept, [`FREE_CHECK`]
/// set for a tracking mode and never cleared.
pub(crate) const fn moded(state: u32, mode: u32) -> u32 {
    let state = with_mode(state, mode);
    if mode >= SAMPLED {
        state | FREE_CHECK
    } else {
        state
    }
}

/// Sets the sampling rate (1 = exact), switching mode if tracking is on.
pub(crate) fn set_rate(rate: u32) {
    RATE.store(rate.max(1), Relaxed);
    if STATE.load(Relaxed) & MODE_MASK >= SAMPLED {
        set_mode(mode_for_rate());
    }
}

pub(crate) fn set_max_depth(depth: u32) {
    MAX_DEPTH.store(depth.clamp(1, stack::MAX_DEPTH_LIMIT as u32), Relaxed);
}

// ---------------------------------------------------------------------------------------
// The slow allocation path.

/// Called when the countdown ran out (or in exact mode): decides, captures, records.
#[cold]
#[inline(never)]
pub(crate) fn on_alloc_slow(t: &ThreadState, addr: usize, size: usize, sp: usize) {
    if t.busy.get() {
        // The tracker's own allocation, or one inside `untracked`: counted, not sampled.
        if t.phase.get() == NEW {
            return;
        }
        if STATE.load(Relaxed) & MODE_MASK == EXACT || t.scope.get() != 0 {
            // Every allocation comes here in exact mode (and in a scope), and the
            // countdown is only a byte counter: publish once per batch, as tracked
            // allocations do. (Redrawing it would unpin a scoped thread's countdown.)
            let pending = t
                .counts
                .countdown_base
                .get()
                .wrapping_sub(t.counts.countdown.get());
            if pending >= FLUSH_BYTES || t.phase.get() == EXITED {
                flush(t);
            }
            return;
        }
        if t.counts.countdown.get() <= 0 {
            flush(t);
            let mut rng = Rng(t.rng.get());
            let next = if t.phase.get() == EXITED {
                0
            } else {
                next_countdown(&mut rng, RATE.load(Relaxed).max(2))
            };
            t.rng.set(rng.0);
            set_countdown(t, next);
        }
        return;
    }
    t.busy.set(true);
    if t.phase.get() == NEW {
        thread_start(t);
    }
    let mode = STATE.load(Relaxed) & MODE_MASK;
    let exiting = t.phase.get() == EXITED;
    let pending = t
        .counts
        .countdown_base
        .get()
        .wrapping_sub(t.counts.countdown.get());
    let tag = t.scope.get();
    if tag != 0 {
        // In a scope: every allocation is tracked exactly, whatever the mode.
        if mode >= SAMPLED && (exiting || pending >= FLUSH_BYTES) {
            flush(t);
        }
        track_scoped(t, addr, size, sp, tag);
        t.busy.set(false);
        return;
    }
    if mode != EXACT || exiting || pending >= FLUSH_BYTES {
        flush(t);
    }
    let rate = if mode == EXACT {
        1
    } else {
        RATE.load(Relaxed).max(2)
    };
    let sampled = match mode {
        EXACT => true,
        SAMPLED => decide(t, size, rate),
        _ => false,
    };
    if sampled {
        track(t, addr, size, rate, sp);
    }
    if exiting {
        set_countdown(t, 0);
    }
    t.busy.set(false);
}

/// Sampled mode: whether this allocation is sampled. Redraws the countdown when it is.
fn decide(t: &ThreadState, size: usize, rate: u32) -> bool {
    let mut rng = Rng(t.rng.get());
    let sampled = if t.phase.get() == EXITED {
        // After the thread's exit flush every allocation comes here: decide each one
        // independently with the same probability the countdown would give it.
        rng.next_f64() < sample_probability(size, rate)
    } else if t.rate.get() != rate {
        // First sample on this thread, or the rate changed: draw a fresh countdown.
        t.rate.set(rate);
        let left = next_countdown(&mut rng, rate).wrapping_sub(size as i64);
        if left > 0 {
            set_countdown(t, left);
            false
        } else {
            set_countdown(t, next_countdown(&mut rng, rate));
            true
        }
    } else if t.counts.countdown.get() > 0 {
        false
    } else {
        set_countdown(t, next_countdown(&mut rng, rate));
        true
    };
    t.rng.set(rng.0);
    sampled
}

/// Sets the countdown. Only right after a flush (the base is moved with it, in a move:
/// a snapshot must not see one without the other).
pub(crate) fn set_countdown(t: &ThreadState, value: i64) {
    let _move = threads::begin_move(t);
    t.counts.countdown.set(value);
    t.counts.countdown_base.set(value);
}

fn thread_start(t: &ThreadState) {
    let (lo, hi) = os::thread_stack_bounds();
    t.stack_lo.set(lo);
    t.stack_hi.set(hi);
    let seq = THREAD_SEQ.fetch_add(1, Relaxed);
    let seed = match SEED.load(Relaxed) {
        0 => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (t as *const ThreadState as u64)
        }
        fixed => fixed,
    };
    t.rng
        .set(mix64(seed ^ seq.wrapping_mul(0xA076_1D64_78BD_642F)));
    t.phase.set(LIVE);
    t.counts.free_budget.set(FLUSH_BYTES);
    t.counts.free_budget_base.set(FLUSH_BYTES);
    // Register the exit flush (std may allocate to do so: we are `busy`, so that
    // allocation is not tracked). `try_with` cannot panic. Only a thread whose exit
    // flush will run (it releases the registry slot) may be registered: snapshots read
    // a registered thread's thread-local counts until then.
    if EXIT_FLUSH.try_with(|_| ()).is_ok() {
        threads::register(t);
    } else {
        // Started while its thread-locals are being destroyed (its first operation came
        // from a destructor): no exit flush will publish its batches, so it publishes
        // every operation, as a thread does after its exit flush.
        t.phase.set(EXITED);
        t.counts.free_budget.set(0);
        t.counts.free_budget_base.set(0);
    }
}

/// Captures the stack, interns the site, and records the block.
fn track(t: &ThreadState, addr: usize, size: usize, rate: u32, sp: usize) {
    let Some(sites) = sites::get() else { return };
    let mut buffer = stack::stack_buffer();
    // A tagged stack ends in its set's marker (`tags.rs`), which needs a frame.
    let tags = t.tags.get();
    let max = MAX_DEPTH.load(Relaxed) as usize;
    let depth = if tags == 0 { max } else { max.max(2) - 1 };
    let mut stack = Stack::new(&mut buffer, depth);
    stack::capture(&mut stack, sp, t.stack_lo.get(), t.stack_hi.get());
    if stack.truncated() {
        OVERFLOW.truncated_stacks.fetch_add(1, Relaxed);
    }
    if tags != 0 {
        stack.push_marker(tags::TAG_FRAME | u64::from(tags));
    }
    let site = sites.intern(stack.frames(), stack.truncated(), stack.hash(), 0);
    let weight = Weight::of(size, rate);
    match blocks::insert(addr, site, rate, current_epoch(), size) {
        Inserted::New => {
            filter::insert(addr);
            note_site(t, sites, site, SiteCounters::alloc(weight));
        }
        Inserted::Replaced(_) => {
            // A tracked block at this address was freed without passing through leakwatch
            // (never expected). Its site keeps the stale bytes; the count says so.
            OVERFLOW.replaced_entries.fetch_add(1, Relaxed);
            note_site(t, sites, site, SiteCounters::alloc(weight));
        }
        Inserted::Full => {
            OVERFLOW.untracked_blocks.fetch_add(1, Relaxed);
            OVERFLOW.untracked_bytes.fetch_add(weight.bytes, Relaxed);
        }
    }
}

/// Captures the stack with the scope's marker as its outermost frame, interns it as one
/// of the scope's sites, and records the block exactly (weight 1). The site's counters
/// are written through: a scope's readings must not wait on a thread's batch.
fn track_scoped(t: &ThreadState, addr: usize, size: usize, sp: usize, tag: u64) {
    let Some(sites) = sites::get() else { return };
    let mut buffer = stack::stack_buffer();
    let depth = MAX_DEPTH.load(Relaxed).max(2) as usize;
    let mut stack = Stack::new(&mut buffer, depth - 1);
    stack::capture(&mut stack, sp, t.stack_lo.get(), t.stack_hi.get());
    if stack.truncated() {
        OVERFLOW.truncated_stacks.fetch_add(1, Relaxed);
    }
    stack.push_marker(stack::SCOPE_FRAME | tag);
    let site = sites.intern(stack.frames(), stack.truncated(), stack.hash(), tag);
    if site == sites::OVERFLOW {
        scope_counters::note_site_overflow(tag);
    }
    let weight = Weight::of(size, 1);
    match blocks::insert(addr, site, 1, current_epoch(), size) {
        Inserted::New => {
            filter::insert(addr);
            sites.record(site).add(&SiteCounters::alloc(weight));
            scope_counters::note_alloc(tag, size, true);
        }
        Inserted::Replaced(_) => {
            OVERFLOW.replaced_entries.fetch_add(1, Relaxed);
            sites.record(site).add(&SiteCounters::alloc(weight));
            scope_counters::note_alloc(tag, size, true);
        }
        Inserted::Full => {
            OVERFLOW.untracked_blocks.fetch_add(1, Relaxed);
            OVERFLOW.untracked_bytes.fetch_add(weight.bytes, Relaxed);
            scope_counters::note_untracked(tag);
        }
    }
}

/// Records a change to a site's counters: batched per thread while the thread runs,
/// written through once its exit flush has run (nothing would publish a batch later).
/// Publishing another site's pending changes to make room is a move (`threads.rs`).
fn note_site(t: &ThreadState, sites: &sites::Sites, site: u32, delta: SiteCounters) {
    if t.phase.get() == EXITED {
        sites.record(site).add(&delta);
    } else if t.counts.sites.evicts(site) {
        let _move = threads::begin_move(t);
        t.counts.sites.add(sites, site, delta);
    } else {
        t.counts.sites.add(sites, site, delta);
    }
}

/// A tracked block is being freed: remove it and subtract its weight from its site.
#[cold]
#[inline(never)]
pub(crate) fn on_tracked_free(addr: usize, size: usize) -> Option<Entry> {
    let entry = blocks::remove(addr)?;
    filter::remove(addr);
    if let Some(sites) = sites::get() {
        let age = age(entry.epoch);
        let delta = SiteCounters::free(Weight::of(size, entry.rate), age);
        let tag = sites.record(entry.site).scope();
        if tag != 0 {
            // A scope's block, freed by whichever thread: written through.
            sites.record(entry.site).add(&delta);
            scope_counters::note_free(tag, size);
        } else {
            THREAD.with(|t| note_site(t, sites, entry.site, delta));
        }
    }
    Some(entry)
}

/// Undoes [`on_tracked_free`] after a failed `realloc` (the old block stays valid).
#[cold]
#[inline(never)]
pub(crate) fn restore(addr: usize, size: usize, entry: Entry) {
    let Some(sites) = sites::get() else { return };
    let weight = Weight::of(size, entry.rate);
    let age = age(entry.epoch);
    let tag = sites.record(entry.site).scope();
    let unfree = |delta: SiteCounters| {
        if tag != 0 {
            sites.record(entry.site).add(&delta);
            scope_counters::note_alloc(tag, size, false);
        } else {
            THREAD.with(|t| note_site(t, sites, entry.site, delta));
        }
    };
    match blocks::insert(addr, entry.site, entry.rate, entry.epoch, size) {
        Inserted::New => {
            filter::insert(addr);
            unfree(SiteCounters::unfree(weight, age));
        }
        Inserted::Replaced(_) => {
            OVERFLOW.replaced_entries.fetch_add(1, Relaxed);
            unfree(SiteCounters::unfree(weight, age));
        }
        Inserted::Full => {
            // Stays accounted as freed; say that a block went untracked.
            OVERFLOW.untracked_blocks.fetch_add(1, Relaxed);
            OVERFLOW.untracked_bytes.fetch_add(weight.bytes, Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Process totals.

/// Publishes this thread's batched counts to the process totals (a move: see
/// `threads.rs`).
#[cold]
#[inline(never)]
pub(crate) fn flush(t: &ThreadState) {
    let _move = threads::begin_move(t);
    if let Some(sites) = sites::get() {
        t.counts.sites.publish(sites);
    }
    let allocs = t.counts.allocs.replace(0);
    let alloc_bytes = t
        .counts
        .countdown_base
        .get()
        .wrapping_sub(t.counts.countdown.get()) as u64;
    t.counts.countdown_base.set(t.counts.countdown.get());
    let frees = t.counts.frees.replace(0);
    let freed_bytes = t
        .counts
        .free_budget_base
        .get()
        .wrapping_sub(t.counts.free_budget.get()) as u64;
    let budget = if t.phase.get() == LIVE {
        FLUSH_BYTES
    } else {
        0
    };
    t.counts.free_budget.set(budget);
    t.counts.free_budget_base.set(budget);
    if allocs == 0 && frees == 0 {
        return;
    }
    PROCESS.publications.fetch_add(1, Relaxed);
    PROCESS.allocs.fetch_add(allocs, Relaxed);
    PROCESS.frees.fetch_add(frees, Relaxed);
    let allocated = PROCESS
        .alloc_bytes
        .fetch_add(alloc_bytes, Relaxed)
        .wrapping_add(alloc_bytes);
    let freed = PROCESS
        .freed_bytes
        .fetch_add(freed_bytes, Relaxed)
        .wrapping_add(freed_bytes);
    PROCESS
        .peak_live
        .fetch_max(allocated.wrapping_sub(freed) as i64, Relaxed);
}

/// A thread's budget of batched frees ran out: publishes its counts. A thread whose
/// operations so far were all frees (a drop thread) has not started, and its budget is
/// zero until it does: it starts here, as an allocation would start it, so it batches
/// its frees from now on (and registers, so snapshots still see them) instead of
/// publishing every one.
#[cold]
#[inline(never)]
pub(crate) fn on_free_budget_spent(t: &ThreadState) {
    // Publish what is pending first: starting sets the budget afresh.
    flush(t);
    if t.phase.get() == NEW {
        // Starting may allocate (stack bounds, the exit flush's registration): those
        // allocations are the tracker's own, counted and never sampled.
        let busy = t.busy.replace(true);
        thread_start(t);
        t.busy.set(busy);
    }
}

/// Publishes the calling thread's batched counts.
pub(crate) fn flush_current_thread() {
    THREAD.with(flush);
}

/// Flushes a thread's counts when it exits and releases its registry slot; afterwards
/// its counts are published on every operation (other thread-local destructors may
/// still allocate and free).
struct ExitFlush;

impl Drop for ExitFlush {
    fn drop(&mut self) {
        THREAD.with(|t| {
            t.phase.set(EXITED);
            flush(t);
            set_countdown(t, 0);
            threads::release(t);
        });
    }
}

thread_local! {
    static EXIT_FLUSH: ExitFlush = const { ExitFlush };
}

/// Benchmark support: one stack capture with `unwinder`, using this thread's cached stack
/// bounds.
pub(crate) fn capture_for_bench(unwinder: stack::Unwinder, out: &mut [u64]) -> usize {
    THREAD.with(|t| {
        if t.stack_hi.get() == 0 {
            let (lo, hi) = os::thread_stack_bounds();
            t.stack_lo.set(lo);
            t.stack_hi.set(hi);
        }
        stack::capture_for_bench(unwinder, out, t.stack_lo.get(), t.stack_hi.get())
    })
}

/// Test support: [`stack::capture_both`] of the caller's stack, untracked (`backtrace`
/// may allocate).
#[inline(never)]
pub(crate) fn capture_both_for_test(fast: &mut [u64], slow: &mut [u64]) -> (Option<usize>, usize) {
    let (_, hi) = os::thread_stack_bounds();
    untracked(|| stack::capture_both(fast, slow, hi))
}

// ---------------------------------------------------------------------------------------
// Fork: hold every tracker lock across fork() so the child never inherits one held by a
// thread that does not exist there.

/// Test support: holds every tracker lock for `duration`, as a thread caught mid-update
/// would, so tests can fork into that window.
pub(crate) fn hold_locks_for(duration: std::time::Duration) {
    // SAFETY: fork_prepare only takes locks; fork_release releases exactly those, on this
    // same thread, after the sleep.
    unsafe {
        fork_prepare();
        std::thread::sleep(duration);
        fork_release();
    }
}

unsafe extern "C" fn fork_prepare() {
    // First: a thread inside the tracker's module listing may still free a tracked block
    // (taking a shard's lock) before it lets go of the loader lock.
    os::lock_loader_for_fork();
    threads::lock_for_fork();
    tags::lock_for_fork();
    if let Some(sites) = sites::get() {
        sites.lock_for_fork();
    }
    blocks::lock_all_for_fork();
}

unsafe extern "C" fn fork_release() {
    // SAFETY: runs in the parent right after fork_prepare took these locks on the
    // forking thread (pthread_atfork's contract).
    unsafe {
        unlock_tables_after_fork();
        threads::unlock_after_fork_parent();
        os::unlock_loader_after_fork();
    }
}

unsafe extern "C" fn fork_child() {
    // SAFETY: runs in the child right after fork_prepare took these locks on the thread
    // that forked, the only thread of the child (pthread_atfork's contract).
    unsafe {
        unlock_tables_after_fork();
        threads::unlock_after_fork_child();
        os::unlock_loader_after_fork();
    }
    blocks::forget_pins_after_fork_child();
}

/// # Safety
/// Only after `fork_prepare`, on the thread that ran it (or its child).
unsafe fn unlock_tables_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe {
        blocks::unlock_all_after_fork();
        if let Some(sites) = sites::get() {
            sites.unlock_after_fork();
        }
        tags::unlock_after_fork();
    }
}
