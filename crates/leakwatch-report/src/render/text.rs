//! Plain text: the report as an on-call engineer reads it in a terminal.
//!
//! [`text`] writes, in this order: a header (process, tracking mode, window, memory and
//! its limit), one line of verdicts (or one line saying plainly that there is no leak), a
//! table of the most urgent sites, the stacks of the leaks among them, and the warnings.
//! Every line fits in [`WIDTH`] columns (counted in characters): a site label too long
//! for its column is shortened in the middle of its function name, keeping the file and
//! line; warnings are wrapped.
//!
//! The number formats of every renderer live here too: [`bytes`], [`rate`] and
//! [`duration`]. None of them panics, whatever the input (NaN, infinities, huge values).

use crate::rank::Verdict;
use crate::report::{FunctionReport, Report, SiteReport, function_of_label};
use leakwatch_types::Mode;

/// The widest line [`text`] writes, in characters.
pub const WIDTH: usize = 100;
/// Leaks whose stacks are printed below the table.
const MAX_STACKS: usize = 3;
/// Frames printed per stack.
const MAX_FRAMES: usize = 6;
/// Every verdict, in ranking order.
pub(crate) const VERDICTS: [Verdict; 5] = [
    Verdict::Leak,
    Verdict::Growing,
    Verdict::Plateau,
    Verdict::Stable,
    Verdict::Shrinking,
];

/// The report as terminal text: header, verdicts, a table of the first `top` sites, the
/// stacks of the leaks among them (at most three), and warnings. Every line has at most
/// [`WIDTH`] characters.
///
/// # Examples
///
/// ```
/// use leakwatch_report::{History, Report, ReportOptions, SymbolTable};
///
/// let report = Report::build(&History::default(), &SymbolTable::new(), &ReportOptions::default());
/// let text = leakwatch_report::render::text::text(&report, 10);
/// assert!(text.contains("No leak"));
/// assert!(text.lines().all(|line| line.chars().count() <= 100));
/// ```
pub fn text(report: &Report, top: usize) -> String {
    let mut lines = header(report);
    lines.push(String::new());
    lines.push(verdict_line(report));
    if let Some(no_leak) = no_leak_line(report) {
        lines.push(no_leak);
    }
    let shown = &report.sites[..top.min(report.sites.len())];
    if !shown.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "Most urgent sites (growth over the {} window; rate: recent for leaks):",
            duration(report.window_seconds)
        ));
        lines.extend(table(report, shown, report.window_seconds));
        // Verdicts found in a recent window rather than the whole one.
        let recent: Vec<f64> = shown
            .iter()
            .filter(|s| from_recent_window(s, report.window_seconds))
            .map(|s| s.verdict_window_seconds)
            .collect();
        if let Some(&window) = recent.first() {
            lines.push(format!(
                "* verdict, rate and growth over the last {} (a leak that began late shows there first)",
                duration(window)
            ));
        }
    }
    let not_shown = (report.sites.len() - shown.len()).saturating_add(report.omitted_sites);
    if not_shown > 0 {
        let live: f64 = report.sites[shown.len()..]
            .iter()
            .map(|s| s.live_bytes as f64)
            .sum::<f64>()
            + report.omitted_live_bytes as f64;
        lines.push(format!(
            "… and {not_shown} more {} not shown ({} live)",
            plural(not_shown, "site", "sites"),
            bytes(live)
        ));
    }
    for site in shown
        .iter()
        .filter(|s| s.verdict == Verdict::Leak)
        .take(MAX_STACKS)
    {
        lines.push(String::new());
        lines.extend(leak_stack(site));
    }
    if !report.warnings.is_empty() {
        lines.push(String::new());
        lines.push("Warnings:".to_string());
        for warning in &report.warnings {
            lines.extend(wrap(&clean(warning), "  - ", "    ", WIDTH));
        }
    }

    let mut out = String::new();
    for line in &lines {
        // The sections above keep to the width; this guards against absurd numbers.
        out.push_str(&truncate_end(line, WIDTH));
        out.push('\n');
    }
    out
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `20.0 MiB`, `3.2 GiB`
/// (then TiB, PiB, EiB); negative amounts start with `-`. `n/a` for NaN.
///
/// # Examples
///
/// ```
/// use leakwatch_report::render::text::bytes;
///
/// assert_eq!(bytes(512.0), "512 B");
/// assert_eq!(bytes(1536.0), "1.5 KiB");
/// assert_eq!(bytes(-3.0 * 1024.0 * 1024.0), "-3.0 MiB");
/// ```
pub fn bytes(b: f64) -> String {
    if b.is_nan() {
        return "n/a".to_string();
    }
    // Amounts that round to 0 B get no sign.
    let sign = if b <= -0.5 { "-" } else { "" };
    format!("{sign}{}", magnitude(b.abs()))
}

/// A growth rate in bytes per second, always signed unless zero: `+1.2 MiB/s`,
/// `-300 B/s`, `0 B/s`. `n/a` for NaN.
///
/// # Examples
///
/// ```
/// use leakwatch_report::render::text::rate;
///
/// assert_eq!(rate(1.2 * 1024.0 * 1024.0), "+1.2 MiB/s");
/// assert_eq!(rate(-300.0), "-300 B/s");
/// ```
pub fn rate(bytes_per_second: f64) -> String {
    if bytes_per_second.is_nan() {
        return "n/a".to_string();
    }
    format!("{}/s", signed_bytes(bytes_per_second))
}

/// A duration rounded to what matters at a glance: `45 s`, `12 min`, `3 h 10 min`,
/// `2 d 4 h`; `under 1 s`, `over 100 years`, `n/a` for NaN; negative durations start
/// with `-`.
///
/// # Examples
///
/// ```
/// use leakwatch_report::render::text::duration;
///
/// assert_eq!(duration(45.0), "45 s");
/// assert_eq!(duration(3.0 * 3600.0 + 600.0), "3 h 10 min");
/// assert_eq!(duration(2.0 * 86400.0 + 4.0 * 3600.0), "2 d 4 h");
/// ```
pub fn duration(seconds: f64) -> String {
    const MINUTE: f64 = 60.0;
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86_400.0;
    if seconds.is_nan() {
        return "n/a".to_string();
    }
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    if seconds >= 100.0 * 365.25 * DAY {
        return "over 100 years".to_string();
    }
    if seconds == 0.0 {
        return "0 s".to_string();
    }
    if seconds < 0.5 {
        return "under 1 s".to_string();
    }
    // Seconds up to 99, so that 99 s does not read `2 min`; then round to the unit
    // shown first, so that 59 min 50 s reads `1 h`, not `60 min`.
    if seconds.round() < 100.0 {
        return format!("{} s", seconds.round());
    }
    let minutes = (seconds / MINUTE).round() as u64;
    if minutes < 60 {
        return format!("{minutes} min");
    }
    if minutes < 24 * 60 {
        return match (minutes / 60, minutes % 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        };
    }
    let hours = (seconds / HOUR).round() as u64;
    match (hours / 24, hours % 24) {
        (d, 0) => format!("{d} d"),
        (d, h) => format!("{d} d {h} h"),
    }
}

/// `+` before positive amounts, `-` before negative ones, nothing before 0 B.
pub(crate) fn signed_bytes(b: f64) -> String {
    if b.is_nan() {
        return "n/a".to_string();
    }
    let sign = if b >= 0.5 {
        "+"
    } else if b <= -0.5 {
        "-"
    } else {
        ""
    };
    format!("{sign}{}", magnitude(b.abs()))
}

/// A non-negative amount of bytes without sign.
fn magnitude(b: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b.is_infinite() {
        return "inf B".to_string();
    }
    if b.round() < 1024.0 {
        return format!("{} B", b.round());
    }
    let mut value = b;
    let mut unit = "B";
    for u in UNITS {
        value /= 1024.0;
        unit = u;
        // Move up while the rounded value would read 1024.0 or more.
        if (value * 10.0).round() < 10_240.0 {
            break;
        }
    }
    if value >= 10_240.0 {
        format!("{value:.1e} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Time in UTC, `2023-11-14 22:13:20 UTC`, from milliseconds since the Unix epoch.
pub fn utc(ms: u64) -> String {
    let seconds = ms / 1000;
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    // Days to a Gregorian date: count in 400-year eras of 146 097 days, each year
    // starting on 1 March so the leap day falls last (Howard Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The tracking mode in words: `sampled, one sample per 512.0 KiB allocated`.
pub(crate) fn tracking(report: &Report) -> String {
    match report.mode {
        Mode::Sampled => format!(
            "sampled, one sample per {} allocated (site numbers are estimates)",
            bytes(f64::from(report.sample_rate))
        ),
        Mode::Exact => "exact, every allocation tracked".to_string(),
        Mode::Off => "off, no allocation tracked".to_string(),
        _ => "unknown mode".to_string(),
    }
}

/// The process's memory in one line.
pub(crate) fn memory_line(report: &Report) -> String {
    let p = &report.process;
    let resident = if p.resident_bytes > 0 {
        format!("resident {}", bytes(p.resident_bytes as f64))
    } else {
        "resident unknown".to_string()
    };
    format!(
        "live heap {} (peak {}), {resident}",
        bytes(p.live_bytes as f64),
        bytes(p.peak_live_bytes as f64)
    )
}

/// The process's growth in words: `growing at +29.3 KiB/s`.
pub(crate) fn growth_phrase(report: &Report) -> String {
    let phrase = |r: f64| {
        if r.is_nan() {
            "growth unknown".to_string()
        } else if r >= 0.5 {
            format!("growing at {}", rate(r))
        } else if r <= -0.5 {
            format!("shrinking at {}", rate(r))
        } else {
            "not growing".to_string()
        }
    };
    let whole = phrase(report.process.growth_rate);
    match (
        report.process.recent_growth_rate,
        report.process.recent_window_seconds,
    ) {
        (Some(r), Some(w)) => format!(
            "{} over the last {}, {} over {}",
            phrase(r),
            duration(w),
            whole
                .replace("growing at ", "")
                .replace("shrinking at ", ""),
            duration(report.window_seconds)
        ),
        _ => whole,
    }
}

/// The memory limit and the time to reach it, one or two sentences.
pub(crate) fn limit_lines(report: &Report) -> Vec<String> {
    let p = &report.process;
    let Some(limit) = p.limit_bytes else {
        return vec!["memory limit unknown: no time-to-limit estimate".to_string()];
    };
    let share = if limit > 0 {
        format!(" ({:.0}%)", p.usage_bytes as f64 / limit as f64 * 100.0)
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "memory limit {}, in use {}{share}",
        bytes(limit as f64),
        bytes(p.usage_bytes as f64)
    )];
    lines.push(match p.seconds_to_limit {
        Some(s) if s <= 0.0 => "the process is already at its limit".to_string(),
        Some(s) => format!(
            "at this rate the process reaches its limit in {}",
            duration(s)
        ),
        None => "no leak is growing towards it".to_string(),
    });
    lines
}

/// `4 sites ranked: 1 leak, 1 plateau, 2 stable`.
pub(crate) fn verdict_line(report: &Report) -> String {
    let n = report.sites.len();
    let counts: Vec<String> = VERDICTS
        .iter()
        .map(|&v| (v, report.sites.iter().filter(|s| s.verdict == v).count()))
        .filter(|&(_, count)| count > 0)
        .map(|(v, count)| match v {
            Verdict::Leak => format!("{count} {}", plural(count, "leak", "leaks")),
            Verdict::Plateau => format!("{count} {}", plural(count, "plateau", "plateaus")),
            _ => format!("{count} {}", v.as_str()),
        })
        .collect();
    let mut line = format!("{n} {} ranked", plural(n, "site", "sites"));
    let functions = report.functions.len();
    if functions > 0 && functions < n {
        line = format!(
            "{n} {} in {functions} {} ranked",
            plural(n, "site", "sites"),
            plural(functions, "function", "functions")
        );
    }
    if !counts.is_empty() {
        line.push_str(": ");
        line.push_str(&counts.join(", "));
    }
    if report.omitted_sites > 0 {
        line.push_str(&format!(
            "; {} more left out of the report ({} live)",
            report.omitted_sites,
            bytes(report.omitted_live_bytes as f64)
        ));
    }
    line
}

/// One plain sentence when the report holds no leak; `None` when it does, or when it
/// cannot tell (every site was left out of it).
pub(crate) fn no_leak_line(report: &Report) -> Option<String> {
    if report.sites.iter().any(|s| s.verdict == Verdict::Leak) {
        return None;
    }
    if report.sites.is_empty() && report.omitted_sites > 0 {
        return None;
    }
    Some(if report.points < 3 {
        format!(
            "No leak detected yet: {} {} too few to judge growth.",
            report.points,
            plural(report.points, "point is", "points are")
        )
    } else if report.sites.is_empty() {
        "No leak: no allocation site was recorded.".to_string()
    } else {
        format!(
            "No leak: no site's live bytes grew steadily over the {} window.",
            duration(report.window_seconds)
        )
    })
}

/// `singular` when `n` is 1, else `plural`.
pub(crate) fn plural<'a>(n: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 { singular } else { plural }
}

fn header(report: &Report) -> Vec<String> {
    let mut title = format!("leakwatch report: pid {}", report.pid);
    if report.timestamp_ms > 0 {
        title.push_str(&format!(", {}", utc(report.timestamp_ms)));
    }
    let mut lines = vec![
        title,
        format!("tracking: {}", tracking(report)),
        format!(
            "window: {} over {} {}",
            duration(report.window_seconds),
            report.points,
            plural(report.points, "point", "points")
        ),
    ];
    // A rebuilt time axis changes every rate and window below: say so up front.
    if let Some(clock) = &report.clock {
        lines.extend(wrap(
            &format!("clock: {}", clean(&clock.sentence())),
            "",
            "  ",
            WIDTH,
        ));
    }
    lines.push(format!("process: {}", memory_line(report)));
    lines.push(format!("process memory is {}", growth_phrase(report)));
    lines.extend(limit_lines(report));
    lines.extend(wrap(&tracker_line(report), "", "  ", WIDTH));
    lines
}

/// leakwatch's own memory in one sentence: the tracker's tables and, in a report from a
/// running recorder, the recorder's parts with their bounds.
pub(crate) fn tracker_line(report: &Report) -> String {
    let t = &report.tracker;
    let mut line = format!(
        "tracker: {} for {} of at most {} call sites",
        bytes(t.memory_bytes as f64),
        t.sites,
        t.max_sites
    );
    if let Some(r) = &report.recorder {
        line.push_str(&format!(
            "; recorder: {} (history {} of {}, symbols {} of {}, sites and labels {}, \
             series writer {})",
            bytes(r.total_bytes as f64),
            bytes(r.history_bytes as f64),
            bytes(r.history_budget_bytes as f64),
            bytes(r.symbols_bytes as f64),
            bytes(r.symbols_budget_bytes as f64),
            bytes((r.sites_bytes + r.labels_bytes) as f64),
            bytes(r.files_bytes as f64),
        ));
    }
    if let Some(cost) = &report.symbolizer {
        line.push_str("; ");
        line.push_str(&cost.line());
    }
    line
}

/// The table of `sites`: columns as wide as their widest cell, then the label. When
/// every label fits in what is left of the line, a row is one line; otherwise each
/// label goes on a line of its own under its row (shortened only past the full width).
/// How fast a site grows: for a leak or a growing site, now (the faster of its window's
/// trend and its recent part's); for the rest, the trend over its window.
pub fn current_rate(site: &SiteReport) -> f64 {
    site.current_rate()
}

/// Whether `site`'s verdict came from a recent window, well shorter than the report's.
fn from_recent_window(site: &SiteReport, report_window: f64) -> bool {
    site.verdict_window_seconds > 0.0 && site.verdict_window_seconds < 0.9 * report_window
}

/// A row of the table: a function of several shown lines (its totals), or one line.
pub(crate) enum Row<'a> {
    /// A function and how many of its lines follow.
    Function(&'a FunctionReport, usize),
    /// A line; `true` when it sits under its function's row.
    Line(&'a SiteReport, bool),
}

/// The rows for `shown` (a prefix of the report's sites): each function with several
/// shown lines gets a row of its own above them; a function with one shows as that line.
pub(crate) fn rows<'a>(report: &'a Report, shown: &'a [SiteReport]) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(shown.len());
    let mut grouped = vec![false; shown.len()];
    for function in &report.functions {
        let lines: Vec<usize> = function
            .sites
            .iter()
            .map(|&rank| rank.wrapping_sub(1))
            .filter(|&i| i < shown.len() && !grouped[i])
            .collect();
        if lines.len() >= 2 {
            rows.push(Row::Function(function, lines.len()));
        }
        for &i in &lines {
            grouped[i] = true;
            rows.push(Row::Line(&shown[i], lines.len() >= 2));
        }
    }
    // Lines no function lists (a report that was not grouped): as they come.
    for (i, site) in shown.iter().enumerate() {
        if !grouped[i] {
            rows.push(Row::Line(site, false));
        }
    }
    rows
}

/// The label of a line under its function's row: its location alone.
pub(crate) fn line_location(site: &SiteReport) -> String {
    let function = function_of_label(&site.label);
    let rest = site.label[function.len()..].trim();
    let rest = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rest);
    if rest.is_empty() {
        site.label.clone()
    } else {
        rest.to_string()
    }
}

/// `function (3 lines)`.
pub(crate) fn function_heading(function: &FunctionReport, lines: usize) -> String {
    format!("{} ({lines} lines)", function.function)
}

fn table(report: &Report, sites: &[SiteReport], report_window: f64) -> Vec<String> {
    let with_limit = sites.iter().any(|s| s.seconds_to_limit.is_some());
    let mut rows: Vec<Vec<String>> = vec![
        ["#", "verdict", "live", "rate", "growth", "to limit"]
            .iter()
            .map(|h| h.to_string())
            .collect(),
    ];
    let mut labels: Vec<String> = Vec::new();
    for row in self::rows(report, sites) {
        match row {
            Row::Function(f, lines) => {
                rows.push(vec![
                    String::new(),
                    f.verdict.as_str().to_string(),
                    bytes(f.live_bytes as f64),
                    rate(f.rate),
                    signed_bytes(f.growth),
                    String::new(),
                ]);
                labels.push(clean(&function_heading(f, lines)));
            }
            Row::Line(s, grouped) => {
                rows.push(vec![
                    s.rank.to_string(),
                    if from_recent_window(s, report_window) {
                        format!("{}*", s.verdict.as_str())
                    } else {
                        s.verdict.as_str().to_string()
                    },
                    bytes(s.live_bytes as f64),
                    rate(current_rate(s)),
                    signed_bytes(s.growth),
                    s.seconds_to_limit.map_or("-".to_string(), duration),
                ]);
                labels.push(if grouped {
                    format!("  {}{}", clean(&line_location(s)), clean(&s.tags_suffix()))
                } else {
                    clean(&s.tagged_label())
                });
            }
        }
    }
    let columns = if with_limit { 6 } else { 5 };
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let cells = |row: &[String]| {
        let mut line = String::new();
        for (c, width) in widths.iter().enumerate() {
            // The verdict is a word: left-aligned; the rest are numbers.
            if c == 1 {
                line.push_str(&format!("{:<width$}  ", row[c]));
            } else {
                line.push_str(&format!("{:>width$}  ", row[c]));
            }
        }
        line
    };
    let label_width = WIDTH.saturating_sub(widths.iter().map(|w| w + 2).sum());
    let one_line = labels.iter().all(|l| l.chars().count() <= label_width);

    let mut lines = Vec::with_capacity(1 + 2 * rows.len());
    if one_line {
        lines.push(format!("{}site", cells(&rows[0])));
    } else {
        lines.push(cells(&rows[0]).trim_end().to_string());
    }
    for (row, label) in rows[1..].iter().zip(&labels) {
        if one_line {
            lines.push(format!("{}{label}", cells(row)));
        } else {
            let indent = " ".repeat(widths[0] + 2);
            lines.push(cells(row).trim_end().to_string());
            let room = WIDTH.saturating_sub(indent.len());
            lines.push(format!("{indent}{}", shorten_label(label, room)));
        }
    }
    lines
}

/// `< 10 s 1.0 MiB, < 1 min 2.0 MiB, < 10 min 0 B, < 1 h 0 B, older 0 B` for live bytes
/// by age ([`SiteReport::age_bytes`]); `None` without ages.
pub(crate) fn age_line(age_bytes: &[u64]) -> Option<String> {
    if age_bytes.is_empty() {
        return None;
    }
    let round = |s: u64| match s {
        0..60 => format!("< {s} s"),
        60..3600 => format!("< {} min", s / 60),
        _ => format!("< {} h", s / 3600),
    };
    let names = leakwatch_types::AGE_BOUNDS_SECONDS
        .iter()
        .map(|&s| round(s))
        .chain(std::iter::once("older".to_string()));
    let parts: Vec<String> = names
        .zip(age_bytes)
        .map(|(name, &b)| format!("{name} {}", bytes(b as f64)))
        .collect();
    Some(parts.join(", "))
}

/// `4.0 MiB in blocks that lived through 8 snapshots, a leak too` for a line's old bytes
/// and their verdict ([`SiteReport::old_bytes`], [`SiteReport::old_verdict`]): the
/// second signal, said in words where it decided the line's verdict; `None` without
/// ages.
pub(crate) fn old_line(site: &SiteReport) -> Option<String> {
    let old = site.old_bytes?;
    let held = format!(
        "{} in blocks that lived through {} snapshots",
        bytes(old as f64),
        leakwatch_types::OLD_SNAPSHOTS
    );
    let Some(verdict) = site.old_verdict else {
        return Some(held);
    };
    let said = match (site.verdict, verdict) {
        (Verdict::Leak, Verdict::Leak) => "a leak too".to_string(),
        (Verdict::Growing, Verdict::Stable | Verdict::Plateau | Verdict::Shrinking) => {
            "not growing: the growth is in younger blocks".to_string()
        }
        (_, v) => format!("their verdict: {}", v.as_str()),
    };
    Some(format!("{held}, {said}"))
}

/// The user stack of a leaking site, with a title line.
fn leak_stack(site: &SiteReport) -> Vec<String> {
    let mut lines = vec![format!(
        "Leak #{} ({}, {} live), its stack from the allocating line outwards:",
        site.rank,
        rate(current_rate(site)),
        bytes(site.live_bytes as f64)
    )];
    if let Some(ages) = age_line(&site.age_bytes) {
        lines.push(format!("    live by age: {ages}"));
    }
    if let Some(old) = old_line(site) {
        lines.push(format!("    old bytes: {old}"));
    }
    let stack = site.user_stack();
    if stack.is_empty() {
        lines.push("    (no stack in this report: only the first sites keep theirs)".to_string());
        return lines;
    }
    for frame in stack.iter().take(MAX_FRAMES) {
        lines.push(format!(
            "    {}",
            shorten_label(&clean(&frame.label()), WIDTH - 4)
        ));
    }
    if stack.len() > MAX_FRAMES {
        let more = stack.len() - MAX_FRAMES;
        lines.push(format!(
            "    … {more} more {}",
            plural(more, "frame", "frames")
        ));
    }
    lines
}

/// `s` with control characters (newlines, terminal escapes) written as escapes, so a
/// strange function name cannot break a line or drive the terminal.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to `width` characters, ending in `…` when cut.
pub(crate) fn truncate_end(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` cut to `width` characters by replacing its middle with `…`.
pub(crate) fn truncate_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width < 2 {
        return "…".chars().take(width).collect();
    }
    let keep = width - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// A `function (file:line)` label cut to `width` characters. The location is kept whole
/// when it takes at most two thirds of the width, and the function shortened in its
/// middle (keeping its crate and its last path segments); otherwise the whole label is
/// shortened in its middle.
pub(crate) fn shorten_label(label: &str, width: usize) -> String {
    if label.chars().count() <= width {
        return label.to_string();
    }
    if label.ends_with(')') {
        if let Some(open) = label.rfind(" (") {
            let (function, location) = label.split_at(open);
            let location_width = location.chars().count();
            if location_width * 3 <= width * 2 {
                let mut out = truncate_middle(function, width - location_width);
                out.push_str(location);
                return out;
            }
        }
    }
    truncate_middle(label, width)
}

/// `text` wrapped at spaces into lines of at most `width` characters, the first starting
/// with `first`, the others with `rest`. A number and its unit (`1 s`, `3.0 MiB`) stay on
/// one line. Words longer than a line are cut.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> Vec<String> {
    const UNITS: &[&str] = &[
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "B/s", "KiB/s", "MiB/s", "GiB/s", "s",
        "min", "h", "d", "years",
    ];
    let mut words: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let unit = word.trim_end_matches(|c: char| c.is_ascii_punctuation() && c != '/');
        let after_number = words
            .last()
            .is_some_and(|w| w.ends_with(|c: char| c.is_ascii_digit()));
        match words.last_mut() {
            Some(last) if after_number && UNITS.contains(&unit) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_string()),
        }
    }
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in &words {
        let line_width = line.chars().count();
        let word_width = word.chars().count();
        if !empty && line_width + 1 + word_width > width {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines.into_iter().map(|l| truncate_end(&l, width)).collect()
}

#[cfg(test)]
pub(crate) mod tests;
