//! HTML: one self-contained page for a browser, to read, keep or attach to a ticket.
//!
//! The page holds a summary, a line chart of the top sites' live bytes over time (an SVG
//! drawn here, with the process's memory as a dashed line), the ranking, each detailed
//! site's stack in a `<details>` element, the warnings, and a flame graph when one is
//! given. Everything is inline: styles, the chart, the flame graph. Nothing is fetched
//! from the network (no script, font, image or stylesheet), so the page reads the same
//! offline from a file. Every piece of text taken from the report is escaped. Names
//! longer than 120 characters (`LONG_NAME`) are shortened, with the whole name in a `title`;
//! sites with 0 bytes live are folded under one `<details>` line below the table.
//!
//! Tested in headless Chromium too (`browser.rs`): no console errors, the chart, the
//! table and the flame graph laid out, nothing wider than the window.
//!
//! The flame graph comes from [`flamegraph`](crate::render::flamegraph) and is embedded
//! as it is, script included. Its script (inferno's) takes the document's *first*
//! `<svg>` as its own, so the flame graph section comes first in the document and is
//! moved to the end of the page by CSS (`order`), after the chart.

use crate::rank::Verdict;
use crate::render::text::{
    Row, bytes, duration, growth_phrase, limit_lines, line_location, memory_line, no_leak_line,
    plural, rate, rows, signed_bytes, tracking, utc, verdict_line,
};
use crate::report::{Report, SiteReport};

/// Sites drawn in the chart, at most.
const CHART_LINES: usize = 8;
/// Line colours of the chart's sites: the Okabe-Ito palette (told apart with every common
/// colour-vision deficiency), then two more.
const COLOURS: [&str; CHART_LINES] = [
    "#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#8c564b", "#999933",
];
/// Colour of the process line (dashed).
const PROCESS_COLOUR: &str = "#4a4f55";

/// The report as one self-contained HTML page, with `flamegraph_svg` (an SVG document
/// from [`flamegraph`](crate::render::flamegraph)) embedded as it is when given.
///
/// # Examples
///
/// ```
/// use leakwatch_report::{History, Report, ReportOptions, SymbolTable};
///
/// let report = Report::build(&History::default(), &SymbolTable::new(), &ReportOptions::default());
/// let page = leakwatch_report::render::html::html(&report, None);
/// assert!(page.starts_with("<!DOCTYPE html>"));
/// assert!(page.contains("No points to chart yet"));
/// ```
pub fn html(report: &Report, flamegraph_svg: Option<&str>) -> String {
    let leaks = report.leaks().count();
    let mut title = format!("leakwatch: pid {}", report.pid);
    if leaks > 0 {
        title.push_str(&format!(", {leaks} {}", plural(leaks, "leak", "leaks")));
    }
    let mut page = String::with_capacity(64 * 1024 + flamegraph_svg.map_or(0, str::len));
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!("<title>{}</title>\n", escape(&title)));
    page.push_str(STYLE);
    page.push_str("</head>\n<body>\n<main class=\"lw-page\">\n");

    // First in the document for the flame graph's script; last on screen (see the
    // module documentation).
    if let Some(svg) = flamegraph_svg {
        page.push_str("<section class=\"lw-flame-section\">\n<h2>Flame graph of live bytes</h2>\n");
        page.push_str("<p class=\"lw-muted\">Live bytes by stack at the latest snapshot, ");
        page.push_str("outermost frame at the bottom. Click a frame to zoom.</p>\n");
        page.push_str("<div class=\"lw-flame\">\n");
        page.push_str(svg);
        page.push_str("\n</div>\n</section>\n");
    }

    summary(report, &title, &mut page);
    page.push_str("<section>\n<h2>Live bytes over time</h2>\n");
    page.push_str(&chart(report));
    page.push_str("</section>\n");
    ranking(report, &mut page);
    stacks(report, &mut page);
    if !report.warnings.is_empty() {
        page.push_str("<section>\n<h2>Warnings</h2>\n<ul class=\"lw-warnings\">\n");
        for warning in &report.warnings {
            page.push_str(&format!("<li>{}</li>\n", escape(warning)));
        }
        page.push_str("</ul>\n</section>\n");
    }
    page.push_str(&format!(
        "<footer class=\"lw-muted\">leakwatch {}: report format {} version {}</footer>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&report.format),
        report.version
    ));
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Title, the one-line verdict, and the process's numbers.
fn summary(report: &Report, title: &str, page: &mut String) {
    page.push_str("<header>\n");
    page.push_str(&format!("<h1>{}</h1>\n", escape(title)));
    if report.timestamp_ms > 0 {
        page.push_str(&format!(
            "<p class=\"lw-muted\">Latest snapshot {}</p>\n",
            escape(&utc(report.timestamp_ms))
        ));
    }
    match no_leak_line(report) {
        Some(line) => page.push_str(&format!(
            "<p class=\"lw-headline lw-ok\">{}</p>\n",
            escape(&line)
        )),
        None => {
            let limit = limit_lines(report).join("; ");
            page.push_str(&format!(
                "<p class=\"lw-headline lw-alert\">{}. Process memory is {}; {}.</p>\n",
                escape(&verdict_line(report)),
                escape(&growth_phrase(report)),
                escape(&limit)
            ));
        }
    }
    if let Some(clock) = &report.clock {
        page.push_str(&format!(
            "<p class=\"lw-headline lw-alert\">Clock: {}.</p>\n",
            escape(&clock.sentence())
        ));
    }
    let facts = [
        ("Process", format!("pid {}", report.pid)),
        ("Tracking", tracking(report)),
        (
            "Window",
            format!(
                "{} over {} {}",
                duration(report.window_seconds),
                report.points,
                plural(report.points, "point", "points")
            ),
        ),
        ("Memory", memory_line(report)),
        (
            "Growth",
            format!("process memory is {}", growth_phrase(report)),
        ),
        ("Limit", limit_lines(report).join("; ")),
        ("Sites", verdict_line(report)),
        (
            "Tracker",
            crate::render::text::tracker_line(report)
                .trim_start_matches("tracker: ")
                .to_string(),
        ),
    ];
    page.push_str("<dl class=\"lw-facts\">\n");
    for (term, value) in facts {
        page.push_str(&format!("<dt>{term}</dt><dd>{}</dd>\n", escape(&value)));
    }
    page.push_str("</dl>\n</header>\n");
}

/// The ranking table: every site of the report.
fn ranking(report: &Report, page: &mut String) {
    page.push_str("<section>\n<h2>Sites by function, most urgent first</h2>\n");
    if report.sites.is_empty() {
        page.push_str("<p>No site in this report.</p>\n");
    } else {
        page.push_str(&format!(
            "<p class=\"lw-muted\">Rate and growth over the {} window; time to limit at the \
             site's recent rate.</p>\n",
            escape(&duration(report.window_seconds))
        ));
        // Each function's rows stay together: a function of several lines is folded when
        // the function holds 0 bytes, a one-line function when its line does.
        let mut groups: Vec<Vec<Row>> = Vec::new();
        for row in rows(report, &report.sites) {
            let grouped = matches!(row, Row::Line(_, true));
            match groups.last_mut() {
                Some(group) if grouped => group.push(row),
                _ => groups.push(vec![row]),
            }
        }
        let (shown, zero): (Vec<Vec<Row>>, Vec<Vec<Row>>) =
            groups.into_iter().partition(|g| match g[0] {
                Row::Function(function, _) => function.live_bytes > 0,
                Row::Line(site, _) => site.live_bytes > 0,
            });
        if !shown.is_empty() {
            ranking_table(shown.iter().flatten(), page);
        }
        let folded = zero
            .iter()
            .flatten()
            .filter(|r| matches!(r, Row::Line(..)))
            .count();
        if folded > 0 {
            page.push_str(&format!(
                "<details class=\"lw-zero\"><summary>{folded} {} with 0 bytes live</summary>\n",
                plural(folded, "site", "sites")
            ));
            ranking_table(zero.iter().flatten(), page);
            page.push_str("</details>\n");
        }
    }
    if report.omitted_sites > 0 {
        page.push_str(&format!(
            "<p class=\"lw-muted\">… and {} more {} not in this report ({} live).</p>\n",
            report.omitted_sites,
            plural(report.omitted_sites, "site", "sites"),
            escape(&bytes(report.omitted_live_bytes as f64))
        ));
    }
    page.push_str("</section>\n");
}

/// One table of ranking rows, with its header.
fn ranking_table<'a>(rows: impl Iterator<Item = &'a Row<'a>>, page: &mut String) {
    page.push_str("<div class=\"lw-scroll\"><table class=\"lw-ranking\">\n<thead><tr>");
    for (head, numeric) in [
        ("#", true),
        ("verdict", false),
        ("live", true),
        ("rate", true),
        ("growth", true),
        ("to limit", true),
        ("site", false),
    ] {
        let class = if numeric { " class=\"lw-num\"" } else { "" };
        page.push_str(&format!("<th{class}>{head}</th>"));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        let (site, grouped) = match row {
            Row::Function(function, lines) => {
                page.push_str(&format!(
                    "<tr class=\"lw-function\"><td class=\"lw-num\"></td><td>{}</td>\
                     <td class=\"lw-num\">{}</td><td class=\"lw-num\">{}</td>\
                     <td class=\"lw-num\">{}</td><td class=\"lw-num\"></td>\
                     <td>{} <span class=\"lw-muted\">{lines} lines</span></td></tr>\n",
                    verdict_badge(function.verdict),
                    escape(&bytes(function.live_bytes as f64)),
                    escape(&rate(function.rate)),
                    escape(&signed_bytes(function.growth)),
                    name(&function.function),
                ));
                continue;
            }
            Row::Line(site, grouped) => (site, grouped),
        };
        let (text, class) = if *grouped {
            (
                format!("{}{}", line_location(site), site.tags_suffix()),
                " class=\"lw-line\"",
            )
        } else {
            (site.tagged_label(), "")
        };
        let label = if site.stack.is_empty() {
            name(&text)
        } else {
            format!("<a href=\"#lw-site-{}\">{}</a>", site.rank, name(&text))
        };
        page.push_str(&format!(
            "<tr{class}><td class=\"lw-num\">{}</td><td>{}</td><td class=\"lw-num\">{}</td>\
             <td class=\"lw-num\">{}</td><td class=\"lw-num\">{}</td>\
             <td class=\"lw-num\">{}</td><td>{label}</td></tr>\n",
            site.rank,
            verdict_badge(site.verdict),
            escape(&bytes(site.live_bytes as f64)),
            escape(&rate(site.rate)),
            escape(&signed_bytes(site.growth)),
            escape(&site.seconds_to_limit.map_or("-".to_string(), duration)),
        ));
    }
    page.push_str("</tbody>\n</table></div>\n");
}

/// The stack of every site that carries one, the first leak's open.
fn stacks(report: &Report, page: &mut String) {
    let detailed: Vec<&SiteReport> = report
        .sites
        .iter()
        .filter(|s| !s.stack.is_empty())
        .collect();
    if detailed.is_empty() {
        return;
    }
    page.push_str("<section>\n<h2>Stacks</h2>\n");
    page.push_str(
        "<p class=\"lw-muted\">The service's part of each stack, from the allocating line \
         outwards, recursion collapsed.</p>\n",
    );
    let first_leak = report.sites.iter().position(|s| s.verdict == Verdict::Leak);
    for (i, site) in report.sites.iter().enumerate() {
        if site.stack.is_empty() {
            continue;
        }
        let open = if Some(i) == first_leak { " open" } else { "" };
        page.push_str(&format!(
            "<details id=\"lw-site-{}\"{open}>\n<summary>#{} {} {} \
             <span class=\"lw-muted\">{}, {} live</span></summary>\n",
            site.rank,
            site.rank,
            verdict_badge(site.verdict),
            name(&site.tagged_label()),
            escape(&rate(site.rate)),
            escape(&bytes(site.live_bytes as f64)),
        ));
        page.push_str(&age_bar(&site.age_bytes));
        if let Some(old) = crate::render::text::old_line(site) {
            page.push_str(&format!(
                "<div class=\"lw-muted\">old bytes: {}</div>\n",
                escape(&old)
            ));
        }
        page.push_str("<ol class=\"lw-stack\">\n");
        for frame in site.user_stack() {
            page.push_str(&format!("<li>{}</li>\n", name(&frame.label())));
        }
        page.push_str("</ol>\n");
        page.push_str(&format!(
            "<details class=\"lw-full\"><summary>Full stack ({} {}, runtime frames \
             greyed)</summary>\n<ol class=\"lw-stack\">\n",
            site.stack.len(),
            plural(site.stack.len(), "frame", "frames")
        ));
        for (k, frame) in site.stack.iter().enumerate() {
            let class = if k < site.label_frame {
                " class=\"lw-runtime\""
            } else {
                ""
            };
            let inlined = if frame.inlined {
                " <span class=\"lw-muted\">(inlined)</span>"
            } else {
                ""
            };
            page.push_str(&format!(
                "<li{class}>{}{inlined}</li>\n",
                name(&frame.label())
            ));
        }
        page.push_str("</ol>\n</details>\n</details>\n");
    }
    page.push_str("</section>\n");
}

/// Colours of the age buckets, youngest first.
const AGE_COLOURS: [&str; 5] = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"];

/// A site's live bytes by age as one stacked bar (youngest left) with its numbers
/// beside it; empty without ages.
fn age_bar(age_bytes: &[u64]) -> String {
    let Some(text) = crate::render::text::age_line(age_bytes) else {
        return String::new();
    };
    let total: u64 = age_bytes.iter().sum();
    let mut bar = String::new();
    for (bytes, colour) in age_bytes.iter().zip(AGE_COLOURS) {
        if *bytes == 0 || total == 0 {
            continue;
        }
        let percent = *bytes as f64 * 100.0 / total as f64;
        bar.push_str(&format!(
            "<span style=\"display:inline-block;height:0.8em;width:{percent:.1}%;background:{colour}\"></span>"
        ));
    }
    format!(
        "<div class=\"lw-ages\"><div role=\"img\" aria-label=\"live bytes by age\" \
         style=\"width:20em;background:var(--muted);line-height:0\">{bar}</div>\
         <span class=\"lw-muted\">live by age: {}</span></div>\n",
        escape(&text)
    )
}

fn verdict_badge(verdict: Verdict) -> String {
    format!(
        "<span class=\"lw-verdict lw-v-{0}\">{0}</span>",
        verdict.as_str()
    )
}

/// One line of the chart.
struct Line<'a> {
    name: String,
    colour: &'a str,
    dashed: bool,
    /// (seconds, bytes), finite values only.
    points: Vec<(f64, f64)>,
}

/// The chart of live bytes over time: an inline SVG and its legend, or a sentence when
/// there is nothing to draw.
fn chart(report: &Report) -> String {
    let finite = |values: &[f64]| -> Vec<(f64, f64)> {
        report
            .chart_times
            .iter()
            .zip(values)
            .map(|(&t, &v)| (t, v))
            .filter(|(t, v)| t.is_finite() && v.is_finite())
            .collect()
    };
    let mut lines = vec![Line {
        name: "process memory (resident or live heap, the larger)".to_string(),
        colour: PROCESS_COLOUR,
        dashed: true,
        points: finite(&report.chart_process),
    }];
    for (site, colour) in report
        .sites
        .iter()
        .filter(|s| !s.history.is_empty())
        .zip(COLOURS)
    {
        lines.push(Line {
            name: format!("#{} {}", site.rank, site.tagged_label()),
            colour,
            dashed: false,
            points: finite(&site.history),
        });
    }
    lines.retain(|l| !l.points.is_empty());
    if lines.is_empty() {
        return "<p class=\"lw-muted\">No points to chart yet.</p>\n".to_string();
    }

    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (t_min, t_max) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(t, _)| {
        (lo.min(t), hi.max(t))
    });
    let (v_min, v_max) = all().fold((0.0f64, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
        (lo.min(v), hi.max(v))
    });
    // Time starts at the first snapshot.
    let t_axis = Axis::new(t_min.min(0.0), t_max, time_step);
    let v_axis = Axis::new(v_min, v_max.max(v_min + 1.0), byte_step).rounded_out();

    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 360.0;
    const LEFT: f64 = 86.0;
    const RIGHT: f64 = 24.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 50.0;
    let x = |t: f64| LEFT + t_axis.fraction(t) * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| HEIGHT - BOTTOM - v_axis.fraction(v) * (HEIGHT - TOP - BOTTOM);

    let mut svg = format!(
        "<div class=\"lw-chart\">\n<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"lw-chart-title\">\n<title id=\"lw-chart-title\">Live bytes of the \
         top sites and the process's memory over time</title>\n<g class=\"lw-grid\">\n"
    );
    for v in v_axis.ticks() {
        let yv = y(v);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\"/>\n",
            WIDTH - RIGHT
        ));
    }
    svg.push_str("</g>\n<g class=\"lw-axis\">\n");
    for v in v_axis.ticks() {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 8.0,
            y(v) + 4.0,
            // Ticks are round: `200 MiB` rather than `200.0 MiB`.
            escape(&bytes(v).replace(".0 ", " "))
        ));
    }
    for t in t_axis.ticks() {
        let xt = x(t);
        svg.push_str(&format!(
            "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{0:.1}\" y2=\"{1:.1}\"/>\n\
             <text x=\"{xt:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>\n",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 5.0,
            HEIGHT - BOTTOM + 19.0,
            escape(&duration(t))
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\"/>\n\
         <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">time since the first snapshot</text>\n\
         <text transform=\"translate(16 {4:.1}) rotate(-90)\" text-anchor=\"middle\">live bytes</text>\n\
         </g>\n",
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 8.0,
        (TOP + HEIGHT - BOTTOM) / 2.0
    ));
    // The process behind, then the sites, the most urgent on top.
    for line in lines.iter().rev() {
        let coordinates: Vec<(f64, f64)> = line
            .points
            .iter()
            .map(|&(t, v)| (x(t), y(v)))
            .filter(|(px, py)| px.is_finite() && py.is_finite())
            .collect();
        let Some(&(last_x, last_y)) = coordinates.last() else {
            continue;
        };
        let points: Vec<String> = coordinates
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let dash = if line.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        svg.push_str(&format!(
            "<g class=\"lw-line\"><title>{}</title>\n<polyline points=\"{}\" stroke=\"{}\"{dash}/>\n\
             <circle cx=\"{last_x:.1}\" cy=\"{last_y:.1}\" r=\"3\" fill=\"{2}\"/></g>\n",
            escape(&line.name),
            points.join(" "),
            line.colour
        ));
    }
    svg.push_str("</svg>\n<ul class=\"lw-legend\">\n");
    for line in &lines {
        let class = if line.dashed {
            "lw-swatch lw-dashed"
        } else {
            "lw-swatch"
        };
        let now = line.points.last().map_or(0.0, |&(_, v)| v);
        svg.push_str(&format!(
            "<li><span class=\"{class}\" style=\"border-color:{}\"></span>{} \
             <span class=\"lw-muted\">{}</span></li>\n",
            line.colour,
            name(&line.name),
            escape(&bytes(now))
        ));
    }
    svg.push_str("</ul>\n</div>\n");
    svg
}

/// One axis of the chart: its range and the step between ticks.
#[derive(Debug, Clone, Copy)]
struct Axis {
    low: f64,
    high: f64,
    step: f64,
}

impl Axis {
    /// An axis over `[low, high]` (widened when empty), with a step from
    /// `step(width / 5)`.
    fn new(low: f64, high: f64, step: fn(f64) -> f64) -> Axis {
        let high = if high > low {
            high
        } else {
            // Adding 1 to a huge value changes nothing.
            low + low.abs().max(1.0)
        };
        let step = step((high - low) / 5.0);
        Axis {
            low,
            high,
            step: if step.is_finite() && step > 0.0 {
                step
            } else {
                high - low
            },
        }
    }

    /// The axis widened to whole steps at both ends.
    fn rounded_out(self) -> Axis {
        let low = (self.low / self.step).floor() * self.step;
        let high = (self.high / self.step).ceil() * self.step;
        if low.is_finite() && high.is_finite() && high > low {
            Axis { low, high, ..self }
        } else {
            self
        }
    }

    /// Where `value` falls, 0 at `low` and 1 at `high` (0 when that is not a number,
    /// for ranges too wide for `f64`).
    fn fraction(&self, value: f64) -> f64 {
        let fraction = (value - self.low) / (self.high - self.low);
        if fraction.is_finite() { fraction } else { 0.0 }
    }

    /// The multiples of the step within the axis (at most 30).
    fn ticks(&self) -> Vec<f64> {
        let first = (self.low / self.step).ceil() * self.step;
        (0..30)
            .map(|k| first + k as f64 * self.step)
            .take_while(|&v| v <= self.high + self.step * 1e-9)
            .filter(|v| v.is_finite())
            .collect()
    }
}

/// A round step of bytes near `raw`: 1, 2 or 5 times a power of ten of a binary unit
/// (B, KiB, MiB, ...), so tick labels read `20.0 MiB`, not `19.1 MiB`.
fn byte_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mut unit = 1.0;
    while raw >= unit * 1024.0 && unit < 1024f64.powi(6) {
        unit *= 1024.0;
    }
    (decimal_step(raw / unit) * unit).max(1.0)
}

/// A round duration near `raw` seconds: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min,
/// 1, 2, 3, 6, 12 h, then whole days.
fn time_step(raw: f64) -> f64 {
    const STEPS: [f64; 18] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10_800.0, 21_600.0, 43_200.0, 86_400.0,
    ];
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    match STEPS.iter().find(|&&s| s >= raw) {
        Some(&s) => s,
        None => decimal_step(raw / 86_400.0).max(1.0) * 86_400.0,
    }
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `raw` (positive).
fn decimal_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// Names (functions, labels, frames) longer than this many characters are shortened.
const LONG_NAME: usize = 120;

/// A name as `<code>`: shortened when longer than [`LONG_NAME`] characters, first its
/// long generic argument lists (`short_generics`), then, if still too long, its middle
/// (`…`), keeping the crate at the start and the function at the end, with the full
/// name in the `title` attribute (shown on hover, and copied by a long press). What is
/// shown still wraps anywhere (`overflow-wrap` in the style sheet): a Rust path has no
/// spaces to break at.
fn name(text: &str) -> String {
    if text.chars().count() <= LONG_NAME {
        return format!("<code>{}</code>", escape(text));
    }
    let mut short = crate::symbols::short_generics(text);
    let chars: Vec<char> = short.chars().collect();
    if chars.len() > LONG_NAME {
        let head: String = chars[..LONG_NAME / 2].iter().collect();
        let tail: String = chars[chars.len() - (LONG_NAME / 2 - 1)..].iter().collect();
        short = format!("{head}…{tail}");
    }
    format!(
        "<code class=\"lw-long\" title=\"{}\">{}</code>",
        escape(text),
        escape(&short)
    )
}

/// `s` safe in HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style sheet. Every class is prefixed `lw-`, and the chart's text is styled
/// by class, so the flame graph's own style sheet (global `text` and `#id` rules) does
/// not reach into the rest of the page.
const STYLE: &str = r#"<style>
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --rule: #d8dee4; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
.lw-page { display: flex; flex-direction: column; max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 2rem; }
.lw-page > * { order: 0; }
.lw-page > .lw-flame-section { order: 1; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid var(--rule); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .88em; overflow-wrap: anywhere; }
.lw-long { cursor: help; text-decoration: underline dotted var(--muted); }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
.lw-muted { color: var(--muted); }
.lw-headline { padding: .6rem .9rem; border-radius: 6px; font-weight: 600; }
.lw-alert { background: #ffebe9; border-left: 5px solid #cf222e; }
.lw-ok { background: #dafbe1; border-left: 5px solid #1a7f37; }
.lw-facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: .8rem 0 0; }
.lw-facts dt { color: var(--muted); } .lw-facts dd { margin: 0; }
.lw-scroll { overflow-x: auto; }
.lw-ranking { border-collapse: collapse; width: 100%; }
.lw-ranking th, .lw-ranking td { padding: .3rem .6rem; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
.lw-ranking th { font-weight: 600; color: var(--muted); white-space: nowrap; }
.lw-num { text-align: right !important; white-space: nowrap; font-variant-numeric: tabular-nums; }
.lw-verdict { display: inline-block; min-width: 4.8em; text-align: center; font-size: .85em; font-weight: 600; border-radius: 4px; padding: 0 .4rem; }
.lw-v-leak { background: #cf222e; color: #fff; }
.lw-v-growing { background: #bc4c00; color: #fff; }
.lw-v-plateau { background: #0969da; color: #fff; }
.lw-v-stable { background: #eaeef2; color: #424a53; }
.lw-v-shrinking { background: #1a7f37; color: #fff; }
.lw-chart svg { display: block; width: 100%; height: auto; }
.lw-chart text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: var(--muted); }
.lw-grid line { stroke: #eaeef2; }
.lw-axis line { stroke: #8c959f; }
.lw-line polyline { fill: none; stroke-width: 2; stroke-linejoin: round; }
.lw-legend { list-style: none; padding: 0; margin: .4rem 0 0; display: flex; flex-wrap: wrap; gap: .2rem 1.4rem; font-size: .9em; }
.lw-swatch { display: inline-block; width: 1.8rem; border-top: 3px solid; vertical-align: middle; margin-right: .4rem; }
.lw-dashed { border-top-style: dashed; }
details { border: 1px solid var(--rule); border-radius: 6px; padding: .4rem .8rem; margin: .5rem 0; }
details details { border: 0; padding: 0; margin: .2rem 0 0 1rem; }
summary { cursor: pointer; }
.lw-stack { margin: .4rem 0; padding-left: 2.2rem; }
.lw-runtime { color: var(--muted); }
.lw-warnings li { margin: .2rem 0; }
.lw-function td { border-top: 1px solid #c8ccd0; font-weight: 600; }
.lw-line td:last-child { padding-left: 1.5rem; }
.lw-flame { overflow-x: auto; }
/* inferno's script removes the graph's width and viewBox so that it fills its parent:
   without a width here it would be drawn 300 px wide (a replaced element's default). */
.lw-flame > svg { display: block; width: 100%; }
.lw-zero > summary { color: var(--muted); }
.lw-zero .lw-ranking { margin-top: .4rem; }
.lw-page > footer { order: 2; margin-top: 2.5rem; font-size: .85em; }
</style>
"#;

#[cfg(test)]
mod browser;
#[cfg(test)]
mod tests;
