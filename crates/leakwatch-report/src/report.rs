//! The report: a [`History`] ranked by growth, with sites named by their source lines.
//!
//! [`Report::build`] symbolizes every site's stack (from a [`SymbolTable`]), merges sites
//! that share a label (so recursion depth, unrolled loops or several paths into one
//! allocation line do not split a site), ranks the merged series, groups the ranked
//! lines by function ([`group_by_function`]: one leak is often several lines of one
//! function), and keeps what the renderers need. A `Report` is also the JSON format (see docs/report-format.md): it
//! serializes with serde and reads back with [`Report::from_json`].

use crate::error::{Error, Result};
use crate::history::{Header, History};
use crate::rank::{RankOptions, Ranking, Verdict, rank_windows};
use crate::series::Series;
use crate::stats::bucket;
use crate::symbols::{Frame, LabelRules, SymbolTable};
use leakwatch_types::{Mode, OverflowStats, SiteStats, Tags, TrackerStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` field of every JSON report.
pub const REPORT_FORMAT: &str = "leakwatch-report";
/// The version of the JSON report format this crate writes. Version 2 added the
/// grouping by function (`functions`, `function_rank`, `sites` in grouped order) and
/// `clock`; this crate reads versions 1 and 2 (a version 1 report is grouped on
/// reading).
pub const REPORT_VERSION: u32 = 2;
/// The most memory the lists of one JSON report read may take (sites, functions,
/// stacks, histories, chart points; counted as they are read): 128 MiB, far above what
/// a report of [`crate::MAX_SITES`] sites with the default details takes, and what
/// keeps a crafted 100 MB report of short numbers from taking several times its size.
pub const MAX_LIST_BYTES: usize = 128 << 20;
/// The oldest version of the JSON report format this crate reads.
pub const REPORT_MIN_VERSION: u32 = 1;

/// How a report is built.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Thresholds of the ranking (and the memory limit).
    pub rank: RankOptions,
    /// Which frames are runtime rather than the service's own.
    pub labels: LabelRules,
    /// Keep only the first `top` sites, in the report's order (grouped by function;
    /// `None`: all of them).
    pub top: Option<usize>,
    /// The first `detail` sites (in the report's order) carry their stack and
    /// live-bytes history.
    pub detail: usize,
    /// Points of the per-site histories (longer series are averaged down to this).
    pub chart_points: usize,
    /// Rank only the last this many seconds of the history (`None`: all of it). A leak
    /// that starts after hours of uptime shows sooner in a recent window; a slow one needs
    /// a long window to stand out of the noise.
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
    /// Ranked sites (one per label), grouped by function: the lines of the most urgent
    /// function first, each function's lines in their own ranking order.
    #[serde(deserialize_with = "bounded::sites")]
    pub sites: Vec<SiteReport>,
    /// The functions of `sites`, most urgent first, each with its lines (see
    /// [`group_by_function`]).
    #[serde(default)]
    #[serde(deserialize_with = "bounded::sites")]
    pub functions: Vec<FunctionReport>,
    /// Sites left out by `top`: how many, and their live bytes.
    pub omitted_sites: usize,
    /// Live bytes of the omitted sites.
    pub omitted_live_bytes: u64,
    /// The tracker's own memory and bounds.
    pub tracker: TrackerStats,
    /// What the tracker could not record.
    pub overflow: OverflowStats,
    /// Problems worth reading before trusting the report.
    #[serde(deserialize_with = "bounded::warnings")]
    pub warnings: Vec<String>,
    /// Times of the chart points, seconds since `start_ms` (for `SiteReport::history`).
    #[serde(deserialize_with = "bounded::list")]
    pub chart_times: Vec<f64>,
    /// Process memory at the chart points.
    #[serde(deserialize_with = "bounded::list")]
    pub chart_process: Vec<f64>,
    /// Set when timestamps of the history went backwards or stood still, so its time axis
    /// was rebuilt from the order of the points (see [`History::push`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockNote>,
    /// The recorder's own memory, when the report comes from a running recorder (absent
    /// in reports of a recorded file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder: Option<RecorderMemory>,
    /// What symbolizing the report's addresses cost the process (set by the in-process
    /// recorder; absent offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbolizer: Option<SymbolizerCost>,
}

/// The memory a recorder holds for its own work, each part with its bound. Parts kept
/// per site (the history's sites, labels, the series writer's record) are bounded by the
/// tracker's site table (`tracker.max_sites`); the history's points and the symbol table
/// by byte budgets, whose hits are counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecorderMemory {
    /// Everything below, summed.
    pub total_bytes: u64,
    /// The history's points (times, process totals, per-site columns).
    pub history_bytes: u64,
    /// The budget of the points (`RecorderBuilder::history_budget`).
    pub history_budget_bytes: u64,
    /// Points dropped (older history thinned) to stay within that budget.
    pub history_thinned_points: u64,
    /// The history's record of each site (frames, latest counters).
    pub sites_bytes: u64,
    /// Sites recorded (one record each).
    pub sites: u64,
    /// The symbol table (source frames of the sites' return addresses).
    pub symbols_bytes: u64,
    /// The budget of the symbol table (`RecorderBuilder::symbol_budget`).
    pub symbols_budget_bytes: u64,
    /// Sites left unsymbolized (shown as addresses) because the symbol table reached
    /// its budget.
    pub unsymbolized_sites: u64,
    /// Site labels kept between reports.
    pub labels_bytes: u64,
    /// What the series writer keeps to write only what changed (each site's last
    /// counters, the addresses it described).
    pub files_bytes: u64,
}

impl RecorderMemory {
    /// The sum of the parts, stored in `total_bytes`.
    pub fn summed(mut self) -> RecorderMemory {
        self.total_bytes = self.history_bytes
            + self.sites_bytes
            + self.symbols_bytes
            + self.labels_bytes
            + self.files_bytes;
        self
    }

    /// What hit a bound, in one sentence each (for the report's warnings).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.unsymbolized_sites > 0 {
            warnings.push(format!(
                "{} site(s) left unsymbolized: the recorder's symbol table reached its budget ({})",
                self.unsymbolized_sites,
                crate::render::text::bytes(self.symbols_budget_bytes as f64)
            ));
        }
        warnings
    }
}

/// The in-process symbolizer's memory, as the recorder measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SymbolizerCost {
    /// Batches of addresses symbolized so far.
    pub batches: u64,
    /// Addresses resolved from module files so far.
    pub resolved: u64,
    /// Addresses in its result cache (kept between reports).
    pub cached: u64,
    /// Heap bytes its result cache holds.
    pub cache_bytes: u64,
    /// Addresses dropped from the full cache.
    pub evictions: u64,
    /// The most file bytes it mapped at once (during a batch only).
    pub peak_mapped_bytes: u64,
    /// The largest growth of the process's resident set measured during a batch
    /// (transient: the files are unmapped and the parsed debug info freed after it).
    pub peak_batch_rss_bytes: u64,
}

impl SymbolizerCost {
    /// One line: `symbolizer: 1.2 MiB peak during a batch (3.4 MiB mapped), 812 addresses
    /// cached (96 KiB)`.
    pub fn line(&self) -> String {
        use crate::render::text::bytes;
        let mut line = format!(
            "symbolizer: {} peak during a batch ({} mapped), {} addresses cached ({})",
            bytes(self.peak_batch_rss_bytes as f64),
            bytes(self.peak_mapped_bytes as f64),
            self.cached,
            bytes(self.cache_bytes as f64)
        );
        if self.evictions > 0 {
            line.push_str(&format!(", {} evicted", self.evictions));
        }
        line
    }
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

/// One function of a report: its lines (sites whose labels share the function part),
/// judged together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionReport {
    /// 1 for the most urgent function.
    pub rank: usize,
    /// The function part of its lines' labels.
    pub function: String,
    /// The most urgent verdict among its lines.
    pub verdict: Verdict,
    /// Live bytes of all its lines.
    pub live_bytes: u64,
    /// Summed current rate ([`SiteReport::current_rate`]) of its `leak` and `growing`
    /// lines, bytes per second (0 when it has none).
    pub rate: f64,
    /// Summed growth of all its lines over the window, bytes.
    pub growth: f64,
    /// `rank` of each of its lines in the report's `sites`, in order.
    #[serde(deserialize_with = "bounded::list")]
    pub sites: Vec<usize>,
    /// Its lines left out of the report by `top` (they count in its totals).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_sites: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One ranked site: every call stack that shares a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    /// Its place in the report's `sites`, from 1 (grouped by function: see
    /// [`Report::sites`]).
    pub rank: usize,
    /// `function (file:line)` of the first frame that is the service's own.
    pub label: String,
    /// The tag set its sites were allocated under (`leakwatch::tag`; empty: untagged).
    /// One label under two tag sets is two lines.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    #[serde(deserialize_with = "crate::recording::bounded::tags")]
    pub tags: Tags,
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
    /// `rank` of its function in the report's `functions` (0 in reports that were not
    /// grouped).
    #[serde(default)]
    pub function_rank: usize,
    /// Ids of the call sites merged here.
    #[serde(deserialize_with = "bounded::list")]
    pub site_ids: Vec<u32>,
    /// Live bytes by age at the latest point, summed over its sites: younger than each
    /// of [`leakwatch_types::AGE_BOUNDS_SECONDS`] (10 s, 1 min, 10 min, 1 h), then older.
    /// Empty when the snapshots carry no ages (series files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::list")]
    pub age_bytes: Vec<u64>,
    /// Old bytes at the latest point, summed over its sites: live bytes in blocks that
    /// have lived through [`leakwatch_types::OLD_SNAPSHOTS`] snapshots. `None` when a
    /// member's snapshots carry no ages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_bytes: Option<u64>,
    /// The verdict of its old bytes over the same window: the second leak signal
    /// (docs/ARCHITECTURE.md, "Age, the second signal"), which may confirm a `leak`
    /// whose live bytes' growth is lost in young blocks' noise, or veto one whose growth
    /// never ages. `None` when the series knows no ages or the line is a `plateau` or
    /// `shrinking` (the signal is not consulted there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_verdict: Option<Verdict>,
    /// The stack of the member site that grew most, innermost first (inlined frames
    /// expanded). Only for the first `detail` sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::list")]
    pub stack: Vec<Frame>,
    /// Index in `stack` of the label frame.
    #[serde(default)]
    pub label_frame: usize,
    /// Live bytes at each of the report's `chart_times`. Only for the first `detail`
    /// sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "bounded::list")]
    pub history: Vec<f64>,
}

impl SiteReport {
    /// Its tags as a label suffix, ` {model=2, route=/v1/generate}` (empty when
    /// untagged).
    pub fn tags_suffix(&self) -> String {
        tags_suffix(&self.tags)
    }

    /// Its label with its tags: `open_session (sessions.rs:151) {model=2}`.
    pub fn tagged_label(&self) -> String {
        format!("{}{}", self.label, self.tags_suffix())
    }

    /// How fast it grows: for a leak or a growing site, now (the faster of its window's
    /// trend and its recent part's); for the rest, the trend over its window.
    pub fn current_rate(&self) -> f64 {
        if matches!(self.verdict, Verdict::Leak | Verdict::Growing) {
            self.recent_rate.max(self.rate)
        } else {
            self.rate
        }
    }

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
    /// None of the site's addresses is in the symbol table (symbolization off), or its
    /// owner has not symbolized it yet ([`LabelCache::set_unnamed`]): labelled by
    /// module and offset ([`crate::symbols::offline_label`]), and labelled again once
    /// that changes.
    offline: bool,
}

/// Site labels kept from one report to the next. A site's frames never change, nor do
/// the symbols of its addresses once resolved, so each site needs labelling once; a
/// recorder that ranks every few seconds keeps one of these. It starts over when the
/// label rules change. (Do not share one between processes: site ids are per process.)
#[derive(Debug, Clone, Default)]
pub struct LabelCache {
    rules: Option<LabelRules>,
    /// By site id (a map: ids read from a file can be any `u32`).
    labels: std::collections::HashMap<u32, Labelled>,
    /// Sites labelled by module and offset whatever the symbol table knows.
    unnamed: std::collections::HashSet<u32>,
}

impl LabelCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the sites of `ids` as not symbolized yet, and only those: until they are
    /// unmarked they are labelled by module and offset, even when the symbol table knows
    /// some of their addresses (other sites' frames), since a stack named by whichever
    /// of its frames are known would be named after an outer one and merged with
    /// unrelated sites. A recorder that symbolizes only the sites its reports show
    /// marks the others.
    pub fn set_unnamed(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.unnamed.clear();
        self.unnamed.extend(ids);
    }

    /// Labels every site of `history` not labelled yet, and labels again the sites
    /// labelled by module and offset that can be named now.
    fn fill(&mut self, history: &History, symbols: &SymbolTable, rules: &LabelRules) {
        if self.rules.as_ref() != Some(rules) {
            self.labels.clear();
            self.rules = Some(rules.clone());
        }
        let modules = &history.latest().modules;
        let unnamed = &self.unnamed;
        // Symbolization off (or a file recorded so): nothing to name frames by but their
        // modules.
        let offline = |site: &SiteStats| {
            unnamed.contains(&site.id)
                || (!site.frames.is_empty()
                    && !site.frames.iter().any(|&address| symbols.contains(address)))
        };
        let label = |site: &SiteStats| {
            if offline(site) {
                return Labelled {
                    label: crate::symbols::offline_label(&site.frames, modules),
                    label_frame: 0,
                    offline: true,
                };
            }
            let (label, label_frame) = rules.label_of(symbols, &site.frames);
            Labelled {
                label,
                label_frame,
                offline: false,
            }
        };
        for site in history.sites() {
            match self.labels.entry(site.id) {
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(label(site));
                }
                std::collections::hash_map::Entry::Occupied(mut entry) => {
                    if entry.get().offline && !offline(site) {
                        entry.insert(label(site));
                    }
                }
            }
        }
    }

    /// Bytes the cache holds: its table and each label's text.
    pub fn memory_bytes(&self) -> usize {
        self.labels.capacity() * (std::mem::size_of::<(u32, Labelled)>() + 1)
            + self.unnamed.capacity() * (std::mem::size_of::<u32>() + 1)
            + self
                .labels
                .values()
                .map(|l| l.label.capacity())
                .sum::<usize>()
    }

    /// How many of the sites of `lines` are labelled by module and offset.
    fn offline(&self, lines: &[SiteReport]) -> usize {
        lines
            .iter()
            .flat_map(|line| &line.site_ids)
            .filter(|&id| self.labels.get(id).is_some_and(|l| l.offline))
            .count()
    }

    /// The label of a site [`fill`](Self::fill) has seen.
    fn get(&self, id: u32) -> &Labelled {
        static NONE: Labelled = Labelled {
            label: String::new(),
            label_frame: 0,
            offline: false,
        };
        self.labels.get(&id).unwrap_or(&NONE)
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
    ///
    /// The stages: label every site, merge sites by label, rank the merged series over
    /// the whole window and the recent ones, one line per label, group the lines by
    /// function (most urgent function first), keep the first `top`, attach stacks and
    /// charts to the first `detail`, then the process and the warnings.
    pub fn build_cached(
        history: &History,
        symbols: &SymbolTable,
        options: &ReportOptions,
        labels: &mut LabelCache,
    ) -> Report {
        labels.fill(history, symbols, &options.labels);
        let merged = Merged::of(history, labels, options);
        let ranking = merged.rank(history, options);
        let lines = merged.lines(&ranking, labels, symbols);
        let (sites, functions) = group_by_function(lines);
        let mut kept = Kept::first(sites, functions, options.top.unwrap_or(usize::MAX));
        merged.attach_details(&mut kept.sites, symbols, options);
        let (chart_times, chart_process) = bucket(
            &merged.series.times,
            &merged.series.process,
            options.chart_points.max(2),
        );
        let latest = history.latest();
        let clock = ClockNote::of(history);
        let warnings = warnings(history, symbols, labels, &kept.sites, clock.as_ref());
        Report {
            format: REPORT_FORMAT.to_string(),
            version: REPORT_VERSION,
            timestamp_ms: latest.timestamp_ms,
            start_ms: history.start_ms(),
            pid: latest.pid,
            mode: latest.mode,
            sample_rate: latest.sample_rate,
            window_seconds: ranking.window_seconds,
            points: merged.series.len(),
            process: ProcessSummary::of(latest, &ranking),
            sites: kept.sites,
            functions: kept.functions,
            omitted_sites: kept.omitted_sites,
            omitted_live_bytes: kept.omitted_live_bytes,
            tracker: latest.tracker,
            overflow: latest.overflow,
            warnings,
            chart_times,
            chart_process,
            clock,
            recorder: None,
            symbolizer: None,
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
            Some(REPORT_MIN_VERSION..=REPORT_VERSION) => {}
            Some(v) => {
                return Err(Error::at(
                    origin,
                    None,
                    format!(
                        "report version {v} is not supported (this build reads {REPORT_MIN_VERSION} to {REPORT_VERSION})"
                    ),
                ));
            }
            None => return Err(Error::at(origin, None, "report has no \"version\"")),
        }
        let mut report: Report =
            bounded::with_budget(MAX_LIST_BYTES, || serde_json::from_str(json))
                .map_err(|e| Error::json(origin, &e))?;
        if report.functions.is_empty() && !report.sites.is_empty() {
            // Version 1: sites in ranking order, not grouped yet.
            let (sites, functions) = group_by_function(std::mem::take(&mut report.sites));
            report.sites = sites;
            report.functions = functions;
        }
        Ok(report)
    }

    /// Each function with its lines, most urgent first.
    pub fn by_function(&self) -> impl Iterator<Item = (&FunctionReport, Vec<&SiteReport>)> {
        self.functions.iter().map(|f| {
            let lines = f
                .sites
                .iter()
                .filter_map(|&rank| self.sites.get(rank.wrapping_sub(1)))
                .collect();
            (f, lines)
        })
    }
}

/// Lists that charge what they hold to a budget while a report is read.
mod bounded {
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use std::cell::Cell;
    use std::marker::PhantomData;

    thread_local! {
        /// Bytes the lists of the report being read may still take.
        static LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// Runs `read` with `bytes` for the lists it reads.
    pub(super) fn with_budget<T>(bytes: usize, read: impl FnOnce() -> T) -> T {
        let before = LEFT.replace(bytes);
        let result = read();
        LEFT.set(before);
        result
    }

    /// At most `max` items, named `what` (and what the budget allows).
    struct List<T>(usize, &'static str, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == self.0 {
                    return Err(A::Error::custom(format_args!(
                        "more than {} {}",
                        self.0, self.1
                    )));
                }
                let size = std::mem::size_of::<T>().max(1);
                let left = LEFT.get();
                if left < size {
                    return Err(A::Error::custom(format_args!(
                        "the report's lists would take more than {} MiB",
                        super::MAX_LIST_BYTES >> 20
                    )));
                }
                LEFT.set(left - size);
                items.push(item);
            }
            Ok(items)
        }
    }

    pub(super) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(List(usize::MAX, "", PhantomData))
    }

    /// A list of sites or functions: at most [`crate::MAX_SITES`], one per label.
    pub(super) fn sites<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(List(
            crate::MAX_SITES,
            "sites (more than a series file may hold)",
            PhantomData,
        ))
    }

    /// Warnings: at most [`crate::recording::MAX_WARNINGS`].
    pub(super) fn warnings<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(List(
            crate::recording::MAX_WARNINGS,
            "warnings",
            PhantomData,
        ))
    }
}

/// The function part of a `function (file:line)` label: what the report groups lines
/// by. A label without a location is its own function.
pub fn function_of_label(label: &str) -> &str {
    if label.ends_with(')') {
        if let Some(open) = label.rfind(" (") {
            if open > 0 {
                return &label[..open];
            }
        }
    }
    label
}

/// The sites of one label and tag set: their ids and summed latest counters.
struct Members<'a> {
    label: &'a str,
    tags: &'a Tags,
    ids: Vec<u32>,
    /// Summed `SiteStats::age_bytes` (empty when none has ages).
    age_bytes: Vec<u64>,
    /// Summed `SiteStats::old_bytes` (`None` when a member has none).
    old_bytes: Option<u64>,
    live_blocks: f64,
    alloc_bytes: u64,
    alloc_blocks: f64,
    /// The member that grew most: (growth, live bytes, id), and its frames.
    representative: (f64, u64, u32),
    frames: &'a [u64],
}

/// Stage "merge": the history as one series per label (sites sharing a label summed),
/// with the process's usage, cut to the report's window, and each label's members.
struct Merged<'a> {
    series: Series<String>,
    /// By [`merge_key`].
    members: BTreeMap<String, Members<'a>>,
}

/// ` {model=2, route=/v1/generate}`, or empty for no tags.
pub fn tags_suffix(tags: &Tags) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" {{{}}}", pairs.join(", "))
}

/// What sites merge by: their label and, for tagged sites, their tag set (a site's
/// stack under two tag sets is two lines, `open_session` under `model=1` and under
/// `model=2`). An untagged site's key is its label.
fn merge_key(label: &str, tags: &Tags) -> String {
    let mut key = label.to_string();
    for (k, v) in tags {
        // Unit separators: no label or tag holds them in practice, and a clash would
        // only merge two lines.
        key.push('\u{1f}');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

impl<'a> Merged<'a> {
    fn of(history: &'a History, labels: &'a LabelCache, options: &ReportOptions) -> Merged<'a> {
        let mut series =
            history.series_by(|site| merge_key(&labels.get(site.id).label, &site.tags));
        series.process = history
            .process()
            .iter()
            .map(|p| (p.resident_bytes as f64).max(p.live_bytes as f64))
            .collect();
        if let Some(window) = options.window_seconds {
            series = series.last_seconds(window);
        }
        let mut members: BTreeMap<String, Members> = BTreeMap::new();
        for site in history.sites() {
            let column = history.column(site.id).unwrap_or_default();
            let growth = f64::from(column.last().copied().unwrap_or(0.0))
                - f64::from(column.first().copied().unwrap_or(0.0));
            let label = labels.get(site.id).label.as_str();
            let m = members
                .entry(merge_key(label, &site.tags))
                .or_insert(Members {
                    label,
                    tags: &site.tags,
                    ids: Vec::new(),
                    age_bytes: Vec::new(),
                    old_bytes: Some(0),
                    live_blocks: 0.0,
                    alloc_bytes: 0,
                    alloc_blocks: 0.0,
                    representative: (f64::NEG_INFINITY, 0, site.id),
                    frames: &site.frames,
                });
            m.ids.push(site.id);
            if m.age_bytes.len() < site.age_bytes.len() {
                m.age_bytes.resize(site.age_bytes.len(), 0);
            }
            for (sum, bytes) in m.age_bytes.iter_mut().zip(&site.age_bytes) {
                *sum = sum.saturating_add(*bytes);
            }
            m.old_bytes = m
                .old_bytes
                .zip(site.old_bytes)
                .map(|(sum, old)| sum.saturating_add(old));
            m.live_blocks += site.live_blocks;
            m.alloc_bytes = m.alloc_bytes.saturating_add(site.alloc_bytes);
            m.alloc_blocks += site.alloc_blocks;
            let candidate = (growth, site.live_bytes, site.id);
            if candidate.0 > m.representative.0
                || (candidate.0 == m.representative.0 && candidate.1 > m.representative.1)
            {
                m.representative = candidate;
                m.frames = &site.frames;
            }
        }
        Merged { series, members }
    }

    /// Stage "rank windows": every label over the whole window and the recent ones,
    /// with sampled snapshots' noise.
    fn rank(&self, history: &History, options: &ReportOptions) -> Ranking<String> {
        let mut rank_options = options.rank;
        let latest = history.latest();
        if latest.mode == Mode::Sampled && latest.sample_rate > 1 {
            rank_options.sample_bytes = f64::from(latest.sample_rate);
        }
        rank_windows(&self.series, &rank_options, &options.recent_windows)
    }

    /// Stage "lines": one report line per ranked label, in ranking order, named by its
    /// representative's label frame (no stack or chart yet).
    fn lines(
        &self,
        ranking: &Ranking<String>,
        labels: &LabelCache,
        symbols: &SymbolTable,
    ) -> Vec<SiteReport> {
        ranking
            .sites
            .iter()
            .enumerate()
            .map(|(i, trend)| {
                let members = &self.members[&trend.key];
                let label_frame = labels.get(members.representative.2).label_frame;
                let frame = symbols
                    .stack_refs(members.frames)
                    .nth(label_frame)
                    .map(|(address, symbol)| Frame::from_ref(address, symbol));
                let frame = frame.as_ref();
                SiteReport {
                    rank: i + 1,
                    label: members.label.to_string(),
                    tags: members.tags.clone(),
                    function: frame.and_then(|f| f.function.clone()),
                    file: frame.and_then(|f| f.file.clone()),
                    line: frame.and_then(|f| f.line),
                    verdict: trend.verdict,
                    live_bytes: trend.live_bytes.max(0.0).round() as u64,
                    live_blocks: members.live_blocks,
                    alloc_bytes: members.alloc_bytes,
                    alloc_blocks: members.alloc_blocks,
                    rate: trend.rate,
                    recent_rate: trend.recent_rate,
                    growth: trend.window_growth,
                    recent_growth: trend.recent_growth,
                    p_increasing: trend.p_increasing,
                    seconds_to_limit: trend.seconds_to_limit,
                    verdict_window_seconds: trend.window_seconds,
                    function_rank: 0,
                    site_ids: members.ids.clone(),
                    age_bytes: members.age_bytes.clone(),
                    old_bytes: members.old_bytes,
                    old_verdict: trend.old_verdict,
                    stack: Vec::new(),
                    label_frame,
                    history: Vec::new(),
                }
            })
            .collect()
    }

    /// Stage "details": the whole stack of the representative member and the chart of
    /// live bytes, for the first `detail` lines (building a stack copies strings).
    fn attach_details(
        &self,
        sites: &mut [SiteReport],
        symbols: &SymbolTable,
        options: &ReportOptions,
    ) {
        for site in sites.iter_mut().take(options.detail) {
            let key = merge_key(&site.label, &site.tags);
            // Every line comes from a key of both maps (`lines`).
            let (Some(members), Some(series)) =
                (self.members.get(&key), self.series.sites.get(&key))
            else {
                continue;
            };
            site.stack = symbols.stack(members.frames);
            site.history = bucket(&self.series.times, series, options.chart_points.max(2)).1;
        }
    }
}

/// Stage "group by function": `lines` (in ranking order) regrouped under their
/// functions ([`function_of_label`]), most urgent function first: by the most urgent
/// verdict among its lines, then, for `leak` and `growing`, the summed current rate of
/// those lines ([`SiteReport::current_rate`]), for the other verdicts the summed live
/// bytes (what the ranking orders them by), then the rank of its first line. A
/// function's lines keep their ranking order beneath it. Returns the lines in that
/// order, renumbered (`rank` 1, 2, ... and `function_rank`), and the functions.
pub fn group_by_function(lines: Vec<SiteReport>) -> (Vec<SiteReport>, Vec<FunctionReport>) {
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<String, Vec<SiteReport>> = BTreeMap::new();
    for line in lines {
        let function = function_of_label(&line.label).to_string();
        let list = members.entry(function.clone()).or_default();
        if list.is_empty() {
            order.push(function);
        }
        list.push(line);
    }
    let mut groups: Vec<(FunctionReport, Vec<SiteReport>)> = order
        .into_iter()
        .map(|function| {
            let lines = members.remove(&function).unwrap_or_default();
            let verdict = lines
                .iter()
                .map(|l| l.verdict)
                .min()
                .unwrap_or(Verdict::Stable);
            let growing = |l: &&SiteReport| matches!(l.verdict, Verdict::Leak | Verdict::Growing);
            let report = FunctionReport {
                rank: 0,
                function,
                verdict,
                live_bytes: lines
                    .iter()
                    .fold(0, |sum, l| l.live_bytes.saturating_add(sum)),
                rate: lines
                    .iter()
                    .filter(growing)
                    .map(SiteReport::current_rate)
                    .sum(),
                growth: lines.iter().map(|l| l.growth).sum(),
                sites: Vec::new(),
                omitted_sites: 0,
            };
            (report, lines)
        })
        .collect();
    // `groups` is in the order of each function's first line: a stable sort keeps it
    // for ties.
    let urgency = |f: &FunctionReport| match f.verdict {
        Verdict::Leak | Verdict::Growing => f.rate,
        _ => f.live_bytes as f64,
    };
    groups.sort_by(|(a, _), (b, _)| {
        a.verdict
            .cmp(&b.verdict)
            .then(urgency(b).total_cmp(&urgency(a)))
    });
    let mut sites = Vec::new();
    let mut functions = Vec::with_capacity(groups.len());
    for (i, (mut function, lines)) in groups.into_iter().enumerate() {
        function.rank = i + 1;
        for mut line in lines {
            line.rank = sites.len() + 1;
            line.function_rank = function.rank;
            function.sites.push(line.rank);
            sites.push(line);
        }
        functions.push(function);
    }
    (sites, functions)
}

/// Stage "top": what the report keeps of the grouped lines.
struct Kept {
    sites: Vec<SiteReport>,
    functions: Vec<FunctionReport>,
    omitted_sites: usize,
    omitted_live_bytes: u64,
}

impl Kept {
    /// The first `top` lines (in grouped order); functions whose lines were all left out
    /// are dropped, the others count theirs in `omitted_sites`.
    fn first(mut sites: Vec<SiteReport>, functions: Vec<FunctionReport>, top: usize) -> Kept {
        let omitted = sites.split_off(top.min(sites.len()));
        let functions = functions
            .into_iter()
            .filter_map(|mut f| {
                let all = f.sites.len();
                f.sites.retain(|&rank| rank <= top);
                f.omitted_sites = all - f.sites.len();
                (!f.sites.is_empty()).then_some(f)
            })
            .collect();
        Kept {
            sites,
            functions,
            omitted_sites: omitted.len(),
            omitted_live_bytes: omitted
                .iter()
                .fold(0, |sum, s| s.live_bytes.saturating_add(sum)),
        }
    }
}

impl ProcessSummary {
    /// The process at the latest point, with the ranking's growth and time to limit.
    fn of(latest: &Header, ranking: &Ranking<String>) -> ProcessSummary {
        ProcessSummary {
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
        }
    }
}

/// Stage "warnings": the tracker's, the symbols', then the report's own.
fn warnings(
    history: &History,
    symbols: &SymbolTable,
    labels: &LabelCache,
    shown: &[SiteReport],
    clock: Option<&ClockNote>,
) -> Vec<String> {
    let latest = history.latest();
    let mut warnings = latest.warnings.clone();
    let offline = labels.offline(shown);
    if offline > 0 {
        let sites: usize = shown.iter().map(|line| line.site_ids.len()).sum();
        warnings.push(format!("{offline} of {sites} sites{OFFLINE_WARNING}"));
    }
    // Frames without file and line: say what to set.
    warnings.extend(symbols.warnings());
    if history.len() < 3 {
        warnings.push(format!(
            "only {} point(s) recorded: growth needs at least 3 snapshots over time",
            history.len()
        ));
    }
    if latest.mode == Mode::Off {
        warnings.push("tracking is off: no new allocations are attributed to sites".into());
    }
    if let Some(note) = clock {
        warnings.push(note.sentence());
    }
    warnings
}

/// The warning of a report whose sites are labelled by module and offset, after the
/// count of those sites among the ones it shows ("3 of 12 sites").
pub const OFFLINE_WARNING: &str = " labelled by module and offset: symbols are offline \
(LEAKWATCH_SYMBOLIZE=0, or not symbolized in the process yet); for names run `leakwatch report SERIES.jsonl --symbols BINARY`, or \
`go tool pprof BINARY heap.pb.gz` on its pprof profile";

#[cfg(test)]
mod tests;
