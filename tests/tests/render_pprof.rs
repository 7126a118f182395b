//! Renderers on a real process: a block leaked in `leaky_function` shows up in the pprof
//! profile as `go tool pprof` reads it, and in the flame graph; with symbolization off
//! (`RecorderBuilder::symbolize(false)`) the profile has no names, and `go tool pprof
//! BINARY PROFILE` names the function from the binary.
//!
//! `go` may be missing on a developer's machine: then the pprof check prints
//! `SKIPPED: go not found` and passes, unless the environment variable `CI` is set.

use leakwatch::report::SymbolTable;
use leakwatch::report::render::flamegraph::flamegraph;
use leakwatch::report::render::pprof::pprof;
use leakwatch::{LeakWatch, Recorder, Snapshot, Symbolizer};
use leakwatch_tests::run;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

const LEAK_BYTES: usize = 3 << 20;

/// Leaks one block of [`LEAK_BYTES`].
#[inline(never)]
fn leaky_function() -> &'static mut [u8] {
    let block = vec![0x5a_u8; LEAK_BYTES];
    black_box(block).leak()
}

/// A snapshot taken after a leak, and the symbols of its stacks.
fn leak_and_snapshot() -> (Snapshot, SymbolTable) {
    black_box(leaky_function());
    let snapshot = leakwatch::snapshot();
    let mut symbolizer = Symbolizer::new();
    let mut symbols = SymbolTable::new();
    symbols.resolve_missing(
        snapshot.sites.iter().map(|s| s.frames.as_slice()),
        |address| symbolizer.symbolize(address).to_vec(),
    );
    (snapshot, symbols)
}

/// Runs `go tool pprof ARGS FILE` in `dir` (offline: only a file path, its temp dir in
/// `dir`), killed with its process group (go and the pprof it starts) after 60 s, and
/// returns its stdout.
fn go_tool_pprof(dir: &Path, args: &[&str], file: &Path) -> String {
    let out = leakwatch_testsupport::process::run(
        Command::new("go")
            .arg("tool")
            .arg("pprof")
            .args(args)
            .arg(file)
            .current_dir(dir)
            .env("PPROF_TMPDIR", dir)
            .env("GOTOOLCHAIN", "local"),
        None,
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof failed: {}\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Whether go is there (see `leakwatch_testsupport::tool::require`: `SKIPPED`, or a
/// failure under CI).
fn go_available() -> bool {
    leakwatch_testsupport::tool::require("go", "apt-get install golang-go")
}

/// Whether a function name is `leaky_function`'s: in full (`render_pprof::leaky_function`)
/// or, for an inlined frame of an optimised build, as the line tables name it.
fn is_leaky_function(name: &str) -> bool {
    name == "leaky_function" || name.ends_with("::leaky_function")
}

/// Whether `text` names a function of leakwatch's allocator (in full, or by the short
/// names of an optimised build's line tables).
fn names_the_tracker(text: &str) -> bool {
    ["leakwatch_alloc::", "alloc_tracked", "on_alloc"]
        .iter()
        .any(|f| text.contains(f))
}

/// A pprof byte count (`3MB`, `120.56kB`, `0`) in bytes.
fn pprof_bytes(s: &str) -> f64 {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..split].parse().unwrap_or(f64::NAN);
    let scale = match &s[split..] {
        "" | "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        unit => panic!("unexpected unit {unit:?} in {s:?}"),
    };
    number * scale
}

fn go_tool_pprof_finds_leaky_function() {
    let (snapshot, symbols) = leak_and_snapshot();
    let profile = pprof(&snapshot, &symbols);
    if !go_available() {
        return;
    }
    let dir = leakwatch_testsupport::temp_dir("render-pprof");
    let file = dir.join("heap.pb.gz");
    std::fs::write(&file, &profile).expect("write profile");
    let top = go_tool_pprof(&dir, &["-top", "-sample_index=inuse_space"], &file);
    println!("{top}");
    assert_leaky_function_holds_the_leak(&top);
    // The tracker's own frames are not in the profile: the flat bytes are the
    // service's (here the standard library's allocation functions).
    assert!(!names_the_tracker(&top), "{top}");
}

/// `go tool pprof -top` output names `leaky_function` with at least the leak's bytes
/// cumulative (the leak is allocated below it, in alloc::).
fn assert_leaky_function_holds_the_leak(top: &str) {
    let rows = top_rows(top);
    let row = rows
        .iter()
        .find(|r| is_leaky_function(&r[5..].join(" ")))
        .unwrap_or_else(|| panic!("leaky_function is not in\n{top}"));
    let cum = pprof_bytes(row[3]);
    assert!(
        cum >= LEAK_BYTES as f64,
        "cum {cum} of leaky_function in\n{top}"
    );
}

/// The rows of `go tool pprof -top` output: `flat flat% sum% cum cum% name...`.
fn top_rows(top: &str) -> Vec<Vec<&str>> {
    top.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.len() >= 6)
        .collect()
}

fn go_tool_pprof_with_the_binary_names_an_unsymbolized_profile() {
    black_box(leaky_function());
    let recorder = Recorder::builder()
        .manual()
        .symbolize(false)
        .start()
        .expect("recorder");
    recorder.record();
    let profile = recorder.pprof();
    // Nothing was symbolized in the process.
    assert_eq!(recorder.stats().symbolized_addresses, 0);
    let (mut snapshot, symbols) = recorder.latest();
    assert!(symbols.is_empty());
    // Every leak of this process (this test's and the earlier ones'), and nothing else:
    // go tool pprof reads a debug binary's DWARF slowly, a second or more per thousand
    // addresses on a loaded machine.
    snapshot.sites.retain(|s| s.live_bytes >= LEAK_BYTES as u64);
    assert!(!snapshot.sites.is_empty(), "no site holds the leak");
    let leaks = pprof(&snapshot, &symbols);
    if !go_available() {
        return;
    }
    let dir = leakwatch_testsupport::temp_dir("render-pprof-offline");
    let (file, leaks_file) = (dir.join("heap.pb.gz"), dir.join("leaks.pb.gz"));
    std::fs::write(&file, &profile).expect("write profile");
    std::fs::write(&leaks_file, &leaks).expect("write profile");
    // The profile itself names nothing: without symbolizing, pprof can only show each
    // module (`[render_pprof-…]`), as it does for addresses without functions.
    let bare = go_tool_pprof(
        &dir,
        &["-top", "-symbolize=none", "-sample_index=inuse_space"],
        &file,
    );
    assert!(!top_rows(&bare).is_empty(), "{bare}");
    assert!(
        top_rows(&bare)
            .iter()
            .all(|r| r[5..].join(" ").starts_with('[')),
        "{bare}"
    );
    // With the binary, go tool pprof symbolizes it: the mappings' addresses and offsets
    // must match the file for it to find the function.
    let exe = std::env::current_exe().expect("current_exe");
    let exe = exe.to_str().expect("UTF-8 path");
    let top = go_tool_pprof(
        &dir,
        &["-top", "-sample_index=inuse_space", exe],
        &leaks_file,
    );
    println!("{top}");
    assert_leaky_function_holds_the_leak(&top);
}

fn flamegraph_names_leaky_function() {
    let (snapshot, symbols) = leak_and_snapshot();
    let svg = flamegraph(&snapshot, &symbols, "render_pprof");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("<!DOCTYPE"));
    let frame = svg
        .split("<title>")
        .find(|t| {
            t.split_once(" (")
                .is_some_and(|(name, _)| is_leaky_function(name))
        })
        .unwrap_or_else(|| panic!("no leaky_function frame in the flame graph"));
    // `render_pprof::leaky_function (3,145,728 bytes, 42.0%)`: at least the leak.
    let bytes: String = frame
        .split_once(" (")
        .map_or("", |(_, rest)| rest.split(" bytes").next().unwrap_or(""))
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let bytes: usize = bytes.parse().unwrap_or(0);
    assert!(bytes >= LEAK_BYTES, "{frame}");
    assert!(!names_the_tracker(&svg), "allocator frames are dropped");
}

fn main() {
    run(&[
        (
            "go_tool_pprof_finds_leaky_function",
            go_tool_pprof_finds_leaky_function,
        ),
        (
            "go_tool_pprof_with_the_binary_names_an_unsymbolized_profile",
            go_tool_pprof_with_the_binary_names_an_unsymbolized_profile,
        ),
        (
            "flamegraph_names_leaky_function",
            flamegraph_names_leaky_function,
        ),
    ]);
}
