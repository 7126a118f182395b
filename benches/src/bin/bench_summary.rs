//! Reads criterion's results (`target/criterion`) and prints the comparison table for
//! docs/BENCHMARKS.md: time per operation and the ratio to the bare system allocator.
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

fn main() -> ExitCode {
    let root = std::env::args()
        .nth(1)
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
