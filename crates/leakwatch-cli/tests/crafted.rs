//! Hostile inputs built to cost time or memory out of proportion to their size (issue
//! 9): each is read, or refused with one line and exit code 2, never a panic or a
//! hang. Time and memory are measured apart (docs/BENCHMARKS.md, "Crafted inputs"):
//! these tests only check what the command answers.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

mod common;
use common::leakwatch;
use leakwatch_testsupport::temp_dir;

/// The head of a series line at `t` seconds (everything but the sites).
fn head(t: u64) -> String {
    format!(
        concat!(
            r#"{{"leakwatch_series":1,"timestamp_ms":{},"pid":1,"mode":"sampled","sample_rate":524288,"#,
            r#""epoch":{},"unwinder":"auto","process":{{"live_bytes":1,"peak_live_bytes":1,"allocs":1,"#,
            r#""alloc_bytes":1,"frees":0,"freed_bytes":0}},"tracker":{{"memory_bytes":0,"reserved_bytes":0,"#,
            r#""sites":0,"max_sites":65536,"tracked_blocks":0,"max_blocks":0,"max_depth":32}},"#,
            r#""overflow":{{"site_table_full_samples":0,"site_table_full_live_bytes":0,"untracked_blocks":0,"#,
            r#""untracked_bytes":0,"truncated_stacks":0,"replaced_entries":0}}"#
        ),
        1_800_000_000_000 + t * 1000,
        t + 1
    )
}

/// Runs `leakwatch report` on `text` written to `name` in `dir`.
fn report(dir: &Path, name: &str, text: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    leakwatch(&["report", path.to_str().unwrap()])
}

/// The command failed with exit code 2 and one line containing `needle`.
fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

fn succeeded(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The worst accepted series: as many sites as a file may describe, each added by a line
/// of its own (before, every line cost every site seen so far: quadratic, over a minute
/// at 200,000 sites), then lines that name only one site each. About 40 MB.
#[test]
fn the_most_sites_a_file_may_have_one_a_line_are_read() {
    let dir = temp_dir("cli-sites-one-a-line");
    let max = leakwatch_report::recording::MAX_SITES as u64;
    let mut text = String::with_capacity(45 << 20);
    for t in 0..max + 10_000 {
        text.push_str(&head(t));
        if t < max {
            write!(text, r#","new_sites":[{{"id":{t},"frames":[{t}]}}],"#).unwrap();
            writeln!(text, r#""sites":[[{t},{},1,0,0]]}}"#, 1000 + t).unwrap();
        } else {
            writeln!(text, r#","sites":[[7,{},2,0,0]]}}"#, 1000 + t).unwrap();
        }
    }
    let out = succeeded(&report(&dir, "sites.jsonl", &text));
    assert!(out.contains(&format!("{max} sites ranked")), "{out}");
    // One more is refused, naming the limit.
    text.push_str(&head(max + 10_000));
    writeln!(text, r#","new_sites":[{{"id":{max},"frames":[]}}]}}"#).unwrap();
    refused(
        &report(&dir, "one-too-many.jsonl", &text),
        &format!("more than {max} sites in one process"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lists longer than any recorder writes are refused while they are read, before they
/// are held: sites in one line, frames of a site, symbols.
#[test]
fn lists_longer_than_a_recorder_writes_are_refused() {
    let dir = temp_dir("cli-lists");
    let max_sites = leakwatch_report::recording::MAX_SITES;
    let mut sites = head(0) + r#","new_sites":["#;
    for id in 0..=max_sites {
        let comma = if id == 0 { "" } else { "," };
        write!(sites, r#"{comma}{{"id":{id},"frames":[]}}"#).unwrap();
    }
    sites.push_str("]}\n");
    refused(
        &report(&dir, "sites.jsonl", &sites),
        &format!(
            "sites.jsonl:1: not a valid series line: unexpected content: more than {max_sites} sites in one line"
        ),
    );

    let frames: Vec<String> = (0..=256).map(|f| f.to_string()).collect();
    let line = format!(
        "{},\"new_sites\":[{{\"id\":1,\"frames\":[{}]}}]}}\n",
        head(0),
        frames.join(",")
    );
    refused(
        &report(&dir, "frames.jsonl", &line),
        "more than 256 frames in one site",
    );

    let max_symbols = leakwatch_report::recording::MAX_SYMBOLS;
    let mut symbols = head(0) + r#","symbols":["#;
    for address in 0..=max_symbols {
        let comma = if address == 0 { "" } else { "," };
        write!(
            symbols,
            r#"{comma}[{{"address":{address},"inlined":false}}]"#
        )
        .unwrap();
    }
    symbols.push_str("]}\n");
    refused(
        &report(&dir, "symbols.jsonl", &symbols),
        &format!("more than {max_symbols} addresses' symbols in one line"),
    );
    // The same spread over lines: the total is bounded too.
    let mut spread = String::new();
    for (t, chunk) in (0..=max_symbols)
        .collect::<Vec<_>>()
        .chunks(100_000)
        .enumerate()
    {
        spread.push_str(&head(t as u64));
        spread.push_str(r#","symbols":["#);
        for (i, address) in chunk.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(
                spread,
                r#"{comma}[{{"address":{address},"inlined":false}}]"#
            )
            .unwrap();
        }
        spread.push_str("]}\n");
    }
    // Warnings (7.9M short ones took 1.4 GB and over a minute).
    let max_warnings = leakwatch_report::MAX_WARNINGS;
    let warnings = vec!["\"w\""; max_warnings + 1].join(",");
    let line = format!("{},\"warnings\":[{warnings}]}}\n", head(0));
    refused(
        &report(&dir, "warnings.jsonl", &line),
        &format!("more than {max_warnings} warnings"),
    );
    refused(
        &report(&dir, "spread.jsonl", &spread),
        &format!("symbols of more than {max_symbols} return addresses"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Block counts are estimates: never negative, never near the top of `f64` (1e308 minus
/// -1e308 is infinite, which a JSON report cannot hold).
#[test]
fn block_counts_out_of_range_are_refused() {
    let dir = temp_dir("cli-blocks");
    for (name, counts) in [
        ("huge.jsonl", "1e308,0,-1e308"),
        ("negative.jsonl", "-1,0,0"),
        ("above-2-64.jsonl", "1e20,0,0"),
    ] {
        let line = format!(
            "{},\"new_sites\":[{{\"id\":1,\"frames\":[1]}}],\"sites\":[[1,5,{counts}]]}}\n",
            head(0)
        );
        refused(&report(&dir, name, &line), "site 1: block counts");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line that does not parse is explained without being held as a JSON tree (which
/// took 2.4 GB for a 100 MB line): a truncated 30 MB line gets its one line quickly.
#[test]
fn a_huge_broken_line_is_explained_in_one_line() {
    let dir = temp_dir("cli-broken");
    let mut text =
        head(0) + r#","new_sites":[{"id":1,"frames":[1]}],"sites":[[1,1,1,0,0]],"warnings":["#;
    while text.len() < 30 << 20 {
        text.push_str(r#""a warning","#);
    }
    text.push('\n');
    refused(
        &report(&dir, "broken.jsonl", &text),
        "broken.jsonl:1: truncated",
    );
    // Not ours at all, but valid JSON: named as such.
    let mut other = String::from(r#"{"format":"leakwatch-report","sites":["#);
    while other.len() < 10 << 20 {
        other.push_str("[1,2,3],");
    }
    other.push_str("[]]}\n");
    refused(
        &report(&dir, "report.jsonl", &other),
        "this is a JSON report, not a series file",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JSON report (`leakwatch report --format json`) of a small series, as a value to
/// bend into hostile shapes.
fn small_report(dir: &Path) -> serde_json::Value {
    let mut text = String::new();
    for t in 0..20 {
        text.push_str(&head(t));
        if t == 0 {
            text.push_str(r#","new_sites":[{"id":1,"frames":[1]},{"id":2,"frames":[2]}],"#);
        } else {
            text.push(',');
        }
        writeln!(
            text,
            r#""sites":[[1,{},1,0,0],[2,5,1,0,0]]}}"#,
            1000 * (t + 1)
        )
        .unwrap();
    }
    let path = dir.join("small.jsonl");
    std::fs::write(&path, text).unwrap();
    let out = leakwatch(&["report", path.to_str().unwrap(), "--format", "json"]);
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn diff(dir: &Path, name: &str, report: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, report).unwrap();
    let small = dir.join("small.json");
    std::fs::write(&small, small_report(dir).to_string()).unwrap();
    leakwatch(&["diff", small.to_str().unwrap(), path.to_str().unwrap()])
}

/// Reports are read within bounds too: at most as many sites as a series file may
/// hold, and lists (chart points, histories, stacks) within 128 MiB however short
/// their numbers are written (`0,` is 2 bytes of JSON and 8 of memory).
#[test]
fn reports_beyond_the_readers_bounds_are_refused() {
    let dir = temp_dir("cli-reports");
    let mut report = small_report(&dir);
    let mut site = report["sites"][0].clone();
    site["history"] = serde_json::json!([]);
    site["stack"] = serde_json::json!([]);
    let site = site.to_string();
    let max = leakwatch_report::MAX_SITES;
    report["functions"] = serde_json::json!([]);
    report["sites"] = serde_json::json!([]);
    let text = report.to_string();
    let (before, after) = text.split_once(r#""sites":[]"#).unwrap();
    let mut many = format!(r#"{before}"sites":["#);
    for i in 0..=max {
        if i > 0 {
            many.push(',');
        }
        many.push_str(&site);
    }
    many.push(']');
    many.push_str(after);
    refused(
        &diff(&dir, "many.json", &many),
        &format!("more than {max} sites"),
    );

    let mut warned = report.clone();
    warned["warnings"] = serde_json::json!(vec!["w"; leakwatch_report::MAX_WARNINGS + 1]);
    refused(
        &diff(&dir, "warned.json", &warned.to_string()),
        &format!("more than {} warnings", leakwatch_report::MAX_WARNINGS),
    );

    report["chart_times"] = serde_json::json!([]);
    let text = report.to_string();
    let (before, after) = text.split_once(r#""chart_times":[]"#).unwrap();
    let zeros = vec!["0"; (128 << 20) / 8 + 1].join(",");
    let long = format!(r#"{before}"chart_times":[{zeros}]{after}"#);
    refused(
        &diff(&dir, "long.json", &long),
        "the report's lists would take more than 128 MiB",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Byte counts near 2^64 in a report sum without overflowing (a debug build panicked,
/// a release build wrapped around): two lines of one label at u64::MAX each.
#[test]
fn huge_byte_counts_in_reports_saturate() {
    let dir = temp_dir("cli-huge-bytes");
    let mut report = small_report(&dir);
    let sites = report["sites"].as_array_mut().unwrap();
    for site in sites.iter_mut() {
        site["live_bytes"] = serde_json::json!(u64::MAX);
        site["label"] = serde_json::json!("same (a.rs:1)");
    }
    let out = succeeded(&diff(&dir, "huge.json", &report.to_string()));
    assert!(out.contains("same (a.rs:1)"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
