//! The recorder in a real process: one thread leaks slowly from one site while others
//! fill a bounded cache and churn. With the recorder running (sampled mode), the leaking
//! site ranks first as `leak`, the cache is `plateau`, the alert fires once for the leak
//! (hook and log line), and the series file it wrote reads back to the same verdicts.

use leakwatch::report::{Recording, Verdict};
use leakwatch::{LeakWatch, Recorder};
use leakwatch_tests::{run, snapshot_at};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 64 KiB: about 30 samples a second from the leak below.
const RATE: u32 = 64 * 1024;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().sample_rate(RATE).seed(0xfeed);

/// How long the workload runs, and how often the recorder snapshots.
const RUN: Duration = Duration::from_secs(16);
const INTERVAL: Duration = Duration::from_millis(100);

/// The leak: 4 KiB kept every 2 ms (2 MB/s), never released.
#[inline(never)]
fn remember_forever(kept: &mut Vec<Vec<u8>>, i: usize) {
    kept.push(vec![i as u8; 4096]);
}

/// A bounded cache: 2,000 entries of 8 KiB (16 MB), filled in the first few seconds,
/// then replaced one for one.
#[inline(never)]
fn cache_fill(cache: &mut HashMap<usize, Vec<u8>>, key: usize) {
    cache.insert(key % 2_000, vec![key as u8; 8192]);
}

/// Churn: allocated and freed at once.
#[inline(never)]
fn churn_once(i: usize) -> usize {
    let v = vec![i as u8; 256 + i % 2048];
    black_box(v).len()
}

/// Collects `leakwatch` log records.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target() == "leakwatch"
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(format!("{} {}", record.level(), record.args()));
            }
        }
    }
    fn flush(&self) {}
}

static LOG: Captured = Captured(Mutex::new(Vec::new()));

/// Runs the three threads for [`RUN`] and returns what the leak and the cache hold, so
/// that it is still live when the test takes its report.
fn workload(stop: &AtomicBool) -> (Vec<Vec<u8>>, HashMap<usize, Vec<u8>>) {
    std::thread::scope(|scope| {
        let leak = scope.spawn(|| {
            let mut kept = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                remember_forever(&mut kept, i);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            kept
        });
        let cache = scope.spawn(|| {
            let mut cache = HashMap::with_capacity(4_096);
            let mut key = 0;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // Fills its 2,000 entries evenly over the first 3 s, then replaces one
                // entry every 20 ms.
                let elapsed = started.elapsed().as_secs_f64();
                let target = if elapsed < 3.0 {
                    (elapsed / 3.0 * 2_000.0) as usize
                } else {
                    key + 1
                };
                while key < target.max(1) {
                    cache_fill(&mut cache, key);
                    key += 1;
                }
                std::thread::sleep(Duration::from_millis(if elapsed < 3.0 { 1 } else { 20 }));
            }
            cache
        });
        scope.spawn(|| {
            let mut total = 0;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    total += churn_once(i);
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            black_box(total);
        });
        std::thread::sleep(RUN);
        stop.store(true, Ordering::Relaxed);
        (
            leak.join().expect("leaking thread"),
            cache.join().expect("cache thread"),
        )
    })
}

fn leak_ranks_first_and_cache_is_plateau() {
    let _ = log::set_logger(&LOG);
    log::set_max_level(log::LevelFilter::Warn);
    let dir = leakwatch_testsupport::temp_dir("recorder");
    let series = dir.join("series.jsonl");
    let alerts: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook_alerts = Arc::clone(&alerts);
    let recorder = Recorder::builder()
        .interval(INTERVAL)
        .alert_every(Duration::from_secs(2))
        .alerts(leakwatch::AlertOptions {
            min_window: Duration::from_secs(8),
            ..Default::default()
        })
        .memory_limit(Some(8 << 30))
        .file(&series)
        .on_leak(move |site| hook_alerts.lock().unwrap().push(site.label.clone()))
        .start()
        .unwrap();
    let stop = AtomicBool::new(false);
    let held = workload(&stop);
    recorder.record();
    let report = recorder.report();
    let stats = recorder.stats();
    let text = recorder.text(8);
    println!("{text}");
    println!("recorder: {stats:?}");
    recorder.stop();
    drop(held);

    let first = &report.sites[0];
    assert!(first.label.contains("remember_forever"), "{text}");
    assert_eq!(first.verdict, Verdict::Leak, "{text}");
    // 2 MB/s (4 KiB every 2 ms, less sleep overshoot): well above 0.5 MB/s.
    assert!(
        first.rate > 500_000.0 && first.rate < 2_500_000.0,
        "{}",
        first.rate
    );
    assert!(first.seconds_to_limit.is_some());
    let cache = report
        .sites
        .iter()
        .find(|s| s.label.contains("cache_fill"))
        .unwrap_or_else(|| panic!("no cache site\n{text}"));
    assert_eq!(cache.verdict, Verdict::Plateau, "{text}");
    assert!(
        report.leaks().all(|s| s.label.contains("remember_forever")),
        "only the leak is a leak:\n{text}"
    );
    // The recorder's own memory never shows up as a site: no line in leakwatch's crates
    // (this harness's `leakwatch_tests::` helpers are test code, and may be sampled).
    const OWN: [&str; 5] = [
        "leakwatch::",
        "leakwatch_alloc::",
        "leakwatch_report::",
        "leakwatch_symbolize::",
        "leakwatch_types::",
    ];
    assert!(
        !report
            .sites
            .iter()
            .any(|s| OWN.iter().any(|own| s.label.contains(own))),
        "{text}"
    );

    // One alert for the leak, through the hook and the log.
    let alerts = alerts.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("remember_forever"));
    let logged = LOG.0.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.starts_with("WARN leak: ")
            && l.contains("remember_forever")
            && l.contains("/s")),
        "{logged:?}"
    );
    assert_eq!(stats.alerts, 1);

    // The series file reads back to the same verdicts.
    let file = std::fs::File::open(&series).unwrap();
    let recording = Recording::read("series.jsonl", std::io::BufReader::new(file)).unwrap();
    assert!(
        recording.lines as u64 >= stats.snapshots - 1,
        "{} lines",
        recording.lines
    );
    let replay = leakwatch::report::Report::build(
        &recording.history,
        &recording.symbols,
        &leakwatch::report::ReportOptions::default(),
    );
    assert_eq!(replay.sites[0].label, first.label);
    assert_eq!(replay.sites[0].verdict, Verdict::Leak);
}

fn manual_recorder_takes_snapshots_by_hand() {
    let recorder = Recorder::builder()
        .manual()
        .memory_limit(None)
        .start()
        .unwrap();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for i in 0..5 {
        remember_forever(&mut kept, i);
        let snapshot = leakwatch::snapshot();
        recorder.push(&snapshot);
    }
    assert_eq!(recorder.history_size().0, 5);
    assert_eq!(recorder.stats().snapshots, 5);
    let report = recorder.report();
    assert_eq!(report.points, 5);
    assert_eq!(report.process.limit_bytes, None);
    black_box(kept);
}

fn alerts_fire_when_a_site_turns_into_a_leak_and_rearm_after_it_stops() {
    let alerts: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook_alerts = Arc::clone(&alerts);
    let recorder = Recorder::builder()
        .manual()
        .memory_limit(None)
        .report_options(leakwatch::report::ReportOptions {
            recent_windows: vec![60.0],
            ..Default::default()
        })
        .alerts(leakwatch::AlertOptions {
            min_rate: 1.0,
            min_window: Duration::from_secs(20),
            log: false,
            ..Default::default()
        })
        .on_leak(move |site| hook_alerts.lock().unwrap().push(site.label.clone()))
        .start()
        .unwrap();
    let mut live = 0;
    let mut checks = Vec::new();
    for t in 0..700u64 {
        // Grows 100 KB/s for a minute, holds still for five, then grows again.
        if !(60..400).contains(&t) {
            live += 100_000;
        }
        recorder.push(&snapshot_at(t, 0x1234, live));
        if t % 10 == 9 {
            checks.push((t, recorder.check_alerts().len()));
        }
    }
    let alerts = alerts.lock().unwrap().clone();
    assert_eq!(alerts.len(), 2, "{alerts:?} {checks:?}");
    let fired: Vec<u64> = checks
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, _)| *t)
        .collect();
    assert!(fired[0] < 60, "{checks:?}");
    assert!(fired[1] >= 400 && fired[1] < 460, "{checks:?}");
}

fn main() {
    run(&[
        (
            "manual_recorder_takes_snapshots_by_hand",
            manual_recorder_takes_snapshots_by_hand,
        ),
        (
            "alerts_fire_when_a_site_turns_into_a_leak_and_rearm_after_it_stops",
            alerts_fire_when_a_site_turns_into_a_leak_and_rearm_after_it_stops,
        ),
        (
            "leak_ranks_first_and_cache_is_plateau",
            leak_ranks_first_and_cache_is_plateau,
        ),
    ]);
}
