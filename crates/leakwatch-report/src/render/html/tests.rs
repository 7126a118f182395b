use super::*;
use crate::render::text::tests::{
    KIB, MIB, absurd, empty, loc, model_server, spec, split_functions, synthetic, with_leak_named,
};
use crate::report::ReportOptions;

/// A flame graph as the flame graph renderer writes one: an XML declaration, namespaces,
/// a style sheet and a script.
const FLAME: &str = r#"<?xml version="1.0" standalone="no"?><svg version="1.1" width="1200" height="80" onload="init(evt)" viewBox="0 0 1200 80" xmlns="http://www.w3.org/2000/svg" xmlns:fg="http://github.com/jonhoo/inferno"><style type="text/css">text { font-size:12px; }</style><script type="text/ecmascript"><![CDATA[function init(evt) { var svg = document.getElementsByTagName("svg")[0]; if (1 < 2 && svg) {} }]]></script><g id="frames"><rect x="10" y="10" width="1180" height="15" fill="url(#background)"/><text x="12" y="21">main</text></g></svg>"#;

/// Fails unless `page` needs nothing from the network: no address outside `xmlns`
/// attributes, no `<link>`, no `src` but `data:`, no `@import`, no `url(` but to a
/// fragment of the page.
fn assert_self_contained(page: &str) {
    for scheme in ["http://", "https://", "//cdn", "ftp://"] {
        for (at, _) in page.match_indices(scheme) {
            let before = &page[..at];
            let attribute = before
                .strip_suffix('"')
                .and_then(|b| b.strip_suffix('='))
                .and_then(|b| b.rsplit(|c: char| c.is_whitespace()).next());
            assert!(
                attribute.is_some_and(|a| a == "xmlns" || a.starts_with("xmlns:")),
                "network address outside xmlns: {}",
                &page[at.saturating_sub(60)..(at + 60).min(page.len())]
            );
        }
    }
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<link"), "a <link> element");
    assert!(!lower.contains("@import"), "a style sheet imports another");
    for (at, _) in lower.match_indices("url(") {
        let target = lower[at + 4..].trim_start_matches(['"', '\'']);
        assert!(
            target.starts_with('#'),
            "url to {}",
            &target[..target.len().min(40)]
        );
    }
    for (at, _) in lower.match_indices("src=") {
        let value = lower[at + 4..].trim_start_matches(['"', '\'']);
        assert!(
            value.starts_with("data:"),
            "src to {}",
            &value[..value.len().min(40)]
        );
    }
}

fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

/// Fails unless every `<svg` has its `</svg>`, in order.
fn assert_svg_balanced(page: &str) {
    let mut depth = 0i32;
    let mut rest = page;
    while let Some(at) = rest.find("svg") {
        let before = &rest[..at];
        if before.ends_with("</") {
            depth -= 1;
            assert!(depth >= 0, "</svg> without <svg>");
        } else if before.ends_with('<') {
            depth += 1;
        }
        rest = &rest[at + 3..];
    }
    assert_eq!(depth, 0, "unclosed <svg>");
    assert_eq!(count(page, "<svg"), count(page, "</svg>"));
}

#[test]
fn the_page_is_self_contained_and_balanced() {
    for report in [
        model_server(Some(2 << 30)),
        model_server(None),
        empty(),
        absurd(),
    ] {
        for flame in [None, Some(FLAME)] {
            let page = html(&report, flame);
            assert!(page.starts_with("<!DOCTYPE html>\n"));
            assert!(page.ends_with("</html>\n"));
            assert_self_contained(&page);
            assert_svg_balanced(&page);
            if flame.is_none() {
                assert!(!page.contains("<script"), "no script of our own");
            }
        }
    }
}

#[test]
fn the_top_site_its_chart_and_its_stack_are_shown() {
    let report = model_server(Some(2 << 30));
    let page = html(&report, None);
    let top = &report.sites[0];
    assert_eq!(top.verdict, Verdict::Leak);
    assert!(
        page.contains("<title>leakwatch: pid 4242, 2 leaks</title>"),
        "{page}"
    );
    assert!(page.contains(&format!(
        "<a href=\"#lw-site-1\"><code>{}</code></a>",
        top.label
    )));
    assert!(page.contains("<span class=\"lw-verdict lw-v-leak\">leak</span>"));
    assert!(page.contains("<span class=\"lw-verdict lw-v-plateau\">plateau</span>"));
    assert!(page.contains(&rate(top.rate)));
    // The chart: one line per detailed site (at most 8) plus the dashed process line,
    // each in the legend; axes labelled in human units.
    assert_eq!(count(&page, "<svg"), 1);
    let drawn = report
        .sites
        .iter()
        .filter(|s| !s.history.is_empty())
        .count()
        .min(8);
    assert_eq!(count(&page, "<polyline"), drawn + 1);
    assert_eq!(count(&page, "stroke-dasharray"), 1);
    assert_eq!(count(&page, "<span class=\"lw-swatch"), drawn + 1);
    assert!(page.contains(&format!("<code>#1 {}</code>", top.label)));
    assert!(page.contains(">0 B</text>"), "{page}");
    assert!(page.contains(" MiB</text>"));
    assert!(page.contains(">30 min</text>"));
    assert!(page.contains(">0 s</text>"));
    assert!(page.contains(">200 MiB</text>"), "{page}");
    assert!(page.contains(">time since the first snapshot</text>"));
    // Coordinates stay inside the chart's box.
    let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
    for points in svg.split("points=\"").skip(1) {
        for pair in points[..points.find('"').unwrap()].split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (86.0..=936.0).contains(&x) && (14.0..=310.0).contains(&y),
                "{pair}"
            );
        }
    }
    // The first leak's stack is open, runtime frames only in the full stack.
    let details = &page[page.find("<details id=\"lw-site-1\" open>").unwrap()..];
    let user = &details[..details.find("<details class=\"lw-full\">").unwrap()];
    assert!(user.contains(
        "<li><code>model_server::session::SessionLog::record (model-server/src/session.rs:57)</code></li>"
    ));
    assert!(!user.contains("Vec&lt;T,A&gt;::push"));
    assert!(details.contains(
        "<li class=\"lw-runtime\"><code>alloc::vec::Vec&lt;T,A&gt;::push (library/alloc/src/vec/mod.rs:2417)</code></li>"
    ));
    assert_eq!(
        count(&page, "<details id=\"lw-site-"),
        report.sites.len().min(20)
    );
    assert_eq!(count(&page, " open>"), 1);
    assert!(page.contains("at this rate the process reaches its limit in "));
}

#[test]
fn every_name_is_escaped() {
    let evil = "app::<script>alert(\"x\")</script>&amp;'";
    let report = with_leak_named(evil);
    let page = html(&report, None);
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains(
        "app::&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;&#39; (model-server/src/weird.rs:7)"
    ));

    // Rust names are full of angle brackets.
    let clone = "<alloc::vec::Vec<T> as Clone>::clone";
    let specs = vec![spec(
        vec![
            loc(clone, "/rustc/abc/library/alloc/src/vec/mod.rs", 3000),
            loc(
                "<app::Store<K, V> as app::Put>::put",
                "/w/app/src/store.rs",
                9,
            ),
        ],
        |t| 50.0 * KIB * t,
    )];
    let report = synthetic(&specs, 100, 1.0, &ReportOptions::default());
    assert_eq!(
        report.sites[0].label,
        "<app::Store<K, V> as app::Put>::put (app/src/store.rs:9)"
    );
    let page = html(&report, None);
    assert!(page.contains("&lt;alloc::vec::Vec&lt;T&gt; as Clone&gt;::clone"));
    assert!(page.contains("&lt;app::Store&lt;K, V&gt; as app::Put&gt;::put (app/src/store.rs:9)"));
    assert!(!page.contains("<app::") && !page.contains("<alloc::") && !page.contains("Vec<T>"));
}

#[test]
fn the_flame_graph_is_embedded_as_it_is_and_first_in_the_document() {
    let page = html(&model_server(None), Some(FLAME));
    assert!(page.contains(FLAME));
    // Its script takes the document's first <svg> as the flame graph.
    assert_eq!(
        page.find("<svg"),
        page.find(FLAME).map(|at| at + FLAME.find("<svg").unwrap())
    );
    assert!(page.find(FLAME).unwrap() < page.find("<div class=\"lw-chart\">").unwrap());
    // ... and the style sheet shows it last.
    assert!(page.contains(".lw-page > .lw-flame-section { order: 1; }"));
    assert!(!html(&model_server(None), None).contains("Flame graph"));
}

#[test]
fn an_empty_report_still_renders() {
    let page = html(&empty(), None);
    assert!(page.contains("No points to chart yet."));
    assert!(page.contains("No site in this report."));
    assert!(page.contains("No leak detected yet: 0 points are too few to judge growth."));
    assert!(!page.contains("<svg"));
    assert!(!page.contains("<details"));

    // One point: drawn, on an axis of non-zero width.
    let specs = vec![spec(vec![loc("app::one", "/w/app/src/lib.rs", 1)], |_| MIB)];
    let page = html(&synthetic(&specs, 1, 1.0, &ReportOptions::default()), None);
    assert_eq!(count(&page, "<polyline"), 2);
    assert_svg_balanced(&page);
}

#[test]
fn absurd_numbers_draw_no_absurd_coordinates() {
    let page = html(&absurd(), None);
    assert_svg_balanced(&page);
    let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
    for bad in ["NaN", "inf"] {
        let at = svg
            .find(bad)
            .map(|at| &svg[at.saturating_sub(200)..at + 20]);
        assert!(at.is_none(), "{bad} in the chart: {at:?}");
    }
    for points in svg.split("points=\"").skip(1) {
        for pair in points[..points.find('"').unwrap()].split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            assert!(x.parse::<f64>().unwrap().is_finite() && y.parse::<f64>().unwrap().is_finite());
        }
    }
}

#[test]
fn axis_steps_are_round() {
    assert_eq!(byte_step(0.0), 1.0);
    assert_eq!(byte_step(f64::NAN), 1.0);
    assert_eq!(byte_step(0.3), 1.0);
    assert_eq!(byte_step(170.0), 200.0);
    assert_eq!(byte_step(1500.0), 2.0 * KIB);
    assert_eq!(byte_step(19.1 * MIB), 20.0 * MIB);
    assert_eq!(byte_step(130.0 * MIB), 200.0 * MIB);
    assert_eq!(time_step(7.0), 10.0);
    assert_eq!(time_step(700.0), 900.0);
    assert_eq!(time_step(5000.0), 7200.0);
    assert_eq!(time_step(3.0 * 86_400.0), 5.0 * 86_400.0);
    assert_eq!(time_step(f64::INFINITY), 1.0);
    let axis = Axis::new(0.0, 95.0 * MIB, byte_step).rounded_out();
    assert_eq!(axis.high, 100.0 * MIB);
    assert_eq!(axis.ticks().len(), 6);
    let axis = Axis::new(5.0, 5.0, time_step);
    assert_eq!((axis.low, axis.high), (5.0, 10.0));
    let axis = Axis::new(-1e300, -1e300, byte_step);
    assert!(axis.high > axis.low && axis.fraction(-1e300) == 0.0);
    assert!(Axis::new(-f64::MAX, f64::MAX, byte_step).ticks().len() <= 30);
}

/// With `LEAKWATCH_SAMPLES=dir`, writes `dir/report.html` from the model server report.
#[test]
fn samples_when_asked() {
    let Some(dir) = std::env::var_os("LEAKWATCH_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("report.html"),
        html(&model_server(Some(2 << 30)), None),
    )
    .unwrap();
}

#[test]
fn a_functions_lines_sit_under_one_row_of_its_totals() {
    let report = split_functions(&ReportOptions::default());
    let page = html(&report, None);
    assert_self_contained(&page);
    let open = &report.functions[0];
    assert_eq!(open.function, "svc::sessions::open_session");
    let row = format!(
        "<tr class=\"lw-function\"><td class=\"lw-num\"></td><td>{}</td><td class=\"lw-num\">{}</td>",
        verdict_badge(Verdict::Leak),
        bytes(open.live_bytes as f64)
    );
    let at = page
        .find(&row)
        .unwrap_or_else(|| panic!("no function row {row}\n{page}"));
    let after = &page[at..];
    assert!(after.contains(
        "<code>svc::sessions::open_session</code> <span class=\"lw-muted\">2 lines</span>"
    ));
    // Its two lines follow, by location, before the next function's row.
    let first = after
        .find("<tr class=\"lw-line\"><td class=\"lw-num\">1</td>")
        .unwrap();
    let second = after
        .find("<tr class=\"lw-line\"><td class=\"lw-num\">2</td>")
        .unwrap();
    let fill = after
        .find("<code>svc::cache::fill (svc/src/cache.rs:5)</code>")
        .unwrap();
    assert!(first < second && second < fill, "{after}");
    assert!(after[first..second].contains("<code>svc/src/sessions.rs:10</code>"));
    // One function row per function of several lines.
    assert_eq!(count(&page, "<tr class=\"lw-function\">"), 2);
    assert_eq!(count(&page, "<tr class=\"lw-line\">"), 4);
    // A report without such functions has none.
    assert_eq!(count(&html(&model_server(None), None), "lw-function\">"), 0);
}

#[test]
fn long_names_are_shortened_with_the_full_name_in_a_title() {
    // Short enough: as it is.
    assert_eq!(
        name("app::Cache<K>::put"),
        "<code>app::Cache&lt;K&gt;::put</code>"
    );
    // Long generic arguments go first.
    let generic = format!(
        "alloc::collections::btree::map::BTreeMap<{}>::insert",
        "alloc::string::String,alloc::vec::Vec<app::Session>".repeat(3)
    );
    let shown = name(&generic);
    assert!(
        shown.starts_with("<code class=\"lw-long\" title=\"alloc::collections::btree::map::BTreeMap&lt;alloc::string::String,"),
        "{shown}"
    );
    assert!(
        shown.ends_with(">alloc::collections::btree::map::BTreeMap&lt;…&gt;::insert</code>"),
        "{shown}"
    );
    // Still too long: the middle, keeping both ends.
    let path = format!("app::{}::store", "very_long_module".repeat(12));
    let shown = name(&path);
    let text = &shown[shown.find("\">").unwrap() + 2..shown.len() - "</code>".len()];
    assert_eq!(text.chars().count(), LONG_NAME);
    assert!(
        text.starts_with("app::very_long_module") && text.ends_with("_module::store"),
        "{text}"
    );
    assert!(
        text.contains('…') && shown.contains(&format!("title=\"{path}\"")),
        "{shown}"
    );
    // Titles are escaped like the text.
    let evil = format!("{}<\"&'>", "a".repeat(LONG_NAME));
    assert!(name(&evil).contains("title=\"aaaa"));
    assert!(
        name(&evil).contains("&lt;&quot;&amp;&#39;&gt;\">"),
        "{}",
        name(&evil)
    );
}

#[test]
fn zero_byte_sites_are_folded_under_one_line() {
    let mut specs = vec![spec(vec![loc("app::leak", "/w/app/src/leak.rs", 1)], |t| {
        50.0 * KIB * t
    })];
    for k in 0..30u32 {
        specs.push(spec(
            vec![loc(&format!("app::handler_{k}"), "/w/app/src/h.rs", k + 1)],
            move |t| if t < 50.0 { 8.0 * KIB } else { 0.0 },
        ));
    }
    let report = synthetic(&specs, 100, 1.0, &ReportOptions::default());
    assert_eq!(
        report.sites.iter().filter(|s| s.live_bytes == 0).count(),
        30
    );
    let page = html(&report, None);
    assert_eq!(count(&page, "<details class=\"lw-zero\">"), 1);
    assert!(
        page.contains("<summary>30 sites with 0 bytes live</summary>"),
        "{page}"
    );
    // The leak is in the first table, the handlers in the fold's, each once.
    let fold = page.find("<details class=\"lw-zero\">").unwrap();
    let leak = page.find("app::leak (app/src/leak.rs:1)").unwrap();
    assert!(leak < fold);
    for k in 0..30 {
        let row = format!("<code>app::handler_{k} (app/src/h.rs:{})</code>", k + 1);
        let at = page.find(&row).unwrap_or_else(|| panic!("{row}"));
        assert!(at > fold, "{row}");
    }
    assert_eq!(count(&page, "<table class=\"lw-ranking\">"), 2);

    // No fold without 0-byte sites; one site reads in the singular.
    let page = html(&model_server(None), None);
    assert!(!page.contains("lw-zero\">"));
    let report = synthetic(&specs[..2], 100, 1.0, &ReportOptions::default());
    assert!(html(&report, None).contains("<summary>1 site with 0 bytes live</summary>"));
}
