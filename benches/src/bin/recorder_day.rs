//! The recorder's own memory over a simulated day: 10,000 sites, one snapshot a second
//! (86,400 by default), a ranking for alerts every 10 snapshots, the series file written
//! and rotated, as a recorder at its defaults does. Prints a JSON row at each checkpoint
//! (hours 1, 2, 6, 12, 18, 24): the recorder's self-counted memory part by part, the
//! heap the process actually holds (counted by leakwatch's allocator, which counts the
//! recorder's allocations without sampling them), resident and peak resident memory.
//!
//! `recorder_day [HOURS] [QUIET_RANK_EVERY]`: `HOURS` simulated (default 24); rankings
//! every 10 snapshots in the first and the last hour, and every `QUIET_RANK_EVERY`
//! (default 10: the alert cadence throughout) between them. A ranking keeps nothing
//! but labels (filled by the first), so a sparser middle changes the run's time, not
//! what the recorder holds at the end; its transient peak is measured in the last hour.
//! The series file goes to a directory under the system's temporary one (removed at
//! the end), rotated at 16 MiB, 2 rotated files kept.
use leakwatch::{LeakWatch, Mode, SiteStats, Snapshot};
use std::process::ExitCode;
use std::time::Instant;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

const SITES: u32 = 10_000;

/// The snapshot at second 0: every site with its stack (a leaf of its own, then frames
/// shared by 20 and by 500 sites, then one root), a 1 KiB block each.
fn first_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.pid = 4242;
    s.timestamp_ms = 1_800_000_000_000;
    s.mode = Mode::Exact;
    s.sample_rate = 1;
    for id in 0..SITES {
        let mut site = SiteStats::default();
        site.id = id;
        let id64 = u64::from(id);
        site.frames = vec![
            0x5555_0000_0000 + id64 * 64,
            0x5556_0000_0000 + (id64 / 20) * 64,
            0x5557_0000_0000 + (id64 / 500) * 64,
            0x5558_0000_0000,
        ];
        site.alloc_bytes = 1024;
        site.alloc_blocks = 1.0;
        site.live_bytes = 1024;
        site.live_blocks = 1.0;
        s.sites.push(site);
    }
    s
}

/// Moves the snapshot on by a second: 100 sites leak 1 KiB a second, 200 turn over a
/// few KiB (live bytes wandering by up to 7 x 512 bytes), the rest hold still.
fn advance(s: &mut Snapshot, t: u64) {
    s.timestamp_ms += 1000;
    s.epoch = t + 1;
    let mut live = 0i64;
    for site in &mut s.sites {
        let id = u64::from(site.id);
        if id % 100 == 0 {
            site.alloc_bytes += 1024;
            site.alloc_blocks += 1.0;
        } else if id % 50 == 1 {
            let wander = (t.wrapping_mul(2_654_435_761) ^ id.wrapping_mul(40_503)) % 8 * 512;
            let before = site.live_bytes;
            site.alloc_bytes += 4096;
            site.alloc_blocks += 4.0;
            site.freed_bytes = site.alloc_bytes - 1024 - wander;
            site.freed_blocks += 4.0;
            site.freed_seen_bytes += (before + 4096).saturating_sub(1024 + wander);
        }
        site.live_bytes = site.alloc_bytes - site.freed_bytes;
        site.live_blocks = site.alloc_blocks - site.freed_blocks;
        live += site.live_bytes as i64;
    }
    s.process.live_bytes = live;
    s.process.peak_live_bytes = s.process.peak_live_bytes.max(live);
}

fn main() -> ExitCode {
    let hours: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 24,
        Some(Ok(h)) if h > 0 => h,
        Some(_) => {
            eprintln!("recorder_day: HOURS must be a positive whole number");
            return ExitCode::from(2);
        }
    };
    let quiet_rank_every: u64 = match std::env::args().nth(2).map(|a| a.parse()) {
        None => 10,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("recorder_day: QUIET_RANK_EVERY must be a positive whole number");
            return ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("leakwatch-recorder-day-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("recorder_day: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    // Count every allocation (process totals), sample almost none: the heap figures
    // are then what the process holds.
    leakwatch::set_sample_rate(u32::MAX);
    leakwatch::enable();

    let mut snapshot = first_snapshot();
    let heap = || leakwatch::snapshot().process;
    let baseline = heap().live_bytes;
    let baseline_rss = leakwatch_benches::rss_bytes().unwrap_or(0);
    let recorder = leakwatch::Recorder::builder()
        .manual()
        .memory_limit(Some(8 << 30))
        .file(dir.join("series.jsonl"))
        .rotate(16 << 20, 2)
        .start()
        .expect("start the recorder");
    let started = Instant::now();
    let seconds = hours * 3600;
    let checkpoints = [1u64, 2, 6, 12, 18, 24];
    for t in 0..seconds {
        if t > 0 {
            advance(&mut snapshot, t);
        }
        recorder.push(&snapshot);
        let quiet = t >= 3600 && t + 3600 < seconds;
        let every = if quiet { quiet_rank_every } else { 10 };
        if t % every == every - 1 {
            recorder.check_alerts();
        }
        let hour = (t + 1) / 3600;
        if (t + 1) % 3600 == 0 && (checkpoints.contains(&hour) || t + 1 == seconds) {
            let stats = recorder.stats();
            let m = stats.memory;
            let process = heap();
            let report = recorder.report();
            let leaks = report.leaks().count();
            let top: Vec<String> = report
                .sites
                .iter()
                .take(3)
                .map(|s| format!("{} {}", s.verdict.as_str(), s.label))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "hours": hour,
                    "sites": m.sites,
                    "wall_seconds": started.elapsed().as_secs_f64(),
                    "recorder_total_bytes": m.total_bytes,
                    "history_bytes": m.history_bytes,
                    "history_budget_bytes": m.history_budget_bytes,
                    "history_points": report.points,
                    "history_thinned_points": m.history_thinned_points,
                    "sites_bytes": m.sites_bytes,
                    "symbols_bytes": m.symbols_bytes,
                    "labels_bytes": m.labels_bytes,
                    "files_bytes": m.files_bytes,
                    "unsymbolized_sites": m.unsymbolized_sites,
                    "heap_live_over_baseline_bytes": process.live_bytes - baseline,
                    "heap_peak_over_baseline_bytes": process.peak_live_bytes - baseline,
                    "rss_bytes": leakwatch_benches::rss_bytes(),
                    "rss_over_baseline_bytes": leakwatch_benches::rss_bytes().map(|r| r.saturating_sub(baseline_rss)),
                    "peak_rss_bytes": leakwatch_benches::peak_rss_bytes(),
                    "series_lines": stats.files.lines,
                    "series_rotations": stats.files.rotations,
                    "series_deleted_files": stats.files.deleted_files,
                    "file_errors": stats.file_errors,
                    "rankings": stats.rankings,
                    "ranking_ms_mean": stats.ranking_time.as_secs_f64() * 1e3 / stats.rankings.max(1) as f64,
                    "record_ms_mean": stats.record_time.as_secs_f64() * 1e3 / stats.snapshots.max(1) as f64,
                    "leaks_reported": leaks,
                    "top": top,
                })
            );
        }
    }
    recorder.stop();
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}
