//! leakwatch in a service's stack (issue 13): its metric families through the service's
//! own `prometheus-client` registry (`prometheus-client` feature), and its alerts as
//! `tracing` events with structured fields inside the current span (`tracing` feature),
//! received by a real subscriber (tracing-subscriber's `Registry` with a layer that
//! collects events and the fields of the spans they are in).

use leakwatch::{LeakWatch, Recorder};
use leakwatch_tests::{run, snapshot_at};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().sample_rate(1).seed(7);

/// A stack frame of this binary that symbolizes to a function, file and line: the
/// synthetic site's return address (this function's address plus one, inside it).
#[inline(never)]
fn synthetic_site() -> usize {
    black_box(synthetic_site as fn() -> usize as usize + 1)
}

/// A manual recorder whose history is 120 s of one site growing 100 KB/s (a `leak`).
fn leaking_recorder() -> Recorder {
    let recorder = Recorder::builder()
        .manual()
        .memory_limit(Some(8 << 30))
        .alerts(leakwatch::AlertOptions {
            min_rate: 1.0,
            min_window: Duration::from_secs(20),
            log: false,
            ..Default::default()
        })
        .start()
        .expect("a manual recorder");
    let frame = synthetic_site();
    for t in 0..120 {
        recorder.push(&snapshot_at(t, frame as u64, 1_000_000 + t * 100_000));
    }
    recorder
}

/// One exposition line that is not a comment: `name{labels}` and the value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            (series.to_string(), value)
        })
        .collect()
}

/// The collector's families are the renderer's: every leakwatch HELP and TYPE line and
/// every sample (name, labels, value) of `Recorder::prometheus`, and nothing else, come
/// out of the service's registry beside the service's own counter; OpenMetrics too.
fn collector_encodes_the_renderers_families_in_the_services_registry() {
    let recorder = leakwatch_recorder_with_sites();
    let requests: Counter = Counter::default();
    let mut registry = Registry::default();
    registry.register("service_requests", "Requests served", requests.clone());
    registry.register_collector(Box::new(recorder.prometheus_collector(5)));
    requests.inc_by(3);

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    let rendered = recorder.prometheus(5);
    assert!(text.contains("\nservice_requests_total 3\n"), "{text}");

    let comments = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# ") && l.contains(" leakwatch_"))
            .map(String::from)
            .collect()
    };
    assert_eq!(comments(&text), comments(&rendered), "HELP and TYPE lines");
    let ours: BTreeMap<String, f64> = samples(&text)
        .into_iter()
        .filter(|(series, _)| series.starts_with("leakwatch_"))
        .collect();
    let expected = samples(&rendered);
    let differ: Vec<_> = ours
        .iter()
        .filter(|(k, v)| expected.get(*k) != Some(v))
        .chain(expected.iter().filter(|(k, _)| !ours.contains_key(*k)))
        .collect();
    assert!(
        differ.is_empty(),
        "samples that differ: {differ:#?}\n--- registry:\n{text}\n--- renderer:\n{rendered}"
    );
    // The sites' series are there with their labels (5 of them, as asked).
    let site_series = ours
        .keys()
        .filter(|s| s.starts_with("leakwatch_site_live_bytes{"))
        .count();
    assert_eq!(site_series, 5, "{text}");
    assert!(
        ours.keys().any(|s| s
            .starts_with("leakwatch_site_live_bytes{site=\"integrations::synthetic_site (")
            && s.contains(",function=\"integrations::synthetic_site\",file=\"")
            && s.contains("integrations.rs\",line=\"")),
        "{text}"
    );

    // OpenMetrics: counters announced without `_total`, samples with it, `# EOF` last.
    let mut open = String::new();
    prometheus_client::encoding::text::encode(&mut open, &registry).unwrap();
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("\n# TYPE leakwatch_allocations counter\n"),
        "{open}"
    );
    assert_eq!(
        samples(&open.replace("# EOF\n", ""))
            .into_iter()
            .filter(|(s, _)| s.starts_with("leakwatch_"))
            .collect::<BTreeMap<_, _>>(),
        expected
    );

    // Read at scrape time: a later snapshot moves the values.
    let before = ours["leakwatch_heap_live_bytes"];
    recorder.push(&snapshot_at(500, synthetic_site() as u64, 99_000_000));
    let mut later = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut later, &registry).unwrap();
    assert_eq!(samples(&later)["leakwatch_heap_live_bytes"], 99_000_000.0);
    assert_ne!(before, 99_000_000.0);

    // Once the recorder is gone, the registry still encodes, without leakwatch.
    drop(recorder);
    let mut gone = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut gone, &registry).unwrap();
    assert!(!gone.contains("leakwatch_"), "{gone}");
    assert!(gone.contains("\nservice_requests_total 3\n"), "{gone}");
}

/// A recorder with the leaking site and a few flat ones (offline labels), so that `top`
/// cuts the site list.
fn leakwatch_recorder_with_sites() -> Recorder {
    let recorder = leaking_recorder();
    let mut s = snapshot_at(120, synthetic_site() as u64, 1_000_000 + 120 * 100_000);
    for id in 2..12u32 {
        let mut site = leakwatch::SiteStats::default();
        site.id = id;
        site.frames = vec![0x1000 * u64::from(id)];
        site.live_bytes = 10_000 * u64::from(id);
        site.alloc_bytes = site.live_bytes;
        site.live_blocks = 1.0;
        site.alloc_blocks = 1.0;
        s.sites.push(site);
    }
    recorder.push(&s);
    recorder
}

/// An event or span's fields, as `name -> value` (strings unquoted, others `Debug`).
#[derive(Debug, Default, Clone)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// What the layer saw of one event: target, level, fields, and the fields of the spans
/// it is in (innermost first), by span name.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
    spans: Vec<(String, BTreeMap<String, String>)>,
    thread: Option<String>,
}

static EVENTS: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// Collects events with target `leakwatch`, and every span's fields.
struct Collect;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "leakwatch" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .into_iter()
            .flatten()
            .map(|span| {
                let fields = span
                    .extensions()
                    .get::<Fields>()
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                (span.name().to_string(), fields)
            })
            .collect();
        EVENTS.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
            target: event.metadata().target().to_string(),
            level: *event.metadata().level(),
            fields: fields.0,
            spans,
            thread: std::thread::current().name().map(String::from),
        });
    }
}

/// An alert raised by `check_alerts` inside the caller's span is a WARN event with the
/// site's fields and the span's.
fn alert_is_a_tracing_event_with_the_sites_fields_inside_the_current_span() {
    EVENTS.lock().unwrap().clear();
    let recorder = leaking_recorder();
    let span = tracing::info_span!("service", replica = "test-1", port = 8080u64);
    let fresh = span.in_scope(|| recorder.check_alerts());
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    let site = &fresh[0];
    let events = EVENTS.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.target, "leakwatch");
    assert_eq!(event.level, tracing::Level::WARN);
    let field = |name: &str| event.fields.get(name).map(String::as_str);
    assert_eq!(
        field("site"),
        Some(site.tagged_label().as_str()),
        "{event:#?}"
    );
    assert_eq!(field("function"), site.function.as_deref(), "{event:#?}");
    assert!(
        field("function").is_some_and(|f| f.ends_with("synthetic_site")),
        "{event:#?}"
    );
    assert!(
        field("file").is_some_and(|f| f.ends_with("tests/integrations.rs")),
        "{event:#?}"
    );
    let line: u32 = field("line").and_then(|l| l.parse().ok()).expect("a line");
    assert_eq!(Some(line), site.line);
    assert!(
        site.label.ends_with(&format!("integrations.rs:{line})")),
        "{}",
        site.label
    );
    assert_eq!(field("verdict"), Some("leak"));
    assert_eq!(
        field("live_bytes"),
        Some(site.live_bytes.to_string().as_str())
    );
    let rate: f64 = field("rate_bytes_per_second").unwrap().parse().unwrap();
    assert!((rate - 100_000.0).abs() < 1_000.0, "{event:#?}");
    let growth: f64 = field("growth_bytes").unwrap().parse().unwrap();
    assert!(growth > 5_000_000.0, "{event:#?}");
    assert!(field("window_seconds").is_some() && field("seconds_to_limit").is_some());
    assert!(
        field("message").is_some_and(|m| m.starts_with(&format!("leak: {}", site.tagged_label()))),
        "{event:#?}"
    );
    assert_eq!(event.spans.len(), 1, "{event:#?}");
    let (name, span_fields) = &event.spans[0];
    assert_eq!(name, "service");
    assert_eq!(
        span_fields.get("replica").map(String::as_str),
        Some("test-1")
    );
    assert_eq!(span_fields.get("port").map(String::as_str), Some("8080"));

    // Turned off, no event (the hooks and the return value stay).
    EVENTS.lock().unwrap().clear();
    let quiet = Recorder::builder()
        .manual()
        .alerts(leakwatch::AlertOptions {
            min_rate: 1.0,
            min_window: Duration::from_secs(20),
            log: false,
            tracing: false,
            ..Default::default()
        })
        .start()
        .unwrap();
    for t in 0..120 {
        quiet.push(&snapshot_at(
            t,
            synthetic_site() as u64,
            1_000_000 + t * 100_000,
        ));
    }
    assert_eq!(span.in_scope(|| quiet.check_alerts()).len(), 1);
    assert!(EVENTS.lock().unwrap().is_empty());
}

/// 64 KiB kept every 5 ms (12.8 MB/s), in exact mode.
#[inline(never)]
fn keep_forever(kept: &mut Vec<Vec<u8>>, i: usize) {
    kept.push(vec![i as u8; 64 * 1024]);
}

/// The recorder's own thread raises its alerts inside the span that was current when
/// the recorder started.
fn background_alerts_carry_the_span_current_at_start() {
    EVENTS.lock().unwrap().clear();
    let span = tracing::info_span!("service", replica = "bg-1");
    let recorder = span.in_scope(|| {
        Recorder::builder()
            .interval(Duration::from_millis(50))
            // Offline labels: no symbolizing batches to slow the snapshots down (in a
            // debug build they would leave too few points for a verdict).
            .symbolize(false)
            .alert_every(Duration::from_millis(250))
            .memory_limit(None)
            .alerts(leakwatch::AlertOptions {
                min_rate: 1.0,
                min_window: Duration::from_secs(1),
                log: false,
                ..Default::default()
            })
            .start()
            .expect("a recorder")
    });
    // Leak until the alert arrives; fail after 30 s (or 2,000 blocks: 128 MiB).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kept = Vec::new();
    let found = loop {
        // The first alert (for keep_forever, or for the vector that holds its blocks).
        let found = EVENTS.lock().unwrap().first().cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline && kept.len() < 2_000,
            "no alert: {:#?}\n{}\n{:?}",
            EVENTS.lock().unwrap(),
            recorder.text(5),
            recorder.stats()
        );
        let n = kept.len();
        keep_forever(&mut kept, n);
        std::thread::sleep(Duration::from_millis(5));
    };
    recorder.stop();
    drop(kept);
    assert_eq!(
        found.thread.as_deref(),
        Some("leakwatch-recorder"),
        "{found:#?}"
    );
    assert_eq!(
        found.fields.get("verdict").map(String::as_str),
        Some("leak")
    );
    assert_eq!(found.spans.len(), 1, "{found:#?}");
    assert_eq!(found.spans[0].0, "service");
    assert_eq!(
        found.spans[0].1.get("replica").map(String::as_str),
        Some("bg-1")
    );
}

fn main() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Collect))
        .expect("the only subscriber");
    run(&[
        (
            "collector_encodes_the_renderers_families_in_the_services_registry",
            collector_encodes_the_renderers_families_in_the_services_registry,
        ),
        (
            "alert_is_a_tracing_event_with_the_sites_fields_inside_the_current_span",
            alert_is_a_tracing_event_with_the_sites_fields_inside_the_current_span,
        ),
        (
            "background_alerts_carry_the_span_current_at_start",
            background_alerts_carry_the_span_current_at_start,
        ),
    ]);
}
