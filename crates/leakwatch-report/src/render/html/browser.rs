//! The page in a real browser: headless Chromium (Debian's `chromium`) loads a report
//! from a file, with nothing external, and tells what it rendered.
//!
//! The test writes the page with a *probe* added: a script first in `<head>` that
//! records every error event (scripts and resources), unhandled rejection and
//! `console.error`/`console.warn` call, and, once the page has loaded and the report's
//! own script (the flame graph's) has run, measures what was laid out: the chart's
//! size and its drawn lines, the table's visible rows, the fold of 0-byte sites, the
//! flame graph's frames, and whether anything is wider than the window with every
//! `<details>` opened. It writes that as JSON into a hidden `<pre id="lw-probe">`, which
//! `--dump-dom` prints. Chromium's own log (`--enable-logging=stderr`) is the second net:
//! any `CONSOLE` line of the page (an uncaught error shows there even if the probe
//! missed it) fails the test.
//!
//! One launch per page: `--dump-dom` and `--screenshot` together. The report's
//! screenshot is kept as `target/browser/report.png` (beside it `report.html`, the page
//! with its probe, and `report.dom.html`, what the browser made of it); the broken page
//! that proves the error checks can fail is the second launch.
//!
//! Without `chromium` on `PATH` the test prints `SKIPPED` and passes, unless `CI` is set
//! (`leakwatch_testsupport::tool::require`).

use super::*;
use crate::render::flamegraph::flamegraph;
use crate::render::text::tests::{KIB, MIB, loc, model_server_specs, spec, synthetic_history};
use crate::report::ReportOptions;
use leakwatch_testsupport::{process, temp_dir, tool};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The probe (see the module documentation), inserted first in `<head>`.
const PROBE: &str = r#"<script>
"use strict";
window.lwProbe = { errors: [] };
window.addEventListener("error", function (e) {
  var what = e.message ? e.message : "failed to load " + ((e.target && (e.target.src || e.target.href)) || "?");
  window.lwProbe.errors.push("error: " + what);
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.lwProbe.errors.push("unhandled rejection: " + e.reason);
});
["error", "warn"].forEach(function (level) {
  var original = console[level];
  console[level] = function () {
    window.lwProbe.errors.push("console." + level + ": " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
});
window.addEventListener("load", function () {
  // After the flame graph's own setTimeout(0) in its init.
  setTimeout(function () {
    var out = { errors: window.lwProbe.errors };
    // Laid out, and not skipped (a closed <details> hides its content with
    // content-visibility, which getBoundingClientRect alone does not tell).
    var visible = function (e) {
      var r = e.getBoundingClientRect();
      return e.checkVisibility() && r.width > 0 && r.height > 0;
    };
    var svg = document.querySelector(".lw-chart svg");
    if (svg) {
      var box = svg.getBoundingClientRect();
      out.chart = {
        width: Math.round(box.width), height: Math.round(box.height),
        // Drawn across the chart (a flat line has no height), with a stroke.
        lines: Array.prototype.filter.call(svg.querySelectorAll("polyline"), function (p) {
          return p.checkVisibility() && p.getBBox().width > 100 && getComputedStyle(p).stroke !== "none";
        }).length,
        legend: document.querySelectorAll(".lw-legend li").length
      };
    }
    var table = document.querySelector("table.lw-ranking");
    if (table) {
      out.table = {
        rows: Array.prototype.filter.call(table.querySelectorAll("tbody tr"), visible).length,
        leaks: Array.prototype.filter.call(table.querySelectorAll(".lw-v-leak"), visible).length,
        plateaus: Array.prototype.filter.call(table.querySelectorAll(".lw-v-plateau"), visible).length
      };
    }
    var zero = document.querySelector("details.lw-zero");
    if (zero) {
      out.zero = {
        summary: zero.querySelector("summary").textContent,
        open: zero.open,
        visibleRows: Array.prototype.filter.call(zero.querySelectorAll("tbody tr"), visible).length
      };
    }
    var frames = document.getElementById("frames");
    if (frames) {
      var flame = frames.ownerSVGElement;
      out.flame = {
        frames: frames.children.length,
        // inferno's init removes the width and lays the text out for the drawn width.
        fluid: !flame.hasAttribute("width"),
        width: Math.round(flame.getBoundingClientRect().width)
      };
    }
    // With every <details> open (stacks, the 0-byte fold), nothing may be wider than
    // the window: long names wrap or are shortened.
    var closed = Array.prototype.filter.call(document.querySelectorAll("details"), function (d) { return !d.open; });
    closed.forEach(function (d) { d.open = true; });
    out.viewport = window.innerWidth;
    out.pageWidth = document.documentElement.scrollWidth;
    out.wide = [];
    document.querySelectorAll(".lw-page code").forEach(function (c) {
      var r = c.getBoundingClientRect();
      if (r.right > window.innerWidth + 1 && out.wide.length < 5) out.wide.push(c.textContent.slice(0, 120));
    });
    var scroll = document.querySelector(".lw-scroll");
    out.tableOverflow = scroll ? scroll.scrollWidth - scroll.clientWidth : 0;
    closed.forEach(function (d) { d.open = false; });
    var pre = document.createElement("pre");
    pre.id = "lw-probe";
    pre.hidden = true;
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 50);
});
</script>
"#;

/// A page whose script fails in every way the probe and the log look for.
const BROKEN: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>broken</title></head>
<body><p>broken on purpose</p>
<script>console.error("deliberate console error"); undefinedFunctionOfTheBrokenPage();</script>
</body></html>
"#;

/// What Chromium made of a page.
struct Loaded {
    /// The DOM after scripts ran (`--dump-dom`).
    dom: String,
    /// The probe's JSON, when it ran.
    probe: Option<serde_json::Value>,
    /// The page's console lines from Chromium's log.
    console: Vec<String>,
}

/// Loads `page` (written to `dir` as `NAME.html` with the probe) in headless Chromium,
/// its own profile in `dir`, no network beyond the file, killed after 120 s, and
/// screenshots it to `screenshot`.
fn load(dir: &Path, name: &str, page: &str, screenshot: &Path) -> Loaded {
    let with_probe = match page.find("<head>") {
        Some(at) => format!("{}{PROBE}{}", &page[..at + 6], &page[at + 6..]),
        None => panic!("no <head> in the page"),
    };
    let file = dir.join(format!("{name}.html"));
    std::fs::write(&file, &with_probe).expect("write the page");
    let profile = temp_dir("chromium-profile");
    let out = process::run(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                // Nothing but the file: every host, DNS included, is unreachable.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=127.0.0.1:9",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,2400",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", screenshot.display()))
            .arg(format!("file://{}", file.display()))
            .env("HOME", &*profile),
        None,
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "chromium failed: {}\n{stderr}",
        out.status
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    Loaded {
        probe: probe_of(&dom),
        console: console_lines(&stderr),
        dom,
    }
}

/// The probe's JSON in a dumped DOM (its text, HTML-escaped by the dump).
fn probe_of(dom: &str) -> Option<serde_json::Value> {
    let start = dom.find("<pre id=\"lw-probe\"")?;
    let text = &dom[start..];
    let text = &text[text.find('>')? + 1..text.find("</pre>")?];
    let json = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    Some(serde_json::from_str(&json).unwrap_or_else(|e| panic!("probe JSON: {e}\n{json}")))
}

/// The page's console lines in Chromium's log: `[...:INFO:CONSOLE:12] "message",
/// source: file:///... (12)` (older builds write `CONSOLE(12)`).
fn console_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}

/// Where the screenshots and pages are kept: `target/browser/` (this test binary runs
/// from `target/PROFILE/deps/`).
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/PROFILE/deps/binary")
        .to_path_buf();
    let dir = target.join("browser");
    std::fs::create_dir_all(&dir).expect("target/browser");
    dir
}

/// An hour of a service, a snapshot every 5 s: the model server's sites (a leak, a
/// cache that fills and stops, steady weights, a long generic name), more sites under
/// long generic Rust paths, and 150 handlers whose buffers were all freed (0 bytes live
/// at the end); and the flame graph of its latest snapshot.
fn realistic() -> (Report, String) {
    let mut specs = model_server_specs();
    let long = [
        "<hyper::proto::h1::dispatch::Dispatcher<hyper::proto::h1::dispatch::Server<tower::util::service_fn::ServiceFn<model_server::conn::serve_connection::{{closure}}::{{closure}}>,hyper::body::incoming::Incoming>,axum_core::body::Body,hyper_util::rt::tokio::TokioIo<tokio::net::tcp::stream::TcpStream>,hyper::proto::h1::role::Server> as core::future::future::Future>::poll",
        "alloc::collections::btree::map::BTreeMap<alloc::string::String,alloc::vec::Vec<alloc::sync::Arc<model_server::sessions::Session<model_server::model::Weights<f32>>>>>::insert",
        "model_server::very_long_module_name_for_generated_code::protobuf_generated_message_types_for_the_inference_api_version_two::InferenceRequestWithAllOptionalFieldsAndExtensions::merge_from_bytes",
    ];
    for (k, function) in long.iter().enumerate() {
        specs.push(spec(
            vec![
                loc(
                    function,
                    "/src/model-server/src/generated.rs",
                    100 + k as u32,
                ),
                loc("model_server::main", "/src/model-server/src/main.rs", 21),
            ],
            move |t| (k + 1) as f64 * 2.0 * MIB + 4.0 * KIB * (t / 50.0).sin(),
        ));
    }
    for k in 0..150u32 {
        specs.push(spec(
            vec![
                loc(
                    &format!("model_server::routes::endpoint_{k}::respond"),
                    "/src/model-server/src/routes.rs",
                    10 + k,
                ),
                loc("model_server::main", "/src/model-server/src/main.rs", 21),
            ],
            move |t| {
                if t < 600.0 + f64::from(k) {
                    64.0 * KIB
                } else {
                    0.0
                }
            },
        ));
    }
    let (history, symbols) = synthetic_history(&specs, 720, 5.0);
    let mut options = ReportOptions::default();
    options.rank.limit_bytes = Some(2 << 30);
    let report = Report::build(&history, &symbols, &options);
    let flame = flamegraph(&history.latest_snapshot(), &symbols, "Live heap by stack");
    (report, flame)
}

#[test]
fn chromium_renders_the_report_without_errors_and_catches_a_broken_page() {
    if !tool::require("chromium", "apt-get install chromium") {
        return;
    }
    let (report, flame) = realistic();
    // The fixture is what the test says it is.
    assert!(report.sites.iter().any(|s| s.verdict == Verdict::Leak));
    assert!(report.sites.iter().any(|s| s.verdict == Verdict::Plateau));
    let zero = report.sites.iter().filter(|s| s.live_bytes == 0).count();
    assert!(zero >= 100, "{zero} sites with 0 bytes live");

    let artifacts = artifacts();
    let dir = temp_dir("browser");
    let screenshot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let page = html(&report, Some(&flame));
    let loaded = load(&dir, "report", &page, &screenshot);
    std::fs::copy(dir.join("report.html"), artifacts.join("report.html")).expect("keep the page");
    std::fs::write(artifacts.join("report.dom.html"), &loaded.dom).expect("keep the DOM");

    let probe = loaded
        .probe
        .unwrap_or_else(|| panic!("the probe did not run; DOM:\n{}", loaded.dom));
    eprintln!("probe: {probe}");
    assert!(loaded.console.is_empty(), "console: {:#?}", loaded.console);
    assert_eq!(probe["errors"], serde_json::json!([]), "{probe}");
    // The chart: laid out at full width, the process and the top sites drawn.
    let chart = &probe["chart"];
    assert!(chart["width"].as_u64() > Some(800), "{probe}");
    assert!(chart["height"].as_u64() > Some(250), "{probe}");
    assert_eq!(
        chart["lines"].as_u64(),
        Some(1 + CHART_LINES as u64),
        "{probe}"
    );
    assert_eq!(chart["legend"], chart["lines"], "{probe}");
    // The table: the sites with bytes visible, the leak and the cache among them; the
    // 0-byte sites folded under one closed line.
    let table = &probe["table"];
    let shown = report.sites.len() - zero;
    assert!(table["rows"].as_u64() >= Some(shown as u64), "{probe}");
    assert!(table["leaks"].as_u64() >= Some(1), "{probe}");
    assert!(table["plateaus"].as_u64() >= Some(1), "{probe}");
    assert_eq!(
        probe["zero"]["summary"].as_str(),
        Some(format!("{zero} sites with 0 bytes live").as_str()),
        "{probe}"
    );
    assert_eq!(probe["zero"]["open"], false, "{probe}");
    assert_eq!(probe["zero"]["visibleRows"], 0, "{probe}");
    // The flame graph's script ran (it makes the graph fluid) and its frames are there.
    assert_eq!(probe["flame"]["fluid"], true, "{probe}");
    assert!(probe["flame"]["frames"].as_u64() > Some(10), "{probe}");
    assert!(probe["flame"]["width"].as_u64() > Some(800), "{probe}");
    // Long names wrap or are shortened: nothing runs off the page, even with every
    // stack open.
    assert_eq!(probe["wide"], serde_json::json!([]), "{probe}");
    assert!(
        probe["pageWidth"].as_u64() <= probe["viewport"].as_u64(),
        "{probe}"
    );
    assert_eq!(probe["tableOverflow"], 0, "{probe}");
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // The same checks on a broken page fail: both the probe and the log see its errors.
    let broken = load(&dir, "broken", BROKEN, &dir.join("broken.png"));
    let probe = broken.probe.expect("the probe ran on the broken page");
    let errors = probe["errors"].to_string();
    assert!(
        errors.contains("console.error: deliberate console error"),
        "{errors}"
    );
    assert!(
        errors.contains("undefinedFunctionOfTheBrokenPage"),
        "{errors}"
    );
    assert!(
        broken
            .console
            .iter()
            .any(|l| l.contains("Uncaught ReferenceError: undefinedFunctionOfTheBrokenPage")),
        "{:#?}",
        broken.console
    );
}
