//! Reads criterion's results (`target/criterion`) and prints the comparison table for
//! docs/BENCHMARKS.md: time per operation and the ratio to the bare system allocator.
//!
//! `bench_summary [DIR]` reads one run (default `target/criterion`); `bench_summary
//! --rounds DIR` reads the rounds `benches/time_ratios.sh` kept (`DIR/round-N`, each a
//! criterion directory) and prints each configuration's ratio to System taken within
//! every round: the median over rounds, the range, and the rounds it was slower.
use leakwatch_report::stats::median;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const CONFIGS: [&str; 5] = [
    "system",
    "leakwatch-off",
    "leakwatch-sampled",
    "leakwatch-exact",
    "dhat",
];
/// (criterion group, operations per iteration, what one operation is)
const GROUPS: [(&str, f64, &str); 4] = [
    (
        "churn",
        1_000.0,
        "alloc+free pair, 16-256 B, 20 frames deep",
    ),
    (
        "two_threads_churn",
        1_000.0,
        "alloc+free pair per thread, 2 threads",
    ),
    (
        "vec_growth",
        1_000_000.0,
        "Vec push (1,000 Vecs grown to 1,000 u32 by realloc)",
    ),
    (
        "retained_growth",
        1_000_000.0,
        "block kept then freed (1M blocks from 50 sites)",
    ),
];

fn mean_ns(dir: &Path) -> Result<f64, String> {
    let file = dir.join("new").join("estimates.json");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", file.display()))
}

/// Groups `--rounds` compares (those `benches/time_ratios.sh` runs).
const ROUND_GROUPS: [&str; 3] = ["churn", "two_threads_churn", "retained_growth"];

/// The `--rounds` table: per group and configuration, the ratio to System within each
/// round.
fn rounds_summary(dir: &Path) -> ExitCode {
    let mut rounds: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("round-"))
            })
            .collect(),
        Err(e) => {
            eprintln!("bench_summary: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    rounds.sort();
    if rounds.is_empty() {
        eprintln!("bench_summary: no round-N directories in {}", dir.display());
        return ExitCode::from(2);
    }
    println!(
        "| workload | configuration | System, median | ratio, median of {} rounds | range | rounds slower than System |",
        rounds.len()
    );
    println!("|---|---|---|---|---|---|");
    for group in ROUND_GROUPS {
        let ops = GROUPS
            .iter()
            .find(|(g, _, _)| *g == group)
            .map_or(1.0, |(_, ops, _)| *ops);
        let mut base: Vec<f64> = rounds
            .iter()
            .filter_map(|r| mean_ns(&r.join(group).join("system")).ok())
            .map(|ns| ns / ops)
            .collect();
        if base.is_empty() {
            continue;
        }
        let base_median = median(&mut base).unwrap_or(0.0);
        for config in &CONFIGS[1..] {
            let mut ratios: Vec<f64> = rounds
                .iter()
                .filter_map(|r| {
                    let b = mean_ns(&r.join(group).join("system")).ok()?;
                    let c = mean_ns(&r.join(group).join(config)).ok()?;
                    Some(c / b)
                })
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let slower = ratios.iter().filter(|&&x| x > 1.0).count();
            let n = ratios.len();
            let (low, high) = ratios
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            let m = median(&mut ratios).unwrap_or(0.0);
            println!(
                "| {group} | {config} | {base_median:.1} ns | {m:.3}x | {low:.3}x to {high:.3}x | {slower} of {n} |"
            );
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--rounds") {
        let Some(dir) = args.get(1) else {
            eprintln!(
                "bench_summary: --rounds takes a directory (usage: bench_summary [DIR | --rounds DIR])"
            );
            return ExitCode::from(2);
        };
        return rounds_summary(Path::new(dir));
    }
    let root = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    if !root.is_dir() {
        eprintln!(
            "bench_summary: {} not found: run `cargo bench -p leakwatch-benches` first",
            root.display()
        );
        return ExitCode::from(2);
    }
    println!("| workload (one op) | {} |", CONFIGS.join(" | "));
    println!("|---|{}", "---|".repeat(CONFIGS.len()));
    for (group, ops, what) in GROUPS {
        let base = mean_ns(&root.join(group).join("system"))
            .ok()
            .map(|ns| ns / ops);
        let mut cells = Vec::new();
        for config in CONFIGS {
            let cell = match mean_ns(&root.join(group).join(config)) {
                Ok(ns) => {
                    let per_op = ns / ops;
                    match base {
                        Some(b) => format!("{per_op:.1} ns ({:.2}x)", per_op / b),
                        None => format!("{per_op:.1} ns"),
                    }
                }
                Err(_) => "n/a".to_string(),
            };
            cells.push(cell);
        }
        println!("| {group}: {what} | {} |", cells.join(" | "));
    }
    println!();
    println!("| sampling rate R | churn pair | ratio to system |");
    println!("|---|---|---|");
    let churn_base = mean_ns(&root.join("churn").join("system"))
        .ok()
        .map(|ns| ns / 1_000.0);
    for rate in ["16KiB", "64KiB", "256KiB", "512KiB", "2048KiB"] {
        if let Ok(ns) = mean_ns(&root.join("churn_by_sample_rate").join(rate)) {
            let per_op = ns / 1_000.0;
            let ratio = churn_base.map_or("n/a".to_string(), |b| format!("{:.2}x", per_op / b));
            println!("| {rate} | {per_op:.1} ns | {ratio} |");
        }
    }
    println!();
    for unwinder in ["frame-pointers", "cached-dwarf", "backtrace"] {
        if let Ok(ns) = mean_ns(&root.join("capture_24_frames").join(unwinder)) {
            println!("- stack capture of 24 frames, {unwinder}: {ns:.1} ns per capture");
        }
    }
    for unwinder in ["exact-cached-dwarf", "exact-backtrace"] {
        if let Ok(ns) = mean_ns(&root.join("churn_by_unwinder").join(unwinder)) {
            let per_op = ns / 1_000.0;
            let ratio = churn_base.map_or("n/a".to_string(), |b| format!("{:.2}x", per_op / b));
            println!("- churn, {unwinder}: {per_op:.1} ns per pair ({ratio} system)");
        }
    }
    ExitCode::SUCCESS
}
