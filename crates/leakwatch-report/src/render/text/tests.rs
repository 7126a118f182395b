//! Tests of the text renderer, and the synthetic reports every renderer's tests share
//! (`pub(crate)` items below).

use super::*;
use crate::history::History;
use crate::report::ReportOptions;
use crate::symbols::SymbolTable;
use leakwatch_types::{SiteStats, Snapshot, Symbol};
use std::collections::BTreeMap;

pub(crate) const KIB: f64 = 1024.0;
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// One source frame of a synthetic stack.
pub(crate) struct Loc {
    function: String,
    file: String,
    line: u32,
}

/// A frame `function` at `file:line`.
pub(crate) fn loc(function: &str, file: &str, line: u32) -> Loc {
    Loc {
        function: function.to_string(),
        file: file.to_string(),
        line,
    }
}

/// A site of a synthetic history: its stack, innermost first, and its live bytes at each
/// time (seconds since the first point).
pub(crate) struct Spec {
    pub stack: Vec<Loc>,
    pub live: Box<dyn Fn(f64) -> f64>,
}

pub(crate) fn spec(stack: Vec<Loc>, live: impl Fn(f64) -> f64 + 'static) -> Spec {
    Spec {
        stack,
        live: Box::new(live),
    }
}

/// A small deterministic generator for noise (xorshift64).
struct Noise(u64);

impl Noise {
    /// Uniform in [-1, 1].
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A report of [`synthetic_history`].
pub(crate) fn synthetic(
    specs: &[Spec],
    points: usize,
    step: f64,
    options: &ReportOptions,
) -> Report {
    let (history, symbols) = synthetic_history(specs, points, step);
    Report::build(&history, &symbols, options)
}

/// A history of `points` snapshots `step` seconds apart, one site per spec (ids from 1),
/// live bytes with 1% noise, and the symbols of its stacks. The process has 30 MiB the
/// sites do not account for, and 60 MiB of resident memory outside the heap.
pub(crate) fn synthetic_history(
    specs: &[Spec],
    points: usize,
    step: f64,
) -> (History, SymbolTable) {
    let mut table = SymbolTable::new();
    let mut addresses: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    let stacks: Vec<Vec<u64>> = specs
        .iter()
        .map(|spec| {
            spec.stack
                .iter()
                .map(|l| {
                    let key = (l.function.clone(), l.file.clone(), l.line);
                    let next = 0x1000 + 0x10 * addresses.len() as u64;
                    *addresses.entry(key).or_insert_with(|| {
                        let mut s = Symbol::default();
                        s.address = next;
                        s.function = Some(l.function.clone());
                        s.file = Some(l.file.clone());
                        s.line = Some(l.line);
                        table.insert(next, vec![s]);
                        next
                    })
                })
                .collect()
        })
        .collect();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut history = History::default();
    let mut allocs = 0u64;
    for i in 0..points {
        let t = i as f64 * step;
        let mut s = Snapshot::default();
        s.timestamp_ms = 1_700_000_000_000 + (t * 1000.0) as u64;
        s.epoch = 1 + t as u64;
        s.pid = 4242;
        s.mode = leakwatch_types::Mode::Sampled;
        s.sample_rate = 512 * 1024;
        s.sites = specs
            .iter()
            .zip(&stacks)
            .enumerate()
            .map(|(k, (spec, frames))| {
                let live = ((spec.live)(t) * (1.0 + 0.01 * noise.next())).max(0.0);
                let mut site = SiteStats::default();
                site.id = k as u32 + 1;
                site.frames = frames.clone();
                site.live_bytes = live as u64;
                site.live_blocks = (live / 4096.0).ceil();
                // Nothing freed: every site's live bytes are all it allocated (a
                // consistent snapshot: live = allocated - freed).
                site.alloc_bytes = live as u64;
                site.alloc_blocks = site.live_blocks;
                site
            })
            .collect();
        let live: u64 = s.sites.iter().map(|s| s.live_bytes).sum::<u64>() + (30 << 20);
        allocs += 1500 + live / 100_000;
        s.process.live_bytes = live as i64;
        s.process.peak_live_bytes = live as i64 + (4 << 20);
        s.process.resident_bytes = live + (60 << 20);
        s.process.allocs = allocs;
        s.process.alloc_bytes = allocs * 700;
        s.tracker.memory_bytes = 3 << 20;
        s.tracker.sites = specs.len() as u32 * 7;
        s.tracker.max_sites = 16_384;
        s.overflow.truncated_stacks = i as u64 / 10;
        history.push(&s);
    }
    (history, table)
}

/// The runtime frames under a tokio service's handlers, outermost last.
fn runtime_tail() -> Vec<Loc> {
    vec![
        loc(
            "tokio::runtime::task::harness::Harness<T,S>::poll",
            "/cargo/registry/src/tokio-1.41.0/src/runtime/task/harness.rs",
            151,
        ),
        loc(
            "tokio::runtime::scheduler::multi_thread::worker::Context::run",
            "/cargo/registry/src/tokio-1.41.0/src/runtime/scheduler/multi_thread/worker.rs",
            558,
        ),
        loc(
            "std::sys::pal::unix::thread::Thread::new::thread_start",
            "/rustc/abc/library/std/src/sys/pal/unix/thread.rs",
            105,
        ),
    ]
}

fn with_tail(mut stack: Vec<Loc>) -> Vec<Loc> {
    stack.extend(runtime_tail());
    stack
}

/// The sites of a model server: two leaks (one fast, deep in request handling), a
/// cache that filled up, steady model weights and buffers, a warm-up pool that drains,
/// and a site with a very long generic name.
pub(crate) fn model_server_specs() -> Vec<Spec> {
    let push = || {
        loc(
            "alloc::vec::Vec<T,A>::push",
            "/rustc/abc/library/alloc/src/vec/mod.rs",
            2417,
        )
    };
    vec![
        spec(
            with_tail(vec![
                push(),
                loc(
                    "model_server::session::SessionLog::record",
                    "/src/model-server/src/session.rs",
                    57,
                ),
                loc(
                    "model_server::handler::infer",
                    "/src/model-server/src/handler.rs",
                    131,
                ),
                loc(
                    "model_server::handler::route",
                    "/src/model-server/src/handler.rs",
                    44,
                ),
                loc(
                    "model_server::server::Server::handle",
                    "/src/model-server/src/server.rs",
                    210,
                ),
                loc(
                    "model_server::server::Server::serve_connection",
                    "/src/model-server/src/server.rs",
                    168,
                ),
                loc(
                    "model_server::server::Server::accept_loop",
                    "/src/model-server/src/server.rs",
                    97,
                ),
                loc(
                    "model_server::main::{{closure}}",
                    "/src/model-server/src/main.rs",
                    33,
                ),
            ]),
            |t| 2.0 * MIB + 30.0 * KIB * t,
        ),
        spec(
            with_tail(vec![
                loc(
                    "hashbrown::raw::RawTable<T,A>::reserve_rehash",
                    "/cargo/registry/src/hashbrown-0.15.2/src/raw/mod.rs",
                    1050,
                ),
                loc(
                    "model_server::auth::TokenStore::remember",
                    "/src/model-server/src/auth.rs",
                    88,
                ),
                loc(
                    "model_server::handler::route",
                    "/src/model-server/src/handler.rs",
                    40,
                ),
            ]),
            |t| 512.0 * KIB + 2.0 * KIB * t,
        ),
        spec(
            with_tail(vec![
                loc(
                    "model_server::cache::EmbeddingCache::insert",
                    "/src/model-server/src/cache.rs",
                    72,
                ),
                loc(
                    "model_server::handler::infer",
                    "/src/model-server/src/handler.rs",
                    118,
                ),
            ]),
            |t| 64.0 * MIB * (1.0 - (-t / 500.0).exp()),
        ),
        spec(
            vec![
                loc(
                    "model_server::model::load_weights",
                    "/src/model-server/src/model.rs",
                    201,
                ),
                loc("model_server::main", "/src/model-server/src/main.rs", 21),
            ],
            |_| 400.0 * MIB,
        ),
        spec(
            with_tail(vec![
                loc(
                    "model_server::tokenizer::Tokenizer::encode",
                    "/src/model-server/src/tokenizer.rs",
                    140,
                ),
                loc(
                    "model_server::handler::infer",
                    "/src/model-server/src/handler.rs",
                    112,
                ),
            ]),
            |t| 8.0 * MIB + 256.0 * KIB * (t / 37.0).sin(),
        ),
        spec(
            with_tail(vec![loc(
                "<model_server::batch::Batcher<tokio::sync::mpsc::Receiver<model_server::Request>> as futures_core::stream::Stream>::poll_next",
                "/src/model-server/src/batch.rs",
                212,
            )]),
            |_| 3.0 * MIB,
        ),
        spec(
            with_tail(vec![loc(
                "model_server::warmup::prefetch",
                "/src/model-server/src/warmup.rs",
                19,
            )]),
            |t| 48.0 * MIB * (-t / 900.0).exp() + MIB,
        ),
    ]
}

/// An hour of a model server, a snapshot every 5 s, with an optional memory limit and
/// a long warning.
pub(crate) fn model_server(limit: Option<u64>) -> Report {
    let mut options = ReportOptions::default();
    options.rank.limit_bytes = limit;
    let mut report = synthetic(&model_server_specs(), 720, 5.0, &options);
    report.warnings.push(
        "the site table is 93% full (15 237 of 16 384 sites): new call sites will soon go \
         unrecorded and their bytes be counted as overflow; raise LEAKWATCH_MAX_SITES or \
         the sampling rate"
            .to_string(),
    );
    report
}

/// `n` sites, each a leak at a different rate (64 KiB/s and up: sampled at 512 KiB, two
/// minutes of the slowest are 15 samples).
pub(crate) fn many_leaks(n: usize, options: &ReportOptions) -> Report {
    let specs: Vec<Spec> = (0..n)
        .map(|k| {
            let rate = (k + 1) as f64 * 64.0 * KIB;
            spec(
                vec![loc(
                    &format!("app::worker_{k}::store"),
                    "/w/app/src/worker.rs",
                    k as u32 + 1,
                )],
                move |t| rate * t,
            )
        })
        .collect();
    synthetic(&specs, 120, 1.0, options)
}

/// The model server with one more site, the fastest leak, in a function named
/// `function`.
pub(crate) fn with_leak_named(function: &str) -> Report {
    let mut specs = model_server_specs();
    specs.push(spec(
        vec![
            loc(function, "/src/model-server/src/weird.rs", 7),
            loc("model_server::main", "/src/model-server/src/main.rs", 21),
        ],
        |t| 200.0 * KIB * t,
    ));
    synthetic(&specs, 720, 5.0, &ReportOptions::default())
}

/// Ten minutes at 1 s of a service whose leaks are split over lines: `open_session`
/// leaks at two lines (60 and 40 KiB/s) ranked apart by a 50 KiB/s leak in `fill`
/// between them; `put` leaks at one line (20 KiB/s) and holds a steady 8 MiB at another;
/// `warm` is a cache that filled up (a plateau, 80 MiB).
pub(crate) fn split_functions(options: &ReportOptions) -> Report {
    let site = |function: &str, file: &str, line: u32| {
        vec![
            loc(function, file, line),
            loc("svc::main", "/src/svc/src/main.rs", 9),
        ]
    };
    let specs = vec![
        spec(
            site(
                "svc::sessions::open_session",
                "/src/svc/src/sessions.rs",
                10,
            ),
            |t| 60.0 * KIB * t,
        ),
        spec(site("svc::cache::fill", "/src/svc/src/cache.rs", 5), |t| {
            50.0 * KIB * t
        }),
        spec(
            site(
                "svc::sessions::open_session",
                "/src/svc/src/sessions.rs",
                11,
            ),
            |t| 40.0 * KIB * t,
        ),
        spec(site("svc::store::put", "/src/svc/src/store.rs", 20), |t| {
            20.0 * KIB * t
        }),
        spec(site("svc::store::put", "/src/svc/src/store.rs", 21), |_| {
            8.0 * MIB
        }),
        spec(site("svc::pool::warm", "/src/svc/src/pool.rs", 30), |t| {
            80.0 * MIB * (1.0 - (-t / 60.0).exp())
        }),
    ];
    synthetic(&specs, 600, 1.0, options)
}

/// A report of no snapshot at all.
pub(crate) fn empty() -> Report {
    Report::build(
        &History::default(),
        &SymbolTable::new(),
        &ReportOptions::default(),
    )
}

/// The model server report with every number made absurd: NaN, infinite, huge.
pub(crate) fn absurd() -> Report {
    let mut r = model_server(Some(2 << 30));
    r.window_seconds = f64::NAN;
    r.process.growth_rate = f64::INFINITY;
    r.process.seconds_to_limit = Some(f64::NAN);
    r.process.live_bytes = i64::MIN;
    r.process.peak_live_bytes = i64::MAX;
    r.process.resident_bytes = u64::MAX;
    r.process.usage_bytes = u64::MAX;
    for (k, s) in r.sites.iter_mut().enumerate() {
        s.rate = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300][k % 4];
        s.growth = [f64::NEG_INFINITY, f64::NAN, 1e300, -1e-300][k % 4];
        s.seconds_to_limit = [Some(f64::INFINITY), Some(f64::NAN), Some(-1.0), Some(1e300)][k % 4];
        s.live_bytes = u64::MAX;
        s.rank = usize::MAX - k;
        s.history = vec![f64::NAN, f64::INFINITY, -1e300, 1e300];
    }
    r.omitted_sites = usize::MAX;
    r.omitted_live_bytes = u64::MAX;
    r.chart_times = vec![f64::NAN, 0.0, 0.0, f64::INFINITY];
    r.chart_process = vec![1.0, f64::NAN];
    r
}

fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= WIDTH,
            "line of {} characters:\n{line}\n{text}",
            line.chars().count()
        );
    }
}

#[test]
fn every_line_fits_in_100_columns() {
    let reports = [
        model_server(None),
        model_server(Some(2 << 30)),
        many_leaks(40, &ReportOptions::default()),
        with_leak_named("app::f<\n\x1b[31mred\x1b[0m>"),
        with_leak_named(&format!(
            "model_server::{}::grow",
            "very_long_module_name::".repeat(20)
        )),
        empty(),
        absurd(),
        split_functions(&ReportOptions::default()),
    ];
    for report in &reports {
        for top in [0, 1, 5, 1000] {
            let text = text(report, top);
            assert_fits(&text);
            assert!(text.ends_with('\n'));
        }
    }
}

#[test]
fn the_leak_comes_first_with_its_label_and_rate() {
    let report = model_server(Some(2 << 30));
    let leak = &report.sites[0];
    assert_eq!(leak.verdict, Verdict::Leak);
    assert_eq!(
        leak.label,
        "model_server::session::SessionLog::record (model-server/src/session.rs:57)"
    );
    let text = text(&report, 10);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("# "))
        .skip(1)
        .collect();
    // Labels this long go on a line of their own under their row.
    let (first, label) = (rows[0], rows[1]);
    assert!(first.starts_with("1  leak "), "{first}");
    assert_eq!(label, format!("   {}", leak.label));
    assert!(first.contains(&rate(leak.rate)), "{first}");
    assert!(rate(leak.rate).starts_with("+30.0 KiB/s") || rate(leak.rate).starts_with("+29."));
    // Time to limit: in the header and the table.
    assert!(
        text.contains("at this rate the process reaches its limit in "),
        "{text}"
    );
    let to_limit = duration(leak.seconds_to_limit.unwrap());
    assert!(first.contains(&to_limit), "{first}");
    // The two leaks' stacks, innermost user frame first, runtime frames left out.
    assert!(text.contains("Leak #1 (+30.0 KiB/s, "), "{text}");
    let stack_start = text.find("Leak #1").unwrap();
    let stack: Vec<&str> = text[stack_start..].lines().skip(1).take(7).collect();
    assert_eq!(
        stack[0],
        "    model_server::session::SessionLog::record (model-server/src/session.rs:57)"
    );
    assert_eq!(
        stack[1],
        "    model_server::handler::infer (model-server/src/handler.rs:131)"
    );
    assert_eq!(stack[6], "    … 4 more frames", "{stack:?}");
    assert!(!text.contains("Vec<T,A>::push"));
    assert!(text.contains("Leak #2"));
    assert!(!text.contains("No leak"));
    assert!(text.contains("\n7 sites ranked: 2 leaks, 1 plateau, 3 stable, 1 shrinking\n"));
}

#[test]
fn header_says_what_and_when() {
    let text = text(&model_server(Some(2 << 30)), 5);
    let head: Vec<&str> = text.lines().take(7).collect();
    assert_eq!(
        head[0],
        "leakwatch report: pid 4242, 2023-11-14 23:13:15 UTC"
    );
    assert_eq!(
        head[1],
        "tracking: sampled, one sample per 512.0 KiB allocated (site numbers are estimates)"
    );
    assert_eq!(head[2], "window: 1 h over 720 points");
    assert!(head[3].starts_with("process: live heap "), "{}", head[3]);
    assert!(
        head[4].starts_with("process memory is growing at +"),
        "{}",
        head[4]
    );
    assert!(
        head[5].starts_with("memory limit 2.0 GiB, in use "),
        "{}",
        head[5]
    );
    assert!(head[6].starts_with("at this rate the process reaches its limit in "));

    let text = super::text(&model_server(None), 5);
    assert!(text.contains("memory limit unknown"), "{text}");
    assert!(
        !text.contains("to limit"),
        "no time-to-limit column without a limit"
    );
}

#[test]
fn no_leak_is_said_plainly() {
    let specs = vec![spec(
        vec![loc("app::steady", "/w/app/src/lib.rs", 3)],
        |_| MIB,
    )];
    let report = synthetic(&specs, 100, 1.0, &ReportOptions::default());
    let text = text(&report, 10);
    let no_leak: Vec<&str> = text.lines().filter(|l| l.starts_with("No leak")).collect();
    assert_eq!(
        no_leak,
        ["No leak: no site's live bytes grew steadily over the 99 s window."]
    );
    assert!(!text.contains("Leak #"));

    let text = super::text(&empty(), 10);
    assert!(
        text.contains("No leak detected yet: 0 points are too few to judge growth."),
        "{text}"
    );
    assert!(text.contains("0 sites ranked"), "{text}");
}

#[test]
fn top_bounds_the_table_and_the_rest_is_counted() {
    let report = many_leaks(12, &ReportOptions::default());
    let text = text(&report, 4);
    let rows = text.lines().filter(|l| l.contains("app::worker_")).count();
    // 4 rows, and the stacks of the first 3 leaks (one frame each).
    assert_eq!(rows, 4 + 3, "{text}");
    assert!(text.contains("… and 8 more sites not shown ("), "{text}");
    assert!(text.contains("Leak #3") && !text.contains("Leak #4"));
}

#[test]
fn long_labels_are_shortened_in_the_middle_keeping_the_location() {
    let report = model_server(None);
    let text = text(&report, 10);
    let batch = text
        .lines()
        .find(|l| l.contains("(model-server/src/batch.rs:212)"))
        .expect("the batcher's row keeps its location");
    assert!(batch.contains("<model_server::batch::"), "{batch}");
    assert!(batch.contains('…'), "{batch}");
    assert!(batch.contains(">::poll_next (model-server"), "{batch}");
    assert_eq!(batch.chars().count(), WIDTH, "{batch}");
    // Short labels share their row's line.
    let text = super::text(&many_leaks(3, &ReportOptions::default()), 3);
    let row = text.lines().find(|l| l.starts_with("1  leak")).unwrap();
    assert!(
        row.ends_with("  app::worker_2::store (app/src/worker.rs:3)"),
        "{row}"
    );

    assert_eq!(truncate_middle("abcdefghij", 5), "ab…ij");
    assert_eq!(truncate_middle("abcdefghij", 6), "abc…ij");
    assert_eq!(truncate_middle("abc", 3), "abc");
    assert_eq!(truncate_middle("abc", 1), "…");
    assert_eq!(truncate_middle("abc", 0), "");
    assert_eq!(truncate_end("ééééé", 4), "ééé…");
    assert_eq!(
        shorten_label("a::very::long::function (x.rs:1)", 20),
        "a::ve…ction (x.rs:1)"
    );
    // A location too long to keep whole: the label is shortened as a whole.
    assert_eq!(
        shorten_label("f (a/very/long/path/to/a/file.rs:100)", 12),
        "f (a/v…:100)"
    );
    // Characters, not bytes.
    let wide = format!("app::{} (x.rs:1)", "日本".repeat(60));
    assert_eq!(shorten_label(&wide, 50).chars().count(), 50);
}

#[test]
fn control_characters_cannot_break_lines() {
    let report = with_leak_named("app::f\nsecond line\x1b[2J");
    let text = text(&report, 3);
    assert!(
        text.contains("app::f\\nsecond line\\u{1b}[2J (model-server/src/weird.rs:7)"),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
    assert!(text.lines().all(|l| !l.starts_with("second line")));
}

#[test]
fn warnings_are_wrapped() {
    let text = text(&model_server(None), 3);
    let at = text.find("Warnings:").unwrap();
    let lines: Vec<&str> = text[at..].lines().collect();
    assert!(
        lines[1].starts_with("  - the site table is 93% full"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("    "), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.ends_with("the sampling rate")),
        "{lines:?}"
    );
    assert_eq!(
        wrap("aaaa bbbb cccc", "- ", "  ", 8),
        ["- aaaa", "  bbbb", "  cccc"]
    );
    assert_eq!(wrap(&"x".repeat(20), "- ", "  ", 8), ["- xxxxx…"]);
}

#[test]
fn bytes_format() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0 B"),
        (-0.0, "0 B"),
        (0.4, "0 B"),
        (-0.4, "0 B"),
        (1.0, "1 B"),
        (1023.0, "1023 B"),
        (1023.6, "1.0 KiB"),
        (1024.0, "1.0 KiB"),
        (1536.0, "1.5 KiB"),
        (-1536.0, "-1.5 KiB"),
        (1024.0 * 1023.96, "1.0 MiB"),
        (20.0 * MIB, "20.0 MiB"),
        (3.25 * 1024.0 * MIB, "3.2 GiB"),
        (5.0 * 1024.0 * 1024.0 * MIB, "5.0 TiB"),
        (f64::MAX, "1.6e290 EiB"),
        (f64::INFINITY, "inf B"),
        (f64::NEG_INFINITY, "-inf B"),
        (f64::NAN, "n/a"),
    ];
    for &(b, expect) in cases {
        assert_eq!(bytes(b), expect, "bytes({b})");
    }
}

#[test]
fn rate_format() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0 B/s"),
        (0.2, "0 B/s"),
        (300.0, "+300 B/s"),
        (-300.0, "-300 B/s"),
        (1.2 * MIB, "+1.2 MiB/s"),
        (-30.0 * KIB, "-30.0 KiB/s"),
        (f64::INFINITY, "+inf B/s"),
        (f64::NEG_INFINITY, "-inf B/s"),
        (f64::NAN, "n/a"),
    ];
    for &(r, expect) in cases {
        assert_eq!(rate(r), expect, "rate({r})");
    }
}

#[test]
fn duration_format() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0 s"),
        (0.2, "under 1 s"),
        (1.0, "1 s"),
        (45.0, "45 s"),
        (59.7, "60 s"),
        (99.4, "99 s"),
        (99.6, "2 min"),
        (12.0 * 60.0, "12 min"),
        (3599.0, "1 h"),
        (3.0 * 3600.0 + 10.0 * 60.0, "3 h 10 min"),
        (23.0 * 3600.0 + 59.0 * 60.0, "23 h 59 min"),
        (86_399.0, "1 d"),
        (2.0 * 86_400.0 + 4.0 * 3600.0, "2 d 4 h"),
        (400.0 * 86_400.0, "400 d"),
        (-45.0, "-45 s"),
        (1e300, "over 100 years"),
        (f64::INFINITY, "over 100 years"),
        (f64::NEG_INFINITY, "-over 100 years"),
        (f64::NAN, "n/a"),
    ];
    for &(s, expect) in cases {
        assert_eq!(duration(s), expect, "duration({s})");
    }
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(4_107_542_399_999), "2100-02-28 23:59:59 UTC");
    // Far future: no panic, a date.
    assert!(utc(u64::MAX).ends_with(" UTC"));
}

/// With `LEAKWATCH_SAMPLES=dir`, writes `dir/report.txt` from the model server report,
/// for people to look at (`LEAKWATCH_SAMPLES=/tmp/leakwatch-samples cargo test -p
/// leakwatch-report samples`).
#[test]
fn samples_when_asked() {
    let Some(dir) = std::env::var_os("LEAKWATCH_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("report.txt"),
        text(&model_server(Some(2 << 30)), 10),
    )
    .unwrap();
}

#[test]
fn a_functions_lines_are_grouped_under_it_and_ranked_by_it() {
    let report = split_functions(&ReportOptions::default());
    // Each line on its own: open_session:10, fill, open_session:11, put:20 (leaks, by
    // rate), warm (plateau), put:21 (stable).
    let lines: Vec<(&str, Verdict)> = report
        .sites
        .iter()
        .map(|s| (s.label.as_str(), s.verdict))
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "svc::sessions::open_session (svc/src/sessions.rs:10)",
                Verdict::Leak
            ),
            (
                "svc::sessions::open_session (svc/src/sessions.rs:11)",
                Verdict::Leak
            ),
            ("svc::cache::fill (svc/src/cache.rs:5)", Verdict::Leak),
            ("svc::store::put (svc/src/store.rs:20)", Verdict::Leak),
            ("svc::store::put (svc/src/store.rs:21)", Verdict::Stable),
            ("svc::pool::warm (svc/src/pool.rs:30)", Verdict::Plateau),
        ],
        "{report:#?}"
    );
    assert!(
        report
            .sites
            .iter()
            .enumerate()
            .all(|(i, s)| s.rank == i + 1)
    );
    let functions: Vec<(&str, Verdict, &[usize])> = report
        .functions
        .iter()
        .map(|f| (f.function.as_str(), f.verdict, f.sites.as_slice()))
        .collect();
    assert_eq!(
        functions,
        vec![
            ("svc::sessions::open_session", Verdict::Leak, &[1, 2][..]),
            ("svc::cache::fill", Verdict::Leak, &[3][..]),
            // A leak line and a stable line: the function is a leak, ranked as one.
            ("svc::store::put", Verdict::Leak, &[4, 5][..]),
            ("svc::pool::warm", Verdict::Plateau, &[6][..]),
        ]
    );
    let open = &report.functions[0];
    // Ranked by the summed rate of its lines (about 100 KiB/s), above fill's 50.
    assert!((open.rate - 100.0 * KIB).abs() < 5.0 * KIB, "{open:?}");
    assert_eq!(
        open.live_bytes,
        report.sites[0].live_bytes + report.sites[1].live_bytes
    );
    let put = &report.functions[2];
    assert!(
        (put.rate - report.sites[3].current_rate()).abs() < 1e-9,
        "{put:?}"
    );
    assert!(report.sites.iter().all(|s| {
        report.functions[s.function_rank - 1]
            .sites
            .contains(&s.rank)
    }));

    let text = text(&report, 10);
    assert_fits(&text);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# "))
        .take_while(|l| !l.is_empty())
        .collect();
    let label_at = table[0].find("site").expect("one-line rows");
    let cells = |row: &str| {
        row[..label_at]
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let label = |row: &str| row[label_at..].to_string();
    // Function rows: no number, the function's verdict and totals; its lines under it.
    assert_eq!(label(table[1]), "svc::sessions::open_session (2 lines)");
    assert_eq!(cells(table[1])[0], "leak");
    let numbers = &table[1][..label_at];
    assert!(
        numbers.contains(&format!("  {}  ", bytes(open.live_bytes as f64)))
            && numbers.contains(&format!("  {}  ", rate(open.rate))),
        "{text}"
    );
    assert_eq!(label(table[2]), "  svc/src/sessions.rs:10");
    assert_eq!(cells(table[2])[..2], ["1".to_string(), "leak".to_string()]);
    assert_eq!(label(table[3]), "  svc/src/sessions.rs:11");
    assert_eq!(cells(table[3])[0], "2");
    // A function with one line shows as that line, as it always did.
    assert_eq!(label(table[4]), "svc::cache::fill (svc/src/cache.rs:5)");
    assert_eq!(cells(table[4])[..2], ["3".to_string(), "leak".to_string()]);
    assert_eq!(label(table[5]), "svc::store::put (2 lines)");
    assert_eq!(label(table[6]), "  svc/src/store.rs:20");
    assert_eq!(label(table[7]), "  svc/src/store.rs:21");
    assert_eq!(
        cells(table[7])[..2],
        ["5".to_string(), "stable".to_string()]
    );
    assert_eq!(label(table[8]), "svc::pool::warm (svc/src/pool.rs:30)");
    assert_eq!(table.len(), 9, "{text}");
    assert!(
        text.contains("\n6 sites in 4 functions ranked: 4 leaks, 1 plateau, 1 stable\n"),
        "{text}"
    );
    // Stacks keep the lines' numbers.
    assert!(text.contains("Leak #1 (+60.0 KiB/s"), "{text}");

    // A table cut in a function's lines: one shown line is a plain row.
    let cut = super::text(&report, 4);
    assert!(
        cut.contains("svc::store::put (svc/src/store.rs:20)"),
        "{cut}"
    );
    assert!(!cut.contains("svc::store::put (2 lines)"), "{cut}");
}

#[test]
fn top_keeps_the_first_lines_in_grouped_order_and_counts_the_rest() {
    let options = ReportOptions {
        top: Some(4),
        ..ReportOptions::default()
    };
    let report = split_functions(&options);
    let labels: Vec<&str> = report.sites.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels.len(), 4);
    assert_eq!(labels[3], "svc::store::put (svc/src/store.rs:20)");
    assert_eq!(report.omitted_sites, 2);
    let put = &report.functions[2];
    assert_eq!((put.sites.as_slice(), put.omitted_sites), (&[4][..], 1));
    // Its totals still count the line left out (8 MiB stable).
    assert!(put.live_bytes as f64 > 8.0 * MIB, "{put:?}");
    assert_eq!(report.functions.len(), 3, "warm is left out entirely");
}
