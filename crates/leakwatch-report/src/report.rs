//! The report: a [`History`] ranked by growth, with sites named by their source lines.
//!
//! [`Report::build`] symbolizes every site's stack (from a [`SymbolTable`]), merges sites
//! that share a label (so recursion depth, unrolled loops or several paths into one
//! allocation line do not split a site), ranks the merged series, and keeps what the
//! renderers need. A `Report` is also the JSON format (see docs/report-format.md): it
//! serializes with serde and reads back with [`Report::from_json`].

use crate::error::{Error, Result};
use crate::history::History;
use crate::rank::{RankOptions, Verdict, rank_windows};
use crate::stats::bucket;
use crate::symbols::{Frame, LabelRules, SymbolTable};
use leakwatch_alloc::{Mode, OverflowStats, TrackerStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` field of every JSON report.
pub const REPORT_FORMAT: &str = "leakwatch-report";
/// The version of the JSON report format this crate writes and reads.
pub const REPORT_VERSION: u32 = 1;

/// How a report is built.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Thresholds of the ranking (and the memory limit).
    pub rank: RankOptions,
    /// Which frames are runtime rather than the service's own.
    pub labels: LabelRules,
    /// Keep only the first `top` ranked sites (`None`: all of them).
    pub top: Option<usize>,
    /// The first `detail` ranked sites carry their stack and live-bytes history.
    pub detail: usize,
    /// Points of the per-site histories (longer series are averaged down to this).
    pub chart_points: usize,
    /// Rank only the last this many seconds of the history (`None`: all of it). A leak
    /// that starts after hours of uptime shows sooner in a recent window; a slow one needs
    /// a long window to stand out of the noise. (The churn that bounds sampling noise is
    /// known for the whole history; a window takes its share by time.)
    pub window_seconds: Option<f64>,
    /// Shorter windows, ending now, ranked as well (default 5 min and 1 h): a site takes
    /// the most urgent verdict any of them gives it. After a day of uptime, a leak that
    /// began ten minutes ago barely moves the whole day's thirds, but fills a recent
    /// window. Each site says which window its verdict came from.
    pub recent_windows: Vec<f64>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            rank: RankOptions::default(),
            labels: LabelRules::default(),
            top: None,
            detail: 20,
            chart_points: 300,
            window_seconds: None,
            recent_windows: vec![300.0, 3600.0],
        }
    }
}

/// A ranked report of one process's growing call sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// [`REPORT_VERSION`] of the writer.
    pub version: u32,
    /// Time of the latest point, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Time of the first point, ms since the Unix epoch.
    pub start_ms: u64,
    /// Process id.
    pub pid: u32,
    /// Tracking mode at the latest point.
    pub mode: Mode,
    /// Sampling rate in bytes (1 = exact).
    pub sample_rate: u32,
    /// Seconds between the first and the latest point.
    pub window_seconds: f64,
    /// Points in the history.
    pub points: usize,
    /// The process as a whole.
    pub process: ProcessSummary,
    /// Ranked sites, most urgent first.
    pub sites: Vec<SiteReport>,
    /// Sites left out by `top`: how many, and their live bytes.
    pub omitted_sites: usize,
    /// Live bytes of the omitted sites.
    pub omitted_live_bytes: u64,
    /// The tracker's own memory and bounds.
    pub tracker: TrackerStats,
    /// What the tracker could not record.
    pub overflow: OverflowStats,
    /// Problems worth reading before trusting the report.
    pub warnings: Vec<String>,
    /// Times of the chart points, seconds since `start_ms` (for `SiteReport::history`).
    pub chart_times: Vec<f64>,
    /// Process memory at the chart points.
    pub chart_process: Vec<f64>,
    /// Set when timestamps of the history went backwards or stood still, so its time axis
    /// was rebuilt from the order of the points (see [`History::push`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockNote>,
}

/// Timestamps that went backwards or stood still, and what the history made of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockNote {
    /// Points whose timestamp was earlier than the one before.
    pub backwards: u64,
    /// Points whose timestamp equalled the one before.
    pub stood_still: u64,
    /// Seconds after the point before that such a point was placed at (the median of
    /// the positive intervals, or 1 s when there was none).
    pub interval_seconds: f64,
}

impl ClockNote {
    /// The note of `history`, when its clock needed repairs.
    pub fn of(history: &History) -> Option<ClockNote> {
        let repair = history.clock_repair();
        repair.repaired().then_some(ClockNote {
            backwards: repair.backwards,
            stood_still: repair.stood_still,
            interval_seconds: repair.interval_seconds,
        })
    }

    /// What happened, in one sentence: `timestamps went backwards 3 times and stood
    /// still twice; time axis rebuilt from point order at the median interval (1 s)`.
    pub fn sentence(&self) -> String {
        let times = |n: u64| match n {
            1 => "once".to_string(),
            2 => "twice".to_string(),
            n => format!("{n} times"),
        };
        let what = match (self.backwards, self.stood_still) {
            (0, s) => format!("timestamps stood still {}", times(s)),
            (b, 0) => format!("timestamps went backwards {}", times(b)),
            (b, s) => format!(
                "timestamps went backwards {} and stood still {}",
                times(b),
                times(s)
            ),
        };
        let seconds = crate::render::text::duration(self.interval_seconds);
        format!(
            "{what}; time axis rebuilt from point order at the median interval ({seconds}): \
             rates and windows there are estimates"
        )
    }
}

/// The process as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSummary {
    /// Live heap bytes (exact in every mode).
    pub live_bytes: i64,
    /// Highest live heap bytes seen.
    pub peak_live_bytes: i64,
    /// Resident set size (0 where unknown).
    pub resident_bytes: u64,
    /// Memory the time-to-limit estimate starts from: the larger of resident and live.
    pub usage_bytes: u64,
    /// Growth of `usage_bytes` over the window (Theil-Sen), bytes per second.
    pub growth_rate: f64,
    /// Growth of `usage_bytes` over the shortest recent window ranked (see
    /// `ReportOptions::recent_windows`), bytes per second; `None` when the history is
    /// too short for one.
    #[serde(default)]
    pub recent_growth_rate: Option<f64>,
    /// That recent window, in seconds.
    #[serde(default)]
    pub recent_window_seconds: Option<f64>,
    /// Allocations since tracking started.
    pub allocs: u64,
    /// Bytes allocated since tracking started.
    pub alloc_bytes: u64,
    /// The memory limit used for time-to-limit estimates.
    pub limit_bytes: Option<u64>,
    /// Seconds until `usage_bytes` reaches the limit at the leaking sites' summed recent
    /// growth rate; `None` without a limit or a leak.
    pub seconds_to_limit: Option<f64>,
}

/// One ranked site: every call stack that shares a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    /// 1 for the most urgent site.
    pub rank: usize,
    /// `function (file:line)` of the first frame that is the service's own.
    pub label: String,
    /// The label frame's function.
    pub function: Option<String>,
    /// The label frame's file (full path).
    pub file: Option<String>,
    /// The label frame's line.
    pub line: Option<u32>,
    /// The verdict.
    pub verdict: Verdict,
    /// Live bytes at the latest point (an unbiased estimate in sampled mode).
    pub live_bytes: u64,
    /// Live blocks at the latest point.
    pub live_blocks: f64,
    /// Bytes allocated here in total.
    pub alloc_bytes: u64,
    /// Blocks allocated here in total.
    pub alloc_blocks: f64,
    /// Growth rate over the window (Theil-Sen), bytes per second.
    pub rate: f64,
    /// Growth rate over the recent part of the window, bytes per second.
    pub recent_rate: f64,
    /// Growth over the window: the level (median) of its last tenth minus that of its
    /// first tenth, bytes.
    pub growth: f64,
    /// Growth of the last third over the middle third, bytes.
    pub recent_growth: f64,
    /// Mann-Kendall p-value of an increasing trend (small: confident it grows).
    pub p_increasing: f64,
    /// Seconds until the process reaches its limit at this site's recent rate.
    pub seconds_to_limit: Option<f64>,
    /// The window (seconds, ending at the latest point) the verdict and rates come from:
    /// the report's whole window, or a recent one where the site was more urgent.
    #[serde(default)]
    pub verdict_window_seconds: f64,
    /// Ids of the call sites merged here.
    pub site_ids: Vec<u32>,
    /// The stack of the member site that grew most, innermost first (inlined frames
    /// expanded). Only for the first `detail` sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<Frame>,
    /// Index in `stack` of the label frame.
    #[serde(default)]
    pub label_frame: usize,
    /// Live bytes at each of the report's `chart_times`. Only for the first `detail`
    /// sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<f64>,
}

impl SiteReport {
    /// The service's part of the stack: from the label frame outwards, with recursion
    /// collapsed.
    pub fn user_stack(&self) -> Vec<Frame> {
        let start = self.label_frame.min(self.stack.len());
        crate::symbols::collapse_recursion(&self.stack[start..])
    }
}

/// A site's label and which frame of its symbolized stack it comes from.
#[derive(Debug, Clone)]
struct Labelled {
    label: String,
    label_frame: usize,
}

/// Site labels kept from one report to the next. A site's frames never change, nor do
/// the symbols of its addresses once resolved, so each site needs labelling once; a
/// recorder that ranks every few seconds keeps one of these. It starts over when the
/// label rules change. (Do not share one between processes: site ids are per process.)
#[derive(Debug, Clone, Default)]
pub struct LabelCache {
    rules: Option<LabelRules>,
    labels: Vec<Option<Labelled>>,
}

impl LabelCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Labels every site of `history` not labelled yet.
    fn fill(&mut self, history: &History, symbols: &SymbolTable, rules: &LabelRules) {
        if self.rules.as_ref() != Some(rules) {
            self.labels.clear();
            self.rules = Some(rules.clone());
        }
        for site in history.sites() {
            let id = site.id as usize;
            if id >= self.labels.len() {
                self.labels.resize(id + 1, None);
            }
            if self.labels[id].is_none() {
                let (label, label_frame) = rules.label_of(symbols, &site.frames);
                self.labels[id] = Some(Labelled { label, label_frame });
            }
        }
    }

    /// The label of a site [`fill`](Self::fill) has seen.
    fn get(&self, id: u32) -> &Labelled {
        static NONE: Labelled = Labelled {
            label: String::new(),
            label_frame: 0,
        };
        self.labels
            .get(id as usize)
            .and_then(Option::as_ref)
            .unwrap_or(&NONE)
    }
}

impl Report {
    /// Ranks `history`, naming sites with `symbols` (addresses missing from it are shown
    /// as hex).
    pub fn build(history: &History, symbols: &SymbolTable, options: &ReportOptions) -> Report {
        Report::build_cached(history, symbols, options, &mut LabelCache::new())
    }

    /// [`Report::build`], reusing the labels of an earlier report of the same history
    /// (every symbol of its sites must be in `symbols` before a site is first labelled).
    pub fn build_cached(
        history: &History,
        symbols: &SymbolTable,
        options: &ReportOptions,
        labels: &mut LabelCache,
    ) -> Report {
        // Label every site; merge sites by label.
        labels.fill(history, symbols, &options.labels);
        let labelled = &*labels;
        let frames_of: BTreeMap<u32, &[u64]> = history
            .sites()
            .map(|s| (s.id, s.frames.as_slice()))
            .collect();
        let mut series = history.series_by(|site| labelled.get(site.id).label.clone());
        let usage: Vec<f64> = history
            .process()
            .iter()
            .map(|p| (p.resident_bytes as f64).max(p.live_bytes as f64))
            .collect();
        series.process = usage;
        if let Some(window) = options.window_seconds {
            series = series.last_seconds(window);
        }
        let mut rank_options = options.rank;
        let latest = history.latest();
        if latest.mode == Mode::Sampled && latest.sample_rate > 1 {
            rank_options.sample_bytes = f64::from(latest.sample_rate);
        }
        let ranking = rank_windows(&series, &rank_options, &options.recent_windows);

        // Members of each label, and their latest counters.
        struct Group {
            ids: Vec<u32>,
            live_blocks: f64,
            alloc_bytes: u64,
            alloc_blocks: f64,
            /// Member that grew most: (growth, live, id).
            representative: (f64, u64, u32),
        }
        let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
        for site in history.sites() {
            let column = history.column(site.id).unwrap_or(&[]);
            let growth = f64::from(column.last().copied().unwrap_or(0.0))
                - f64::from(column.first().copied().unwrap_or(0.0));
            let g = groups
                .entry(labelled.get(site.id).label.as_str())
                .or_insert(Group {
                    ids: Vec::new(),
                    live_blocks: 0.0,
                    alloc_bytes: 0,
                    alloc_blocks: 0.0,
                    representative: (f64::NEG_INFINITY, 0, site.id),
                });
            g.ids.push(site.id);
            g.live_blocks += site.live_blocks;
            g.alloc_bytes += site.alloc_bytes;
            g.alloc_blocks += site.alloc_blocks;
            let candidate = (growth, site.live_bytes, site.id);
            if candidate.0 > g.representative.0
                || (candidate.0 == g.representative.0 && candidate.1 > g.representative.1)
            {
                g.representative = candidate;
            }
        }

        let (chart_times, chart_process) =
            bucket(&series.times, &series.process, options.chart_points.max(2));
        let keep = options.top.unwrap_or(usize::MAX);
        let mut sites = Vec::new();
        let (mut omitted_sites, mut omitted_live_bytes) = (0, 0u64);
        for (i, trend) in ranking.sites.iter().enumerate() {
            let live_bytes = trend.live_bytes.max(0.0).round() as u64;
            if i >= keep {
                omitted_sites += 1;
                omitted_live_bytes += live_bytes;
                continue;
            }
            let group = &groups[trend.key.as_str()];
            let representative = labelled.get(group.representative.2);
            let detailed = i < options.detail;
            // Only detailed sites get their whole stack built (it copies strings).
            let addresses = frames_of[&group.representative.2];
            let stack = if detailed {
                symbols.stack(addresses)
            } else {
                Vec::new()
            };
            let frame = symbols
                .stack_refs(addresses)
                .nth(representative.label_frame)
                .map(|(address, symbol)| Frame::from_ref(address, symbol));
            let frame = frame.as_ref();
            sites.push(SiteReport {
                rank: i + 1,
                label: trend.key.clone(),
                function: frame.and_then(|f| f.function.clone()),
                file: frame.and_then(|f| f.file.clone()),
                line: frame.and_then(|f| f.line),
                verdict: trend.verdict,
                live_bytes,
                live_blocks: group.live_blocks,
                alloc_bytes: group.alloc_bytes,
                alloc_blocks: group.alloc_blocks,
                rate: trend.rate,
                recent_rate: trend.recent_rate,
                growth: trend.window_growth,
                recent_growth: trend.recent_growth,
                p_increasing: trend.p_increasing,
                seconds_to_limit: trend.seconds_to_limit,
                verdict_window_seconds: trend.window_seconds,
                site_ids: group.ids.clone(),
                stack,
                label_frame: representative.label_frame,
                history: if detailed {
                    bucket(
                        &series.times,
                        &series.sites[&trend.key],
                        options.chart_points.max(2),
                    )
                    .1
                } else {
                    Vec::new()
                },
            });
        }

        let mut warnings = latest.warnings.clone();
        if history.len() < 3 {
            warnings.push(format!(
                "only {} point(s) recorded: growth needs at least 3 snapshots over time",
                history.len()
            ));
        }
        if latest.mode == Mode::Off {
            warnings.push("tracking is off: no new allocations are attributed to sites".into());
        }
        let clock = ClockNote::of(history);
        if let Some(note) = &clock {
            warnings.push(note.sentence());
        }
        Report {
            format: REPORT_FORMAT.to_string(),
            version: REPORT_VERSION,
            timestamp_ms: latest.timestamp_ms,
            start_ms: history.start_ms(),
            pid: latest.pid,
            mode: latest.mode,
            sample_rate: latest.sample_rate,
            window_seconds: ranking.window_seconds,
            points: series.len(),
            process: ProcessSummary {
                live_bytes: latest.process.live_bytes,
                peak_live_bytes: latest.process.peak_live_bytes,
                resident_bytes: latest.process.resident_bytes,
                usage_bytes: ranking.process_live_bytes.max(0.0) as u64,
                growth_rate: ranking.process_rate,
                recent_growth_rate: ranking.process_recent_rate.map(|(_, r)| r),
                recent_window_seconds: ranking.process_recent_rate.map(|(w, _)| w),
                allocs: latest.process.allocs,
                alloc_bytes: latest.process.alloc_bytes,
                limit_bytes: ranking.limit_bytes,
                seconds_to_limit: ranking.seconds_to_limit,
            },
            sites,
            omitted_sites,
            omitted_live_bytes,
            tracker: latest.tracker,
            overflow: latest.overflow,
            warnings,
            chart_times,
            chart_process,
            clock,
        }
    }

    /// Sites whose verdict is `leak`, most urgent first.
    pub fn leaks(&self) -> impl Iterator<Item = &SiteReport> {
        self.sites.iter().filter(|s| s.verdict == Verdict::Leak)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A Report holds only strings, numbers and sequences: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a JSON report, checking its format and version. `origin` names the input in
    /// errors (a file path, say).
    ///
    /// # Errors
    /// [`Error`] when `json` is not a leakwatch report of a version this crate reads.
    pub fn from_json(origin: &str, json: &str) -> Result<Report> {
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
        }
        if json.trim().is_empty() {
            return Err(Error::at(origin, None, "empty file"));
        }
        let head: Head = serde_json::from_str(json).map_err(|e| Error::json(origin, &e))?;
        if head.format.as_deref() != Some(REPORT_FORMAT) {
            return Err(Error::at(
                origin,
                None,
                format!("not a leakwatch report (no \"format\": \"{REPORT_FORMAT}\")"),
            ));
        }
        match head.version {
            Some(REPORT_VERSION) => {}
            Some(v) => {
                return Err(Error::at(
                    origin,
                    None,
                    format!(
                        "report version {v} is not supported (this build reads {REPORT_VERSION})"
                    ),
                ));
            }
            None => return Err(Error::at(origin, None, "report has no \"version\"")),
        }
        serde_json::from_str(json).map_err(|e| Error::json(origin, &e))
    }
}

#[cfg(test)]
mod tests;
