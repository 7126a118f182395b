//! The `leakwatch` command as a user runs it: good series and reports give the expected
//! output; every kind of bad input gives one line naming the file (and line) and exit
//! code 2, never a panic.

use leakwatch_report::{SeriesWriter, SymbolTable};
use leakwatch_types::{Mode, SiteStats, Snapshot, Symbol};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::leakwatch;
use leakwatch_testsupport::temp_dir;

fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    for (address, function, line) in [
        (0x101u64, "svc::sessions::remember", 42u32),
        (0x201, "svc::cache::put", 17),
        (0x777, "svc::main", 3),
    ] {
        let mut s = Symbol::default();
        s.address = address;
        s.function = Some(function.into());
        s.file = Some("/src/svc/src/lib.rs".into());
        s.line = Some(line);
        table.insert(address, vec![s]);
    }
    table
}

/// Five minutes at one snapshot a second: a leak, a cache that fills up, a stable site.
fn series_text(pid: u32) -> String {
    series_files(pid, &[]).concat()
}

/// [`series_text`] as a rotating recorder writes it: a new file (whose first line
/// describes everything) at each snapshot of `cuts`.
fn series_files(pid: u32, cuts: &[u64]) -> Vec<String> {
    let table = symbols();
    let mut writer = SeriesWriter::new();
    let mut files = vec![String::new()];
    for i in 0..300u64 {
        if cuts.contains(&i) {
            writer.restart();
            files.push(String::new());
        }
        let out = files.last_mut().unwrap();
        let t = i as f64;
        let mut s = Snapshot::default();
        s.timestamp_ms = 1_800_000_000_000 + i * 1000;
        s.epoch = i + 1;
        s.pid = pid;
        s.mode = Mode::Sampled;
        s.sample_rate = 524_288;
        let sites = [
            (1u32, vec![0x101u64, 0x777], 50_000.0 * t),
            (2, vec![0x201, 0x777], 30e6 * (1.0 - (-t / 30.0).exp())),
            (3, vec![0x777], 4e6),
        ];
        s.sites = sites
            .into_iter()
            .map(|(id, frames, live)| {
                let mut site = SiteStats::default();
                site.id = id;
                site.frames = frames;
                site.alloc_bytes = live as u64 + 1000;
                site.freed_bytes = 1000;
                site.live_bytes = live as u64;
                site.alloc_blocks = live / 100.0 + 1.0;
                site.freed_blocks = 1.0;
                site.live_blocks = live / 100.0;
                site
            })
            .collect();
        s.process.live_bytes = s.sites.iter().map(|x| x.live_bytes as i64).sum();
        out.push_str(&writer.line(&s, &table, Some(1 << 30)));
    }
    files
}

fn write_series(dir: &Path) -> PathBuf {
    let path = dir.join("series.jsonl");
    std::fs::write(&path, series_text(4242)).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn report_ranks_the_leak_first_in_every_format() {
    let dir = temp_dir("cli-formats");
    let series = write_series(&dir);
    let s = series.to_str().unwrap();

    let text = leakwatch(&["report", s]);
    assert!(text.status.success(), "{}", stderr(&text));
    let out = stdout(&text);
    let first_leak = out
        .lines()
        .position(|l| l.contains("svc::sessions::remember"));
    let cache = out.lines().position(|l| l.contains("svc::cache::put"));
    assert!(first_leak.is_some() && first_leak < cache, "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");

    let json = leakwatch(&["report", s, "--format", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["format"], "leakwatch-report");
    assert_eq!(v["sites"][0]["verdict"], "leak");
    assert_eq!(v["sites"][0]["function"], "svc::sessions::remember");
    assert_eq!(
        v["process"]["limit_bytes"],
        1u64 << 30,
        "the recorded limit is used"
    );
    let with_limit = leakwatch(&["report", s, "--format=json", "--limit", "4g"]);
    let v: serde_json::Value = serde_json::from_slice(&with_limit.stdout).unwrap();
    assert_eq!(v["process"]["limit_bytes"], 4u64 << 30, "--limit overrides");

    let prom = leakwatch(&["report", s, "--format", "prom", "--top", "2"]);
    assert!(prom.status.success(), "{}", stderr(&prom));
    assert!(stdout(&prom).contains("svc::sessions::remember"));

    let pprof = dir.join("heap.pb.gz");
    let p = leakwatch(&[
        "report",
        s,
        "--format",
        "pprof",
        "-o",
        pprof.to_str().unwrap(),
    ]);
    assert!(p.status.success(), "{}", stderr(&p));
    let gz = std::fs::read(&pprof).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");

    let svg = leakwatch(&["report", s, "--format", "svg"]);
    assert!(svg.status.success() && stdout(&svg).contains("<svg"));

    let html = leakwatch(&["report", s, "--format", "html"]);
    assert!(html.status.success(), "{}", stderr(&html));
    let page = stdout(&html);
    assert!(page.contains("svc::sessions::remember") && page.contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_compares_two_json_reports() {
    let dir = temp_dir("cli-diff");
    // The first report covers the first minute, the second all five.
    let full = series_text(7);
    let early: String = full.lines().take(60).map(|l| format!("{l}\n")).collect();
    let (early_path, full_path) = (dir.join("early.jsonl"), dir.join("full.jsonl"));
    std::fs::write(&early_path, early).unwrap();
    std::fs::write(&full_path, full).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for (series, report) in [(&early_path, &a), (&full_path, &b)] {
        let o = leakwatch(&[
            "report",
            series.to_str().unwrap(),
            "--format",
            "json",
            "-o",
            report.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = leakwatch(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let first_row = out.lines().find(|l| l.contains("svc::")).unwrap();
    assert!(
        first_row.contains("svc::sessions::remember") && first_row.contains("leak"),
        "{out}"
    );
    assert!(out.contains("240 s apart"), "{out}");

    let o = leakwatch(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["sites"][0]["label"].as_str().unwrap().split(' ').next(),
        Some("svc::sessions::remember")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `args`, expects exit code 2 and one line on stderr containing every `needle`.
fn fails(args: &[&str], needles: &[&str]) {
    let o = leakwatch(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("leakwatch: "), "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
    assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let dir = temp_dir("cli-bad");
    let good = series_text(1);
    let path = |name: &str, content: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    };
    let missing = dir.join("missing.jsonl");
    fails(
        &["report", missing.to_str().unwrap()],
        &["missing.jsonl: cannot open"],
    );
    fails(&["report", dir.to_str().unwrap()], &["leakwatch-cli-bad"]);
    fails(
        &["report", &path("empty.jsonl", b"")],
        &["empty.jsonl: empty file"],
    );
    let truncated = &good[..good.len() / 2];
    let line = truncated.lines().count();
    fails(
        &["report", &path("truncated.jsonl", truncated.as_bytes())],
        &[&format!("truncated.jsonl:{line}: truncated")],
    );
    let mut corrupt: Vec<&str> = good.lines().collect();
    corrupt[4] = "{\"leakwatch_series\":1,\"timestamp_ms\":\"oops\"}";
    fails(
        &[
            "report",
            &path("corrupt.jsonl", corrupt.join("\n").as_bytes()),
        ],
        &["corrupt.jsonl:5: not a valid series line"],
    );
    fails(
        &[
            "report",
            &path("binary.jsonl", &[0xff, 0xfe, 0x00, 0x13, b'\n']),
        ],
        &["binary.jsonl:1:"],
    );
    fails(
        &["report", &path("other.jsonl", b"{\"hello\": 1}\n")],
        &["other.jsonl:1: not a leakwatch series line"],
    );

    // Reports for diff.
    fails(
        &["diff", &path("e.json", b""), &path("e2.json", b"")],
        &["e.json: empty file"],
    );
    fails(
        &[
            "diff",
            &path("cut.json", b"{\"format\": \"leakwatch-report\", \"vers"),
            &path("x.json", b"{}"),
        ],
        &["cut.json:1: truncated"],
    );
    fails(
        &[
            "diff",
            &path(
                "series-not-report.json",
                good.lines().next().unwrap().as_bytes(),
            ),
            &path("y.json", b"{}"),
        ],
        &["series-not-report.json: not a leakwatch report"],
    );

    // Wrong flags: each names what was wrong and where the help is.
    fails(
        &["report"],
        &["`leakwatch report` takes SERIES.jsonl (missing SERIES.jsonl)"],
    );
    fails(
        &["report", "x.jsonl", "--format", "xml"],
        &[
            "--format: unknown value \"xml\" (one of: text, json, pprof, prom, svg, html)",
            "; see `leakwatch report --help`",
        ],
    );
    fails(
        &["report", "x.jsonl", "--top", "-3"],
        &["--top: not a positive number: \"-3\""],
    );
    fails(&["report", "x.jsonl", "--top"], &["--top needs a value"]);
    fails(
        &["report", "x.jsonl", "--limit", "lots"],
        &["--limit: not a size"],
    );
    fails(
        &["report", "x.jsonl", "--bogus"],
        &["unknown option --bogus for `leakwatch report`"],
    );
    fails(
        &["report", "x.jsonl", "--symbol", "bin"],
        &["unknown option --symbol", "(did you mean --symbols?)"],
    );
    fails(
        &["report", "x.jsonl", "y.jsonl"],
        &["unexpected argument \"y.jsonl\": `leakwatch report` takes SERIES.jsonl"],
    );
    fails(
        &["diff", "a.json"],
        &["`leakwatch diff` takes A.json and B.json (missing B.json)"],
    );
    fails(
        &["diff", "a.json", "b.json", "--format", "pprof"],
        &["--format: unknown value \"pprof\" (one of: text, json)"],
    );
    fails(
        &["diff", "a.json", "b.json", "--symbols", "bin"],
        &["unknown option --symbols for `leakwatch diff`"],
    );
    fails(
        &["completions", "tcsh"],
        &["SHELL: unknown value \"tcsh\" (one of: bash, elvish, fish, powershell, zsh)"],
    );
    fails(
        &["explode"],
        &["unknown command \"explode\"", "; see `leakwatch --help`"],
    );
    fails(
        &["--top", "5", "report", "x.jsonl"],
        &["unknown option --top for `leakwatch` (an option of: report, diff"],
    );
    fails(
        &[],
        &["no command given (commands: report, diff, completions, help)"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `args`, expects exit code 0, nothing on stderr, and stdout containing every
/// `needle`; returns stdout.
fn prints(args: &[&str], needles: &[&str]) -> String {
    let o = leakwatch(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    let out = stdout(&o);
    for needle in needles {
        assert!(out.contains(needle), "{args:?} lacks {needle:?}:\n{out}");
    }
    out
}

#[test]
fn help_per_subcommand_and_version_succeed_on_stdout() {
    let report = [
        "Usage: leakwatch report [OPTIONS] <SERIES.jsonl>",
        "--top <N>",
        "--format <FORMAT>",
        "--limit <BYTES>",
        "-o, --output <FILE>",
        "--symbols <PATH>",
    ];
    let long_report = prints(&["report", "--help"], &report);
    for needle in [
        "Rotated files beside it (SERIES.jsonl.1, .2, ...) are read first",
        "prom:  Prometheus text exposition (also: prometheus)",
        "matched to the recorded modules by build id",
        "Exit status: 0 on success, 2 on bad arguments",
    ] {
        assert!(
            long_report.contains(needle),
            "lacks {needle:?}:\n{long_report}"
        );
    }
    assert_eq!(prints(&["help", "report"], &report), long_report);
    let short_report = prints(&["report", "-h"], &report);
    assert!(short_report.len() < long_report.len());
    let diff = [
        "Usage: leakwatch diff [OPTIONS] <A.json> <B.json>",
        "which sites hold more memory in B than in A",
        "--format <FORMAT>",
    ];
    prints(&["diff", "--help"], &diff);
    prints(&["help", "diff"], &diff);
    prints(
        &["completions", "--help"],
        &[
            "Usage: leakwatch completions <SHELL>",
            "bash",
            "zsh",
            "fish",
        ],
    );
    let top = [
        "Usage: leakwatch <COMMAND>",
        "report",
        "diff",
        "completions",
    ];
    for args in [&["help"][..], &["--help"], &["-h"]] {
        let out = prints(args, &top);
        assert!(
            out.lines().all(|l| l.chars().count() <= 100),
            "{args:?}:\n{out}"
        );
        assert!(
            !out.contains("The same as `leakwatch --version`"),
            "the version command is hidden: {out}"
        );
    }
    let version = format!("leakwatch {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"], &["version"]] {
        assert_eq!(prints(args, &[]), version, "{args:?}");
    }
}

#[test]
fn completions_complete_commands_flags_and_formats() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = prints(
            &["completions", shell],
            // fish spells options `-l symbols`.
            &[
                "report",
                "diff",
                "completions",
                "symbols",
                "format",
                "pprof",
            ],
        );
        assert!(script.lines().count() > 10, "{shell}:\n{script}");
    }
    // The bash script, run: it parses, and completes what a user would type.
    let script = stdout(&leakwatch(&["completions", "bash"]));
    let complete = |words: &[&str]| -> String {
        // bash calls `_leakwatch COMMAND CURRENT-WORD PREVIOUS-WORD`.
        let current = words.len() - 1;
        let line = format!(
            "{script}\nCOMP_WORDS=({}); COMP_CWORD={current}; _leakwatch leakwatch '{}' '{}'; \
             echo \"${{COMPREPLY[*]}}\"",
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words[current],
            words[current - 1],
        );
        let o = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &line])
            .output()
            .expect("run bash");
        assert!(o.status.success(), "{words:?}: {}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    assert_eq!(complete(&["leakwatch", "re"]), "report");
    assert_eq!(
        complete(&["leakwatch", "report", "s.jsonl", "--sy"]),
        "--symbols"
    );
    assert_eq!(
        complete(&["leakwatch", "report", "s.jsonl", "--format", ""]),
        "text json pprof prom svg html"
    );
    assert_eq!(
        complete(&["leakwatch", "diff", "a", "b", "--format", ""]),
        "text json"
    );
    assert_eq!(
        complete(&["leakwatch", "completions", "f"]),
        "fish",
        "shells complete too"
    );
}

/// An exact-mode snapshot of process `pid` whose sites `(id, frames, live bytes, live
/// blocks)` allocated all they hold.
fn exact_snapshot(
    pid: u32,
    timestamp_ms: u64,
    epoch: u64,
    sites: impl IntoIterator<Item = (u32, Vec<u64>, u64, f64)>,
) -> Snapshot {
    let mut s = Snapshot::default();
    s.timestamp_ms = timestamp_ms;
    s.epoch = epoch;
    s.pid = pid;
    s.mode = Mode::Exact;
    s.sample_rate = 1;
    s.sites = sites
        .into_iter()
        .map(|(id, frames, live, blocks)| {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = frames;
            site.alloc_bytes = live;
            site.live_bytes = live;
            site.alloc_blocks = blocks;
            site.live_blocks = blocks;
            site
        })
        .collect();
    s.process.live_bytes = s.sites.iter().map(|x| x.live_bytes as i64).sum();
    s
}

/// 146 snapshots of a 1 MiB/s leak (145 MiB in all) and a stable site, stamped by
/// `stamp(i)`, as a series file.
fn series_stamped(dir: &Path, name: &str, stamp: impl Fn(u64) -> u64) -> PathBuf {
    let table = symbols();
    let mut writer = SeriesWriter::new();
    let mut out = String::new();
    for i in 0..146u64 {
        let sites = [
            (1u32, vec![0x101u64, 0x777], i << 20, 1.0),
            (3, vec![0x777], 4 << 20, 1.0),
        ];
        let s = exact_snapshot(77, stamp(i), 0, sites);
        out.push_str(&writer.line(&s, &table, None));
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn a_series_whose_clock_stands_still_or_steps_back_is_ranked_with_a_warning() {
    let dir = temp_dir("cli-clock");
    let still = series_stamped(&dir, "still.jsonl", |_| 1_800_000_000_000);
    // Steps back ten minutes after 100 s, then runs on.
    let back = series_stamped(&dir, "back.jsonl", |i| {
        1_800_000_000_000 + i * 1000 - if i >= 100 { 600_000 } else { 0 }
    });
    for (series, what) in [
        (&still, "timestamps stood still 145 times"),
        (&back, "timestamps went backwards once"),
    ] {
        let s = series.to_str().unwrap();
        let text = leakwatch(&["report", s]);
        assert!(text.status.success(), "{}", stderr(&text));
        let out = stdout(&text);
        let header: Vec<&str> = out.lines().take_while(|l| !l.is_empty()).collect();
        assert!(
            header
                .iter()
                .any(|l| l.starts_with(&format!("clock: {what};"))),
            "{out}"
        );
        assert!(
            header
                .iter()
                .any(|l| l.starts_with("window: 2 min over 146 points")),
            "{out}"
        );
        assert!(!out.contains("No leak"), "{out}");
        let row = out
            .lines()
            .find(|l| l.contains("svc::sessions::remember"))
            .unwrap_or_default();
        assert!(row.contains("leak") && row.contains("145.0 MiB"), "{out}");

        let json = leakwatch(&["report", s, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["window_seconds"], 145.0);
        assert_eq!(v["sites"][0]["verdict"], "leak", "{v:#}");
        let warnings = v["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.starts_with(what) && w.contains("rebuilt from point order"))),
            "{warnings:?}"
        );

        let html = stdout(&leakwatch(&["report", s, "--format", "html"]));
        assert!(html.contains(&format!("Clock: {what};")), "{html}");
    }
    // A clock that moves forward gets no such warning.
    let good = write_series(&dir);
    let out = stdout(&leakwatch(&["report", good.to_str().unwrap()]));
    assert!(!out.contains("clock:") && !out.contains("rebuilt"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `report` (a JSON report of this version) as version 1 wrote it: no `functions`, no
/// `function_rank`, sites in ranking order (here the grouped order, renumbered the same).
fn as_version_1(report: &Path, out: &Path) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(v["version"], 2);
    assert!(v["functions"].is_array());
    v["version"] = 1.into();
    let object = v.as_object_mut().unwrap();
    object.remove("functions");
    for site in object["sites"].as_array_mut().unwrap() {
        site.as_object_mut().unwrap().remove("function_rank");
    }
    std::fs::write(out, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn diff_reads_version_1_and_version_2_reports_alike() {
    let dir = temp_dir("cli-diff-versions");
    let full = series_text(7);
    let early: String = full.lines().take(60).map(|l| format!("{l}\n")).collect();
    let (early_path, full_path) = (dir.join("early.jsonl"), dir.join("full.jsonl"));
    std::fs::write(&early_path, early).unwrap();
    std::fs::write(&full_path, full).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for (series, report) in [(&early_path, &a), (&full_path, &b)] {
        let o = leakwatch(&[
            "report",
            series.to_str().unwrap(),
            "--format",
            "json",
            "-o",
            report.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a1, b1) = (dir.join("a1.json"), dir.join("b1.json"));
    as_version_1(&a, &a1);
    as_version_1(&b, &b1);
    let diff = |x: &Path, y: &Path| {
        let o = leakwatch(&[
            "diff",
            x.to_str().unwrap(),
            y.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(o.status.success(), "{x:?} {y:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["sites"].clone()
    };
    let new = diff(&a, &b);
    assert_eq!(
        new[0]["label"].as_str().unwrap().split(' ').next(),
        Some("svc::sessions::remember"),
        "{new:#}"
    );
    assert_eq!(new[0]["after_verdict"], "leak");
    // Old with old, old with new, new with old: the same comparison.
    assert_eq!(diff(&a1, &b1), new);
    assert_eq!(diff(&a1, &b), new);
    assert_eq!(diff(&a, &b1), new);
    // The text form too.
    let o = leakwatch(&["diff", a1.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("240 s apart"), "{}", stdout(&o));
    // A version from the future is refused in one line.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&b).unwrap()).unwrap();
    v["version"] = 3.into();
    let b3 = dir.join("b3.json");
    std::fs::write(&b3, v.to_string()).unwrap();
    fails(
        &["diff", a.to_str().unwrap(), b3.to_str().unwrap()],
        &[
            "b3.json",
            "report version 3 is not supported (this build reads 1 to 2)",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_utf8_paths_work_and_endless_lines_get_one_line_and_exit_2() {
    use std::os::unix::ffi::OsStrExt;
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_leakwatch"))
            .args(args)
            .output()
            .expect("run leakwatch")
    };
    // A series and an output file whose names are not UTF-8: read and written.
    let dir = temp_dir("cli-non-utf8");
    let name = |bytes: &[u8]| dir.join(std::ffi::OsStr::from_bytes(bytes));
    let (series, out) = (name(b"series-\xff.jsonl"), name(b"report-\xfe.json"));
    std::fs::write(&series, series_text(5)).unwrap();
    let o = run(&[
        "report".as_ref(),
        series.as_os_str(),
        "--format=json".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["sites"][0]["function"], "svc::sessions::remember");
    // Two reports so named, compared.
    let o = run(&["diff".as_ref(), out.as_os_str(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("report-\u{fffd}.json"),
        "{}",
        stdout(&o)
    );

    // Missing: one line naming it (lossily), exit 2.
    let missing = name(b"missing-\xff.jsonl");
    let o = run(&["report".as_ref(), missing.as_os_str()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing-\u{fffd}.jsonl: cannot open"), "{err}");

    // Where text is needed (a number, a format, a command), not UTF-8 is refused.
    let bad = std::ffi::OsStr::from_bytes(b"\xff");
    for args in [
        &["report".as_ref(), series.as_os_str(), "--top".as_ref(), bad][..],
        &[
            "report".as_ref(),
            series.as_os_str(),
            "--format".as_ref(),
            bad,
        ],
        &["completions".as_ref(), bad],
        &[bad],
    ] {
        let o = run(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("leakwatch: "), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let err = stderr(&run(&[
        "report".as_ref(),
        series.as_os_str(),
        "--top".as_ref(),
        bad,
    ]));
    assert!(err.contains("not valid UTF-8"), "{err}");

    // A file name holding a newline stays one line in the error.
    let o = leakwatch(&["report", "no\nsuch.jsonl"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no\\nsuch.jsonl: cannot open"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // No newline ever: the reader stops at its line bound instead of growing.
    let out = leakwatch(&["report", "/dev/zero"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/dev/zero:1") && stderr.contains("longer than"),
        "{stderr}"
    );

    // Binary garbage with newlines: not UTF-8, named by line.
    let dir = temp_dir("cli-binary");
    let path = dir.join("garbage.jsonl");
    std::fs::write(&path, b"\n\xff\xfe\x00garbage\n").unwrap();
    let out = leakwatch(&["report", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":2") && stderr.contains("not UTF-8"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A series of `points` snapshots whose sites have the given ids (each with a distinct
/// frame), all growing.
fn series_with_ids(ids: &[u32], points: u64) -> String {
    let table = symbols();
    let mut writer = SeriesWriter::new();
    let mut out = String::new();
    for i in 0..points {
        let sites = ids.iter().map(|&id| {
            let frames = vec![0x1_0000 + u64::from(id)];
            (id, frames, 1_000 * (i + 1), (i + 1) as f64)
        });
        let s = exact_snapshot(7, 1_800_000_000_000 + i * 1000, i + 1, sites);
        out.push_str(&writer.line(&s, &table, None));
    }
    out
}

#[test]
fn huge_and_many_site_ids_cost_what_the_sites_do() {
    let dir = temp_dir("cli-ids");
    // The largest ids a file can name: read into tables as long as the sites, not the ids.
    let path = dir.join("huge-ids.jsonl");
    std::fs::write(&path, series_with_ids(&[u32::MAX, 50_000_000, 3], 20)).unwrap();
    let out = leakwatch(&["report", path.to_str().unwrap(), "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"sites\""), "{json}");
    // As many sites as a file may hold (100,000), described in descending id order, in
    // one line.
    let ids: Vec<u32> = (0..leakwatch_report::MAX_SITES as u32).rev().collect();
    let path = dir.join("many-sites.jsonl");
    std::fs::write(&path, series_with_ids(&ids, 2)).unwrap();
    let out = leakwatch(&["report", path.to_str().unwrap(), "--top", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_reads_a_rotated_set_oldest_first_or_one_file_named_alone() {
    let dir = temp_dir("cli-rotated");
    let whole = write_series(&dir);
    let path = dir.join("rotated.jsonl");
    let files = series_files(4242, &[100, 200]);
    assert_eq!(files.len(), 3);
    for (name, text) in ["rotated.jsonl.2", "rotated.jsonl.1", "rotated.jsonl"]
        .iter()
        .zip(&files)
    {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let json = |path: &Path| -> serde_json::Value {
        let out = leakwatch(&["report", path.to_str().unwrap(), "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let set = json(&path);
    assert_eq!(set, json(&whole), "the set reads as the unrotated file");
    assert_eq!(set["points"], 300);
    // A rotated file named alone: its own 100 points, its sites all described.
    let alone = json(&dir.join("rotated.jsonl.1"));
    assert_eq!(alone["points"], 100);
    assert_eq!(alone["sites"][0]["function"], "svc::sessions::remember");

    // A bad file in the set is named, with its line.
    std::fs::write(
        dir.join("rotated.jsonl.2"),
        "{\"leakwatch_series\": 1, oops\n",
    )
    .unwrap();
    let out = leakwatch(&["report", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.starts_with("leakwatch: ")
            && message.contains("rotated.jsonl.2:1: not valid JSON")
            && message.lines().count() == 1,
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
