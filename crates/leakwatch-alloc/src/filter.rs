//! The sampled-address filter: answers "might this freed address be tracked?" with one
//! relaxed load, so that a free of an unsampled block takes no lock and writes nothing.
//!
//! A counting filter over address hashes: a tracked block increments its bucket, its free
//! decrements it. A zero bucket proves the address is not tracked; a non-zero bucket sends
//! the free to the block table (a false positive costs one sharded lookup). Buckets are
//! 16-bit and updated with one `fetch_add`/`fetch_sub` each; they cannot overflow because
//! the block table holds at most 2^30 blocks, spread over 65,536 buckets by a
//! multiplicative hash (about 16,384 per bucket at that bound, far below 65,535).
//!
//! Ordering: a block's free happens after its allocation returned (the program's own
//! synchronisation), and the increment happens before the allocation returns, so the free
//! sees a non-zero bucket. Relaxed operations suffice.

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};

const BITS: u32 = 16;

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
    bucket(addr).fetch_add(1, Relaxed);
}

/// Notes that `addr` is no longer tracked (only after a matching [`insert`]).
pub(crate) fn remove(addr: usize) {
    bucket(addr).fetch_sub(1, Relaxed);
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
}
