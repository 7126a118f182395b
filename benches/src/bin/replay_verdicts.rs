//! Replays a series file the way a service's per-second reports saw it: ranks every
//! prefix of the file (each snapshot as the latest) with the default report options and
//! prints each prefix's `leak` lines, and at the end how many prefixes had one.
//!
//! `target/release/replay_verdicts SERIES.jsonl [--all]`: `--all` prints every prefix's
//! top site and its levels too. What the demo's fixed-store check is tuned against:
//! `model-server demo` writes `fixed.jsonl` and `leaky.jsonl` to its `--out` directory.

use leakwatch_report::{Recording, Report, ReportOptions};
use std::io::{BufRead, Write};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: replay_verdicts SERIES.jsonl [--all]");
        std::process::exit(2);
    };
    let all = args.next().as_deref() == Some("--all");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{path}: cannot open: {e}");
            std::process::exit(2);
        }
    };
    let lines: Vec<String> = match std::io::BufReader::new(file).lines().collect() {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("{path}: cannot read: {e}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut with_leak = 0;
    for k in 1..=lines.len() {
        let prefix = lines[..k].join("\n");
        let recording = match Recording::read(&path, prefix.as_bytes()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let report = Report::build(
            &recording.history,
            &recording.symbols,
            &ReportOptions::default(),
        );
        let t = report.window_seconds;
        let leaks: Vec<String> = report
            .sites
            .iter()
            .filter(|s| s.verdict == leakwatch_report::Verdict::Leak)
            .map(|s| {
                format!(
                    "{} ({:.1} MiB)",
                    s.tagged_label(),
                    s.live_bytes as f64 / 1048576.0
                )
            })
            .collect();
        if !leaks.is_empty() {
            with_leak += 1;
            emit(writeln!(out, "{k:>4} {t:>6.1}s LEAK {}", leaks.join("; ")));
        } else if all {
            if let Some(s) = report.sites.first() {
                emit(writeln!(
                    out,
                    "{k:>4} {t:>6.1}s {} {} {:.1} MiB",
                    s.verdict.as_str(),
                    s.tagged_label(),
                    s.live_bytes as f64 / 1048576.0
                ));
            }
        }
    }
    emit(writeln!(
        out,
        "{with_leak} of {} prefixes with a leak",
        lines.len()
    ));
}

/// Ends quietly when standard output is gone (`| head`), with status 1 on other errors.
fn emit(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("cannot write: {e}");
            std::process::exit(1);
        }
    }
}
