//! What ages cost the history (issue 11): its memory (`History::memory_bytes`, the
//! points' columns, and `sites_memory_bytes`, each site's record with its latest age
//! buckets) after the same snapshots pushed without and with ages. `SITES` sites, each
//! growing at every snapshot (the worst case for the sparse columns: an entry per point),
//! over `POINTS` snapshots a second apart; with ages, every site's old bytes change at
//! every point too, and each carries five age buckets.
//!
//! ```sh
//! cargo build --release -p leakwatch-benches --no-default-features --bin history_ages
//! target/release/history_ages
//! ```
use leakwatch::report::History;
use leakwatch::{SiteStats, Snapshot};

const SITES: u32 = 1_000;
const POINTS: u64 = 600;

fn snapshot(t: u64, ages: bool) -> Snapshot {
    let mut s = Snapshot::default();
    s.timestamp_ms = 1_000_000 + t * 1000;
    s.epoch = t + 1;
    s.sites = (0..SITES)
        .map(|id| {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = vec![0x1000 + u64::from(id)];
            site.live_bytes = 4096 * (t + 1) + u64::from(id);
            site.alloc_bytes = site.live_bytes;
            if ages {
                site.age_bytes = vec![4096, 4096 * 5, 4096 * 50, 4096 * t, 0];
                site.old_bytes = Some(4096 * t.saturating_sub(7));
            }
            site
        })
        .collect();
    s.process.live_bytes = s.sites.iter().map(|x| x.live_bytes as i64).sum();
    s
}

fn main() {
    let mut rows = Vec::new();
    for ages in [false, true] {
        // A budget large enough that nothing is thinned: the columns' whole cost shows.
        let mut history = History::new(1 << 30, POINTS as usize);
        for t in 0..POINTS {
            history.push(&snapshot(t, ages));
        }
        rows.push((ages, history.memory_bytes(), history.sites_memory_bytes()));
    }
    println!("{SITES} sites, {POINTS} points, every site changing at every point");
    for (ages, points, sites) in &rows {
        let label = if *ages { "with ages" } else { "without ages" };
        println!("{label:>13}: points {points} B, site records {sites} B");
    }
    let (_, p0, s0) = rows[0];
    let (_, p1, s1) = rows[1];
    let per_point = (p1 as f64 - p0 as f64) / f64::from(SITES) / POINTS as f64;
    let per_site = (s1 as f64 - s0 as f64) / f64::from(SITES);
    println!(
        "ages add {per_point:.1} B a site a point (old bytes), {per_site:.1} B a site record (age buckets)"
    );
}
