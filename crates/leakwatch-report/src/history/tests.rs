use super::*;

fn snapshot(t_ms: u64, sites: &[(u32, u64)]) -> Snapshot {
    let mut s = Snapshot::default();
    s.timestamp_ms = t_ms;
    s.pid = 42;
    s.process.live_bytes = sites.iter().map(|&(_, b)| b as i64).sum();
    s.sites = sites
        .iter()
        .map(|&(id, live)| {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = vec![0x1000 + u64::from(id)];
            site.live_bytes = live;
            site.alloc_bytes = live;
            site
        })
        .collect();
    s
}

#[test]
fn sites_appear_late_and_are_zero_before() {
    let mut h = History::default();
    h.push(&snapshot(1_000, &[(1, 10)]));
    h.push(&snapshot(2_000, &[(1, 20), (3, 5)]));
    h.push(&snapshot(3_500, &[(1, 30), (3, 7)]));
    assert_eq!(h.times(), &[0.0, 1.0, 2.5]);
    assert_eq!(h.column(1).unwrap(), &[10.0, 20.0, 30.0]);
    assert_eq!(h.column(3).unwrap(), &[0.0, 5.0, 7.0]);
    assert_eq!(h.column(2), None);
    assert_eq!(h.sites().map(|s| s.id).collect::<Vec<_>>(), vec![1, 3]);
    let merged = h.series_by(|_| "all");
    assert_eq!(merged.sites["all"], vec![10.0, 25.0, 37.0]);
    assert_eq!(merged.process, vec![10.0, 25.0, 37.0]);
    let latest = h.latest_snapshot();
    assert_eq!(latest.sites.len(), 2);
    assert_eq!(latest.sites[1].live_bytes, 7);
    assert_eq!(latest.sites[1].frames, vec![0x1003]);
    assert_eq!(latest.pid, 42);
}

#[test]
fn a_clock_stepping_back_does_not_reverse_time() {
    let mut h = History::default();
    h.push(&snapshot(5_000, &[]));
    h.push(&snapshot(7_000, &[]));
    h.push(&snapshot(6_000, &[]));
    // One median interval (2 s) after the point before, not at the same time.
    assert_eq!(h.times(), &[0.0, 2.0, 4.0]);
    assert_eq!(h.clock_repair().backwards, 1);
    assert_eq!(h.clock_repair().stood_still, 0);
}

#[test]
fn after_a_step_back_points_keep_their_spacing_at_the_median_interval() {
    let mut h = History::default();
    // 1 s apart, then 3 s once (median stays 1 s), then the clock steps back an hour
    // and runs on at 1 s, then stands still twice.
    for t in [0, 1_000, 2_000, 5_000, 6_000] {
        h.push(&snapshot(100_000_000 + t, &[]));
    }
    for t in [0, 1_000, 2_000, 2_000, 2_000, 3_000] {
        h.push(&snapshot(100_000_000 - 3_600_000 + t, &[]));
    }
    assert_eq!(
        h.times(),
        &[0.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    );
    let repair = h.clock_repair();
    assert_eq!((repair.backwards, repair.stood_still), (1, 2));
    assert_eq!(repair.interval_seconds, 1.0);
    assert!(repair.repaired());
}

#[test]
fn a_clock_that_never_moves_spaces_points_a_second_apart() {
    let mut h = History::default();
    for _ in 0..4 {
        h.push(&snapshot(42_000, &[(1, 10)]));
    }
    assert_eq!(h.times(), &[0.0, 1.0, 2.0, 3.0]);
    assert_eq!(h.clock_repair().stood_still, 3);
    assert_eq!(h.clock_repair().interval_seconds, 1.0);
}

#[test]
fn an_increasing_clock_is_taken_as_it_is() {
    let mut h = History::default();
    for t in [1_000, 1_250, 3_000, 3_001] {
        h.push(&snapshot(t, &[]));
    }
    assert_eq!(h.times(), &[0.0, 0.25, 2.0, 2.001]);
    assert!(!h.clock_repair().repaired());
}

#[test]
fn thinning_keeps_memory_bounded_and_recent_points_dense() {
    // 1,000 sites that all change at every point and a 1 MiB budget: about 130 points
    // of 1,000 entries (8 bytes each) fit.
    let mut h = History::new(1 << 20, DEFAULT_MAX_POINTS);
    for i in 0..5_000u64 {
        let sites: Vec<(u32, u64)> = (1..=1000).map(|id| (id, 100 + i)).collect();
        h.push(&snapshot(i * 1000, &sites));
        assert!(h.len() <= h.capacity());
    }
    let capacity = h.capacity();
    assert!((100..150).contains(&capacity), "{capacity}");
    assert!(h.memory_bytes() <= 2 << 20, "{}", h.memory_bytes());
    assert_eq!(h.thinned() as usize + h.len(), 5_000);
    let times = h.times();
    // The first point survives; the newest points are one second apart; older ones are
    // further apart.
    assert_eq!(times[0], 0.0);
    assert_eq!(*times.last().unwrap(), 4_999.0);
    let n = times.len();
    assert_eq!(times[n - 1] - times[n - 2], 1.0);
    assert!(times[2] - times[1] > 1.0);
    assert!(times.windows(2).all(|w| w[1] > w[0]));
    // Every column stays aligned with the times.
    assert!((1..=1000).all(|id| h.column(id).unwrap().len() == n));
}

#[test]
fn max_points_bounds_a_small_history_too() {
    let mut h = History::new(usize::MAX, 100);
    for i in 0..1_000u64 {
        h.push(&snapshot(i * 1000, &[(1, i)]));
    }
    assert!(h.len() <= 100 && h.len() > 50, "{}", h.len());
}

/// A snapshot with epoch `epoch` where site 1 holds `live` bytes and has had
/// `(old, seen)` bytes of departures so far.
fn departing(epoch: u64, live: u64, old: u64, seen: u64) -> Snapshot {
    let mut s = snapshot(1_000 * epoch, &[(1, live)]);
    s.epoch = epoch;
    s.sites[0].freed_old_bytes = old;
    s.sites[0].freed_seen_bytes = seen;
    s
}

#[test]
fn departures_are_kept_per_interval_and_survive_thinning() {
    let mut h = History::new(1 << 20, MIN_POINTS);
    // The first point only sets the baseline (100 bytes departed before the window).
    for i in 0..200u64 {
        h.push(&departing(i + 1, 5_000, 100 + 10 * i, 100 + 30 * i));
    }
    assert!(h.thinned() > 0, "the history should have thinned");
    let d = h.departed(1).expect("departures are known");
    assert_eq!(d.old.len(), h.len());
    // Cumulative from the window's start: nothing lost to thinning.
    assert_eq!(*d.old.last().unwrap(), 10.0 * 199.0);
    assert_eq!(*d.seen.last().unwrap(), 30.0 * 199.0);
    assert!(d.old.windows(2).all(|w| w[1] >= w[0]));
    let series = h.series();
    assert_eq!(series.departed[&1].seen.last(), d.seen.last());
    // One snapshot without an epoch (an old recording): departures are unknown.
    let mut old_format = departing(300, 5_000, 0, 0);
    old_format.epoch = 0;
    h.push(&old_format);
    assert!(h.departed(1).is_none());
    assert!(h.series().departed.is_empty());
}

#[test]
fn departure_ages_are_kept_in_bytes_and_unknown_from_allocators_that_did_not_count_them() {
    let mut h = History::new(1 << 20, MIN_POINTS);
    // 10 KiB of old departures an interval, each block 12 snapshots old: 10 x 144 in
    // KiB x age squared; the counter wraps past u64::MAX on the way.
    let start = u64::MAX - 5_000;
    for i in 0..200u64 {
        let mut s = departing(i + 1, 5_000, 10_240 * i, 10_240 * i);
        s.sites[0].freed_old_age_sq = start.wrapping_add(10 * 144 * i);
        h.push(&s);
    }
    assert!(h.thinned() > 0, "the history should have thinned");
    let d = h.departed(1).expect("departures are known");
    assert_eq!(d.old_age_sq.len(), d.old.len());
    // Bytes times age squared, cumulative, nothing lost to thinning or the wrap: the
    // mean square age of what departed is 144.
    let bytes = d.old.last().unwrap() - d.old[0];
    let age_sq = d.old_age_sq.last().unwrap() - d.old_age_sq[0];
    assert!((age_sq / bytes - 144.0).abs() < 0.01, "{age_sq} / {bytes}");
    // Old departures without ages (an allocator from before them): unknown, so that the
    // ranking does not take them for departures of no age.
    let mut older = History::new(1 << 20, MIN_POINTS);
    for i in 0..50u64 {
        older.push(&departing(i + 1, 5_000, 10_240 * i, 10_240 * i));
    }
    let d = older.departed(1).expect("departures are known");
    assert!(d.old_age_sq.is_empty(), "{:?}", d.old_age_sq);
    // A snapshot that read a site's old bytes a moment before their ages (the next one
    // has them) leaves them known.
    let mut h = History::new(1 << 20, MIN_POINTS);
    for i in 0..50u64 {
        let mut s = departing(i + 1, 5_000, 10_240 * i, 10_240 * i);
        s.sites[0].freed_old_age_sq = 10 * 144 * if i == 20 { i - 1 } else { i };
        h.push(&s);
    }
    let d = h.departed(1).expect("departures are known");
    let mean_sq =
        (d.old_age_sq.last().unwrap() - d.old_age_sq[0]) / (d.old.last().unwrap() - d.old[0]);
    assert!((mean_sq - 144.0).abs() < 0.01, "{mean_sq}");
}

/// Columns keep only changes and follow thinning lazily: after thousands of points, with
/// sites listed only sometimes, every kept point reads what a plain table of every point
/// holds (live bytes as last listed, departures cumulative).
#[test]
fn sparse_columns_read_as_a_full_table_after_thinning() {
    let mut h = History::new(64 << 10, DEFAULT_MAX_POINTS);
    let ids = [3u32, 7, 4_000_000_000];
    let n = 3_000u64;
    // table[k][i]: site k's live bytes at point i; departed[k][i]: cumulative departures.
    let mut table = vec![vec![0.0f32; n as usize]; ids.len()];
    let mut departed = vec![vec![0.0f64; n as usize]; ids.len()];
    let mut last = [(0u64, 0u64, false); 3];
    for i in 0..n {
        let mut s = snapshot(1_000 * i, &[]);
        s.epoch = i + 1;
        for (k, &id) in ids.iter().enumerate() {
            // Site k is listed at points where (i * (k + 2)) % 5 < 2, and changes at
            // some of those.
            if (i * (k as u64 + 2)) % 5 < 2 {
                let live = 1_000 * (i / (k as u64 + 1));
                let seen = last[k].1 + (i % 3) * 10;
                let mut site = SiteStats::default();
                site.id = id;
                site.live_bytes = live;
                site.freed_seen_bytes = seen;
                s.sites.push(site);
                if last[k].2 {
                    departed[k][i as usize] = (seen - last[k].1) as f64;
                }
                last[k] = (live, seen, true);
            }
            table[k][i as usize] = last[k].0 as f32;
        }
        h.push(&s);
    }
    assert!(h.thinned() > 1_000, "{}", h.thinned());
    for (k, &id) in ids.iter().enumerate() {
        let column = h.column(id).unwrap();
        let seen = h.departed(id).unwrap().seen;
        let mut total = 0.0;
        let mut point = 0;
        for (j, &t) in h.times().iter().enumerate() {
            let i = t as usize;
            assert_eq!(column[j], table[k][i], "site {id} at point {i}");
            while point <= i {
                total += departed[k][point];
                point += 1;
            }
            assert_eq!(seen[j], total, "site {id}'s departures up to point {i}");
        }
    }
}

/// Point numbers are `u32`: before they would overflow, the kept points are numbered
/// from 0 again, and the columns read the same.
#[test]
fn point_numbers_start_over_without_changing_columns() {
    let mut h = History::new(1 << 20, 64);
    for i in 0..100u64 {
        h.push(&snapshot(1_000 * i, &[(1, i / 3), (2, 5)]));
    }
    let (column, times) = (h.column(1).unwrap(), h.times().to_vec());
    h.next_seq = u32::MAX;
    h.push(&snapshot(100_000, &[(1, 99)]));
    assert_eq!(h.next_seq as usize, h.len());
    let after = h.column(1).unwrap();
    let kept = times.len() - (h.times().len() - 1);
    assert_eq!(&after[..after.len() - 1], &column[kept..]);
    assert_eq!(*after.last().unwrap(), 99.0);
    assert!(h.column(2).unwrap().iter().all(|&v| v == 5.0));
}

/// A point costs what it lists: after 10,000 sites, 2,000 snapshots that each name one
/// of them hold a few entries, not 10,000 values a point (dense columns took 16 MB here,
/// and every push walked them all).
#[test]
fn a_snapshot_naming_few_of_many_sites_costs_what_it_names() {
    let mut h = History::default();
    let all: Vec<(u32, u64)> = (0..10_000).map(|id| (id, 100)).collect();
    h.push(&snapshot(0, &all));
    for i in 1..2_000u64 {
        h.push(&snapshot(1_000 * i, &[((i % 10_000) as u32, 100 + i)]));
    }
    assert!(h.len() <= h.capacity() && h.thinned() > 0);
    assert!(h.memory_bytes() < 1 << 20, "{}", h.memory_bytes());
    assert_eq!(*h.column(5).unwrap().last().unwrap(), 105.0);
    assert_eq!(*h.column(9_999).unwrap().last().unwrap(), 100.0);
}

#[test]
fn old_bytes_are_kept_where_they_changed_and_through_thinning() {
    let mut h = History::new(1 << 20, 64);
    for i in 0..200u64 {
        let mut s = Snapshot::default();
        s.timestamp_ms = 1_000 * i;
        s.epoch = i + 1;
        let mut site = SiteStats::default();
        site.id = 3;
        site.live_bytes = 1_000 + 10 * i;
        site.old_bytes = Some(10 * i.saturating_sub(8));
        s.sites = vec![site];
        h.push(&s);
    }
    let aged = h.aged(3).unwrap();
    assert_eq!(aged.len(), h.len());
    assert_eq!(*aged.last().unwrap(), 10.0 * 191.0);
    // Thinned, but in order and still the values pushed at the kept points.
    let times = h.times();
    for (t, v) in times.iter().zip(&aged) {
        assert_eq!(*v, 10.0 * (*t as u64).saturating_sub(8) as f64, "at {t}");
    }
    // One snapshot without ages makes them unknown from then on.
    let mut s = Snapshot::default();
    s.timestamp_ms = 1_000_000;
    let mut site = SiteStats::default();
    site.id = 3;
    s.sites = vec![site];
    h.push(&s);
    assert_eq!(h.aged(3), None);
    assert!(h.series().aged.is_empty());
}

#[test]
fn the_site_records_count_their_age_buckets() {
    let mut without = History::default();
    let mut with = History::default();
    let plain = snapshot(1_000, &[(1, 10), (2, 20)]);
    let mut aged = plain.clone();
    for site in &mut aged.sites {
        site.age_bytes = vec![1, 2, 3, 4, 5];
    }
    without.push(&plain);
    with.push(&aged);
    let grown = with.sites_memory_bytes() - without.sites_memory_bytes();
    assert!(grown >= 2 * 5 * 8, "age buckets of 2 sites: {grown} B more");
}
