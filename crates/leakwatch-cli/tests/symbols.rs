//! `leakwatch report --symbols`: a series recorded in this process (symbols present) and
//! the same series with its symbols stripped give the same labels when the stripped one
//! is symbolized from this test binary, found by path, by `.build-id` directory, and
//! not at all when the build id does not match.

use std::path::{Path, PathBuf};

mod common;
use common::leakwatch;
use leakwatch_testsupport::temp_dir;

#[global_allocator]
static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();

/// Keeps 64 KiB more on every call: the site the report must name.
#[inline(never)]
fn grow_the_test_cache(kept: &mut Vec<Vec<u8>>) {
    kept.push(std::hint::black_box(vec![7u8; 64 << 10]));
}

/// A series recorded in this process, exact mode, with a growing site.
fn record(dir: &Path) -> PathBuf {
    leakwatch::set_sample_rate(1);
    leakwatch::enable();
    let path = dir.join("series.jsonl");
    let recorder = leakwatch::Recorder::builder()
        .file(&path)
        .manual()
        .start()
        .expect("recorder");
    let mut kept = Vec::new();
    for _ in 0..12 {
        for _ in 0..4 {
            grow_the_test_cache(&mut kept);
        }
        recorder.record();
    }
    recorder.stop();
    leakwatch::disable();
    std::hint::black_box(kept);
    path
}

/// `path` rewritten line by line through `edit`.
fn rewrite(path: &Path, out: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).expect("read series");
    let mut lines = String::new();
    for line in text.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).expect("json line");
        edit(&mut value);
        lines.push_str(&value.to_string());
        lines.push('\n');
    }
    std::fs::write(out, lines).expect("write series");
}

fn strip_symbols(line: &mut serde_json::Value) {
    if let Some(map) = line.as_object_mut() {
        map.remove("symbols");
    }
}

/// The labels of `leakwatch report FILE --format json ARGS...`, sorted, and its stderr.
fn labels(series: &Path, args: &[&str]) -> (Vec<String>, String) {
    let series = series.to_str().expect("utf-8 path");
    let mut all = vec!["report", series, "--format", "json", "--top", "1000"];
    all.extend_from_slice(args);
    let out = leakwatch(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{all:?}: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let mut labels: Vec<String> = report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| s["label"].as_str().expect("label").to_string())
        .collect();
    labels.sort();
    (labels, stderr)
}

#[test]
fn stripped_symbols_come_back_the_same_from_the_binary_or_a_build_id_directory() {
    let dir = temp_dir("cli-symbols");
    let recorded = record(&dir);
    let stripped = dir.join("stripped.jsonl");
    rewrite(&recorded, &stripped, strip_symbols);
    let exe = std::fs::canonicalize(std::env::current_exe().expect("exe")).expect("exe");
    let exe_arg = exe.to_str().expect("utf-8 path");

    let (expected, _) = labels(&recorded, &[]);
    assert!(
        expected.iter().any(|l| l.contains("grow_the_test_cache")),
        "{expected:#?}"
    );
    // Without symbols, the sites are addresses.
    let (bare, _) = labels(&stripped, &[]);
    assert!(
        !bare.iter().any(|l| l.contains("grow_the_test_cache")),
        "{bare:#?}"
    );
    // From the binary itself.
    let (from_binary, stderr) = labels(&stripped, &["--symbols", exe_arg]);
    assert_eq!(from_binary, expected, "{stderr}");

    // From a directory in the `.build-id/xx/rest.debug` layout.
    let id = leakwatch_symbolize::build_id(&exe)
        .expect("elf")
        .expect("the test binary has a build id");
    let debug = dir.join("debug");
    let leaf = debug.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&leaf).expect("mkdir");
    std::os::unix::fs::symlink(&exe, leaf.join(format!("{}.debug", &id[2..]))).expect("link");
    let debug_arg = debug.to_str().expect("utf-8 path");
    let (from_dir, stderr) = labels(&stripped, &["--symbols", debug_arg]);
    assert_eq!(from_dir, expected, "{stderr}");

    // A build id that matches no file: addresses stay, with a warning naming it.
    let wrong = dir.join("wrong.jsonl");
    let zeros = "0".repeat(id.len());
    rewrite(&stripped, &wrong, |line| {
        if let Some(modules) = line.get_mut("modules").and_then(|m| m.as_array_mut()) {
            for module in modules {
                if module
                    .get("build_id")
                    .is_some_and(|b| b.as_str() == Some(&id))
                {
                    module["build_id"] = serde_json::Value::from(zeros.clone());
                }
            }
        }
    });
    let (unmatched, stderr) = labels(&wrong, &["--symbols", exe_arg, "--symbols", debug_arg]);
    assert_eq!(unmatched, bare);
    assert!(
        stderr.contains("warning") && stderr.contains(&zeros),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_missing_or_non_elf_symbols_path_is_one_line_and_exit_2() {
    let dir = temp_dir("cli-symbols-bad");
    let series = dir.join("series.jsonl");
    std::fs::write(&series, "").expect("write");
    let series_arg = series.to_str().expect("utf-8 path");
    let missing = dir.join("missing");
    for (path, needle) in [
        (missing.to_str().expect("utf-8 path"), "missing"),
        (series_arg, "not an ELF file"),
    ] {
        let out = leakwatch(&["report", series_arg, "--symbols", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("--symbols") && stderr.contains(needle),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
