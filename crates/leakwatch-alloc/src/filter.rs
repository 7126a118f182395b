//! The sampled-address filter: answers "might this freed address be tracked?" with one
//! relaxed load, so that a free of an unsampled block takes no lock and writes nothing.
//!
//! A counting filter over address hashes: a tracked block increments its bucket, its free
//! decrements it. A zero bucket proves the address is not tracked; a non-zero bucket sends
//! the free to the block table (a false positive costs one sharded lookup). Buckets are
//! 16-bit. On average they stay far from full (the block table holds at most 2^30
//! blocks, about 16,384 per bucket at that bound), but nothing bounds one bucket:
//! addresses can collide. So a bucket saturates instead of wrapping: once it reaches
//! 65,535 it stays there, saying "may contain" for good (safe: its frees look the block
//! up; only their cost changes), and the saturation is counted
//! (`OverflowStats::saturated_filter_buckets`). A wrapped bucket would read zero while
//! tracked blocks remain, and their frees would skip the table.
//!
//! A bucket below [`HALF`] (every bucket, in practice) is updated by one atomic add or
//! subtract: no loop, and no lost update however many threads race on it. A wrap would
//! need thousands of threads to pass the check at once: adds start below half, so
//! 32,768 concurrent ones are needed to reach the top; a subtract is only of a tracked
//! block, so its bucket holds at least 1. Above half, updates are compare-and-swap loops
//! of at most [`RETRIES`] attempts (each failure means another thread changed the same
//! bucket). An insert that loses every attempt saturates the bucket; a remove that does
//! leaves the bucket one too high (a false positive, never a false negative).
//!
//! Ordering: a block's free happens after its allocation returned (the program's own
//! synchronisation), and the increment happens before the allocation returns, so the free
//! sees a non-zero bucket. Relaxed operations suffice.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};

const BITS: u32 = 16;

/// A bucket at this count is saturated: it no longer changes.
const SATURATED: u16 = u16::MAX;

/// Buckets below this count are updated by a plain atomic add or subtract.
const HALF: u16 = SATURATED / 2;

/// Compare-and-swap attempts per update, at most.
const RETRIES: usize = 64;

/// Buckets that have saturated so far.
static SATURATIONS: AtomicU64 = AtomicU64::new(0);

static BUCKETS: [AtomicU16; 1 << BITS] = [const { AtomicU16::new(0) }; 1 << BITS];

/// Size of the filter in bytes (reported as tracker memory).
pub(crate) const BYTES: usize = 2 << BITS;

#[inline(always)]
fn bucket(addr: usize) -> &'static AtomicU16 {
    // Fibonacci hashing: the top bits of the product depend on every address bit.
    let index = ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as usize;
    &BUCKETS[index & ((1 << BITS) - 1)]
}

/// `false` proves that `addr` is not tracked.
#[inline(always)]
pub(crate) fn may_contain(addr: usize) -> bool {
    bucket(addr).load(Relaxed) != 0
}

/// Notes that `addr` is now tracked.
pub(crate) fn insert(addr: usize) {
    let b = bucket(addr);
    let mut n = b.load(Relaxed);
    if n < HALF {
        b.fetch_add(1, Relaxed);
        return;
    }
    for _ in 0..RETRIES {
        if n == SATURATED {
            return;
        }
        match b.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
            Ok(_) => {
                if n + 1 == SATURATED {
                    SATURATIONS.fetch_add(1, Relaxed);
                }
                return;
            }
            Err(now) => n = now,
        }
    }
    // Lost every race: saturate the bucket (it then always says "may contain").
    if b.swap(SATURATED, Relaxed) != SATURATED {
        SATURATIONS.fetch_add(1, Relaxed);
    }
}

/// Notes that `addr` is no longer tracked (only after a matching [`insert`]). A
/// saturated bucket stays saturated.
pub(crate) fn remove(addr: usize) {
    let b = bucket(addr);
    let mut n = b.load(Relaxed);
    if n > 0 && n < HALF {
        b.fetch_sub(1, Relaxed);
        return;
    }
    for _ in 0..RETRIES {
        if n == 0 || n == SATURATED {
            return;
        }
        match b.compare_exchange_weak(n, n - 1, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(now) => n = now,
        }
    }
    // Lost every race: the bucket stays one too high, a false positive at worst.
}

/// Buckets that have saturated (each stays "may contain" for good).
pub(crate) fn saturated_buckets() -> u64 {
    SATURATIONS.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_then_remove_clears() {
        let addr = 0x7f00_dead_b000;
        assert!(!may_contain(addr));
        insert(addr);
        insert(addr + 16 * 1024 * 1024 * 1024);
        assert!(may_contain(addr));
        remove(addr);
        remove(addr + 16 * 1024 * 1024 * 1024);
    }

    #[test]
    fn counts_many_blocks_per_bucket() {
        let addr = 0x5555_0000_1230;
        for _ in 0..1000 {
            insert(addr);
        }
        for _ in 0..999 {
            remove(addr);
            assert!(may_contain(addr));
        }
        remove(addr);
        assert!(!may_contain(addr));
    }

    #[test]
    fn a_full_bucket_saturates_instead_of_wrapping() {
        let addr = 0x6000_0000_4440;
        assert!(!may_contain(addr));
        let before = saturated_buckets();
        // 65,536 blocks in one bucket: a 16-bit counter would wrap to zero here.
        for _ in 0..=u16::MAX as usize {
            insert(addr);
        }
        assert!(may_contain(addr), "the bucket wrapped to zero");
        // It saturated once, and further inserts change nothing.
        assert_eq!(saturated_buckets() - before, 1);
        for _ in 0..1000 {
            insert(addr);
        }
        assert_eq!(saturated_buckets() - before, 1);
        // Its true count is lost, so it says "may contain" for good.
        for _ in 0..=u16::MAX as usize + 1000 {
            remove(addr);
        }
        assert!(may_contain(addr), "a saturated bucket stays set");
    }

    #[test]
    fn racing_updates_keep_the_count_exact() {
        // Four threads insert into and remove from one bucket at once: below half, every
        // update is one atomic add or subtract, so none is lost and the bucket ends where
        // it started, however the threads are scheduled.
        let addr = 0x4000_0000_7770;
        assert!(!may_contain(addr));
        insert(addr);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        insert(addr);
                        remove(addr);
                    }
                });
            }
        });
        assert_eq!(bucket(addr).load(Relaxed), 1);
        remove(addr);
        assert!(!may_contain(addr));
    }
}
