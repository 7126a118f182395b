//! Control: off by default, turned on and off at run time, configured by environment
//! variables (invalid values reported, not fatal), bounded tables whose overflow is
//! counted and reported, and snapshots that round-trip through JSON.

use leakwatch::{LeakWatch, Mode, Snapshot};
use leakwatch_tests::run;
use std::hint::black_box;
use std::process::Command;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

fn off_until_enabled() {
    assert!(leakwatch::is_installed());
    let kept = black_box(vec![0u8; 1 << 20]);
    let snapshot = leakwatch::snapshot();
    assert_eq!(snapshot.mode, Mode::Off);
    assert!(snapshot.sites.is_empty());
    assert_eq!(snapshot.process.allocs, 0, "nothing is counted while off");
    drop(kept);
}

#[inline(never)]
fn kept_while_on() -> Vec<Vec<u8>> {
    (0..100).map(|_| vec![1u8; 10_000]).collect()
}

fn enable_disable_at_run_time() {
    leakwatch::set_sample_rate(1);
    assert!(leakwatch::enable());
    assert_eq!(leakwatch::mode(), Mode::Exact);
    let kept = kept_while_on();
    let snapshot = leakwatch::snapshot();
    let held: u64 = snapshot
        .sites
        .iter()
        .filter(|s| s.live_bytes == 1_000_000)
        .map(|s| s.live_bytes)
        .sum();
    assert_eq!(held, 1_000_000, "the 100 blocks share one site");
    leakwatch::disable();
    assert_eq!(leakwatch::mode(), Mode::Off);
    // Freed while off: still accounted, so the site does not look leaked later.
    drop(kept);
    let snapshot = leakwatch::snapshot();
    assert!(snapshot.sites.iter().all(|s| s.live_bytes < 1_000_000));
    assert_eq!(
        snapshot.tracker.tracked_blocks,
        snapshot
            .sites
            .iter()
            .map(|s| s.live_blocks as u64)
            .sum::<u64>()
    );

    leakwatch::set_sample_rate(4096);
    assert!(leakwatch::enable());
    assert_eq!(leakwatch::mode(), Mode::Sampled);
    assert_eq!(leakwatch::snapshot().sample_rate, 4096);
    leakwatch::disable();
}

fn snapshots_round_trip_through_json() {
    leakwatch::set_sample_rate(1);
    leakwatch::enable();
    let kept = kept_while_on();
    let snapshot = leakwatch::snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    assert!(json.contains("\"schema_version\":1"));
    assert!(!snapshot.modules.is_empty());
    assert!(
        snapshot.modules[0].build_id.is_some(),
        "the test binary has a GNU build id"
    );
    leakwatch::disable();
    drop(kept);
}

/// Runs this test binary again with `env`, in child mode, and returns its snapshot.
fn child_snapshot(scenario: &str, env: &[(&str, &str)]) -> Snapshot {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command.arg("--child").arg(scenario);
    for var in [
        "LEAKWATCH",
        "LEAKWATCH_SAMPLE",
        "LEAKWATCH_MAX_SITES",
        "LEAKWATCH_MAX_BLOCKS",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[inline(never)]
fn from_many_sites() -> Vec<Vec<u8>> {
    // Each `vec!` is its own call, at its own return address: distinct stacks.
    macro_rules! sites {
        ($($n:literal)*) => { vec![$(vec![$n as u8; 1000 + $n],)*] };
    }
    sites!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

fn child_main(scenario: &str) {
    let kept = match scenario {
        "plain" => vec![vec![0u8; 100]],
        "many-sites" => from_many_sites(),
        "many-blocks" => (0..1000).map(|i| vec![0u8; 10 + i % 7]).collect(),
        _ => panic!("unknown scenario {scenario}"),
    };
    let snapshot = leakwatch::snapshot();
    println!("{}", serde_json::to_string(&snapshot).unwrap());
    drop(kept);
}

fn environment_turns_it_on() {
    let s = child_snapshot("plain", &[("LEAKWATCH", "exact")]);
    assert_eq!((s.mode, s.sample_rate), (Mode::Exact, 1));
    assert!(s.process.allocs > 0);
    let s = child_snapshot("plain", &[("LEAKWATCH", "1"), ("LEAKWATCH_SAMPLE", "64k")]);
    assert_eq!((s.mode, s.sample_rate), (Mode::Sampled, 65_536));
    let s = child_snapshot("plain", &[("LEAKWATCH", "1")]);
    assert_eq!(
        (s.mode, s.sample_rate),
        (Mode::Sampled, leakwatch::DEFAULT_SAMPLE_RATE)
    );
    let s = child_snapshot("plain", &[]);
    assert_eq!(s.mode, Mode::Off);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

fn invalid_environment_is_reported_and_ignored() {
    let s = child_snapshot("plain", &[("LEAKWATCH", "1"), ("LEAKWATCH_SAMPLE", "lots")]);
    assert_eq!(
        (s.mode, s.sample_rate),
        (Mode::Sampled, leakwatch::DEFAULT_SAMPLE_RATE)
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w == "LEAKWATCH_SAMPLE has an invalid value and was ignored"),
        "{:?}",
        s.warnings
    );
    let s = child_snapshot("plain", &[("LEAKWATCH", "perhaps")]);
    assert_eq!(s.mode, Mode::Off);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("LEAKWATCH has an invalid value")),
        "{:?}",
        s.warnings
    );
}

fn a_full_site_table_is_counted_not_dropped() {
    let s = child_snapshot(
        "many-sites",
        &[("LEAKWATCH", "exact"), ("LEAKWATCH_MAX_SITES", "8")],
    );
    assert_eq!(s.tracker.max_sites, 7, "one slot is the overflow site");
    assert_eq!(s.tracker.sites, 7);
    assert!(s.overflow.site_table_full_samples > 0);
    assert!(s.overflow.site_table_full_live_bytes > 0);
    // Every live byte is still accounted: in sites or in the overflow.
    let kept: u64 = (0..16).map(|n| 1000 + n).sum();
    assert!(
        s.tracked_live_bytes() >= kept,
        "{} < {kept}",
        s.tracked_live_bytes()
    );
    assert!(
        s.warnings.iter().any(|w| w.contains("site table is full")),
        "{:?}",
        s.warnings
    );
}

fn a_full_block_table_is_counted_not_dropped() {
    let s = child_snapshot(
        "many-blocks",
        &[("LEAKWATCH", "exact"), ("LEAKWATCH_MAX_BLOCKS", "256")],
    );
    assert_eq!(s.tracker.max_blocks, 256);
    assert!(s.tracker.tracked_blocks <= 256);
    assert!(
        s.overflow.untracked_blocks >= 1000 - 256,
        "{:?}",
        s.overflow
    );
    assert!(s.overflow.untracked_bytes >= (1000 - 256) * 10);
    assert!(
        s.warnings.iter().any(|w| w.contains("block table is full")),
        "{:?}",
        s.warnings
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child_main(args.get(2).map_or("", String::as_str));
        return;
    }
    run(&[
        ("off_until_enabled", off_until_enabled),
        ("enable_disable_at_run_time", enable_disable_at_run_time),
        (
            "snapshots_round_trip_through_json",
            snapshots_round_trip_through_json,
        ),
        ("environment_turns_it_on", environment_turns_it_on),
        (
            "invalid_environment_is_reported_and_ignored",
            invalid_environment_is_reported_and_ignored,
        ),
        (
            "a_full_site_table_is_counted_not_dropped",
            a_full_site_table_is_counted_not_dropped,
        ),
        (
            "a_full_block_table_is_counted_not_dropped",
            a_full_block_table_is_counted_not_dropped,
        ),
    ]);
}
