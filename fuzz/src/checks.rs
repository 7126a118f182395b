//! Invariants of the readers and the argument parser on any input (shared by the fuzz
//! targets and the stable corpus replay; `super::args` is the CLI's `args.rs`).

use leakwatch_report::{Recording, Report, ReportOptions};

/// Every error is one non-empty line: that is what the CLI prints.
fn one_line(message: &str) {
    assert!(
        !message.is_empty() && !message.contains(['\n', '\r']),
        "error is not one line: {message:?}"
    );
}

/// A series file either reads into a consistent history, whose report survives a JSON
/// round trip, or fails with one line.
pub fn check_series(data: &[u8]) {
    let recording = match Recording::read("fuzz.jsonl", data) {
        Ok(recording) => recording,
        Err(e) => return one_line(&e.to_string()),
    };
    let history = &recording.history;
    assert!(recording.lines >= 1, "a recording without lines read");
    assert!(
        !history.is_empty() && history.len() <= recording.lines,
        "{} points from {} lines",
        history.len(),
        recording.lines
    );
    let times = history.times();
    assert!(
        times.iter().all(|t| t.is_finite()) && times.windows(2).all(|w| w[0] <= w[1]),
        "time axis not finite and non-decreasing: {times:?}"
    );
    for site in history.sites() {
        let column = history.column(site.id).expect("every site has a column");
        assert_eq!(column.len(), history.len(), "site {}'s column", site.id);
    }
    let report = Report::build(history, &recording.symbols, &ReportOptions::default());
    round_trip(&report);
}

/// A JSON report either reads, and then writes and reads back to the same value, or
/// fails with one line.
pub fn check_report(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Report::from_json("fuzz.json", text) {
        Ok(report) => round_trip(&report),
        Err(e) => one_line(&e.to_string()),
    }
}

fn round_trip(report: &Report) {
    let json = report.to_json();
    match Report::from_json("round-trip.json", &json) {
        Ok(back) if back == *report => {}
        Ok(back) => {
            let again = back.to_json();
            let (a, b): (Vec<&str>, Vec<&str>) = (json.lines().collect(), again.lines().collect());
            let at = (0..a.len().max(b.len()))
                .find(|&i| a.get(i) != b.get(i))
                .unwrap_or(0);
            let around =
                |v: &[&str]| v[at.saturating_sub(3).min(v.len())..(at + 3).min(v.len())].join("\n");
            panic!(
                "report changed in a round trip, at line {}:\n{}\n--- read back as:\n{}",
                at + 1,
                around(&a),
                around(&b)
            );
        }
        Err(e) => panic!("a written report does not read back: {e}\n{json}"),
    }
}

/// Arguments (the input split at NUL bytes, each taken as raw bytes: an argument need
/// not be UTF-8) either parse into a command naming only files that were given, print
/// a help or version text, or fail with one line.
pub fn check_args(data: &[u8]) {
    use super::args::{Command, DiffArgs, Parsed, ReportArgs};
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    let args: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0)
            .map(|a| OsStr::from_bytes(a).to_owned())
            .collect()
    };
    // A file is an argument as given, or the value of an option spelled with it
    // (`--output=FILE`, `-o=FILE`, `-oFILE`).
    let given = |path: &Path, spellings: &[&str]| {
        let path = path.as_os_str().as_bytes();
        args.iter().any(|a| {
            let a = a.as_bytes();
            a == path
                || spellings
                    .iter()
                    .any(|s| a.strip_prefix(s.as_bytes()) == Some(path))
        })
    };
    const OUTPUT: &[&str] = &["--output=", "-o=", "-o"];
    match super::args::parse(&args) {
        Err(message) => one_line(&message),
        Ok(Parsed::Print(text)) => assert!(!text.trim().is_empty(), "empty help for {args:?}"),
        Ok(Parsed::Command(Command::Report(ReportArgs {
            series,
            output,
            symbols,
            ..
        }))) => {
            assert!(given(&series, &[]), "series {series:?} not among {args:?}");
            assert!(
                output.as_deref().is_none_or(|o| given(o, OUTPUT)),
                "output {output:?} not among {args:?}"
            );
            for s in &symbols {
                assert!(
                    given(s, &["--symbols="]),
                    "symbols {s:?} not among {args:?}"
                );
            }
        }
        Ok(Parsed::Command(Command::Diff(DiffArgs {
            before,
            after,
            output,
            ..
        }))) => {
            assert!(
                given(&before, &[]) && given(&after, &[]),
                "files not among {args:?}"
            );
            assert!(
                output.as_deref().is_none_or(|o| given(o, OUTPUT)),
                "output {output:?} not among {args:?}"
            );
        }
        Ok(Parsed::Command(Command::Completions(_) | Command::Version)) => {}
    }
}
