//! Call-stack capture: the return addresses above leakwatch's own frames.
//!
//! Three unwinders:
//! - **Frame pointers** (about 51 ns for 20 frames; docs/BENCHMARKS.md): follow the
//!   chain of saved frame pointers, checking every step against the thread's stack bounds (each frame must lie inside
//!   `[current sp, stack top)`, be aligned, and sit strictly above the previous one), so a
//!   frame without a frame pointer ends or garbles the walk but can never fault or loop.
//!   Needs `-C force-frame-pointers=yes` (Rust's prebuilt std keeps frame pointers).
//! - **Cached DWARF** (`unwind.rs`, x86_64 Linux): leakwatch's own DWARF unwinder, each
//!   return address's rule computed once from `.eh_frame` and then looked up in a
//!   lock-free cache (about 360 ns for 24 frames, 20x faster than `backtrace`).
//!   Correct without frame pointers; a stack it cannot unwind is
//!   captured by `backtrace` instead (and counted: [`SLOW_CAPTURES`]).
//! - **`backtrace::trace`** (libgcc's DWARF unwinder, about 2.4 µs for 20 frames): correct
//!   without frame pointers, on every platform.
//!
//! `Auto` probes once, on the first sample, whether a frame-pointer walk of a known call
//! chain agrees with the DWARF unwinder, and uses frame pointers only if it does;
//! otherwise the cached DWARF unwinder where it runs, else `backtrace`.
//!
//! Both skip leakwatch's own frames the same way: the allocator entry point `F` (the
//! function the hot path is inlined into: `LeakWatch::alloc`, `__rust_alloc`, or the
//! user's own function when those are inlined into it) reads its stack pointer, and the
//! stack starts at the return address of `F`'s call into leakwatch's cold path, so the
//! first frame is always in `F` and the user's function is never skipped.

use crate::sites::FrameHasher;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Hard upper bound on the configurable maximum depth.
pub(crate) const MAX_DEPTH_LIMIT: usize = 256;

pub use leakwatch_types::Unwinder;

const AUTO: u8 = 0;
const FRAME_POINTERS: u8 = 1;
const BACKTRACE: u8 = 2;
const CACHED_DWARF: u8 = 3;

/// Stacks captured by `backtrace` while the cached DWARF unwinder was chosen.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use crate::unwind::{RULES_COMPUTED, SLOW_CAPTURES};

/// Stack frames at or above this value are scope markers (`scope.rs`), not return
/// addresses.
pub(crate) const SCOPE_FRAME: u64 = 0xFFFF_0000_0000_0000;
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) static SLOW_CAPTURES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) static RULES_COMPUTED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

static UNWINDER: AtomicU8 = AtomicU8::new(AUTO);

pub(crate) fn set_unwinder(unwinder: Unwinder) {
    let value = match unwinder {
        Unwinder::Auto => AUTO,
        Unwinder::FramePointers => FRAME_POINTERS,
        Unwinder::Backtrace => BACKTRACE,
        Unwinder::CachedDwarf if cached_dwarf_available() => CACHED_DWARF,
        Unwinder::CachedDwarf => BACKTRACE,
        // `Unwinder` is non-exhaustive: an unwinder this crate does not know probes.
        _ => AUTO,
    };
    UNWINDER.store(value, Relaxed);
}

/// The unwinder in use (`Auto` until the first sample has probed).
pub(crate) fn unwinder() -> Unwinder {
    match UNWINDER.load(Relaxed) {
        FRAME_POINTERS => Unwinder::FramePointers,
        BACKTRACE => Unwinder::Backtrace,
        CACHED_DWARF => Unwinder::CachedDwarf,
        _ => Unwinder::Auto,
    }
}

/// Whether the cached DWARF unwinder runs here.
fn cached_dwarf_available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        crate::unwind::available()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Room for one captured stack. Left uninitialised: zeroing 2 KiB per sample would cost
/// more than the walk itself. Kept apart from [`Stack`]'s initialised fields so the
/// compiler does not merge it into one big `memset`.
pub(crate) type StackBuffer = [MaybeUninit<u64>; MAX_DEPTH_LIMIT];

/// A fresh buffer for [`Stack::new`].
#[inline(always)]
pub(crate) fn stack_buffer() -> StackBuffer {
    [MaybeUninit::uninit(); MAX_DEPTH_LIMIT]
}

/// A captured stack: return addresses, innermost first, in a caller-provided buffer.
pub(crate) struct Stack<'a> {
    frames: &'a mut StackBuffer,
    len: usize,
    max: usize,
    truncated: bool,
    hasher: FrameHasher,
}

impl<'a> Stack<'a> {
    pub(crate) fn new(frames: &'a mut StackBuffer, max_depth: usize) -> Self {
        Stack {
            frames,
            len: 0,
            max: max_depth.clamp(1, MAX_DEPTH_LIMIT),
            truncated: false,
            hasher: FrameHasher::new(),
        }
    }

    pub(crate) fn frames(&self) -> &[u64] {
        // SAFETY: `push` initialised every element below `len`, and `MaybeUninit<u64>`
        // has the layout of `u64`.
        unsafe { std::slice::from_raw_parts(self.frames.as_ptr().cast::<u64>(), self.len) }
    }

    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }

    /// The stack's hash for the site table (`sites::hash_frames` of its frames).
    pub(crate) fn hash(&self) -> u64 {
        self.hasher.finish(self.truncated)
    }

    /// Appends a frame beyond the maximum depth (the caller sized the stack one short
    /// to leave room): a scope's marker frame.
    pub(crate) fn push_marker(&mut self, marker: u64) {
        if self.len < MAX_DEPTH_LIMIT {
            self.frames[self.len] = MaybeUninit::new(marker);
            self.len += 1;
            self.hasher.add(marker);
        }
    }

    /// Drops every frame (a walk that must start over with another unwinder).
    fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
        self.hasher = FrameHasher::new();
    }

    /// Appends a frame; returns false once the stack is full (and marks it truncated).
    fn push(&mut self, addr: u64) -> bool {
        if self.len >= self.max {
            self.truncated = true;
            return false;
        }
        self.frames[self.len] = MaybeUninit::new(addr);
        self.len += 1;
        self.hasher.add(addr);
        true
    }
}

/// The current stack pointer. Inlined, so it reads the caller's stack pointer.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; no memory access, no side effects.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; no memory access, no side effects.
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let marker = 0u8;
        sp = std::hint::black_box(&marker) as *const u8 as usize;
    }
    sp
}

#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; no memory access, no side effects.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; no memory access, no side effects.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Captures the stack of the code that called the allocator.
///
/// `above_sp` is the stack pointer read in the allocator entry point: frames at or below
/// it are leakwatch's own and are skipped. `(stack_lo, stack_hi)` are the thread's stack
/// bounds (`(0, 0)` when unknown, which rules out the frame-pointer walk).
#[inline(never)]
pub(crate) fn capture(stack: &mut Stack, above_sp: usize, stack_lo: usize, stack_hi: usize) {
    let mut mode = UNWINDER.load(Relaxed);
    if mode == AUTO {
        mode = probe(stack_lo, stack_hi);
        UNWINDER.store(mode, Relaxed);
    }
    capture_with(mode, stack, above_sp, stack_lo, stack_hi);
}

/// [`capture`] with a given unwinder (`FRAME_POINTERS`, `CACHED_DWARF` or `BACKTRACE`).
#[inline(always)]
fn capture_with(mode: u8, stack: &mut Stack, above_sp: usize, stack_lo: usize, stack_hi: usize) {
    let sp = stack_pointer();
    let on_known_stack = stack_lo < sp && sp < stack_hi;
    if mode == FRAME_POINTERS && on_known_stack {
        walk_frame_pointers(stack, frame_pointer(), above_sp, sp, stack_hi);
    } else if mode == CACHED_DWARF {
        if !(on_known_stack && walk_cached_dwarf(stack, above_sp, stack_hi)) {
            SLOW_CAPTURES.fetch_add(1, Relaxed);
            walk_dwarf(stack, above_sp);
        }
    } else {
        walk_dwarf(stack, above_sp);
    }
}

/// The cached DWARF walk (`unwind.rs`): the same frames as [`walk_dwarf`]. False (and
/// the stack left empty) when only the slow unwinder can capture this stack.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn walk_cached_dwarf(stack: &mut Stack, above_sp: usize, stack_hi: usize) -> bool {
    let walked = crate::unwind::walk(above_sp, stack_hi, &mut |ip| stack.push(ip));
    if walked == crate::unwind::Walk::Slow {
        stack.clear();
        return false;
    }
    true
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn walk_cached_dwarf(_: &mut Stack, _: usize, _: usize) -> bool {
    false
}

/// Follows saved frame pointers from `fp`. Keeps return addresses from the first frame
/// record whose saved frame pointer is at or above `above_sp` (the record of the call
/// made by the allocator entry point `F`, so its return address lies in `F`) upwards.
/// Every frame record read lies in `[sp, stack_hi)`.
fn walk_frame_pointers(
    stack: &mut Stack,
    mut fp: usize,
    above_sp: usize,
    sp: usize,
    stack_hi: usize,
) {
    const WORD: usize = size_of::<usize>();
    // Work on locals: stores into the frame buffer would otherwise force the compiler to
    // reload and store `len` and the hash state on every frame.
    let (mut len, mut hasher, max) = (stack.len, stack.hasher, stack.max);
    let frames = &mut stack.frames[..max];
    let limit = stack_hi.saturating_sub(2 * WORD);
    let mut keeping = false;
    let mut truncated = false;
    while fp >= sp && fp % WORD == 0 && fp <= limit {
        // SAFETY: `fp` is aligned and `[fp, fp + 2 words)` lies within `[sp, stack_hi)`:
        // the live part of this thread's stack, which is mapped and readable.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + WORD) as *const usize)) };
        keeping = keeping || next >= above_sp;
        if keeping {
            if ret == 0 {
                break;
            }
            let Some(slot) = frames.get_mut(len) else {
                truncated = true;
                break;
            };
            *slot = MaybeUninit::new(ret as u64);
            hasher.add(ret as u64);
            len += 1;
        }
        if next <= fp {
            break; // frames must move strictly up the stack: no loops
        }
        fp = next;
    }
    stack.len = len;
    stack.hasher = hasher;
    stack.truncated |= truncated;
}

/// DWARF unwinding through `backtrace`. Keeps the frames from the first one whose
/// reported stack pointer is at or above `above_sp` upwards. With libgcc that is the
/// allocator entry point `F` itself (its reported address is the return address of its
/// call into leakwatch); an unwinder that reports canonical frame addresses instead
/// makes it the frame of `F`'s callee, which adds one leakwatch frame but loses nothing.
fn walk_dwarf(stack: &mut Stack, above_sp: usize) {
    let mut passed_entry = false;
    let mut skipped = 0usize;
    let mut raw = [0u64; 32];
    // SAFETY: `trace_unsynchronized` is unsafe only because some platforms' unwinders are
    // not thread-safe (Windows dbghelp). On unix it calls libgcc/libunwind's
    // `_Unwind_Backtrace`, which is safe to call from several threads at once. Taking the
    // synchronized `trace` would hold a lock across allocations and fork.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let sp = frame.sp() as usize;
            if passed_entry {
                let ip = frame.ip() as u64;
                return ip == 0 || stack.push(ip);
            }
            if sp >= above_sp && sp != 0 {
                passed_entry = true;
                return stack.push(frame.ip() as u64);
            }
            // Remember the first frames in case the unwinder reports no stack pointers.
            if skipped < raw.len() {
                raw[skipped] = frame.ip() as u64;
            }
            skipped += 1;
            true
        });
    }
    if !passed_entry {
        // No usable stack pointers: keep everything rather than nothing.
        for &ip in raw.iter().take(skipped) {
            if !stack.push(ip) {
                break;
            }
        }
    }
}

/// Benchmark support: captures the caller's whole stack with `unwinder` into `out`.
#[inline(never)]
pub(crate) fn capture_for_bench(
    unwinder: Unwinder,
    out: &mut [u64],
    stack_lo: usize,
    stack_hi: usize,
) -> usize {
    let mode = match unwinder {
        Unwinder::Backtrace => BACKTRACE,
        Unwinder::CachedDwarf if cached_dwarf_available() => CACHED_DWARF,
        Unwinder::CachedDwarf => BACKTRACE,
        _ => FRAME_POINTERS,
    };
    let mut buffer = stack_buffer();
    let mut stack = Stack::new(&mut buffer, out.len());
    capture_with(mode, &mut stack, 0, stack_lo, stack_hi);
    let frames = stack.frames();
    out[..frames.len()].copy_from_slice(frames);
    frames.len()
}

/// Test support: the caller's stack (from its return address into the caller's caller
/// up) captured by the cached DWARF unwinder into `fast` and by `backtrace` into `slow`,
/// skipping the same frames; the lengths, `None` for `fast` when only the slow unwinder
/// could capture it (or the cached one does not run here).
#[inline(never)]
pub(crate) fn capture_both(
    fast: &mut [u64],
    slow: &mut [u64],
    stack_hi: usize,
) -> (Option<usize>, usize) {
    // Frames whose stack pointer is at or below this function's are this function's and
    // its callees': both walks skip them and start at this function's caller.
    let above_sp = stack_pointer() + 1;
    let (mut a, mut b) = (stack_buffer(), stack_buffer());
    let mut by_cache = Stack::new(&mut a, fast.len());
    let walked = cached_dwarf_available() && walk_cached_dwarf(&mut by_cache, above_sp, stack_hi);
    let mut by_backtrace = Stack::new(&mut b, slow.len());
    walk_dwarf(&mut by_backtrace, above_sp);
    let (cached, traced) = (by_cache.frames(), by_backtrace.frames());
    fast[..cached.len()].copy_from_slice(cached);
    slow[..traced.len()].copy_from_slice(traced);
    (walked.then_some(cached.len()), traced.len())
}

/// Decides whether frame pointers can be trusted: walks a known call chain both ways and
/// compares. Runs once, on the first sample.
#[cold]
fn probe(stack_lo: usize, stack_hi: usize) -> u8 {
    if probe_outer(stack_lo, stack_hi) {
        FRAME_POINTERS
    } else if cached_dwarf_available() {
        CACHED_DWARF
    } else {
        BACKTRACE
    }
}

#[inline(never)]
fn probe_outer(stack_lo: usize, stack_hi: usize) -> bool {
    let agree = probe_inner(std::hint::black_box(stack_lo), stack_hi);
    std::hint::black_box(agree)
}

#[inline(never)]
fn probe_inner(stack_lo: usize, stack_hi: usize) -> bool {
    let sp = stack_pointer();
    if !(stack_lo < sp && sp < stack_hi) {
        return false;
    }
    // Both walks skip the frames below this function's stack pointer, as a capture skips
    // leakwatch's own: both must then start at this function's callers.
    let (mut fp_buffer, mut dwarf_buffer) = (stack_buffer(), stack_buffer());
    let mut by_fp = Stack::new(&mut fp_buffer, 8);
    walk_frame_pointers(&mut by_fp, frame_pointer(), sp, sp, stack_hi);
    let mut by_dwarf = Stack::new(&mut dwarf_buffer, 16);
    walk_dwarf(&mut by_dwarf, sp);
    agrees(by_fp.frames(), by_dwarf.frames())
}

/// True when the frame-pointer walk's first three frames are the DWARF unwinder's first
/// three, or its three after the first: both walks skipped the frames below the probe's
/// stack pointer, and DWARF unwinding reports the probing function itself first (its
/// address is that of its call into the unwinder) where the frame-pointer walk starts
/// at its caller.
///
/// Matching them anywhere in the DWARF stack is not enough: in a build without frame
/// pointers the frame-pointer register still holds the frame pointer of some outer
/// frame that has one (Rust's prebuilt standard library keeps them, e.g. the thread's
/// start), so the walk yields a true but much shorter stack: the thread's start, without
/// the frames of the code that allocated.
fn agrees(by_fp: &[u64], by_dwarf: &[u64]) -> bool {
    const N: usize = 3;
    by_fp.len() >= N && (0..=1).any(|skip| by_dwarf.get(skip..skip + N) == Some(&by_fp[..N]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_needs_consecutive_frames() {
        assert!(agrees(&[2, 3, 4, 9], &[1, 2, 3, 4, 5, 6]));
        assert!(agrees(&[1, 2, 3], &[1, 2, 3, 4, 5, 6]));
        assert!(!agrees(&[2, 4, 3], &[1, 2, 3, 4, 5, 6]));
        // Frames further out: a stale frame pointer of an outer frame.
        assert!(!agrees(&[4, 5, 6], &[1, 2, 3, 4, 5, 6]));
        assert!(!agrees(&[3], &[3]));
    }

    /// Captures this function's callers with both unwinders.
    #[inline(never)]
    fn capture_both_here() -> (Vec<u64>, Vec<u64>) {
        let (_, hi) = crate::os::thread_stack_bounds();
        let sp = stack_pointer();
        let (mut a, mut b) = (stack_buffer(), stack_buffer());
        let mut by_fp = Stack::new(&mut a, 64);
        walk_frame_pointers(&mut by_fp, frame_pointer(), sp, sp, hi);
        let mut by_dwarf = Stack::new(&mut b, 64);
        walk_dwarf(&mut by_dwarf, sp);
        (by_fp.frames().to_vec(), by_dwarf.frames().to_vec())
    }

    #[test]
    fn both_unwinders_see_the_callers() {
        // This crate is built with frame pointers by the workspace's .cargo/config.toml.
        let (fp, dwarf) = capture_both_here();
        assert!(fp.len() >= 3, "frame-pointer walk too short: {fp:x?}");
        assert!(agrees(&fp, &dwarf), "fp {fp:x?}\ndwarf {dwarf:x?}");
        let (lo, hi) = crate::os::thread_stack_bounds();
        assert!(probe_outer(lo, hi));
    }

    /// Captures with the cached DWARF unwinder and `backtrace`, `depth` frames deeper,
    /// through a closure and a generic function.
    #[inline(never)]
    fn both_at_depth<T: Copy + std::fmt::Debug>(depth: u32, tag: T) -> (Vec<u64>, Vec<u64>) {
        if depth == 0 {
            let (_, hi) = crate::os::thread_stack_bounds();
            let capture = || {
                let (mut fast, mut slow) = ([0u64; 128], [0u64; 128]);
                let (n, m) = capture_both(&mut fast, &mut slow, hi);
                let n = n.expect("the cached unwinder fell back");
                (fast[..n].to_vec(), slow[..m].to_vec())
            };
            return std::hint::black_box(capture)();
        }
        let r = both_at_depth(depth - 1, tag);
        std::hint::black_box(tag);
        r
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn the_cached_unwinder_gives_backtraces_frames() {
        for depth in [0, 1, 5, 20, 60] {
            // Twice: computed rules, then cached ones.
            for _ in 0..2 {
                let (fast, slow) = both_at_depth(depth, depth as u8);
                assert!(fast.len() > depth as usize, "{fast:x?}");
                assert_eq!(fast, slow, "depth {depth}");
            }
        }
        // Truncated to the buffer alike.
        let (_, hi) = crate::os::thread_stack_bounds();
        let (mut fast, mut slow) = ([0u64; 3], [0u64; 3]);
        let (n, m) = capture_both(&mut fast, &mut slow, hi);
        assert_eq!((n, m), (Some(3), 3));
        assert_eq!(fast, slow);
        // On other threads too (their stacks end in the thread's start).
        let threads: Vec<_> = (0..4)
            .map(|i| std::thread::spawn(move || both_at_depth(i * 3, i)))
            .collect();
        for t in threads {
            let (fast, slow) = t.join().unwrap();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn an_unknown_stack_top_falls_back() {
        // No stack bounds to check reads against: the cached walk refuses.
        let (mut fast, mut slow) = ([0u64; 16], [0u64; 16]);
        let (n, m) = capture_both(&mut fast, &mut slow, 0);
        assert_eq!(n, None);
        assert!(m > 0);
    }

    #[test]
    fn the_walk_stops_at_bad_frames() {
        let mut buffer = stack_buffer();
        let mut stack = Stack::new(&mut buffer, 16);
        // A frame pointer outside the stack bounds yields nothing (and reads nothing).
        walk_frame_pointers(&mut stack, 0x10, 0, 0x1000, 0x2000);
        assert!(stack.frames().is_empty());
        // A chain that does not move up the stack stops after one frame.
        let words: [usize; 4] = [0, 0xabc, 0, 0];
        let fp = words.as_ptr() as usize;
        let mut buffer = stack_buffer();
        let mut stack = Stack::new(&mut buffer, 16);
        walk_frame_pointers(&mut stack, fp, 0, fp, fp + 32);
        assert_eq!(stack.frames(), &[0xabc]);
    }

    #[test]
    fn depth_is_bounded_and_truncation_reported() {
        let mut buffer = stack_buffer();
        let mut stack = Stack::new(&mut buffer, 2);
        assert!(stack.push(1) && stack.push(2));
        assert!(!stack.push(3));
        assert!(stack.truncated());
        assert_eq!(stack.frames(), &[1, 2]);
        assert_eq!(stack.hash(), crate::sites::hash_frames(&[1, 2], true));
    }
}
