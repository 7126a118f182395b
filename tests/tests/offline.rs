//! Symbols offline: a recorder with symbolization off (`RecorderBuilder::symbolize(false)`
//! or `LEAKWATCH_SYMBOLIZE=0`) never symbolizes in the process. Its series file carries
//! addresses and modules only, its reports label sites by module and offset with a
//! warning, and the file read back gives the same labels. A recorder with symbolization
//! on in the same process names the same leak (the control: the counter counts).

use leakwatch::report::{Recording, Report, ReportOptions};
use leakwatch::{LeakWatch, Recorder};
use leakwatch_tests::run;
use std::hint::black_box;
use std::process::Command;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

/// Keeps 64 KiB more each call, never freed.
#[inline(never)]
fn keep_offline(kept: &mut Vec<Vec<u8>>) {
    kept.push(vec![7u8; 64 << 10]);
}

/// The sorted labels of a report.
fn labels(report: &Report) -> Vec<String> {
    let mut labels: Vec<String> = report.sites.iter().map(|s| s.label.clone()).collect();
    labels.sort_unstable();
    labels
}

fn symbolization_off_keeps_symbols_out_of_the_process_and_the_file() {
    let dir = leakwatch_testsupport::temp_dir("offline");
    let series = dir.join("series.jsonl");
    let recorder = Recorder::builder()
        .manual()
        .symbolize(false)
        .file(&series)
        .start()
        .expect("recorder");
    assert!(!recorder.symbolizes());
    let mut kept = Vec::new();
    for _ in 0..5 {
        keep_offline(&mut kept);
        recorder.record();
    }
    let report = recorder.report();
    let text = recorder.text(20);
    let html = recorder.html();
    let _ = recorder.pprof();
    let stats = recorder.stats();
    let (snapshot, symbols) = recorder.latest();
    drop(recorder);
    println!("{text}");

    // Nothing was symbolized, by any renderer.
    assert_eq!(stats.symbolized_addresses, 0, "{stats:?}");
    assert!(symbols.is_empty(), "{} addresses symbolized", symbols.len());
    // Sites are labelled by the program's file name and offsets; none by a name.
    let exe = std::env::current_exe().expect("current_exe");
    let exe_name = exe.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(!report.sites.is_empty());
    assert!(
        report
            .sites
            .iter()
            .any(|s| s.label.starts_with(&format!("{exe_name}+0x"))),
        "{text}"
    );
    assert!(!text.contains("keep_offline"), "{text}");
    assert!(!html.contains("keep_offline"));
    let warnings: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("symbols are offline"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", report.warnings);
    assert!(text.contains("symbols are offline"), "{text}");
    // The main program's module carries its executable segment, for offline tools.
    let main = &snapshot.modules[0];
    assert!(
        main.text_start < main.text_end && main.start <= main.text_start,
        "{main:?}"
    );

    // The file: addresses and modules, no symbols.
    let file = std::fs::read_to_string(&series).expect("read series");
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l.get("symbols").is_none()), "{file}");
    assert!(
        lines[0]["modules"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(!file.contains("keep_offline"));
    // Read back, it lacks the symbols and labels its sites as the process did.
    let recording = Recording::read("series", file.as_bytes()).expect("read back");
    assert!(recording.symbols.is_empty());
    let offline = Report::build(
        &recording.history,
        &recording.symbols,
        &ReportOptions::default(),
    );
    assert_eq!(labels(&offline), labels(&report));
    assert!(
        offline
            .warnings
            .iter()
            .any(|w| w.contains("symbols are offline"))
    );
    black_box(kept);
}

fn symbolization_on_names_the_same_leak() {
    let recorder = Recorder::builder()
        .manual()
        .symbolize(true)
        .start()
        .expect("recorder");
    let mut kept = Vec::new();
    for _ in 0..3 {
        keep_offline(&mut kept);
        recorder.record();
    }
    let text = recorder.text(50);
    let stats = recorder.stats();
    // Unless LEAKWATCH_SYMBOLIZE says otherwise (the child test below sets it).
    if std::env::var_os("LEAKWATCH_SYMBOLIZE").is_none() {
        assert!(stats.symbolized_addresses > 0, "{stats:?}");
        assert!(text.contains("keep_offline"), "{text}");
        assert!(!text.contains("symbols are offline"), "{text}");
    }
    black_box(kept);
}

/// `LEAKWATCH_SYMBOLIZE=0` overrides `.symbolize(true)`: run in a child with it set
/// (this test binary, filtered to this test).
fn the_environment_overrides_the_builder() {
    const NAME: &str = "the_environment_overrides_the_builder";
    match std::env::var("LEAKWATCH_SYMBOLIZE").as_deref() {
        Ok("0") => {
            let recorder = Recorder::builder()
                .manual()
                .symbolize(true)
                .start()
                .expect("recorder");
            assert!(!recorder.symbolizes());
            let mut kept = Vec::new();
            keep_offline(&mut kept);
            recorder.record();
            let report = recorder.report();
            assert_eq!(recorder.stats().symbolized_addresses, 0);
            assert!(
                report
                    .warnings
                    .iter()
                    .any(|w| w.contains("symbols are offline"))
            );
            black_box(kept);
        }
        Ok("maybe") => {
            // Not a switch: ignored, with a warning; the builder decides.
            let recorder = Recorder::builder()
                .manual()
                .symbolize(false)
                .start()
                .expect("recorder");
            assert!(!recorder.symbolizes());
            recorder.record();
            let warnings = recorder.report().warnings;
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with("LEAKWATCH_SYMBOLIZE=\"maybe\" is not")),
                "{warnings:?}"
            );
        }
        _ => {
            for value in ["0", "maybe"] {
                let exe = std::env::current_exe().expect("current_exe");
                let out = Command::new(exe)
                    .arg(NAME)
                    .env("LEAKWATCH_SYMBOLIZE", value)
                    .output()
                    .expect("run the child");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains(&format!("test {NAME} ... ok")),
                    "LEAKWATCH_SYMBOLIZE={value}: {}\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn main() {
    run(&[
        (
            "symbolization_off_keeps_symbols_out_of_the_process_and_the_file",
            symbolization_off_keeps_symbols_out_of_the_process_and_the_file,
        ),
        (
            "symbolization_on_names_the_same_leak",
            symbolization_on_names_the_same_leak,
        ),
        (
            "the_environment_overrides_the_builder",
            the_environment_overrides_the_builder,
        ),
    ]);
}
