use super::*;
use crate::render::text::tests::{absurd, empty, many_leaks, model_server, with_leak_named};
use crate::report::ReportOptions;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// A function name with every character the format escapes, and some it does not.
const NASTY: &str = "app::weird<\"quoted\\path\">\nnext line {a=\"b\"} # HELP";

/// One sample line, its label values unescaped.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition `text` read back: HELP and TYPE by metric name, and the samples. Panics
/// on anything malformed, and on a sample whose family was not announced by a HELP and a
/// TYPE line right before its samples (families must not be split either).
fn parse(text: &str) -> (BTreeMap<String, (String, String)>, Vec<Sample>) {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the last line ends with a line feed"
    );
    let mut meta: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut current: Option<String> = None;
    let mut help: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("HELP name text");
            help = Some((name.to_string(), text.to_string()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            let (help_name, help_text) = help.take().expect("HELP before TYPE");
            assert_eq!(help_name, name, "HELP and TYPE of one metric");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert!(
                meta.insert(name.to_string(), (help_text, kind.to_string()))
                    .is_none(),
                "{name} announced twice"
            );
            current = Some(name.to_string());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let sample = parse_sample(line);
        assert_eq!(
            current.as_deref(),
            Some(sample.name.as_str()),
            "sample outside its family: {line}"
        );
        assert!(sample.name.starts_with("leakwatch_"), "{line}");
        samples.push(sample);
    }
    (meta, samples)
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a name");
    let name = line[..name_end].to_string();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{name}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // name="value" pairs separated by commas, up to the closing brace.
            let mut label = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                label.push(c);
            }
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value").1 {
                    '\\' => match chars.next().expect("escape").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => panic!("bad escape \\{c} in {line}"),
                    },
                    '"' => break,
                    '\n' => panic!("raw line feed in {line}"),
                    c => value.push(c),
                }
            }
            assert!(
                labels.insert(label.clone(), value).is_none(),
                "{label} twice: {line}"
            );
            match chars.next().expect("after a label").1 {
                ',' => continue,
                '}' => {
                    let end = chars.peek().map_or(inner.len(), |&(i, _)| i);
                    rest = &inner[end..];
                    break;
                }
                c => panic!("unexpected {c:?} in {line}"),
            }
        }
    }
    let value = rest.strip_prefix(' ').expect("a space before the value");
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// `promtool check metrics` on `text`: `Some(complaints)` (stdout and stderr, empty when
/// all is well), or `None` when promtool is not installed (unless `CI` is set: see
/// [`leakwatch_testsupport::tool::require`]).
///
/// # Panics
/// When promtool fails, takes more than 30 s, or is missing under CI.
fn promtool(text: &str) -> Option<String> {
    if !leakwatch_testsupport::tool::require("promtool", "apt-get install prometheus") {
        return None;
    }
    let out = leakwatch_testsupport::process::run(
        Command::new("promtool").args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(30),
    );
    let complaints =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{complaints}\n{text}",
        out.status
    );
    Some(complaints)
}

fn reports() -> Vec<(&'static str, crate::Report)> {
    vec![
        ("with a limit", model_server(Some(2 << 30))),
        ("without a limit", model_server(None)),
        ("nasty name", with_leak_named(NASTY)),
        ("empty", empty()),
        ("absurd numbers", absurd()),
        ("many sites", many_leaks(30, &ReportOptions::default())),
    ]
}

#[test]
fn promtool_accepts_every_report_without_complaint() {
    for (what, report) in reports() {
        for top in [0, 5, 1000] {
            let metrics = prometheus(&report, top);
            let Some(complaints) = promtool(&metrics) else {
                return;
            };
            assert_eq!(complaints, "", "{what}, top {top}:\n{metrics}");
        }
    }
}

#[test]
fn every_sample_is_announced_and_parses() {
    for (what, report) in reports() {
        for top in [0, 5, 1000] {
            let metrics = prometheus(&report, top);
            let (meta, samples) = parse(&metrics);
            for (name, (help, kind)) in &meta {
                assert!(!help.is_empty(), "{name}");
                assert_eq!(
                    kind == "counter",
                    name.ends_with("_total"),
                    "{name} is a {kind}"
                );
                assert!(
                    samples.iter().any(|s| &s.name == name),
                    "{what}: {name} has no sample"
                );
            }
            for name in [
                "leakwatch_heap_live_bytes",
                "leakwatch_allocations_total",
                "leakwatch_report_sites",
                "leakwatch_tracker_memory_bytes",
                "leakwatch_window_seconds",
            ] {
                assert!(meta.contains_key(name), "{what}: no {name}");
            }
        }
    }
}

#[test]
fn per_site_series_are_bounded_by_top() {
    let report = many_leaks(30, &ReportOptions::default());
    assert_eq!(report.sites.len(), 30);
    for top in [0, 1, 5, 30, 1000] {
        let (_, samples) = parse(&prometheus(&report, top));
        let site_samples: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name.starts_with("leakwatch_site_"))
            .collect();
        let sites: BTreeSet<&str> = site_samples
            .iter()
            .map(|s| s.labels["site"].as_str())
            .collect();
        let expected: BTreeSet<&str> = report
            .sites
            .iter()
            .take(top)
            .map(|s| s.label.as_str())
            .collect();
        assert_eq!(sites, expected, "top {top}");
        // Five series per site at most, whatever else the report holds.
        assert!(site_samples.len() <= 5 * top.min(30), "top {top}");
        assert!(
            samples.len() <= 20 + 5 * top.min(30),
            "top {top}: {}",
            samples.len()
        );
    }
}

#[test]
fn site_labels_identify_the_site_and_nothing_else() {
    let report = model_server(Some(2 << 30));
    let (_, samples) = parse(&prometheus(&report, 3));
    let live: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "leakwatch_site_live_bytes")
        .collect();
    assert_eq!(live.len(), 3);
    let first = &live[0].labels;
    assert_eq!(
        first.keys().map(String::as_str).collect::<Vec<_>>(),
        ["file", "function", "line", "site"]
    );
    assert_eq!(first["site"], report.sites[0].label);
    assert_eq!(
        first["function"],
        "model_server::session::SessionLog::record"
    );
    assert_eq!(first["file"], "model-server/src/session.rs");
    assert_eq!(first["line"], "57");
    assert_eq!(live[0].value, report.sites[0].live_bytes as f64);

    let leak: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "leakwatch_site_leak")
        .map(|s| s.value)
        .collect();
    assert_eq!(leak, [1.0, 1.0, 0.0], "two leaks, then the plateau");
    let rate = samples
        .iter()
        .find(|s| s.name == "leakwatch_site_growth_bytes_per_second")
        .unwrap();
    assert_eq!(rate.value, report.sites[0].rate);
    // Only growing sites have a time to the limit.
    let to_limit = samples
        .iter()
        .filter(|s| s.name == "leakwatch_site_time_to_limit_seconds")
        .count();
    assert_eq!(to_limit, 2);
    let process = samples
        .iter()
        .find(|s| s.name == "leakwatch_time_to_limit_seconds")
        .unwrap();
    assert_eq!(Some(process.value), report.process.seconds_to_limit);
}

#[test]
fn label_values_are_escaped_and_read_back() {
    let report = with_leak_named(NASTY);
    assert_eq!(report.sites[0].function.as_deref(), Some(NASTY));
    let metrics = prometheus(&report, 1);
    assert!(
        metrics.contains(
            r#"function="app::weird<\"quoted\\path\">\nnext line {a=\"b\"} # HELP",file="#
        ),
        "{metrics}"
    );
    let (_, samples) = parse(&metrics);
    let site = samples
        .iter()
        .find(|s| s.name == "leakwatch_site_leak")
        .unwrap();
    assert_eq!(site.labels["function"], NASTY);
    assert_eq!(site.labels["site"], report.sites[0].label);
    assert_eq!(site.value, 1.0);
}

#[test]
fn every_verdict_is_counted_even_at_zero() {
    for report in [model_server(None), empty()] {
        let (_, samples) = parse(&prometheus(&report, 10));
        let counts: BTreeMap<&str, f64> = samples
            .iter()
            .filter(|s| s.name == "leakwatch_report_sites")
            .map(|s| (s.labels["verdict"].as_str(), s.value))
            .collect();
        assert_eq!(counts.len(), 5, "{counts:?}");
        for v in VERDICTS {
            let expected = report.sites.iter().filter(|s| s.verdict == v).count();
            assert_eq!(counts[v.as_str()], expected as f64, "{}", v.as_str());
        }
    }
}

#[test]
fn unknown_values_are_left_out() {
    let metrics = prometheus(&model_server(None), 10);
    assert!(!metrics.contains("limit"), "{metrics}");
    let mut report = empty();
    report.process.resident_bytes = 0;
    let metrics = prometheus(&report, 10);
    assert!(!metrics.contains("leakwatch_resident_memory_bytes"));
    assert!(!metrics.contains("leakwatch_site_"));
}

#[test]
fn values_format() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (0.5, "0.5"),
        (-2.0, "-2"),
        (30720.25, "30720.25"),
        (1e300, "1e300"),
        (-1.5e-7, "-1.5e-7"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for &(x, expect) in cases {
        assert_eq!(float(x), expect);
    }
}

/// With `LEAKWATCH_SAMPLES=dir`, writes `dir/metrics.prom` from the model server report.
#[test]
fn samples_when_asked() {
    let Some(dir) = std::env::var_os("LEAKWATCH_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metrics.prom"),
        prometheus(&model_server(Some(2 << 30)), 5),
    )
    .unwrap();
}
