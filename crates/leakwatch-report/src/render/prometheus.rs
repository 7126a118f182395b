//! Prometheus: the report in the text exposition format (version 0.0.4), for a scrape
//! endpoint or the node exporter's textfile collector.
//!
//! Process-wide metrics describe the heap, the resident memory, the growth rate, the
//! memory limit, the verdicts and the tracker itself. Per-site metrics cover only the
//! first `top` sites, so the number of series stays bounded however many call sites the
//! service has. Their labels identify a site and nothing else: `site` (its label),
//! `function`, `file` (shortened) and `line`, and one `tag_KEY` label per tag of a
//! tagged site (`tag_model="2"`; the key's characters outside `[A-Za-z0-9_]` become
//! `_`). Tag sets are bounded by the tracker (1,024; refusals counted in
//! `leakwatch_tracker_tag_sets_full_total`), and series by `top`. Rank and verdict change from one report
//! to the next, so they are values (`leakwatch_site_leak`), never labels, and series do
//! not churn.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `leakwatch_heap_live_bytes` | gauge | live heap bytes |
//! | `leakwatch_heap_peak_live_bytes` | gauge | highest live heap bytes seen |
//! | `leakwatch_resident_memory_bytes` | gauge | resident set size (when known) |
//! | `leakwatch_memory_growth_bytes_per_second` | gauge | growth of the process's memory |
//! | `leakwatch_memory_recent_growth_bytes_per_second` | gauge | the same over the last 5 min (when the history is longer) |
//! | `leakwatch_allocations_total` | counter | allocations since tracking started |
//! | `leakwatch_allocated_bytes_total` | counter | bytes allocated since tracking started |
//! | `leakwatch_memory_limit_bytes` | gauge | the memory limit (when known) |
//! | `leakwatch_time_to_limit_seconds` | gauge | time until the leaks reach it (when known) |
//! | `leakwatch_report_sites{verdict}` | gauge | ranked sites by verdict |
//! | `leakwatch_tracker_memory_bytes` | gauge | the tracker's own memory |
//! | `leakwatch_tracker_sites` | gauge | call sites the tracker recorded |
//! | `leakwatch_recorder_memory_bytes{part}` | gauge | the recorder's own memory (`history`, `sites`, `symbols`, `labels`, `files`; reports of a running recorder only) |
//! | `leakwatch_tracker_untracked_blocks_total` | counter | blocks not tracked: block table full |
//! | `leakwatch_tracker_site_table_full_samples_total` | counter | samples lost: site table full |
//! | `leakwatch_tracker_truncated_stacks_total` | counter | stacks cut at the maximum depth |
//! | `leakwatch_tracker_tag_sets` | gauge | tag sets interned (at most 1,024) |
//! | `leakwatch_tracker_tag_sets_full_total` | counter | tag sets or tags refused: table or set full |
//! | `leakwatch_sampling_rate_bytes` | gauge | bytes per sample (1 = exact) |
//! | `leakwatch_window_seconds` | gauge | time covered by the report |
//! | `leakwatch_site_live_bytes` | gauge | a site's live bytes |
//! | `leakwatch_site_growth_bytes_per_second` | gauge | a site's growth rate |
//! | `leakwatch_site_window_growth_bytes` | gauge | a site's growth over the window |
//! | `leakwatch_site_time_to_limit_seconds` | gauge | time to the limit at a site's rate |
//! | `leakwatch_site_leak` | gauge | 1 when a site's verdict is `leak`, else 0 |

use crate::render::text::VERDICTS;
use crate::report::{Report, SiteReport};
use crate::symbols::short_path;
use std::collections::BTreeSet;

/// The report in the Prometheus text exposition format (version 0.0.4), with per-site
/// metrics for the first `top` sites only: [`families`] written one after the other.
///
/// # Examples
///
/// ```
/// use leakwatch_report::{History, Report, ReportOptions, SymbolTable};
///
/// let report = Report::build(&History::default(), &SymbolTable::new(), &ReportOptions::default());
/// let metrics = leakwatch_report::render::prometheus::prometheus(&report, 10);
/// assert!(metrics.contains("\nleakwatch_report_sites{verdict=\"leak\"} 0\n"));
/// ```
pub fn prometheus(report: &Report, top: usize) -> String {
    let mut text = String::new();
    for family in families(report, top) {
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        let (name, kind) = (family.name, family.kind.as_str());
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for sample in &family.samples {
            text.push_str(name);
            if !sample.labels.is_empty() {
                text.push_str(&labels(&sample.labels));
            }
            text.push(' ');
            text.push_str(&sample.value.to_string());
            text.push('\n');
        }
    }
    text
}

/// One metric family: its name, help, type and samples. What [`prometheus`] writes, and
/// what a metrics library's collector encodes (leakwatch's `prometheus-client` feature):
/// one list of names, helps and labels for both.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Family {
    /// The metric's name as exposed (`leakwatch_...`; a counter's ends in `_total`).
    pub name: &'static str,
    /// The HELP text (one sentence, ending with a full stop).
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The samples, never empty (a family without samples is left out).
    pub samples: Vec<Sample>,
}

/// The type of a [`Family`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (from the start of tracking).
    Counter,
}

impl MetricKind {
    /// The name in a `# TYPE` line: `gauge` or `counter`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        }
    }
}

/// One sample of a [`Family`]: its labels (names and values, unescaped, in order) and
/// its value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// Label names and values; empty for a family's only sample.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: Value,
}

/// A sample's value, in the type it has in the report (so integers stay exact).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count or a byte size.
    Unsigned(u64),
    /// A byte size that may be negative (live bytes of a process whose tracking started
    /// after some of its memory was allocated).
    Signed(i64),
    /// A rate, a duration or a growth.
    Float(f64),
}

impl std::fmt::Display for Value {
    /// The value as the text format writes it: `NaN`, `+Inf`, `-Inf`, or the number (in
    /// exponent form when very large or very small, to stay short).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Unsigned(v) => write!(f, "{v}"),
            Value::Signed(v) => write!(f, "{v}"),
            Value::Float(x) => f.write_str(&float(x)),
        }
    }
}

/// The report's metric families, in the order [`prometheus`] writes them, with per-site
/// families for the first `top` sites only (each label once). Families without samples
/// (the resident memory where unknown, the limit without one) are left out.
///
/// # Examples
///
/// ```
/// use leakwatch_report::render::prometheus::{families, MetricKind, Value};
/// use leakwatch_report::{History, Report, ReportOptions, SymbolTable};
///
/// let report = Report::build(&History::default(), &SymbolTable::new(), &ReportOptions::default());
/// let families = families(&report, 10);
/// let allocations = families.iter().find(|f| f.name == "leakwatch_allocations_total").unwrap();
/// assert_eq!(allocations.kind, MetricKind::Counter);
/// assert_eq!(allocations.samples[0].value, Value::Unsigned(0));
/// ```
pub fn families(report: &Report, top: usize) -> Vec<Family> {
    let mut out = Families::default();
    let p = &report.process;
    let one = |value: Value| {
        vec![Sample {
            labels: Vec::new(),
            value,
        }]
    };
    let by = |name: &str, value: &str, v: Value| Sample {
        labels: vec![(name.to_string(), value.to_string())],
        value: v,
    };

    out.gauge(
        "leakwatch_heap_live_bytes",
        "Live heap bytes: allocated minus freed since tracking started.",
        one(Value::Signed(p.live_bytes)),
    );
    out.gauge(
        "leakwatch_heap_peak_live_bytes",
        "Highest live heap bytes seen.",
        one(Value::Signed(p.peak_live_bytes)),
    );
    if p.resident_bytes > 0 {
        out.gauge(
            "leakwatch_resident_memory_bytes",
            "Resident memory of the process (RSS).",
            one(Value::Unsigned(p.resident_bytes)),
        );
    }
    out.gauge(
        "leakwatch_memory_growth_bytes_per_second",
        "Growth rate of the process's memory (the larger of resident and live heap) over the window.",
        one(Value::Float(p.growth_rate)),
    );
    if let Some(recent) = p.recent_growth_rate {
        out.gauge(
            "leakwatch_memory_recent_growth_bytes_per_second",
            "Growth rate of the process's memory over the report's shortest recent window (5 min by default).",
            one(Value::Float(recent)),
        );
    }
    out.counter(
        "leakwatch_allocations_total",
        "Allocations since tracking started.",
        one(Value::Unsigned(p.allocs)),
    );
    out.counter(
        "leakwatch_allocated_bytes_total",
        "Bytes allocated since tracking started.",
        one(Value::Unsigned(p.alloc_bytes)),
    );
    if let Some(limit) = p.limit_bytes {
        out.gauge(
            "leakwatch_memory_limit_bytes",
            "The memory limit used for time-to-limit estimates.",
            one(Value::Unsigned(limit)),
        );
    }
    if let Some(seconds) = p.seconds_to_limit {
        out.gauge(
            "leakwatch_time_to_limit_seconds",
            "Time until the process reaches its memory limit at the leaking sites' recent growth rate.",
            one(Value::Float(seconds)),
        );
    }
    out.gauge(
        "leakwatch_report_sites",
        "Ranked sites in the report, by verdict.",
        VERDICTS
            .iter()
            .map(|&v| {
                let count = report.sites.iter().filter(|s| s.verdict == v).count();
                by("verdict", v.as_str(), Value::Unsigned(count as u64))
            })
            .collect(),
    );
    out.gauge(
        "leakwatch_tracker_memory_bytes",
        "Memory the tracker's own tables occupy.",
        one(Value::Unsigned(report.tracker.memory_bytes)),
    );
    out.gauge(
        "leakwatch_tracker_sites",
        "Distinct call sites the tracker recorded.",
        one(Value::Unsigned(report.tracker.sites.into())),
    );
    if let Some(r) = &report.recorder {
        out.gauge(
            "leakwatch_recorder_memory_bytes",
            "Memory the recorder holds for its own work, by part.",
            [
                ("history", r.history_bytes),
                ("sites", r.sites_bytes),
                ("symbols", r.symbols_bytes),
                ("labels", r.labels_bytes),
                ("files", r.files_bytes),
            ]
            .iter()
            .map(|&(part, b)| by("part", part, Value::Unsigned(b)))
            .collect(),
        );
    }
    out.counter(
        "leakwatch_tracker_untracked_blocks_total",
        "Sampled blocks not tracked because the block table was full.",
        one(Value::Unsigned(report.overflow.untracked_blocks)),
    );
    out.counter(
        "leakwatch_tracker_site_table_full_samples_total",
        "Samples attributed to no site because the site table was full.",
        one(Value::Unsigned(report.overflow.site_table_full_samples)),
    );
    out.counter(
        "leakwatch_tracker_truncated_stacks_total",
        "Samples whose stack was cut at the maximum depth.",
        one(Value::Unsigned(report.overflow.truncated_stacks)),
    );
    out.gauge(
        "leakwatch_tracker_tag_sets",
        "Tag sets interned (leakwatch::tag), at most 1024.",
        one(Value::Unsigned(report.tracker.tag_sets.into())),
    );
    out.counter(
        "leakwatch_tracker_tag_sets_full_total",
        "Tag sets or tags refused: the table or a set was full (their allocations carry leakwatch.overflow).",
        one(Value::Unsigned(report.overflow.tag_sets_full)),
    );
    out.gauge(
        "leakwatch_sampling_rate_bytes",
        "Mean bytes allocated per sample (1 in exact mode).",
        one(Value::Unsigned(report.sample_rate.into())),
    );
    out.gauge(
        "leakwatch_window_seconds",
        "Time between the report's first and latest snapshot.",
        one(Value::Float(report.window_seconds)),
    );

    // The first `top` sites, each once (a report read from JSON could repeat a label).
    let mut seen = BTreeSet::new();
    let sites: Vec<(Vec<(String, String)>, &SiteReport)> = report
        .sites
        .iter()
        .take(top)
        .filter(|s| seen.insert(s.label.as_str()))
        .map(|s| (site_labels(s), s))
        .collect();
    let per_site = |value: &dyn Fn(&SiteReport) -> Option<Value>| -> Vec<Sample> {
        sites
            .iter()
            .filter_map(|(labels, s)| {
                value(s).map(|value| Sample {
                    labels: labels.clone(),
                    value,
                })
            })
            .collect()
    };
    out.gauge(
        "leakwatch_site_live_bytes",
        "Live bytes allocated at a site (an estimate in sampled mode).",
        per_site(&|s| Some(Value::Unsigned(s.live_bytes))),
    );
    out.gauge(
        "leakwatch_site_growth_bytes_per_second",
        "Growth rate of a site's live bytes over the window.",
        per_site(&|s| Some(Value::Float(s.rate))),
    );
    out.gauge(
        "leakwatch_site_window_growth_bytes",
        "Growth of a site's live bytes over the window (last third's level minus the first's).",
        per_site(&|s| Some(Value::Float(s.growth))),
    );
    out.gauge(
        "leakwatch_site_time_to_limit_seconds",
        "Time until the process reaches its memory limit if a site keeps growing at its recent rate.",
        per_site(&|s| s.seconds_to_limit.map(Value::Float)),
    );
    out.gauge(
        "leakwatch_site_leak",
        "1 when a site's verdict is leak, else 0.",
        per_site(&|s| {
            Some(Value::Unsigned(u64::from(
                s.verdict == crate::Verdict::Leak,
            )))
        }),
    );
    out.0
}

/// Metric families collected one after the other.
#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn gauge(&mut self, name: &'static str, help: &'static str, samples: Vec<Sample>) {
        self.family(name, MetricKind::Gauge, help, samples);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, samples: Vec<Sample>) {
        self.family(name, MetricKind::Counter, help, samples);
    }

    /// A family with its samples; nothing for a family without samples.
    fn family(
        &mut self,
        name: &'static str,
        kind: MetricKind,
        help: &'static str,
        samples: Vec<Sample>,
    ) {
        if !samples.is_empty() {
            self.0.push(Family {
                name,
                help,
                kind,
                samples,
            });
        }
    }
}

/// The labels of a site's series: `site`, and the label frame's `function`, `file` and
/// `line` where known, then one `tag_KEY` per tag.
fn site_labels(s: &SiteReport) -> Vec<(String, String)> {
    let mut pairs = vec![("site".to_string(), s.label.clone())];
    if let Some(function) = &s.function {
        pairs.push(("function".to_string(), function.clone()));
    }
    if let Some(file) = &s.file {
        pairs.push(("file".to_string(), short_path(file).to_string()));
    }
    if let Some(line) = s.line {
        pairs.push(("line".to_string(), line.to_string()));
    }
    let names: Vec<String> = tag_label_names(s.tags.keys().map(String::as_str));
    for (name, value) in names.into_iter().zip(s.tags.values()) {
        pairs.push((name, value.clone()));
    }
    pairs
}

/// The label names of tags with keys `keys`: `tag_` and the key with every character
/// outside `[A-Za-z0-9_]` replaced by `_`; a name taken by an earlier key gets `_2`,
/// `_3`, ... (so the label set stays valid).
fn tag_label_names<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken = BTreeSet::new();
    keys.map(|key| {
        let base: String = std::iter::once("tag_".to_string())
            .chain(key.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_string()
                } else {
                    "_".to_string()
                }
            }))
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    })
    .collect()
}

/// `{name="value",...}` with every value escaped.
fn labels(pairs: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape_label_value(value));
        out.push('"');
    }
    out.push('}');
    out
}

/// A label value escaped as the format requires: backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: `NaN`, `+Inf`, `-Inf`, or the number (in exponent form when very
/// large or very small, to stay short).
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests;
