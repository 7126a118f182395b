//! The difference between two reports: which sites hold more memory in the second, by
//! label (`leakwatch diff A.json B.json`).

use crate::rank::Verdict;
use crate::report::Report;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` field of a JSON diff.
pub const DIFF_FORMAT: &str = "leakwatch-diff";
/// The version of the JSON diff format.
pub const DIFF_VERSION: u32 = 1;

/// Two reports compared site by site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// Always [`DIFF_FORMAT`].
    pub format: String,
    /// [`DIFF_VERSION`].
    pub version: u32,
    /// Seconds from the first report's latest point to the second's.
    pub seconds_between: f64,
    /// Process live heap bytes in the first and the second report.
    pub process_live_bytes: (i64, i64),
    /// Sites by how much more memory they hold in the second report, most first.
    pub sites: Vec<SiteDiff>,
    /// Things to know before trusting the comparison.
    pub warnings: Vec<String>,
}

/// One label in both reports (or in one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteDiff {
    /// `function (file:line)`, with its tags (` {model=2}`) when it has any.
    pub label: String,
    /// Live bytes in the first report (0 if absent).
    pub before_bytes: u64,
    /// Live bytes in the second report (0 if absent).
    pub after_bytes: u64,
    /// `after_bytes - before_bytes`.
    pub change_bytes: i64,
    /// Verdict in the first report, if the site is there.
    pub before_verdict: Option<Verdict>,
    /// Verdict in the second report, if the site is there.
    pub after_verdict: Option<Verdict>,
}

/// Compares `before` with `after`.
pub fn diff(before: &Report, after: &Report) -> Diff {
    // By label and tags: one label under two tag sets is two lines in each report.
    let mut sites: BTreeMap<String, SiteDiff> = BTreeMap::new();
    let blank = |label: &str| SiteDiff {
        label: label.to_string(),
        before_bytes: 0,
        after_bytes: 0,
        change_bytes: 0,
        before_verdict: None,
        after_verdict: None,
    };
    for s in &before.sites {
        let label = s.tagged_label();
        let d = sites.entry(label.clone()).or_insert_with(|| blank(&label));
        d.before_bytes = d.before_bytes.saturating_add(s.live_bytes);
        d.before_verdict = Some(s.verdict);
    }
    for s in &after.sites {
        let label = s.tagged_label();
        let d = sites.entry(label.clone()).or_insert_with(|| blank(&label));
        d.after_bytes = d.after_bytes.saturating_add(s.live_bytes);
        d.after_verdict = Some(s.verdict);
    }
    let mut sites: Vec<SiteDiff> = sites
        .into_values()
        .map(|mut d| {
            let change = i128::from(d.after_bytes) - i128::from(d.before_bytes);
            d.change_bytes = change.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
            d
        })
        .collect();
    sites.sort_by(|a, b| {
        b.change_bytes
            .cmp(&a.change_bytes)
            .then_with(|| a.label.cmp(&b.label))
    });
    let mut warnings = Vec::new();
    if before.pid != after.pid {
        warnings.push(format!(
            "the reports come from different processes (pid {} and {}): the same code may hold different amounts for unrelated reasons",
            before.pid, after.pid
        ));
    }
    for (name, r) in [("first", before), ("second", after)] {
        if r.omitted_sites > 0 {
            warnings.push(format!(
                "the {name} report left out {} site(s) beyond its top; they are not compared",
                r.omitted_sites
            ));
        }
    }
    if after.timestamp_ms < before.timestamp_ms {
        warnings.push("the second report is older than the first".into());
    }
    Diff {
        format: DIFF_FORMAT.to_string(),
        version: DIFF_VERSION,
        seconds_between: (after.timestamp_ms as f64 - before.timestamp_ms as f64) / 1000.0,
        process_live_bytes: (before.process.live_bytes, after.process.live_bytes),
        sites,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ProcessSummary, REPORT_FORMAT, REPORT_VERSION, SiteReport};

    fn report(pid: u32, t: u64, sites: &[(&str, u64, Verdict)]) -> Report {
        Report {
            format: REPORT_FORMAT.into(),
            version: REPORT_VERSION,
            timestamp_ms: t,
            start_ms: 0,
            pid,
            mode: leakwatch_types::Mode::Exact,
            sample_rate: 1,
            window_seconds: 0.0,
            points: 1,
            process: ProcessSummary {
                live_bytes: sites.iter().map(|s| s.1 as i64).sum(),
                peak_live_bytes: 0,
                resident_bytes: 0,
                usage_bytes: 0,
                growth_rate: 0.0,
                recent_growth_rate: None,
                recent_window_seconds: None,
                allocs: 0,
                alloc_bytes: 0,
                limit_bytes: None,
                seconds_to_limit: None,
            },
            sites: sites
                .iter()
                .enumerate()
                .map(|(i, &(label, live, verdict))| SiteReport {
                    rank: i + 1,
                    label: label.into(),
                    tags: Default::default(),
                    age_bytes: Vec::new(),
                    old_bytes: None,
                    old_verdict: None,
                    function: None,
                    file: None,
                    line: None,
                    verdict,
                    live_bytes: live,
                    live_blocks: 0.0,
                    alloc_bytes: 0,
                    alloc_blocks: 0.0,
                    rate: 0.0,
                    recent_rate: 0.0,
                    growth: 0.0,
                    recent_growth: 0.0,
                    p_increasing: 1.0,
                    seconds_to_limit: None,
                    verdict_window_seconds: 0.0,
                    function_rank: 0,
                    site_ids: vec![],
                    stack: vec![],
                    label_frame: 0,
                    history: vec![],
                })
                .collect(),
            functions: vec![],
            omitted_sites: 0,
            omitted_live_bytes: 0,
            tracker: Default::default(),
            overflow: Default::default(),
            warnings: vec![],
            chart_times: vec![],
            chart_process: vec![],
            clock: None,
            recorder: None,
            symbolizer: None,
        }
    }

    #[test]
    fn sites_are_matched_by_label_and_sorted_by_growth() {
        let a = report(
            1,
            1_000,
            &[
                ("leak", 100, Verdict::Growing),
                ("gone", 50, Verdict::Stable),
                ("cache", 80, Verdict::Plateau),
            ],
        );
        let b = report(
            1,
            61_000,
            &[
                ("leak", 900, Verdict::Leak),
                ("cache", 80, Verdict::Plateau),
                ("new", 10, Verdict::Growing),
            ],
        );
        let d = diff(&a, &b);
        let order: Vec<(&str, i64)> = d
            .sites
            .iter()
            .map(|s| (s.label.as_str(), s.change_bytes))
            .collect();
        assert_eq!(
            order,
            vec![("leak", 800), ("new", 10), ("cache", 0), ("gone", -50)]
        );
        assert_eq!(d.sites[0].before_verdict, Some(Verdict::Growing));
        assert_eq!(d.sites[0].after_verdict, Some(Verdict::Leak));
        assert_eq!(d.sites[1].before_verdict, None);
        assert_eq!(d.seconds_between, 60.0);
        assert_eq!(d.process_live_bytes, (230, 990));
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn mismatched_reports_are_flagged() {
        let a = report(1, 5_000, &[]);
        let mut b = report(2, 1_000, &[]);
        b.omitted_sites = 3;
        let d = diff(&a, &b);
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
    }
}
