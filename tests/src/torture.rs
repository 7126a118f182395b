//! The concurrency torture test shared by `torture_exact` and `torture_sampled`.
//!
//! Worker threads allocate, reallocate and free blocks at every alignment from 1 to 4096
//! and sizes from 1 byte to 70 KB; each worker slot allocates only from its own
//! function (`site_0` ... `site_5`), and the test keeps that site's true live bytes
//! (atomics, because blocks also move between threads through a mailbox and are freed
//! there). Workers exit after a random number of operations and are replaced (thread
//! churn), open scopes and check their counters exactly, while another thread takes
//! snapshots and checks them for wrapped (negative) counters, and another forks every
//! second into a child that must allocate, free, count a scope and snapshot.

use crate::in_forked_child;
use leakwatch::{Scope, Snapshot, Symbolizer};
use std::alloc::{Layout, alloc, dealloc, realloc};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Worker slots (each its own site).
pub const WORKERS: usize = 6;

/// Every alignment the test uses.
const ALIGNS: [usize; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Block sizes, from tiny to above glibc's largest bins.
const SIZES: [usize; 12] = [1, 3, 8, 24, 63, 200, 1000, 4095, 4096, 9000, 33_000, 70_000];
/// Blocks a worker keeps at most (it frees at random before reaching this).
const MAX_KEPT: usize = 256;
/// A worker opens a scope at most this often: each scope's stacks are sites of their own
/// (the marker frame), and the site table holds 65,536; six workers for 60 s make at most
/// 7,200 scopes of a few sites each.
const SCOPE_EVERY: Duration = Duration::from_millis(50);

/// One live block: where it is, its layout, and the worker slot whose site allocated it.
#[derive(Debug)]
pub struct Block {
    ptr: *mut u8,
    layout: Layout,
    slot: usize,
}

// SAFETY: a `Block` is the sole owner of its allocation; any thread may free it.
unsafe impl Send for Block {}

/// True live bytes per worker slot's site.
static TRUTH: [AtomicU64; WORKERS] = [const { AtomicU64::new(0) }; WORKERS];
/// Blocks handed from one worker to another, to be freed on another thread.
static MAILBOX: Mutex<Vec<Block>> = Mutex::new(Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);

/// Marks a block's first and last byte with its slot, to catch a block handed out twice.
fn mark(block: &Block) {
    let tag = block.slot as u8 ^ 0xA5;
    // SAFETY: `ptr` is a live allocation of `layout.size() >= 1` bytes that this block
    // owns.
    unsafe {
        block.ptr.write(tag);
        block.ptr.add(block.layout.size() - 1).write(tag);
    }
}

fn check_mark(block: &Block) {
    let tag = block.slot as u8 ^ 0xA5;
    // SAFETY: as in `mark`; the bytes were written by `mark` (or kept by `realloc`).
    let (first, last) = unsafe {
        (
            block.ptr.read(),
            block.ptr.add(block.layout.size() - 1).read(),
        )
    };
    assert_eq!(
        (first, last),
        (tag, tag),
        "block {:?} was overwritten",
        block.ptr
    );
}

fn free(block: Block) {
    check_mark(&block);
    TRUTH[block.slot].fetch_sub(block.layout.size() as u64, Relaxed);
    // SAFETY: the block was allocated with this layout by the global allocator and is
    // freed exactly once (it is consumed here).
    unsafe { dealloc(block.ptr, block.layout) };
}

/// What a site function does: allocate a new block, or reallocate one.
#[derive(Debug)]
pub enum Op {
    /// A new block.
    Alloc(Layout),
    /// The block, reallocated to this size.
    Realloc(Block, usize),
}

/// A worker slot's allocating function: defined in the test binary by
/// [`torture_sites!`](crate::torture_sites) (this crate's frames are skipped when sites
/// are looked up by function), it calls [`perform`].
pub type Site = fn(Op) -> Block;

/// Defines `SITES`, one `#[inline(never)]` allocating function per worker slot
/// (`site_0` ... `site_5`), for [`run`].
#[macro_export]
macro_rules! torture_sites {
    () => {
        $crate::torture_sites!(@site site_0, 0);
        $crate::torture_sites!(@site site_1, 1);
        $crate::torture_sites!(@site site_2, 2);
        $crate::torture_sites!(@site site_3, 3);
        $crate::torture_sites!(@site site_4, 4);
        $crate::torture_sites!(@site site_5, 5);
        const SITES: [$crate::torture::Site; $crate::torture::WORKERS] =
            [site_0, site_1, site_2, site_3, site_4, site_5];
    };
    (@site $name:ident, $slot:expr) => {
        #[inline(never)]
        fn $name(op: $crate::torture::Op) -> $crate::torture::Block {
            $crate::torture::perform(::std::hint::black_box($slot), op)
        }
    };
}

/// Carries out `op` for worker slot `slot` (called from its site function).
pub fn perform(slot: usize, op: Op) -> Block {
    match op {
        Op::Alloc(layout) => {
            // SAFETY: every layout here has a non-zero size.
            let ptr = unsafe { alloc(layout) };
            assert!(!ptr.is_null(), "allocation failed");
            Block { ptr, layout, slot }
        }
        Op::Realloc(block, size) => {
            check_mark(&block);
            // SAFETY: the block is live, was allocated with `block.layout`, and `size` is
            // non-zero and valid with its alignment.
            let ptr = unsafe { realloc(block.ptr, block.layout, size) };
            assert!(!ptr.is_null(), "reallocation failed");
            let layout = Layout::from_size_align(size, block.layout.align()).unwrap();
            Block { ptr, layout, slot }
        }
    }
}

/// The names of the functions [`torture_sites!`](crate::torture_sites) defines.
pub const SITE_NAMES: [&str; WORKERS] =
    ["site_0", "site_1", "site_2", "site_3", "site_4", "site_5"];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n as u64) as usize
    }

    fn layout(&mut self) -> Layout {
        let align = ALIGNS[self.below(ALIGNS.len())];
        Layout::from_size_align(SIZES[self.below(SIZES.len())], align).unwrap()
    }
}

/// Allocates through slot `slot`'s site and counts the bytes as live.
fn allocate(site: Site, slot: usize, op: Op) -> Block {
    let old = match &op {
        Op::Realloc(block, _) => Some((block.slot, block.layout.size() as u64)),
        Op::Alloc(_) => None,
    };
    let block = site(op);
    if let Some((old_slot, old_size)) = old {
        TRUTH[old_slot].fetch_sub(old_size, Relaxed);
    }
    TRUTH[slot].fetch_add(block.layout.size() as u64, Relaxed);
    mark(&block);
    block
}

/// What a worker thread hands to its successor: its slot's blocks and generator.
struct WorkerState {
    slot: usize,
    site: Site,
    last_scope: Instant,
    kept: Vec<Block>,
    rng: Rng,
}

/// One worker thread's life: `ops` operations, then exit (its blocks go to the next).
fn work(mut state: WorkerState, ops: usize) -> WorkerState {
    let slot = state.slot;
    for _ in 0..ops {
        if STOP.load(Relaxed) {
            break;
        }
        let rng = &mut state.rng;
        match rng.below(100) {
            0..40 if state.kept.len() < MAX_KEPT => {
                let layout = rng.layout();
                state
                    .kept
                    .push(allocate(state.site, slot, Op::Alloc(layout)));
            }
            40..60 if !state.kept.is_empty() => {
                let i = rng.below(state.kept.len());
                let block = state.kept.swap_remove(i);
                let size = SIZES[rng.below(SIZES.len())];
                state
                    .kept
                    .push(allocate(state.site, slot, Op::Realloc(block, size)));
            }
            60..64 if !state.kept.is_empty() => {
                // Hand a block to whichever thread empties the mailbox next.
                let block = state.kept.swap_remove(rng.below(state.kept.len()));
                MAILBOX.lock().unwrap().push(block);
            }
            64..66 => {
                let mail: Vec<Block> = std::mem::take(&mut *MAILBOX.lock().unwrap());
                mail.into_iter().for_each(free);
            }
            66 if state.last_scope.elapsed() >= SCOPE_EVERY => {
                scoped(&mut state);
                state.last_scope = Instant::now();
            }
            _ if !state.kept.is_empty() => {
                let i = rng.below(state.kept.len());
                free(state.kept.swap_remove(i));
            }
            _ => {}
        }
    }
    state
}

/// Opens a scope, allocates, reallocates and frees inside it, and checks the scope's
/// counters exactly (scopes are exact in either mode). Its blocks then stay with the
/// worker.
fn scoped(state: &mut WorkerState) {
    const OPS: usize = 64;
    let mut inside = Vec::with_capacity(OPS);
    let scope = Scope::open().expect("scope");
    let (mut live, mut allocs) = (0i64, 0u64);
    {
        let _guard = scope.handle().enter();
        for _ in 0..OPS {
            let rng = &mut state.rng;
            if inside.is_empty() || rng.below(3) == 0 {
                let block = allocate(state.site, state.slot, Op::Alloc(rng.layout()));
                live += block.layout.size() as i64;
                allocs += 1;
                inside.push(block);
            } else if rng.below(2) == 0 {
                // A reallocation frees the old block and allocates the new one.
                let block = inside.swap_remove(rng.below(inside.len()));
                live -= block.layout.size() as i64;
                let size = SIZES[rng.below(SIZES.len())];
                let block = allocate(state.site, state.slot, Op::Realloc(block, size));
                live += block.layout.size() as i64;
                allocs += 1;
                inside.push(block);
            } else {
                let block = inside.swap_remove(rng.below(inside.len()));
                live -= block.layout.size() as i64;
                free(block);
            }
        }
    }
    let stats = scope.stats();
    assert_eq!(stats.live_bytes, live, "scope live bytes: {stats:?}");
    assert_eq!(stats.allocs, allocs, "scope allocations: {stats:?}");
    assert_eq!(stats.untracked_blocks, 0, "{stats:?}");
    let site_live: u64 = stats.sites.iter().map(|s| s.live_bytes).sum();
    assert_eq!(site_live as i64, live, "scope sites: {stats:?}");
    drop(scope);
    state.kept.extend(inside);
}

/// A forked child allocates at every alignment inside a scope, frees, and snapshots:
/// the tables must be usable (no lock inherited held) and count exactly.
#[inline(never)]
fn child_checks(site: Site) -> bool {
    let mut blocks = Vec::with_capacity(ALIGNS.len());
    let Ok(scope) = Scope::open() else {
        return false;
    };
    let mut expected = 0;
    {
        let _guard = scope.handle().enter();
        for (i, &align) in ALIGNS.iter().enumerate() {
            let layout = Layout::from_size_align(SIZES[i % SIZES.len()], align).unwrap();
            expected += layout.size() as i64;
            blocks.push(allocate(site, 0, Op::Alloc(layout)));
        }
    }
    let held = scope.stats();
    blocks.into_iter().for_each(free);
    let freed = scope.stats();
    let snapshot = leakwatch::snapshot();
    held.live_bytes == expected
        && held.allocs == ALIGNS.len() as u64
        && held.sites.iter().map(|s| s.live_bytes as i64).sum::<i64>() == expected
        && freed.live_bytes == 0
        && snapshot.overflow.replaced_entries == 0
}

/// Checks one snapshot taken while everything runs: no counter went negative (a wrapped
/// `u64` would be astronomically large).
fn check_running(snapshot: &Snapshot) {
    const ABSURD: u64 = 1 << 50;
    for site in &snapshot.sites {
        assert!(
            site.live_bytes < ABSURD && site.live_blocks < ABSURD as f64,
            "site {} went negative: {site:?}",
            site.id
        );
    }
    if snapshot.overflow.unread_threads == 0 {
        assert!(snapshot.process.live_bytes >= 0, "{:?}", snapshot.process);
    }
    assert_eq!(
        snapshot.overflow.untracked_blocks, 0,
        "{:?}",
        snapshot.overflow
    );
    assert_eq!(
        snapshot.overflow.replaced_entries, 0,
        "{:?}",
        snapshot.overflow
    );
    assert_eq!(
        snapshot.overflow.site_table_full_samples, 0,
        "{:?}",
        snapshot.overflow
    );
}

/// Live bytes of the sites whose stacks pass through each slot's function, symbolizing
/// every site once.
fn live_by_slot(snapshot: &Snapshot, symbolizer: &mut Symbolizer) -> [u64; WORKERS] {
    let mut live = [0; WORKERS];
    for (site, stack) in snapshot
        .sites
        .iter()
        .zip(crate::stacks_of(snapshot, symbolizer))
    {
        // The frame of the slot's function, wherever it is: release builds' line-tables-only
        // debug info names `perform` (inlined into it) without its module path, so it
        // does not read as this crate's runtime code.
        let slot = stack.into_iter().filter_map(|s| s.function).find_map(|f| {
            let name = f.rsplit("::").next().unwrap_or(&f);
            SITE_NAMES.iter().position(|&n| n == name)
        });
        if let Some(slot) = slot {
            live[slot] += site.live_bytes;
        }
    }
    live
}

/// What a torture run saw.
#[derive(Debug)]
pub struct Outcome {
    /// Per worker slot: the true live bytes and the snapshot's live bytes for its site.
    pub sites: [(u64, u64); WORKERS],
    /// Threads started (including replacements).
    pub threads: usize,
    /// Forked children that passed.
    pub forks: usize,
    /// Snapshots taken while running.
    pub snapshots: usize,
    /// The snapshot's site live bytes for every slot after everything was freed.
    pub after_free: [u64; WORKERS],
}

impl Outcome {
    /// What both modes require of a run of `duration`: every site back to exactly zero
    /// once everything was freed, threads that came and went, and a fork about every
    /// second that passed.
    pub fn assert_complete(&self, duration: Duration) {
        assert_eq!(self.after_free, [0; WORKERS], "{self:?}");
        assert!(self.threads > 2 * WORKERS, "no thread churn: {self:?}");
        assert!(
            self.forks as u64 >= duration.as_secs() / 2,
            "too few forks: {self:?}"
        );
    }
}

/// How long a torture run lasts: 60 s in release builds, 5 s in debug builds (both run
/// in CI), or `LEAKWATCH_TORTURE_SECS`.
pub fn duration() -> Duration {
    let default = if cfg!(debug_assertions) { 5 } else { 60 };
    let secs = std::env::var("LEAKWATCH_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// Runs the torture for `duration` with the worker slots' site functions `sites`, stops
/// everything, and reads the sites while every block is still live, then again once
/// all are freed.
pub fn run(duration: Duration, sites: [Site; WORKERS]) -> Outcome {
    let start = Instant::now();
    let mut threads = 0;
    let (snapshots, forks) = std::thread::scope(|s| {
        let snapshotter = s.spawn(|| {
            let mut taken = 0;
            while !STOP.load(Relaxed) {
                check_running(&leakwatch::snapshot());
                taken += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            taken
        });
        let forker = s.spawn(|| {
            let mut forks = 0;
            while !STOP.load(Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                in_forked_child(Duration::from_secs(20), || child_checks(sites[0]));
                forks += 1;
            }
            forks
        });
        // Thread churn: each worker lives for a random number of operations; its
        // successor takes over its slot and its blocks.
        let mut rng = Rng(0x7041_7e57);
        let mut spawn = |state: WorkerState, rng: &mut Rng| {
            let ops = 500 + rng.below(5_000);
            threads += 1;
            std::thread::spawn(move || work(state, ops))
        };
        let mut workers: Vec<_> = (0..WORKERS)
            .map(|slot| {
                let state = WorkerState {
                    slot,
                    site: sites[slot],
                    last_scope: Instant::now(),
                    kept: Vec::with_capacity(MAX_KEPT + 1),
                    rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((slot as u64 + 1) << 32)),
                };
                Some(spawn(state, &mut rng))
            })
            .collect();
        while start.elapsed() < duration {
            for worker in &mut workers {
                if worker.as_ref().is_some_and(|w| w.is_finished()) {
                    let state = worker.take().unwrap().join().expect("worker panicked");
                    *worker = Some(spawn(state, &mut rng));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        STOP.store(true, Relaxed);
        let states: Vec<WorkerState> = workers
            .into_iter()
            .map(|w| w.unwrap().join().expect("worker panicked"))
            .collect();
        let snapshots = snapshotter.join().expect("snapshot thread panicked");
        let forks = forker.join().expect("fork thread panicked");
        KEPT.lock().unwrap().extend(states);
        (snapshots, forks)
    });
    let mut symbolizer = Symbolizer::new();
    let snapshot = leakwatch::snapshot();
    check_running(&snapshot);
    let tracked = live_by_slot(&snapshot, &mut symbolizer);
    let sites = std::array::from_fn(|slot| (TRUTH[slot].load(Relaxed), tracked[slot]));
    for state in KEPT.lock().unwrap().drain(..) {
        state.kept.into_iter().for_each(free);
    }
    std::mem::take(&mut *MAILBOX.lock().unwrap())
        .into_iter()
        .for_each(free);
    let after_free = live_by_slot(&leakwatch::snapshot(), &mut symbolizer);
    Outcome {
        sites,
        threads,
        forks,
        snapshots,
        after_free,
    }
}

/// The workers' blocks between the end of the run and the final reading.
static KEPT: Mutex<Vec<WorkerState>> = Mutex::new(Vec::new());
