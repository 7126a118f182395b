use super::*;
use leakwatch_types::{SiteStats, Snapshot, Symbol};

const MIB: f64 = 1024.0 * 1024.0;

/// Symbols: 0x1xx addresses are `app::leaky_store` lines, 0x2xx `app::cache_put`, 0x3xx
/// `app::recurse`, 0x9xx runtime (`alloc::vec`), 0x777 `app::main`.
fn symbols() -> SymbolTable {
    let mut table = SymbolTable::new();
    let mut add = |address: u64, function: &str, file: &str, line: u32| {
        let mut s = Symbol::default();
        s.address = address;
        s.function = Some(function.into());
        s.file = Some(file.into());
        s.line = Some(line);
        table.insert(address, vec![s]);
    };
    add(0x101, "app::leaky_store", "/w/app/src/store.rs", 10);
    add(0x201, "app::cache_put", "/w/app/src/cache.rs", 20);
    add(0x301, "app::recurse", "/w/app/src/tree.rs", 30);
    add(
        0x901,
        "alloc::vec::Vec<T>::push",
        "/rustc/x/library/alloc/src/vec/mod.rs",
        1,
    );
    add(0x777, "app::main", "/w/app/src/main.rs", 1);
    table
}

fn site(id: u32, frames: Vec<u64>, live: f64) -> SiteStats {
    let mut s = SiteStats::default();
    s.id = id;
    s.frames = frames;
    s.live_bytes = live as u64;
    s.alloc_bytes = live as u64;
    s.live_blocks = 1.0;
    s
}

/// Snapshot `i` of a sampled process (pid 9) recorded at 1 s, without sites.
fn point(i: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.timestamp_ms = 1_700_000_000_000 + i * 1000;
    s.epoch = i + 1;
    s.pid = 9;
    s.mode = Mode::Sampled;
    s.sample_rate = 524_288;
    s
}

/// Ten minutes at 1 s: a leak split over two stacks into the same line, a cache, a
/// recursive site at three depths, and a stable site.
fn history() -> History {
    let mut h = History::default();
    for i in 0..600u64 {
        let t = i as f64;
        let mut s = point(i);
        s.sites = vec![
            site(1, vec![0x901, 0x101, 0x777], 20_000.0 * t),
            site(2, vec![0x901, 0x101, 0x301, 0x777], 10_000.0 * t),
            site(
                3,
                vec![0x201, 0x777],
                50.0 * MIB * (1.0 - (-t / 60.0).exp()),
            ),
            site(4, vec![0x301, 0x301, 0x777], MIB),
            site(5, vec![0x301, 0x301, 0x301, 0x777], MIB),
            site(6, vec![0x901, 0x777], 3.0 * MIB),
        ];
        s.process.live_bytes = s.sites.iter().map(|s| s.live_bytes as i64).sum();
        s.process.resident_bytes = s.process.live_bytes as u64 + (20 << 20);
        h.push(&s);
    }
    h
}

fn report(options: &ReportOptions) -> Report {
    Report::build(&history(), &symbols(), options)
}

#[test]
fn sites_merge_by_label_and_the_leak_ranks_first() {
    let r = report(&ReportOptions::default());
    let labels: Vec<&str> = r.sites.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels[0], "app::leaky_store (app/src/store.rs:10)",
        "{labels:?}"
    );
    let leak = &r.sites[0];
    assert_eq!(leak.verdict, Verdict::Leak);
    assert_eq!(leak.site_ids, vec![1, 2]);
    assert!((leak.rate - 30_000.0).abs() < 1.0, "{}", leak.rate);
    assert_eq!(leak.function.as_deref(), Some("app::leaky_store"));
    assert_eq!(leak.line, Some(10));
    // The representative stack is the member that grew most (site 1), label frame past
    // the runtime frame.
    assert_eq!(leak.stack.len(), 3);
    assert_eq!(leak.label_frame, 1);
    assert_eq!(leak.user_stack().len(), 2);
    assert_eq!(leak.history.len(), r.chart_times.len());

    let cache = r
        .sites
        .iter()
        .find(|s| s.label.starts_with("app::cache_put"))
        .unwrap();
    assert_eq!(cache.verdict, Verdict::Plateau);
    // Recursion at two depths is one site.
    let recursive = r
        .sites
        .iter()
        .find(|s| s.label.starts_with("app::recurse"))
        .unwrap();
    assert_eq!(recursive.site_ids, vec![4, 5]);
    assert_eq!(recursive.live_bytes, 2 * MIB as u64);
    // A stack of runtime frames only is labelled by its first non-runtime frame.
    assert!(
        r.sites
            .iter()
            .any(|s| s.label == "app::main (app/src/main.rs:1)")
    );
    assert_eq!(r.sites.len(), 4);
    assert_eq!(r.points, 600);
    assert_eq!(
        r.process.usage_bytes,
        r.process.live_bytes as u64 + (20 << 20)
    );
}

#[test]
fn top_and_detail_bound_the_report() {
    let options = ReportOptions {
        top: Some(2),
        detail: 1,
        ..ReportOptions::default()
    };
    let r = report(&options);
    assert_eq!(r.sites.len(), 2);
    assert_eq!(r.omitted_sites, 2);
    assert!(r.omitted_live_bytes >= 5 * MIB as u64);
    assert!(!r.sites[0].stack.is_empty() && r.sites[1].stack.is_empty());
    assert!(r.sites[1].history.is_empty());
}

#[test]
fn time_to_limit_uses_process_memory_and_the_leak_rate() {
    let mut options = ReportOptions::default();
    options.rank.limit_bytes = Some(2 << 30);
    let r = report(&options);
    let leak = &r.sites[0];
    let headroom = (2u64 << 30) as f64 - r.process.usage_bytes as f64;
    let expected = headroom / leak.recent_rate;
    assert!((leak.seconds_to_limit.unwrap() - expected).abs() < 1e-6);
    assert!((r.process.seconds_to_limit.unwrap() - expected).abs() < 1e-6);
}

#[test]
fn json_round_trips_and_checks_its_format() {
    let r = report(&ReportOptions::default());
    let json = r.to_json();
    assert_eq!(Report::from_json("r.json", &json).unwrap(), r);
    let e = Report::from_json("r.json", "").unwrap_err().to_string();
    assert_eq!(e, "r.json: empty file");
    let e = Report::from_json("r.json", &json[..json.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = Report::from_json("r.json", "{\"a\": 1}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a leakwatch report"), "{e}");
    let e = Report::from_json("r.json", &json.replace("\"version\": 2", "\"version\": 7"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("report version 7 is not supported"), "{e}");
}

/// Found by the `report` fuzz target: serde_json's default float parser can miss the
/// nearest `f64` by one unit, so a summed rate such as 16586263.055786619 read back as
/// 16586263.05578662 and a report was not equal to itself after a round trip
/// (`float_roundtrip` is on now).
#[test]
fn floats_read_back_exactly() {
    let mut r = report(&ReportOptions::default());
    r.functions[0].rate = 16_586_263.055_786_619;
    r.sites[0].growth = 0.1 + 0.2;
    r.window_seconds = 5e-324;
    let back = Report::from_json("r.json", &r.to_json()).unwrap();
    assert_eq!(
        back.functions[0].rate.to_bits(),
        r.functions[0].rate.to_bits()
    );
    assert_eq!(back, r);
}

#[test]
fn few_points_are_flagged() {
    let mut h = History::default();
    let mut s = Snapshot::default();
    s.sites = vec![site(1, vec![0x101], 10.0)];
    h.push(&s);
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    assert!(
        r.warnings.iter().any(|w| w.contains("only 1 point")),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings.iter().any(|w| w.contains("tracking is off")));
}

#[test]
fn a_window_ranks_only_the_recent_history() {
    // Ten minutes; the leak's growth is the same throughout, so it is a leak in a window
    // long enough for it to stand out of what its level could turn over (four minutes:
    // 14 samples on about 23; two minutes, 7 samples on 29, are not), and the
    // window changes what the report covers.
    let options = ReportOptions {
        window_seconds: Some(240.0),
        ..ReportOptions::default()
    };
    let r = report(&options);
    assert_eq!(r.points, 241);
    assert!(
        (r.window_seconds - 240.0).abs() < 1e-9,
        "{}",
        r.window_seconds
    );
    assert_eq!(r.sites[0].verdict, Verdict::Leak, "{:?}", r.sites[0]);
    assert!((r.sites[0].rate - 30_000.0).abs() < 1.0);
    // The cache filled in the first minutes: over the last four it holds still.
    let cache = r
        .sites
        .iter()
        .find(|s| s.label.starts_with("app::cache_put"))
        .unwrap();
    assert_ne!(cache.verdict, Verdict::Leak);
    assert_eq!(r.chart_times.first().copied(), Some(359.0));
    let short = report(&ReportOptions {
        window_seconds: Some(120.0),
        ..ReportOptions::default()
    });
    // Two minutes: 7 samples arrived on a level of 29 and none left, which a pool of
    // long-lived blocks that size does by chance (its arrivals balance its departures
    // only on average): not a leak in that window, though the whole history shows one.
    let leak = short
        .sites
        .iter()
        .find(|s| s.label.contains("leaky_store"))
        .unwrap();
    assert_ne!(leak.verdict, Verdict::Leak, "{leak:?}");
    let whole = report(&ReportOptions::default());
    assert_eq!(whole.sites[0].verdict, Verdict::Leak);
}

#[test]
fn a_leak_that_starts_after_hours_shows_in_a_recent_window() {
    // Three hours at a snapshot every 10 s: flat, then leaking 50 KB/s for 8 minutes.
    let mut h = History::default();
    for i in 0..1080u64 {
        let t = i as f64 * 10.0;
        let leak_start = 3.0 * 3600.0 - 480.0;
        let live = 4.0 * MIB + (t - leak_start).max(0.0) * 50_000.0;
        let mut s = Snapshot::default();
        s.timestamp_ms = 1_700_000_000_000 + i * 10_000;
        s.epoch = i + 1;
        s.mode = Mode::Exact;
        s.sample_rate = 1;
        s.sites = vec![site(1, vec![0x101, 0x777], live)];
        s.process.live_bytes = live as i64;
        h.push(&s);
    }
    let whole_only = ReportOptions {
        recent_windows: vec![],
        ..ReportOptions::default()
    };
    let r = Report::build(&h, &symbols(), &whole_only);
    assert_ne!(r.sites[0].verdict, Verdict::Leak, "{:#?}", r.sites[0]);
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    let leak = &r.sites[0];
    assert_eq!(leak.verdict, Verdict::Leak, "{leak:#?}");
    assert!(
        (leak.verdict_window_seconds - 300.0).abs() < 10.0,
        "{leak:#?}"
    );
    assert!((leak.rate - 50_000.0).abs() < 500.0, "{leak:#?}");
    assert!((r.window_seconds - 10_790.0).abs() < 1e-6);
    let text = crate::render::text::text(&r, 5);
    assert!(text.contains("leak*"), "{text}");
    assert!(
        text.contains("* verdict, rate and growth over the last 5 min"),
        "{text}"
    );
    // The process grows at the leak's pace now, not at the whole window's average.
    let recent = r.process.recent_growth_rate.unwrap();
    assert!((recent - 50_000.0).abs() < 1_000.0, "{recent}");
    assert!(
        r.process.growth_rate < 10_000.0,
        "{}",
        r.process.growth_rate
    );
    assert!(text.contains("over the last 5 min, "), "{text}");
    let metrics = crate::render::prometheus::prometheus(&r, 5);
    let value: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("leakwatch_memory_recent_growth_bytes_per_second "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!((value - 50_000.0).abs() < 1_000.0, "{value}");
}

/// A 145 MiB leak over 146 snapshots whose timestamps stand still (every snapshot at
/// the same millisecond) or, with `step_back`, go back an hour a third of the way in.
fn clock_history(step_back: bool) -> History {
    let mut h = History::default();
    for i in 0..146u64 {
        let mut s = Snapshot::default();
        s.timestamp_ms = if step_back {
            let t = 1_700_000_000_000 + i * 1000;
            if i >= 50 { t - 3_600_000 } else { t }
        } else {
            1_700_000_000_000
        };
        s.pid = 9;
        s.mode = Mode::Exact;
        s.sample_rate = 1;
        s.sites = vec![
            site(1, vec![0x101, 0x777], i as f64 * MIB),
            site(2, vec![0x201, 0x777], 3.0 * MIB),
        ];
        s.process.live_bytes = s.sites.iter().map(|s| s.live_bytes as i64).sum();
        h.push(&s);
    }
    h
}

#[test]
fn a_clock_that_stands_still_still_ranks_the_leak_and_says_why() {
    let r = Report::build(&clock_history(false), &symbols(), &ReportOptions::default());
    assert_eq!(r.window_seconds, 145.0);
    assert_eq!(r.sites[0].label, "app::leaky_store (app/src/store.rs:10)");
    assert_eq!(r.sites[0].verdict, Verdict::Leak, "{:?}", r.sites[0]);
    let clock = r.clock.as_ref().expect("a clock note");
    assert_eq!((clock.backwards, clock.stood_still), (0, 145));
    assert_eq!(clock.interval_seconds, 1.0);
    assert!(
        r.warnings.iter().any(|w| w.starts_with(
            "timestamps stood still 145 times; time axis rebuilt from point order at the median interval (1 s)"
        )),
        "{:?}",
        r.warnings
    );
    let back = Report::from_json("r.json", &r.to_json()).expect("round trip");
    assert_eq!(back.clock, r.clock);
}

#[test]
fn a_clock_stepping_back_keeps_the_window_and_the_leak() {
    let r = Report::build(&clock_history(true), &symbols(), &ReportOptions::default());
    assert_eq!(r.window_seconds, 145.0);
    assert_eq!(r.sites[0].verdict, Verdict::Leak, "{:?}", r.sites[0]);
    assert!(
        (r.sites[0].rate - MIB).abs() < 0.01 * MIB,
        "{}",
        r.sites[0].rate
    );
    let clock = r.clock.as_ref().expect("a clock note");
    assert_eq!((clock.backwards, clock.stood_still), (1, 0));
    assert!(
        r.warnings.iter().any(|w| w.contains("went backwards once")),
        "{:?}",
        r.warnings
    );
    // A well-behaved clock adds no note.
    assert!(report(&ReportOptions::default()).clock.is_none());
}

#[test]
fn json_round_trips_the_functions_and_reads_version_1_grouped() {
    let r = crate::render::text::tests::split_functions(&ReportOptions::default());
    assert_eq!(r.version, 2);
    let json = r.to_json();
    let back = Report::from_json("r.json", &json).unwrap();
    // (serde_json may round the last digit of a float: compare what is not one.)
    let shape = |r: &Report| {
        let sites: Vec<(usize, String, Verdict, usize, u64)> = r
            .sites
            .iter()
            .map(|s| {
                (
                    s.rank,
                    s.label.clone(),
                    s.verdict,
                    s.function_rank,
                    s.live_bytes,
                )
            })
            .collect();
        let functions: Vec<(usize, String, Verdict, Vec<usize>, u64)> = r
            .functions
            .iter()
            .map(|f| {
                (
                    f.rank,
                    f.function.clone(),
                    f.verdict,
                    f.sites.clone(),
                    f.live_bytes,
                )
            })
            .collect();
        (sites, functions)
    };
    assert_eq!(shape(&back), shape(&r));
    assert_eq!(back.functions.len(), 4);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["functions"][0]["function"], "svc::sessions::open_session");
    assert_eq!(v["functions"][0]["sites"], serde_json::json!([1, 2]));
    assert_eq!(v["sites"][1]["function_rank"], 1);

    // The same report as version 1 wrote it: sites in ranking order (line by line), no
    // functions, no function_rank.
    let mut old = v.clone();
    old["version"] = 1.into();
    let object = old.as_object_mut().unwrap();
    object.remove("functions");
    let mut sites = object["sites"].as_array().unwrap().clone();
    // Line order: open_session:10, fill, open_session:11, put:20, warm, put:21.
    let line_order = [0, 2, 1, 3, 5, 4];
    sites = line_order.iter().map(|&i| sites[i].clone()).collect();
    for (i, site) in sites.iter_mut().enumerate() {
        site["rank"] = (i + 1).into();
        site.as_object_mut().unwrap().remove("function_rank");
    }
    object["sites"] = sites.into();
    let upgraded = Report::from_json("old.json", &old.to_string()).unwrap();
    assert_eq!(upgraded.version, 1);
    assert_eq!(shape(&upgraded), shape(&r));
}

#[test]
fn function_of_label_takes_the_part_before_the_location() {
    assert_eq!(function_of_label("app::f (app/src/a.rs:10)"), "app::f");
    assert_eq!(
        function_of_label("<T as app::Tr>::g (x) (app/src/a.rs:1)"),
        "<T as app::Tr>::g (x)"
    );
    assert_eq!(function_of_label("0x1234"), "0x1234");
    assert_eq!(function_of_label("(no stack)"), "(no stack)");
}

/// [`history`] with the modules of a process loaded at `base`: the program
/// `/srv/app` from `base` (its addresses 0x100 to 0x1000 in the file) and nothing else.
fn history_loaded_at(base: u64) -> History {
    let mut module = leakwatch_types::Module::default();
    module.path = "/srv/app".into();
    module.base = base;
    module.start = base;
    module.end = base + 0x1000;
    let mut h = History::default();
    for i in 0..600u64 {
        let t = i as f64;
        let mut s = point(i);
        if i == 0 {
            s.modules = vec![module.clone()];
        }
        let at = |frames: &[u64]| frames.iter().map(|f| f + base).collect::<Vec<_>>();
        s.sites = vec![
            // Two stacks through the same allocator frame (0x901) and line (0x101).
            site(1, at(&[0x901, 0x101, 0x777]), 20_000.0 * t),
            site(2, at(&[0x901, 0x101, 0x301, 0x777]), 10_000.0 * t),
            site(6, at(&[0x901, 0x777]), 3.0 * MIB),
        ];
        s.process.live_bytes = s.sites.iter().map(|s| s.live_bytes as i64).sum();
        h.push(&s);
    }
    h
}

#[test]
fn unsymbolized_sites_are_labelled_by_module_and_offset_each_stack_its_own() {
    let r = Report::build(
        &history_loaded_at(0x5555_0000_0000),
        &SymbolTable::new(),
        &ReportOptions::default(),
    );
    let mut labels: Vec<&str> = r.sites.iter().map(|s| s.label.as_str()).collect();
    labels.sort_unstable();
    assert_eq!(labels.len(), 3, "{labels:?}");
    // The innermost frame's call, as an offset in the file, then a hash of the stack:
    // sites sharing their innermost frame stay apart.
    for label in &labels {
        let (place, hash) = label.split_once(" #").expect(label);
        assert_eq!(place, "app+0x900", "{label}");
        assert_eq!(hash.len(), 8, "{label}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{label}");
    }
    assert!(labels.windows(2).all(|w| w[0] != w[1]), "{labels:?}");
    // Each label is its own function; the leak (sites 1 and 2, both growing) ranks first.
    assert_eq!(r.functions.len(), 3);
    assert_eq!(r.sites[0].verdict, Verdict::Leak, "{:?}", r.sites[0]);
    assert_eq!(r.sites[1].verdict, Verdict::Leak, "{:?}", r.sites[1]);
    let warning = r
        .warnings
        .iter()
        .find(|w| w.contains("symbols are offline"))
        .unwrap_or_else(|| panic!("{:?}", r.warnings));
    assert!(
        warning.starts_with("3 of 3 sites labelled by module and offset"),
        "{warning}"
    );
    assert!(warning.contains("--symbols BINARY"), "{warning}");
    assert!(
        warning.contains("go tool pprof BINARY heap.pb.gz"),
        "{warning}"
    );
}

#[test]
fn offline_labels_do_not_depend_on_where_the_program_was_loaded() {
    let labels = |base: u64| {
        let r = Report::build(
            &history_loaded_at(base),
            &SymbolTable::new(),
            &ReportOptions::default(),
        );
        let mut labels: Vec<String> = r.sites.iter().map(|s| s.label.clone()).collect();
        labels.sort_unstable();
        labels
    };
    assert_eq!(labels(0x5555_0000_0000), labels(0x7f00_1234_5000));
}

#[test]
fn symbolized_sites_keep_their_names_and_no_offline_warning() {
    let r = report(&ReportOptions::default());
    assert!(
        r.warnings
            .iter()
            .all(|w| !w.contains("symbols are offline")),
        "{:?}",
        r.warnings
    );
    // A site whose addresses are only partly known is labelled by its names as before.
    let mut h = History::default();
    let mut s = Snapshot::default();
    s.sites = vec![site(1, vec![0xdead, 0x101, 0x777], 1000.0)];
    h.push(&s);
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    assert_eq!(r.sites[0].label, "app::leaky_store (app/src/store.rs:10)");
    assert!(
        r.warnings
            .iter()
            .all(|w| !w.contains("symbols are offline"))
    );
}

#[test]
fn an_address_outside_every_module_is_labelled_in_hex() {
    let mut h = History::default();
    let mut s = Snapshot::default();
    s.sites = vec![site(1, vec![0x4242, 0x777], 1000.0)];
    h.push(&s);
    let r = Report::build(&h, &SymbolTable::new(), &ReportOptions::default());
    assert!(
        r.sites[0].label.starts_with("0x4242 #"),
        "{}",
        r.sites[0].label
    );
}

/// Ten minutes at 1 s of one line under two model versions: `model=2` leaks 20 KB/s,
/// `model=1` holds 5 MiB; and the same line untagged, steady.
fn tagged_history() -> History {
    let tags = |v: &str| {
        let mut t = leakwatch_types::Tags::new();
        t.insert("model".to_string(), v.to_string());
        t
    };
    let mut h = History::default();
    for i in 0..600u64 {
        let t = i as f64;
        let mut s = point(i);
        let mut leaking = site(1, vec![0x901, 0x101, 0x777], 20_000.0 * t);
        leaking.tags = tags("2");
        let mut steady = site(2, vec![0x901, 0x101, 0x777], 5.0 * MIB);
        steady.tags = tags("1");
        let untagged = site(3, vec![0x901, 0x101, 0x777], 1.0 * MIB);
        s.sites = vec![leaking, steady, untagged];
        h.push(&s);
    }
    h
}

#[test]
fn one_line_under_two_tag_sets_is_two_lines_of_one_function() {
    let r = Report::build(&tagged_history(), &symbols(), &ReportOptions::default());
    assert_eq!(r.sites.len(), 3, "{:#?}", r.sites);
    let by_model = |v: Option<&str>| {
        r.sites
            .iter()
            .find(|s| s.tags.get("model").map(String::as_str) == v)
            .unwrap_or_else(|| panic!("no line for model {v:?}"))
    };
    let leak = by_model(Some("2"));
    assert_eq!(leak.verdict, Verdict::Leak);
    assert_eq!(leak.rank, 1, "the leaking model's line ranks first");
    assert_eq!(leak.site_ids, vec![1]);
    assert_eq!(by_model(Some("1")).verdict, Verdict::Stable);
    assert_eq!(by_model(None).site_ids, vec![3]);
    for line in &r.sites {
        assert_eq!(line.label, "app::leaky_store (app/src/store.rs:10)");
    }
    // One function, its three lines beneath.
    assert_eq!(r.functions.len(), 1);
    assert_eq!(r.functions[0].sites.len(), 3);
    assert_eq!(
        leak.tagged_label(),
        "app::leaky_store (app/src/store.rs:10) {model=2}"
    );
    // JSON: a `tags` object per tagged line, read back the same.
    let json = r.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["sites"][0]["tags"]["model"], "2");
    let back = Report::from_json("test", &json).unwrap();
    assert_eq!(back.sites, r.sites);
    // Text and Prometheus name the tags.
    let text = crate::render::text::text(&r, 10);
    assert!(
        text.contains("{model=2}") && text.contains("{model=1}"),
        "{text}"
    );
    let metrics = crate::render::prometheus::prometheus(&r, 10);
    assert!(
        metrics.contains("leakwatch_site_leak{site=\"app::leaky_store (app/src/store.rs:10)\",function=\"app::leaky_store\",file=\"app/src/store.rs\",line=\"10\",tag_model=\"2\"} 1"),
        "{metrics}"
    );
    // A diff keeps the two models apart.
    let d = crate::diff::diff(&back, &r);
    assert_eq!(d.sites.len(), 3, "{:?}", d.sites);
}

#[test]
fn tag_label_names_are_valid_and_distinct() {
    let mut h = History::default();
    let mut s = point(0);
    let mut tagged = site(1, vec![0x101, 0x777], 1000.0);
    tagged.tags = [("a.b", "1"), ("a_b", "2"), ("tenant id", "x\"y")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.sites = vec![tagged];
    h.push(&s);
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    let metrics = crate::render::prometheus::prometheus(&r, 10);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("leakwatch_site_live_bytes{"))
        .expect("a site series");
    assert!(
        line.contains("tag_a_b=\"1\",tag_a_b_2=\"2\",tag_tenant_id=\"x\\\"y\""),
        "{line}"
    );
}

#[test]
fn a_lines_live_bytes_by_age_are_summed_and_shown() {
    let mut h = History::default();
    for i in 0..60u64 {
        let mut s = point(i);
        s.mode = Mode::Exact;
        s.sample_rate = 1;
        let mut a = site(1, vec![0x901, 0x101, 0x777], 20_000.0 * i as f64);
        a.age_bytes = vec![1000, 2000, 0, 0, 0];
        let mut b = site(2, vec![0x901, 0x101, 0x301, 0x777], 10_000.0 * i as f64);
        b.age_bytes = vec![0, 500, 0, 0, 7];
        s.sites = vec![a, b];
        h.push(&s);
    }
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    let line = r
        .sites
        .iter()
        .find(|l| l.site_ids.len() == 2)
        .expect("both sites on one line");
    assert_eq!(line.age_bytes, vec![1000, 2500, 0, 0, 7]);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["sites"][0]["age_bytes"][1], 2500);
    // Snapshots that measured no old bytes: none reported, and none in JSON.
    assert_eq!((line.old_bytes, line.old_verdict), (None, None));
    assert!(json["sites"][0].get("old_bytes").is_none());
    assert!(json["sites"][0].get("old_verdict").is_none());
    let text = crate::render::text::text(&r, 10);
    assert!(
        text.contains("live by age: < 10 s 1000 B, < 1 min 2.4 KiB"),
        "{text}"
    );
    let html = crate::render::html::html(&r, None);
    assert!(
        html.contains("live by age: &lt; 10 s 1000 B"),
        "ages in the page"
    );
    assert!(html.contains("aria-label=\"live bytes by age\""));
}

/// Old bytes (blocks that lived through `OLD_SNAPSHOTS` snapshots) are summed over a
/// line's sites and carried with their verdict into JSON, text and HTML: one line whose
/// old bytes climb with its live bytes (a leak, confirmed), one whose growth never ages
/// (vetoed: `growing`, its old bytes `stable`). Without them, see
/// `a_lines_live_bytes_by_age_are_summed_and_shown`.
#[test]
fn a_lines_old_bytes_and_their_verdict_are_reported() {
    let mut h = History::default();
    for i in 0..60u64 {
        let mut s = point(i);
        s.mode = Mode::Exact;
        s.sample_rate = 1;
        // Leaks: every block stays, so old bytes are live bytes 8 snapshots late.
        let old = |rate: u64| rate * i.saturating_sub(u64::from(leakwatch_types::OLD_SNAPSHOTS));
        let mut a = site(1, vec![0x901, 0x101, 0x777], 20_000.0 * i as f64);
        a.old_bytes = Some(old(20_000));
        let mut b = site(2, vec![0x901, 0x101, 0x301, 0x777], 10_000.0 * i as f64);
        b.old_bytes = Some(old(10_000));
        // Grows, but nothing in it ever gets old: a backlog of young blocks.
        let mut young = site(3, vec![0x902, 0x102, 0x778], 30_000.0 * i as f64);
        young.old_bytes = Some(0);
        s.sites = vec![a, b, young];
        h.push(&s);
    }
    let r = Report::build(&h, &symbols(), &ReportOptions::default());
    let by_ids = |ids: &[u32]| {
        r.sites
            .iter()
            .find(|l| l.site_ids == ids)
            .unwrap_or_else(|| panic!("a line of sites {ids:?}: {:#?}", r.sites))
    };
    let leak = by_ids(&[1, 2]);
    assert_eq!(leak.verdict, Verdict::Leak);
    assert_eq!(leak.old_bytes, Some(30_000 * 51));
    assert_eq!(leak.old_verdict, Some(Verdict::Leak));
    let backlog = by_ids(&[3]);
    assert_eq!(backlog.verdict, Verdict::Growing, "vetoed by its old bytes");
    assert_eq!(backlog.old_bytes, Some(0));
    assert_eq!(backlog.old_verdict, Some(Verdict::Stable));

    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let line = |ids: &[u32]| {
        json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["site_ids"] == serde_json::json!(ids))
            .cloned()
            .unwrap()
    };
    assert_eq!(line(&[1, 2])["old_bytes"], 30_000 * 51);
    assert_eq!(line(&[1, 2])["old_verdict"], "leak");
    assert_eq!(line(&[3])["old_verdict"], "stable");
    let back = Report::from_json("r.json", &r.to_json()).unwrap();
    assert_eq!(back.sites, r.sites, "the fields survive a round trip");

    let text = crate::render::text::text(&r, 10);
    assert!(
        text.contains("old bytes: 1.5 MiB in blocks that lived through 8 snapshots, a leak too"),
        "{text}"
    );
    let html = crate::render::html::html(&r, None);
    assert!(
        html.contains("old bytes: 0 B in blocks that lived through 8 snapshots, not growing"),
        "the veto said in the page"
    );
}
