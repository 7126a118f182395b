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

/// Arguments (the input split at NUL bytes, each lossily UTF-8) either parse into a
/// command naming files that were given, or fail with one line.
pub fn check_args(data: &[u8]) {
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    // A file is an argument, or the value of one (`--output=FILE`).
    let given = |path: &std::path::Path| {
        args.iter().any(|a| {
            std::path::Path::new(a) == path
                || a.split_once('=')
                    .is_some_and(|(_, v)| std::path::Path::new(v) == path)
        })
    };
    match super::args::parse(&args) {
        Err(message) => one_line(&message),
        Ok(super::args::Command::Report { series, output, .. }) => {
            assert!(given(&series), "series {series:?} not among {args:?}");
            assert!(output.as_deref().is_none_or(given), "output not given");
        }
        Ok(super::args::Command::Diff {
            before,
            after,
            output,
            ..
        }) => {
            assert!(given(&before) && given(&after), "files not among {args:?}");
            assert!(output.as_deref().is_none_or(given), "output not given");
        }
        Ok(_) => {}
    }
}
