//! DWARF unwinding with cached rules: leakwatch's own unwinder for code built without
//! frame pointers (x86_64 Linux with glibc 2.35 or later).
//!
//! A frame is unwound by one rule: the canonical frame address (CFA) is `rsp` or `rbp`
//! plus an offset, the return address is the word below the CFA, and the caller's `rbp`
//! is either unchanged or saved at a fixed offset from the CFA. The rule of an address is
//! computed once, from the module's `.eh_frame_hdr` search table and the `.eh_frame`
//! entry it points to (interpreted by `gimli` with fixed-size storage: no allocation),
//! and kept in a fixed, lock-free cache keyed by the address; a capture whose frames are
//! all cached is a hash lookup and two or three stack reads per frame.
//!
//! The module of an address is found with glibc's `_dl_find_object` (lock-free, made
//! for unwinders, and current: a module loaded by `dlopen` is found like any other).
//! It is looked up once, at the first capture, with `dlsym`; without it (an older glibc)
//! [`available`] is false and stacks come from `backtrace`.
//!
//! Anything this unwinder does not follow makes the whole capture go to the slow
//! unwinder (`backtrace`, i.e. libgcc), counted in [`SLOW_CAPTURES`]: an address in no
//! loaded module (code generated at run time), a rule the compact form cannot hold (a
//! CFA computed by a DWARF expression, as in PLT stubs and signal trampolines; a
//! register other than `rsp`/`rbp` as the CFA's base; a return address not below the
//! CFA), a signal frame, and a stack read outside the thread's stack.
//!
//! The cache is never invalidated: rules are facts about code, and code does not change
//! while a module is loaded. A module unloaded with `dlclose` and another loaded at the
//! same addresses would find the old module's rules until they are evicted (such stale
//! rules only misplace frames: every read stays within the thread's stack).
//!
//! Inside the allocator: nothing here allocates, locks, or panics on bad input, and every
//! loop is bounded (frames by [`MAX_STEPS`], rule evaluation by the entry's length,
//! cache probes by one slot).

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow, X86_64,
};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::*, fence};

/// Captures made by the slow unwinder while this one was chosen.
pub(crate) static SLOW_CAPTURES: AtomicU64 = AtomicU64::new(0);
/// Rules computed from `.eh_frame` (cache misses).
pub(crate) static RULES_COMPUTED: AtomicU64 = AtomicU64::new(0);

/// At most this many frames are unwound per capture, kept or skipped.
const MAX_STEPS: usize = crate::stack::MAX_DEPTH_LIMIT + 64;

// ---------------------------------------------------------------------------------------
// Finding an address's module: `_dl_find_object`.

/// glibc's `struct dl_find_object` (2.35).
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: usize,
    map_end: usize,
    link_map: usize,
    eh_frame: usize,
    reserved: [u64; 7],
}

type FindObject = unsafe extern "C" fn(usize, *mut DlFindObject) -> libc::c_int;

const UNRESOLVED: u8 = 0;
const RESOLVED: u8 = 1;
const MISSING: u8 = 2;
static FIND_STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
static FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

/// Whether this unwinder can run here (looks `_dl_find_object` up on the first call).
pub(crate) fn available() -> bool {
    match FIND_STATE.load(Acquire) {
        RESOLVED => true,
        MISSING => false,
        _ => resolve(),
    }
}

#[cold]
fn resolve() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other
    // preconditions; glibc's dlsym uses the C heap, never the Rust global allocator.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
    if f.is_null() {
        FIND_STATE.store(MISSING, Release);
        return false;
    }
    FIND_OBJECT.store(f as usize, Relaxed);
    FIND_STATE.store(RESOLVED, Release);
    true
}

/// What `_dl_find_object` reports for `at`: the mapping holding it, `[start, end)`, and
/// its module's `.eh_frame_hdr`.
///
/// The mapping is the whole module when the loader mapped its segments contiguously,
/// but only the segment holding `at` when they have gaps between them (glibc then
/// records each segment apart): a module whose read-only segment ends a few bytes
/// short of a page boundary has its `.eh_frame_hdr` outside the mapping reported for
/// its code. So the unwind tables are bounded by the mapping reported for their own
/// address ([`find_module`], [`extent_from`]), never by the code's.
fn find_object(at: usize) -> Option<(usize, usize, usize)> {
    let f = FIND_OBJECT.load(Relaxed);
    if FIND_STATE.load(Acquire) != RESOLVED || f == 0 {
        return None;
    }
    // SAFETY: `f` is glibc's `_dl_find_object` (resolved by `dlsym` above), whose
    // signature is `int (void *, struct dl_find_object *)`.
    let find: FindObject = unsafe { std::mem::transmute::<usize, FindObject>(f) };
    let mut out = DlFindObject {
        flags: 0,
        map_start: 0,
        map_end: 0,
        link_map: 0,
        eh_frame: 0,
        reserved: [0; 7],
    };
    // SAFETY: `out` is a valid, writable `struct dl_find_object`; `_dl_find_object`
    // only reads the loader's tables (lock-free, async-signal-safe).
    let found = unsafe { find(at, &mut out) } == 0;
    (found && out.map_start <= at && at < out.map_end && out.eh_frame != 0).then_some((
        out.map_start,
        out.map_end,
        out.eh_frame,
    ))
}

/// The end of the mapping holding `at` (so `[at, end)` may be read), when the loader
/// places `at` in the module whose `.eh_frame_hdr` is `hdr` (its word on both, so that
/// a stray pointer never makes a slice; [`find_object`] checks `start <= at < end`).
fn extent_from(at: usize, hdr: usize) -> Option<usize> {
    let (_, end, module_hdr) = find_object(at)?;
    (module_hdr == hdr).then_some(end)
}

/// The module holding `pc`: its `.eh_frame_hdr` and the end of the mapping holding it.
fn find_module(pc: usize) -> Option<(usize, usize)> {
    let (start, end, hdr) = find_object(pc)?;
    if start <= hdr && hdr < end {
        return Some((hdr, end));
    }
    // A module with gaps between its segments: the table is in another one.
    Some((hdr, extent_from(hdr, hdr)?))
}

// ---------------------------------------------------------------------------------------
// Rules.

/// One address's unwind rule, packed into a word (never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule(u64);

const FROM_RBP: u64 = 1 << 32;
const RBP_SAVED: u64 = 1 << 33;
const END: u64 = 1 << 34;
const PRESENT: u64 = 1 << 63;

impl Rule {
    fn new(cfa_from_rbp: bool, cfa_offset: i32, rbp_saved_at: Option<i16>) -> Rule {
        let mut word = PRESENT | u64::from(cfa_offset as u32);
        if cfa_from_rbp {
            word |= FROM_RBP;
        }
        if let Some(at) = rbp_saved_at {
            word |= RBP_SAVED | (u64::from(at as u16) << 40);
        }
        Rule(word)
    }

    /// The outermost frame: its return address is undefined.
    const fn end() -> Rule {
        Rule(PRESENT | END)
    }

    fn is_end(self) -> bool {
        self.0 & END != 0
    }

    fn cfa_from_rbp(self) -> bool {
        self.0 & FROM_RBP != 0
    }

    fn cfa_offset(self) -> i32 {
        self.0 as u32 as i32
    }

    fn rbp_saved_at(self) -> Option<i16> {
        (self.0 & RBP_SAVED != 0).then_some((self.0 >> 40) as u16 as i16)
    }
}

/// What is known about an address.
enum Lookup {
    Rule(Rule),
    /// In a module, but no unwind information: the stack ends here (as in libgcc).
    NoInfo,
    /// Only the slow unwinder can go on.
    Slow,
}

/// gimli's rule storage, inline: no allocation while evaluating. x86_64 code saves at
/// most its callee-saved registers, the return address and the frame pointer.
struct InlineRules;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for InlineRules {
    type Rules = [(Register, RegisterRule<T>); 16];
    type Stack = [UnwindTableRow<T, Self>; 2];
}

#[cold]
#[inline(never)]
fn compute(at: usize) -> Lookup {
    let Some((hdr_at, hdr_end)) = find_module(at) else {
        return Lookup::Slow;
    };
    match evaluate(at, hdr_at, hdr_end) {
        Ok(Some(rule)) => {
            RULES_COMPUTED.fetch_add(1, Relaxed);
            cache_put(at, rule);
            Lookup::Rule(rule)
        }
        Ok(None) => Lookup::Slow,
        Err(gimli::Error::NoUnwindInfoForAddress) => Lookup::NoInfo,
        Err(_) => Lookup::Slow,
    }
}

/// The compact rule at `at` from the module whose `.eh_frame_hdr` is at `hdr_at`, in a
/// mapping that ends at `hdr_end`: `Ok(None)` when the rule has no compact form or the
/// tables are not where the loader mapped them.
fn evaluate(at: usize, hdr_at: usize, hdr_end: usize) -> gimli::Result<Option<Rule>> {
    // SAFETY: `_dl_find_object` reported `[hdr_at, hdr_end)` as part of a loaded
    // module's mapping, which stays mapped while code of that module is on the stack
    // (it is: `at` is one of its return addresses). The eh_frame data is read-only and
    // parsed only as far as its own lengths say.
    let hdr_bytes = unsafe { std::slice::from_raw_parts(hdr_at as *const u8, hdr_end - hdr_at) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_at as u64);
    let hdr = EhFrameHdr::new(hdr_bytes, NativeEndian).parse(&bases, 8)?;
    let eh_frame_at = hdr.eh_frame_ptr().direct()? as usize;
    // `.eh_frame` usually shares the header's mapping; otherwise the loader must
    // place it in one of the same module.
    let frame_end = if hdr_at <= eh_frame_at && eh_frame_at < hdr_end {
        hdr_end
    } else {
        match extent_from(eh_frame_at, hdr_at) {
            Some(end) => end,
            None => return Ok(None),
        }
    };
    // SAFETY: `[eh_frame_at, frame_end)` lies in a mapping `_dl_find_object` reported
    // for this module (the header's, or its own), as above.
    let frame_bytes =
        unsafe { std::slice::from_raw_parts(eh_frame_at as *const u8, frame_end - eh_frame_at) };
    let eh_frame = EhFrame::new(frame_bytes, NativeEndian);
    let bases = bases.set_eh_frame(eh_frame_at as u64);
    let Some(table) = hdr.table() else {
        return Ok(None);
    };
    let fde = table.fde_for_address(&eh_frame, &bases, at as u64, |section, bases, offset| {
        section.cie_from_offset(bases, offset)
    })?;
    if fde.is_signal_trampoline() {
        return Ok(None);
    }
    let mut ctx = UnwindContext::<usize, InlineRules>::new_in();
    let row = fde.unwind_info_for_address(&eh_frame, &bases, &mut ctx, at as u64)?;
    Ok(compact(row))
}

/// The compact form of a row, if it has one.
fn compact(row: &UnwindTableRow<usize, InlineRules>) -> Option<Rule> {
    match row.register(X86_64::RA) {
        RegisterRule::Undefined => return Some(Rule::end()),
        RegisterRule::Offset(-8) => {}
        _ => return None,
    }
    let (from_rbp, offset) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
            (false, offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
            (true, offset)
        }
        _ => return None,
    };
    let offset = i32::try_from(offset).ok()?;
    let rbp = match row.register(X86_64::RBP) {
        // Unmentioned (gimli reports it undefined) or explicitly the same: unchanged, as
        // libgcc treats both.
        RegisterRule::Undefined | RegisterRule::SameValue => None,
        RegisterRule::Offset(at) => Some(i16::try_from(at).ok()?),
        _ => return None,
    };
    Some(Rule::new(from_rbp, offset, rbp))
}

// ---------------------------------------------------------------------------------------
// The cache: direct-mapped, one slot per hash, each slot its own sequence lock.

const CACHE_BITS: u32 = 12;
const CACHE_SLOTS: usize = 1 << CACHE_BITS;
/// Addresses are user-space (below 2^47); the key word's top 16 bits are the slot's
/// sequence number, odd while a writer fills the slot.
const ADDR_MASK: u64 = (1 << 48) - 1;
const SEQ_ONE: u64 = 1 << 48;

struct Slot {
    key: AtomicU64,
    rule: AtomicU64,
}

static CACHE: [Slot; CACHE_SLOTS] = [const {
    Slot {
        key: AtomicU64::new(0),
        rule: AtomicU64::new(0),
    }
}; CACHE_SLOTS];

fn slot(at: usize) -> &'static Slot {
    let hash = (at as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_BITS);
    &CACHE[hash as usize & (CACHE_SLOTS - 1)]
}

#[inline(always)]
fn cache_get(at: usize) -> Option<Rule> {
    let slot = slot(at);
    let key = slot.key.load(Acquire);
    if key & ADDR_MASK != at as u64 || key & SEQ_ONE != 0 || at == 0 {
        return None;
    }
    let rule = slot.rule.load(Relaxed);
    fence(Acquire);
    (slot.key.load(Relaxed) == key && rule != 0).then_some(Rule(rule))
}

fn cache_put(at: usize, rule: Rule) {
    if at == 0 || at as u64 > ADDR_MASK {
        return;
    }
    let slot = slot(at);
    let key = slot.key.load(Relaxed);
    if key & SEQ_ONE != 0 {
        return; // another writer is filling it: skip (this is only a cache)
    }
    let seq = key & !ADDR_MASK;
    let writing = seq.wrapping_add(SEQ_ONE);
    if slot
        .key
        .compare_exchange(key, writing, Acquire, Relaxed)
        .is_err()
    {
        return;
    }
    fence(Release);
    slot.rule.store(rule.0, Relaxed);
    slot.key
        .store(writing.wrapping_add(SEQ_ONE) | at as u64, Release);
}

#[inline(always)]
fn rule_for(at: usize) -> Lookup {
    match cache_get(at) {
        Some(rule) => Lookup::Rule(rule),
        None => compute(at),
    }
}

// ---------------------------------------------------------------------------------------
// The walk.

/// How a walk ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The stack is complete (or `push` refused more frames).
    Done,
    /// Only the slow unwinder can capture this stack; what was pushed must be dropped.
    Slow,
}

/// Unwinds the calling thread's stack from this function up, and calls `push` with the
/// address of every frame from the first whose stack pointer is at or above `above_sp`
/// (the same frames, with the same skipping, as `backtrace`'s libgcc walk gives), until
/// it returns false or the stack ends. Reads only `[own stack pointer, stack_hi)`.
#[inline(never)]
pub(crate) fn walk(above_sp: usize, stack_hi: usize, push: &mut impl FnMut(u64) -> bool) -> Walk {
    let (mut pc, mut sp, mut bp): (usize, usize, usize);
    // SAFETY: reads three registers (the instruction pointer through a RIP-relative
    // `lea`); no memory access, no stack use.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        )
    };
    let lo = sp;
    if lo >= stack_hi {
        return Walk::Slow;
    }
    let read = |at: usize| -> Option<usize> {
        if at < lo || at % 8 != 0 || at > stack_hi.checked_sub(8)? {
            return None;
        }
        // SAFETY: `at` is aligned and `[at, at + 8)` lies within `[lo, stack_hi)`: the
        // live part of this thread's stack (from this function's frame up), mapped and
        // readable.
        Some(unsafe { *(at as *const usize) })
    };
    let mut keeping = false;
    let mut lookup = pc;
    for _ in 0..MAX_STEPS {
        let rule = match rule_for(lookup) {
            Lookup::Rule(rule) => rule,
            Lookup::NoInfo => return Walk::Done,
            Lookup::Slow => return Walk::Slow,
        };
        keeping = keeping || sp >= above_sp;
        if keeping && !push(pc as u64) {
            return Walk::Done;
        }
        if rule.is_end() {
            return Walk::Done;
        }
        let base = if rule.cfa_from_rbp() { bp } else { sp };
        let cfa = base.wrapping_add(rule.cfa_offset() as isize as usize);
        if cfa <= sp {
            return Walk::Slow; // frames move strictly up the stack
        }
        let Some(ret) = read(cfa.wrapping_sub(8)) else {
            return Walk::Slow;
        };
        if let Some(at) = rule.rbp_saved_at() {
            let Some(saved) = read(cfa.wrapping_add(at as isize as usize)) else {
                return Walk::Slow;
            };
            bp = saved;
        }
        sp = cfa;
        pc = ret;
        if pc == 0 {
            return Walk::Done;
        }
        lookup = pc - 1; // the call instruction, not what follows it
    }
    Walk::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pack_and_unpack() {
        let rule = Rule::new(true, 16, Some(-16));
        assert!(rule.cfa_from_rbp() && !rule.is_end());
        assert_eq!((rule.cfa_offset(), rule.rbp_saved_at()), (16, Some(-16)));
        let rule = Rule::new(false, -40, None);
        assert!(!rule.cfa_from_rbp());
        assert_eq!((rule.cfa_offset(), rule.rbp_saved_at()), (-40, None));
        assert!(Rule::end().is_end());
        assert_ne!(Rule::new(false, 0, None).0, 0);
    }

    #[test]
    fn the_cache_keeps_what_it_was_given() {
        // Addresses no code has (the cache is shared with the other tests' unwinding).
        let (a, b) = (0x7000_0000_0010usize, 0x7000_0000_0020usize);
        assert_eq!(cache_get(a), None);
        cache_put(a, Rule::new(false, 24, None));
        cache_put(b, Rule::new(true, 16, Some(-16)));
        assert_eq!(cache_get(a), Some(Rule::new(false, 24, None)));
        assert_eq!(cache_get(b), Some(Rule::new(true, 16, Some(-16))));
        // Another address in the same slot replaces it; neither reads the other's rule.
        let c = (1..1 << 20)
            .map(|i| a + i)
            .find(|&c| std::ptr::eq(slot(c), slot(a)))
            .unwrap();
        cache_put(c, Rule::end());
        assert_eq!(cache_get(a), None);
        assert_eq!(cache_get(c), Some(Rule::end()));
        // Kernel-half or null addresses are never cached.
        cache_put(0, Rule::end());
        assert_eq!(cache_get(0), None);
    }

    #[test]
    fn an_address_outside_every_module_needs_the_slow_unwinder() {
        assert!(available(), "glibc 2.35 or later has _dl_find_object");
        assert!(matches!(compute(0x10), Lookup::Slow));
        // This function's own code has a rule.
        let here = an_address_outside_every_module_needs_the_slow_unwinder as fn() as usize;
        assert!(matches!(compute(here + 1), Lookup::Rule(_)));
    }

    #[test]
    fn the_tables_are_found_whichever_mapping_the_loader_reports_for_the_code() {
        assert!(available());
        // This binary's code and a shared library's (libc's getpid): each module's
        // `.eh_frame_hdr`, whether it lies in the mapping reported for the code (a
        // module mapped without gaps) or in another one (with gaps, glibc reports each
        // segment apart: a test binary whose read-only segment ended 8 bytes short of a
        // page had every cached capture fall back to the slow unwinder), and a rule.
        let code = [
            the_tables_are_found_whichever_mapping_the_loader_reports_for_the_code as fn() as usize,
            libc::getpid as *const () as usize,
        ];
        for pc in code {
            let (start, end, hdr) = find_object(pc).expect("a loaded module");
            assert!(start <= pc && pc < end);
            let (found_hdr, hdr_end) = find_module(pc).expect("its tables");
            assert_eq!(found_hdr, hdr);
            assert!(hdr < hdr_end);
            // The header's own mapping, as the loader reports it, holds it.
            let (hdr_start, hdr_map_end, same) = find_object(hdr).expect("the header's mapping");
            assert_eq!(same, hdr);
            assert!(hdr_start <= hdr && hdr_end <= hdr_map_end.max(end));
            assert!(matches!(compute(pc + 1), Lookup::Rule(_)), "{pc:#x}");
        }
    }
}
