//! Block table tests: the global table (disjoint address ranges, so they run in parallel),
//! and single shards of their own for growth, migration and refused memory.

use super::*;

// The table is global; these tests use disjoint address ranges so they can run in
// parallel with each other.

#[test]
fn insert_remove_many_with_collisions() {
    let base = 0x1000_0000_0000usize;
    let n = 50_000;
    for i in 0..n {
        assert_eq!(insert(base + i * 16, i as u32, 1, 5, 0), Inserted::New);
    }
    assert_eq!(
        insert(base, 99, 1, 6, 0),
        Inserted::Replaced(Entry::new(base, 0, 1, 5))
    );
    for i in (0..n).rev().step_by(2) {
        let e = remove(base + i * 16).expect("tracked");
        assert_eq!(e.addr, base + i * 16);
    }
    for i in 0..n {
        let present = remove(base + i * 16).is_some();
        assert_eq!(present, (n - 1 - i) % 2 == 1, "address {i}");
    }
    assert_eq!(remove(base), None);
}

#[test]
fn entries_are_twenty_four_bytes() {
    assert_eq!(size_of::<Entry>(), 24);
}

#[test]
fn visits_every_entry() {
    let base = 0x2000_0000_0000usize;
    for i in 0..100 {
        insert(base + i * 64, 7, 3, 9, 0);
    }
    let mut seen = 0;
    for_each(|e| {
        if (base..base + 6400).contains(&e.addr) {
            assert_eq!((e.site, e.rate, e.epoch), (7, 3, 9));
            seen += 1;
        }
    });
    assert_eq!(seen, 100);
    for i in 0..100 {
        remove(base + i * 64);
    }
}

/// A shard of a test's own.
fn shard() -> SpinLock<Table> {
    SpinLock::new(Table::EMPTY)
}

fn put(shard: &SpinLock<Table>, addr: usize, site: u32) -> Inserted {
    insert_into(
        shard,
        hash(addr),
        Entry::new(addr, site, 1, 0),
        Mapping::zeroed,
    )
}

fn take(shard: &SpinLock<Table>, addr: usize) -> Option<Entry> {
    remove_from(shard, hash(addr), addr)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    }
}

/// Random inserts, replacements and removals (of present and absent addresses) against a
/// model, through many growths: every answer, and the count, must match the model while
/// entries sit in either table.
#[test]
fn matches_a_model_through_growth_and_migration() {
    let shard = shard();
    let mut model = std::collections::HashMap::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut migrations_seen = 0;
    for step in 0..400_000u32 {
        // Mostly growing, with frees mixed in; a pool of 2^18 addresses makes replacements
        // and absent removals common.
        let addr = 0x7f00_0000_0000 + rng.below(1 << 18) as usize * 16;
        if rng.below(10) < 7 {
            let expected = match model.insert(addr, step) {
                None => Inserted::New,
                Some(site) => Inserted::Replaced(Entry::new(addr, site, 1, 0)),
            };
            assert_eq!(put(&shard, addr, step), expected, "step {step}");
        } else {
            let expected = model.remove(&addr).map(|site| Entry::new(addr, site, 1, 0));
            assert_eq!(take(&shard, addr), expected, "step {step}");
        }
        let table = shard.lock();
        assert_eq!(table.len + table.old_len, model.len(), "step {step}");
        migrations_seen += usize::from(table.old.is_some());
    }
    assert!(migrations_seen > 1000, "growth never migrated");
    for (&addr, &site) in &model {
        assert_eq!(take(&shard, addr), Some(Entry::new(addr, site, 1, 0)));
    }
    let table = shard.lock();
    assert_eq!((table.len, table.old_len), (0, 0));
}

/// A growth drains the old table within capacity / MIGRATE_SLOTS operations, well
/// before the new table needs to grow, and visits only MIGRATE_SLOTS slots per operation.
#[test]
fn migration_finishes_before_the_next_growth() {
    let shard = shard();
    let base = 0x6000_0000_0000usize;
    let mut next = 0;
    // Up to the first growth of a 4,096-slot table.
    let mut growths = 0;
    let mut generation = 0;
    while growths < 5 {
        put(&shard, base + next * 16, 0);
        next += 1;
        let table = shard.lock();
        if table.generation != generation {
            generation = table.generation;
            growths += 1;
            let old_capacity = table.old.as_ref().map_or(0, |o| o.len());
            let old_len = table.old_len;
            drop(table);
            // Count the operations until it is drained.
            let mut operations = 0;
            while shard.lock().old.is_some() {
                let before = shard.lock().old_len;
                put(&shard, base + next * 16, 0);
                next += 1;
                operations += 1;
                let after = shard.lock().old_len;
                assert!(before - after <= MIGRATE_SLOTS);
            }
            assert!(
                operations <= old_capacity.div_ceil(MIGRATE_SLOTS),
                "{operations} operations for {old_len} entries of {old_capacity} slots"
            );
            let table = shard.lock();
            assert!(
                (table.len + 1) * 4 <= table.capacity() * 3,
                "drained only after the next growth was due"
            );
        }
    }
    for i in 0..next {
        assert!(take(&shard, base + i * 16).is_some(), "block {i}");
    }
}

/// The system refuses every larger table: the shard fills to its hard limit (7/8), the
/// rest is refused and counted by the caller, and frees, present or not, always return.
#[test]
fn a_shard_that_cannot_grow_stays_usable() {
    let shard = shard();
    let base = 0x5000_0000_0000usize;
    let mut mapped = false;
    let mut refused = 0;
    let mut inserted = Vec::new();
    for i in 0..10_000usize {
        let addr = base + i * 16;
        let map = |len| {
            if mapped {
                refused += 1;
                None
            } else {
                mapped = true;
                Mapping::zeroed(len)
            }
        };
        match insert_into(&shard, hash(addr), Entry::new(addr, 1, 1, 0), map) {
            Inserted::New => inserted.push(addr),
            Inserted::Full => {}
            Inserted::Replaced(e) => panic!("replaced {e:?}"),
        }
    }
    assert_eq!(inserted.len(), MIN_CAPACITY * 7 / 8);
    assert!(refused > 0);
    // Frees of blocks that were never tracked probe a table 7/8 full and return.
    for i in 10_000..100_000usize {
        assert_eq!(take(&shard, base + i * 16), None);
    }
    for &addr in &inserted {
        assert!(take(&shard, addr).is_some());
    }
    assert_eq!(shard.lock().len, 0);
}

/// Probes are bounded by the capacity even in a table with no empty slot (which the
/// hard limit never lets happen).
#[test]
fn probes_of_a_full_table_end() {
    let mut slots = Mapping::<Entry>::zeroed(MIN_CAPACITY).unwrap();
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = Entry::new(0x4000_0000_0000 + i * 16, 0, 1, 0);
    }
    assert_eq!(find(&slots, hash(0x10), 0x10), None);
    assert_eq!(vacancy(&slots, hash(0x10)), None);
    let addr = slots[17].addr;
    assert_eq!(find(&slots, hash(addr), addr), Some(17));
    delete(&mut slots, 17);
    assert_eq!(slots.iter().filter(|e| e.addr == 0).count(), 1);
}

/// Threads growing one shard together (so several map a table at once and all but one
/// discard theirs) lose nothing and find every entry, in whichever table it sits.
#[test]
fn threads_growing_one_shard_together_lose_nothing() {
    let shard = shard();
    std::thread::scope(|s| {
        for t in 0..4usize {
            let shard = &shard;
            s.spawn(move || {
                let base = 0x3000_0000_0000 + (t << 36);
                let n = 60_000;
                for i in 0..n {
                    assert_eq!(put(shard, base + i * 16, t as u32), Inserted::New);
                    if i % 3 == 0 {
                        let addr = base + (i / 2) * 16;
                        assert!(take(shard, addr).is_some(), "thread {t}, block {}", i / 2);
                        assert_eq!(put(shard, addr, t as u32), Inserted::New);
                    }
                }
                for i in 0..n {
                    let entry = take(shard, base + i * 16);
                    assert_eq!(
                        entry.map(|e| e.site),
                        Some(t as u32),
                        "thread {t}, block {i}"
                    );
                }
            });
        }
    });
    let table = shard.lock();
    assert_eq!((table.len, table.old_len), (0, 0));
}

/// Migration returns the pages it has passed to the system, and lookups do not fault
/// them back in.
#[test]
fn migrated_pages_are_returned() {
    let shard = shard();
    let base = 0x2800_0000_0000usize;
    let mut next = 0;
    while shard.lock().capacity() < 8 * DISCARD_SLOTS {
        put(&shard, base + next * 16, 0);
        next += 1;
    }
    // Lookups of absent addresses while the walk passes most of the old table.
    for i in 0..(3 * DISCARD_SLOTS / MIGRATE_SLOTS) {
        assert_eq!(take(&shard, 0x2900_0000_0000 + i * 16), None);
    }
    let table = shard.lock();
    let old = table.old.as_ref().expect("still migrating");
    let visited = table.start.wrapping_sub(table.cursor) & (old.len() - 1);
    assert!(visited >= 3 * DISCARD_SLOTS - MIGRATE_SLOTS, "{visited}");
    // At most the chunk the walk started in and the chunk it is in stay resident
    // (plus the rest of the table below it).
    let kept = old.len() - visited / DISCARD_SLOTS * DISCARD_SLOTS + 2 * DISCARD_SLOTS;
    assert!(
        old.resident_bytes() <= kept * size_of::<Entry>(),
        "{} resident bytes of {}",
        old.resident_bytes(),
        old.bytes()
    );
    drop(table);
    for i in 0..next {
        assert!(take(&shard, base + i * 16).is_some(), "block {i}");
    }
}

/// A chunk of a migrating table handed out to be discarded with the lock released keeps
/// that table mapped: once drained meanwhile it waits in `retired` (and the shard does
/// not grow) until the discard is done, and the last thread to finish unmaps it.
#[test]
fn a_drained_table_waits_for_discards_in_flight() {
    let shard = shard();
    let base = 0x2a00_0000_0000usize;
    let mut next = 0;
    while shard.lock().capacity() < 8 * DISCARD_SLOTS {
        put(&shard, base + next * 16, 0);
        next += 1;
    }
    assert!(shard.lock().old.is_some(), "migrating");
    let mut pending = None;
    for _ in 0..8 * DISCARD_SLOTS {
        let migrated = shard.lock().migrate();
        if migrated.pages.is_some() {
            pending = Some(migrated);
            break;
        }
        finish(&shard, migrated);
    }
    let pending = pending.expect("a migration step hands out a chunk");
    assert_eq!(shard.lock().pins, 1);
    // Other operations drain the old table meanwhile.
    for i in 0..8 * DISCARD_SLOTS {
        if shard.lock().old.is_none() {
            break;
        }
        assert_eq!(take(&shard, 0x2b00_0000_0000 + i * 16), None);
    }
    {
        let table = shard.lock();
        assert!(table.old.is_none(), "drained");
        assert!(
            table.retired.is_some(),
            "kept mapped while a discard is in flight"
        );
    }
    let fresh = Mapping::zeroed(16 * DISCARD_SLOTS).unwrap();
    assert!(shard.lock().install(fresh).is_some(), "no growth meanwhile");
    finish(&shard, pending);
    {
        let table = shard.lock();
        assert_eq!(table.pins, 0);
        assert!(table.retired.is_none(), "unmapped by the last discard");
    }
    for i in 0..next {
        assert!(take(&shard, base + i * 16).is_some(), "block {i}");
    }
    assert_eq!(shard.lock().len, 0);
}

/// Fills `shard` until it stages a larger table; returns the capacity it had then.
fn fill_until_staged(shard: &SpinLock<Table>, base: usize, next: &mut usize) -> usize {
    for _ in 0..1_000_000 {
        if shard.lock().pending.is_some() {
            return shard.lock().capacity();
        }
        assert_eq!(put(shard, base + *next * 16, 0), Inserted::New);
        *next += 1;
    }
    panic!("no table staged");
}

/// A shard past its growth threshold stages the next table, which operations make
/// resident a slice each (with the lock released), and installs it once whole: it is
/// wholly resident when entries start moving into it.
#[test]
fn the_next_table_is_resident_before_it_is_installed() {
    let shard = shard();
    let base = 0x2c00_0000_0000usize;
    let mut next = 0;
    while shard.lock().capacity() < 4 * DISCARD_SLOTS {
        put(&shard, base + next * 16, 0);
        next += 1;
    }
    let capacity = fill_until_staged(&shard, base, &mut next);
    let bytes = shard.lock().pending.as_ref().unwrap().bytes();
    let mut ops = 0;
    while shard.lock().capacity() == capacity {
        assert_eq!(take(&shard, 0x2d00_0000_0000 + ops * 16), None);
        ops += 1;
        assert!(
            ops <= bytes / POPULATE_BYTES + 2,
            "installed after {ops} operations"
        );
    }
    let table = shard.lock();
    let slots = table.slots.as_ref().unwrap();
    assert_eq!(slots.len(), 2 * capacity);
    assert_eq!(slots.resident_bytes(), slots.bytes(), "every page resident");
    assert!(table.old.is_some(), "migrating into it");
    assert_eq!((table.populating, table.stale_populating), (0, 0));
    drop(table);
    for i in 0..next {
        assert!(take(&shard, base + i * 16).is_some(), "block {i}");
    }
}

/// If the current table reaches its hard limit before the staged one is whole (its
/// populating threads stalled), the staged one is installed as it is: nothing is lost,
/// and a drained table waits until the stalled threads are done.
#[test]
fn a_table_installed_early_waits_for_its_populating_threads() {
    let shard = shard();
    let base = 0x2e00_0000_0000usize;
    let mut next = 0;
    while shard.lock().capacity() < 4 * DISCARD_SLOTS {
        put(&shard, base + next * 16, 0);
        next += 1;
    }
    let capacity = fill_until_staged(&shard, base, &mut next);
    // One thread took every slice and stalls.
    let stalled = {
        let mut table = shard.lock();
        let pages = table
            .pending
            .as_ref()
            .unwrap()
            .pages_at(0, POPULATE_BYTES)
            .unwrap();
        table.handed = table.pending.as_ref().unwrap().bytes();
        table.populating += 1;
        Migrated {
            drained: None,
            pages: None,
            populate: Some((pages, table.staged)),
        }
    };
    while shard.lock().capacity() == capacity {
        assert_eq!(
            put(&shard, base + next * 16, 0),
            Inserted::New,
            "block {next}"
        );
        next += 1;
    }
    assert!(
        next * 8 >= capacity * 7,
        "installed at the hard limit, {next} blocks"
    );
    {
        let table = shard.lock();
        assert!(table.pending.is_none());
        assert_eq!((table.populating, table.stale_populating), (0, 1));
    }
    // The old table drains; it must stay mapped while the stalled thread may touch it.
    for i in 0..capacity {
        if shard.lock().old.is_none() {
            break;
        }
        assert_eq!(take(&shard, 0x2f00_0000_0000 + i * 16), None);
    }
    assert!(shard.lock().old.is_none(), "drained");
    assert!(
        shard.lock().retired.is_some(),
        "kept for the stalled thread"
    );
    finish(&shard, stalled);
    {
        let table = shard.lock();
        assert_eq!(table.stale_populating, 0);
        assert!(table.retired.is_none(), "unmapped once it is done");
    }
    for i in 0..next {
        assert!(take(&shard, base + i * 16).is_some(), "block {i}");
    }
}

#[test]
fn sizes_are_kept_in_bytes_then_in_pages() {
    for size in [0usize, 1, 4096, (1 << 31) - 1] {
        assert_eq!(Entry::new(1, 1, 1, 1).sized(size).size(), size);
    }
    // From 2 GiB up, in 4 KiB pages (rounded down), up to 8 TiB.
    assert_eq!(Entry::new(1, 1, 1, 1).sized(1 << 31).size(), 1 << 31);
    assert_eq!(
        Entry::new(1, 1, 1, 1).sized((5 << 30) + 4095).size(),
        5 << 30
    );
    assert_eq!(
        Entry::new(1, 1, 1, 1).sized(usize::MAX).size(),
        ((1usize << 31) - 1) << 12
    );
}
