//! The recorder: a background thread that snapshots the tracker every interval into a
//! bounded [`History`], ranks it, raises alerts when a site turns into a leak, and can
//! append every snapshot to a series file for `leakwatch report`.
//!
//! Everything the recorder does runs with tracking suspended on its thread
//! ([`crate::untracked`]), so its own memory (the history, symbols, reports) never shows
//! up as a growing site.

use crate::files::{FileStats, PprofDumps, Rotation, SeriesSink};
use crate::limit::memory_limit;
use leakwatch_alloc::{SiteStats, Snapshot, Symbolizer, SymbolizerStats};
use leakwatch_report::render::prometheus::Family;
use leakwatch_report::render::text::{bytes, duration, rate};
use leakwatch_report::{
    History, LabelCache, RecorderMemory, Report, ReportOptions, SiteReport, SymbolTable,
    SymbolizerCost,
};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// A callback run when a site first turns into a leak.
pub type LeakHook = Arc<dyn Fn(&SiteReport) + Send + Sync>;

/// When an alert is raised: a site turned `leak` and passes these thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertOptions {
    /// Growth below this many bytes per second raises no alert (default 1 KiB/s).
    pub min_rate: f64,
    /// Mann-Kendall p-value of the trend at most this (default 0.001: 99.9% confident
    /// the site grows).
    pub max_p_value: f64,
    /// No alert before the history spans this long (default 60 s). A cache that is
    /// still filling up looks like a leak until it levels off, and the ranking calls a
    /// rise `plateau` once it has been flat 1.2 times as long as it rose: at a window of
    /// `W`, a warm-up fill longer than `W / 2.2` cannot yet be told from a leak. 60 s
    /// keeps fills of up to 27 s at start-up from alerting (30 s, the earlier default,
    /// let a bounded cache filling over 25 s alert at 30 s, in an outside scenario);
    /// leaks that begin later alert as soon as they are ranked one.
    pub min_window: Duration,
    /// Log each alert through the `log` facade at `warn` level, target `leakwatch`
    /// (default true). `tracing` subscribers receive it through `tracing-log`; with the
    /// `tracing` feature, set this to false if yours does, or each alert shows twice.
    pub log: bool,
    /// With the `tracing` feature: each alert is also a `tracing` event at `WARN` level,
    /// target `leakwatch`, with the log line as its message and the site's numbers as
    /// fields, inside the span current where it is raised (see the crate docs,
    /// *Integrations*). Default true; no effect without the feature.
    pub tracing: bool,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            min_rate: 1024.0,
            max_p_value: 0.001,
            min_window: Duration::from_secs(60),
            log: true,
            tracing: true,
        }
    }
}

/// Where the memory limit for time-to-limit estimates comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitSource {
    /// [`memory_limit`]: `LEAKWATCH_MEMORY_LIMIT`, else the cgroup's.
    Detect,
    Fixed(Option<u64>),
}

/// Settings of a [`Recorder`]; start it with [`RecorderBuilder::start`].
pub struct RecorderBuilder {
    interval: Duration,
    budget_bytes: usize,
    max_points: usize,
    file: Option<PathBuf>,
    rotation: Option<Rotation>,
    pprof: Option<PprofDumps>,
    symbol_budget: usize,
    limit: LimitSource,
    report: ReportOptions,
    alerts: AlertOptions,
    alert_every: Duration,
    hooks: Vec<LeakHook>,
    thread: bool,
    symbolize: bool,
}

impl std::fmt::Debug for RecorderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderBuilder")
            .field("interval", &self.interval)
            .field("budget_bytes", &self.budget_bytes)
            .field("max_points", &self.max_points)
            .field("file", &self.file)
            .field("rotation", &self.rotation)
            .field("pprof", &self.pprof)
            .field("symbol_budget", &self.symbol_budget)
            .field("alerts", &self.alerts)
            .field("hooks", &self.hooks.len())
            .field("thread", &self.thread)
            .field("symbolize", &self.symbolize)
            .finish_non_exhaustive()
    }
}

impl Default for RecorderBuilder {
    fn default() -> Self {
        RecorderBuilder {
            interval: Duration::from_secs(1),
            budget_bytes: leakwatch_report::history::DEFAULT_BUDGET_BYTES,
            max_points: leakwatch_report::history::DEFAULT_MAX_POINTS,
            file: None,
            rotation: None,
            pprof: None,
            symbol_budget: DEFAULT_SYMBOL_BUDGET,
            limit: LimitSource::Detect,
            report: ReportOptions::default(),
            alerts: AlertOptions::default(),
            alert_every: Duration::from_secs(10),
            hooks: Vec::new(),
            thread: true,
            symbolize: true,
        }
    }
}

impl RecorderBuilder {
    /// Time between snapshots (default 1 s; at least 10 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Memory for the history's points (default 16 MiB) and their maximum number
    /// (default 3,600). Older points are thinned to stay within both.
    pub fn history_budget(mut self, bytes: usize, max_points: usize) -> Self {
        self.budget_bytes = bytes;
        self.max_points = max_points;
        self
    }

    /// Appends every snapshot as one JSON line to `path` (created if missing), for
    /// `leakwatch report`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Rotates the series file ([`file`](Self::file)) by size: once it holds `max_bytes`,
    /// it is renamed `PATH.1` (an older `PATH.1` to `PATH.2`, and so on), the oldest
    /// beyond `keep` rotated files (at least 1) is deleted, and a new `PATH` starts. Each
    /// file starts with a line describing everything (modules, every site's frames and
    /// counters, their symbols), so each reads alone; `leakwatch report PATH` reads the
    /// set oldest first. On disk: at most `keep + 1` files of `max_bytes` and one line.
    /// Without it the file grows without bound.
    pub fn rotate(mut self, max_bytes: u64, keep: usize) -> Self {
        self.rotation = Some(Rotation {
            max_bytes,
            keep: keep.max(1),
        });
        self
    }

    /// Writes the latest snapshot as a gzipped pprof heap profile to `dir` (created if
    /// missing) every `every` (at least the snapshot interval), as
    /// `heap-20261202T061530.123Z.pb.gz` (UTC, so names sort in time order), keeping the
    /// newest `keep` (at least 1): for processes nobody scrapes. Each is written to a
    /// temporary file and renamed, so a reader never sees half a profile; failures are
    /// counted in [`RecorderStats::files`] and reported.
    pub fn pprof_dir(mut self, dir: impl Into<PathBuf>, every: Duration, keep: usize) -> Self {
        self.pprof = Some(PprofDumps {
            dir: dir.into(),
            every,
            keep: keep.max(1),
        });
        self
    }

    /// Memory for the symbol table (default 64 MiB): once it holds that much, the
    /// frames of new sites are left unsymbolized (shown as addresses), counted in
    /// [`RecorderMemory::unsymbolized_sites`] and warned about in reports.
    pub fn symbol_budget(mut self, bytes: usize) -> Self {
        self.symbol_budget = bytes;
        self
    }

    /// The memory limit for time-to-limit estimates (`None`: no estimate). By default
    /// it is detected: `LEAKWATCH_MEMORY_LIMIT`, else the cgroup's `memory.max`.
    pub fn memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.limit = LimitSource::Fixed(bytes);
        self
    }

    /// How reports are built (ranking thresholds, label rules, top N).
    pub fn report_options(mut self, options: ReportOptions) -> Self {
        self.report = options;
        self
    }

    /// Alert thresholds.
    pub fn alerts(mut self, alerts: AlertOptions) -> Self {
        self.alerts = alerts;
        self
    }

    /// How often the recorder ranks its history to look for new leaks (default 10 s).
    pub fn alert_every(mut self, every: Duration) -> Self {
        self.alert_every = every;
        self
    }

    /// Runs `hook` (on the recorder's thread) when a site first turns into a leak.
    pub fn on_leak(mut self, hook: impl Fn(&SiteReport) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// No background thread: snapshots are added only by [`Recorder::record`] and
    /// [`Recorder::push`], and alerts are checked only by [`Recorder::check_alerts`].
    pub fn manual(mut self) -> Self {
        self.thread = false;
        self
    }

    /// Whether the recorder symbolizes return addresses in the process (default true).
    /// Off, nothing in the process reads debug info or symbol tables: series lines and
    /// pprof profiles carry addresses, modules and build ids only, reports label sites
    /// by module and offset (`model-server+0x1a2b3c #5e2f9a01`), and names come offline
    /// (`leakwatch report FILE --symbols BINARY`, `go tool pprof BINARY heap.pb.gz`).
    /// The environment variable `LEAKWATCH_SYMBOLIZE` (`0`/`off`/`false`/`no` or
    /// `1`/`on`/`true`/`yes`) overrides this, as the allocator's `LEAKWATCH*` variables
    /// override its builder: whoever runs the service decides.
    pub fn symbolize(mut self, symbolize: bool) -> Self {
        self.symbolize = symbolize;
        self
    }

    /// Starts the recorder (and its thread, unless [`manual`](Self::manual)).
    ///
    /// # Errors
    /// When the series file cannot be opened for appending, the pprof directory cannot
    /// be created, or the thread cannot be spawned.
    pub fn start(self) -> std::io::Result<Recorder> {
        crate::untracked(|| self.start_untracked())
    }

    fn start_untracked(self) -> std::io::Result<Recorder> {
        let sink = match &self.file {
            Some(path) => Some(SeriesSink::open(path, self.rotation)?),
            None => None,
        };
        if let Some(pprof) = &self.pprof {
            std::fs::create_dir_all(&pprof.dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("leakwatch: cannot create {}: {e}", pprof.dir.display()),
                )
            })?;
        }
        let limit = match self.limit {
            LimitSource::Detect => memory_limit(),
            LimitSource::Fixed(limit) => limit,
        };
        let mut report = self.report;
        report.rank.limit_bytes = limit;
        let (symbolize, symbolize_warning) =
            symbolize_setting(self.symbolize, std::env::var_os("LEAKWATCH_SYMBOLIZE"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history: History::new(self.budget_bytes, self.max_points),
                symbols: SymbolTable::new(),
                sink,
                alerted: HashMap::new(),
                symbolized: Vec::new(),
                symbol_budget: self.symbol_budget,
                symbols_size: (0, 0),
                symbolizer: Symbolizer::with_capacity(SYMBOLIZER_CACHE),
                labels: LabelCache::new(),
                pprof: self.pprof.clone(),
                pprof_failed: false,
                stats: RecorderStats::default(),
                clock: Clock::new(),
                symbolize,
                symbolize_warning,
            }),
            settings: Settings {
                interval: self.interval,
                limit,
                report,
                alerts: self.alerts,
                hooks: self.hooks,
            },
            stop: Mutex::new(false),
            wake: Condvar::new(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        });
        let thread = if self.thread {
            let worker = Arc::clone(&shared);
            let alert_every = self.alert_every;
            let pprof_every = self.pprof.as_ref().map(|p| p.every);
            Some(
                std::thread::Builder::new()
                    .name("leakwatch-recorder".into())
                    .spawn(move || crate::untracked(|| run(&worker, alert_every, pprof_every)))?,
            )
        } else {
            None
        };
        Ok(Recorder { shared, thread })
    }
}

/// Counters of the recorder's own work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Snapshots added to the history.
    pub snapshots: u64,
    /// Wall-clock time spent taking and storing them (and writing the file).
    pub record_time: Duration,
    /// Rankings done to look for new leaks.
    pub rankings: u64,
    /// Wall-clock time spent on those rankings.
    pub ranking_time: Duration,
    /// Alerts raised.
    pub alerts: u64,
    /// Lines that could not be written to the series file (or rotations that failed).
    pub file_errors: u64,
    /// What the series file and the pprof dumps did (lines, rotations, deleted files,
    /// dumps and their errors).
    pub files: FileStats,
    /// The recorder's own memory, each part with its bound.
    pub memory: RecorderMemory,
    /// The in-process symbolizer's work and memory: batches, its result cache (held
    /// between reports, bounded), the file bytes it mapped and the resident set's growth
    /// during a batch (both transient).
    pub symbolizer: SymbolizerStats,
    /// Return addresses the in-process symbolizer resolved (0 with symbolization off:
    /// see [`RecorderBuilder::symbolize`]).
    pub symbolized_addresses: u64,
}

/// Default memory for the recorder's symbol table: 64 MiB (a symbolized site costs a
/// few hundred bytes to a few KiB; 65,536 sites of 32 distinct frames fit).
pub const DEFAULT_SYMBOL_BUDGET: usize = 64 << 20;

/// Records snapshots over time and reports which sites grow. See the module docs.
///
/// # Examples
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system().enabled();
///
/// let recorder = leakwatch::Recorder::builder()
///     .file("/tmp/leakwatch-series.jsonl")
///     .on_leak(|site| eprintln!("leak: {}", site.label))
///     .start()
///     .expect("start the recorder");
/// // ... serve traffic ...
/// println!("{}", recorder.text(10));
/// ```
pub struct Recorder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("interval", &self.shared.settings.interval)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    settings: Settings,
    stop: Mutex<bool>,
    wake: Condvar,
    /// The span current when the recorder started: the background thread raises its
    /// alerts inside it, so their events carry the service's span fields.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

struct Settings {
    interval: Duration,
    limit: Option<u64>,
    report: ReportOptions,
    alerts: AlertOptions,
    hooks: Vec<LeakHook>,
}

struct State {
    history: History,
    symbols: SymbolTable,
    sink: Option<SeriesSink>,
    /// Sites that alerted, and the checks in a row since they were last a leak.
    alerted: HashMap<String, u32>,
    /// Site ids whose frames are in `symbols` already.
    symbolized: Vec<bool>,
    /// Bytes `symbols` may hold before new sites are left unsymbolized.
    symbol_budget: usize,
    /// `symbols`' length and bytes when last measured.
    symbols_size: (usize, usize),
    /// Periodic pprof dumps, and whether one failed (logged once).
    pprof: Option<PprofDumps>,
    pprof_failed: bool,
    /// Resolves the frames of new sites, a batch per report or series line.
    symbolizer: Symbolizer,
    /// Labels of the sites, kept between reports.
    labels: LabelCache,
    stats: RecorderStats,
    /// The time axis of the recorder's own snapshots.
    clock: Clock,
    /// Whether return addresses are symbolized in the process.
    symbolize: bool,
    /// Why `LEAKWATCH_SYMBOLIZE` was ignored, for reports.
    symbolize_warning: Option<String>,
}

/// The recorder's time axis: the wall clock read once, when the recorder starts, plus a
/// monotonic clock's time since then, in ms since the Unix epoch. A wall clock that steps
/// (NTP, a VM resumed, an operator) would otherwise move snapshots back or forward in
/// time and bend every growth rate; this one never goes back or stands still (each stamp
/// is at least 1 ms after the one before).
#[derive(Debug, Clone)]
struct Clock {
    wall_ms: u64,
    started: Instant,
    last_ms: Option<u64>,
}

impl Clock {
    fn new() -> Clock {
        let wall_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock::starting_at(wall_ms, Instant::now())
    }

    fn starting_at(wall_ms: u64, started: Instant) -> Clock {
        Clock {
            wall_ms,
            started,
            last_ms: None,
        }
    }

    /// The stamp of a snapshot taken at `now`.
    fn stamp(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_millis();
        let ms = self
            .wall_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX));
        let ms = match self.last_ms {
            Some(last) => ms.max(last.saturating_add(1)),
            None => ms,
        };
        self.last_ms = Some(ms);
        ms
    }
}

impl Recorder {
    /// A builder with the defaults: a snapshot every second, a 16 MiB history, alerts
    /// logged, the memory limit detected.
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder::default()
    }

    /// Starts a recorder with the defaults.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start() -> std::io::Result<Recorder> {
        Recorder::builder().start()
    }

    /// Takes a snapshot now and adds it, stamped on the recorder's monotonic time axis
    /// (the wall clock at start plus the time elapsed since, so a stepping wall clock
    /// does not bend the series).
    pub fn record(&self) {
        crate::untracked(|| {
            let snapshot = leakwatch_alloc::snapshot();
            self.shared.add_own(snapshot);
        })
    }

    /// Adds a snapshot taken elsewhere (in time order), with its own timestamp.
    pub fn push(&self, snapshot: &Snapshot) {
        crate::untracked(|| self.shared.add(snapshot))
    }

    /// Ranks the history now.
    pub fn report(&self) -> Report {
        self.report_with(&self.shared.settings.report)
    }

    /// Ranks the history now with other options (e.g. `top`). The recorder's memory
    /// limit applies unless `options` sets one.
    pub fn report_with(&self, options: &ReportOptions) -> Report {
        // A report of the first `top` lines names the sites it may show only.
        self.report_naming(options, options.top)
    }

    /// [`Recorder::report_with`], naming the sites of the first `shown` lines (see
    /// `State::symbolize_shown`; `None`: every site).
    fn report_naming(&self, options: &ReportOptions, shown: Option<usize>) -> Report {
        self.shared.report_naming(options, shown)
    }

    /// Ranks the history and raises alerts for sites that newly turned into leaks (the
    /// background thread does this every `alert_every`). Returns the new leaks.
    pub fn check_alerts(&self) -> Vec<SiteReport> {
        crate::untracked(|| self.shared.check_alerts())
    }

    /// The latest snapshot with every site's frames and counters, and the symbols of
    /// their addresses (for the pprof and flame graph renderers; empty with
    /// symbolization off).
    pub fn latest(&self) -> (Snapshot, SymbolTable) {
        crate::untracked(|| {
            let mut state = self.shared.state.lock();
            state.resolve_symbols();
            (state.history.latest_snapshot(), state.symbols.clone())
        })
    }

    /// The report as a terminal table of the top `top` sites.
    pub fn text(&self, top: usize) -> String {
        crate::untracked(|| leakwatch_report::render::text::text(&self.report_top(top), top))
    }

    /// The report of the first `top` lines (the others counted as omitted), naming only
    /// the sites it may show.
    fn report_top(&self, top: usize) -> Report {
        let mut options = self.shared.settings.report.clone();
        options.top = Some(options.top.map_or(top, |t| t.min(top)));
        self.report_with(&options)
    }

    /// The report as a self-contained HTML page, with a flame graph of live bytes.
    pub fn html(&self) -> String {
        crate::untracked(|| {
            let report = self.report();
            let (snapshot, symbols) = self.latest();
            let svg = leakwatch_report::render::flamegraph::flamegraph(
                &snapshot,
                &symbols,
                "Live heap by stack",
            );
            leakwatch_report::render::html::html(&report, Some(&svg))
        })
    }

    /// The report in the Prometheus text format, with per-site series for the top `top`.
    pub fn prometheus(&self, top: usize) -> String {
        crate::untracked(|| {
            leakwatch_report::render::prometheus::prometheus(&self.shared.metrics_report(top), top)
        })
    }

    /// The metric families [`Recorder::prometheus`] writes, as data (for a metrics
    /// library's collector: `Recorder::prometheus_collector` with the
    /// `prometheus-client` feature).
    pub fn metric_families(&self, top: usize) -> Vec<Family> {
        self.shared.metric_families(top)
    }

    /// A `prometheus-client` [`Collector`](prometheus_client::collector::Collector) of
    /// the families [`Recorder::prometheus`] writes (per-site series for the top `top`),
    /// read from this recorder at every scrape: register it in the service's registry
    /// (see [`PrometheusCollector`](crate::PrometheusCollector)).
    #[cfg(feature = "prometheus-client")]
    pub fn prometheus_collector(&self, top: usize) -> crate::PrometheusCollector {
        crate::PrometheusCollector::new(Arc::downgrade(&self.shared), top)
    }

    /// The latest snapshot as a gzipped pprof heap profile. With symbolization off it
    /// carries addresses, mappings and build ids only: `go tool pprof BINARY FILE` names
    /// its functions from the binary.
    pub fn pprof(&self) -> Vec<u8> {
        crate::untracked(|| {
            let (snapshot, symbols) = self.latest();
            leakwatch_report::render::pprof::pprof(&snapshot, &symbols)
        })
    }

    /// Whether return addresses are symbolized in the process (see
    /// [`RecorderBuilder::symbolize`]).
    pub fn symbolizes(&self) -> bool {
        self.shared.state.lock().symbolize
    }

    /// The memory limit used for time-to-limit estimates.
    pub fn memory_limit(&self) -> Option<u64> {
        self.shared.settings.limit
    }

    /// Points in the history, and the bytes they take.
    pub fn history_size(&self) -> (usize, usize) {
        let state = self.shared.state.lock();
        (state.history.len(), state.history.memory_bytes())
    }

    /// Counters of the recorder's own work, and its memory.
    pub fn stats(&self) -> RecorderStats {
        crate::untracked(|| self.shared.state.lock().stats())
    }

    /// Writes the latest snapshot as a pprof profile to the dump directory now
    /// ([`RecorderBuilder::pprof_dir`]; the background thread does this every `every`),
    /// deleting the oldest beyond `keep`. Returns the file written, or `None` without a
    /// dump directory.
    ///
    /// # Errors
    /// When the profile cannot be written (also counted in [`RecorderStats::files`]).
    pub fn dump_pprof(&self) -> std::io::Result<Option<PathBuf>> {
        crate::untracked(|| self.shared.dump_pprof())
    }

    /// Stops the background thread (after its current snapshot) and closes the file.
    pub fn stop(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The background thread: a snapshot every interval (on a fixed schedule, so the series
/// stays evenly spaced), alerts every `alert_every`.
fn run(shared: &Shared, alert_every: Duration, pprof_every: Option<Duration>) {
    let interval = shared.settings.interval;
    let mut next = Instant::now();
    let mut next_alert = Instant::now() + alert_every;
    let mut next_pprof = pprof_every.map(|every| Instant::now() + every.max(interval));
    loop {
        {
            let mut stop = shared.stop.lock();
            while !*stop {
                if shared.wake.wait_until(&mut stop, next).timed_out() {
                    break;
                }
            }
            if *stop {
                return;
            }
        }
        let snapshot = leakwatch_alloc::snapshot();
        shared.add_own(snapshot);
        let now = Instant::now();
        if now >= next_alert {
            #[cfg(feature = "tracing")]
            shared.span.in_scope(|| shared.check_alerts());
            #[cfg(not(feature = "tracing"))]
            shared.check_alerts();
            next_alert = now + alert_every;
        }
        if let (Some(due), Some(every)) = (next_pprof, pprof_every) {
            if now >= due {
                // Errors are counted and reported by `dump_pprof`.
                let _ = shared.dump_pprof();
                next_pprof = Some(now + every.max(interval));
            }
        }
        next += interval;
        if next < now {
            // Fell behind (a suspended process, a slow snapshot): skip, do not burst.
            next = now + interval;
        }
    }
}

impl Shared {
    /// [`Recorder::report_with`], naming the sites of the first `shown` lines.
    fn report_naming(&self, options: &ReportOptions, shown: Option<usize>) -> Report {
        crate::untracked(|| {
            let mut options = options.clone();
            if options.rank.limit_bytes.is_none() {
                options.rank.limit_bytes = self.settings.limit;
            }
            self.state.lock().report(&options, shown)
        })
    }

    /// The report the metrics render: every line (the families count sites by verdict),
    /// with only the first `top` (those given series of their own) named.
    fn metrics_report(&self, top: usize) -> Report {
        self.report_naming(&self.settings.report, Some(top))
    }

    /// [`Recorder::metric_families`].
    pub(crate) fn metric_families(&self, top: usize) -> Vec<Family> {
        crate::untracked(|| {
            leakwatch_report::render::prometheus::families(&self.metrics_report(top), top)
        })
    }

    /// Adds a snapshot of the recorder's own, restamped on its monotonic time axis.
    fn add_own(&self, mut snapshot: Snapshot) {
        let started = Instant::now();
        let mut state = self.state.lock();
        // Stamped under the lock, so stamps follow the order points are added in.
        snapshot.timestamp_ms = state.clock.stamp(started);
        self.add_locked(&mut state, &snapshot, started);
    }

    /// Adds a snapshot as it is.
    fn add(&self, snapshot: &Snapshot) {
        let started = Instant::now();
        let mut state = self.state.lock();
        self.add_locked(&mut state, snapshot, started);
    }

    fn add_locked(&self, state: &mut State, snapshot: &Snapshot, started: Instant) {
        state.history.push(snapshot);
        if state.sink.is_some() {
            state.write_line(snapshot, self.settings.limit);
        }
        state.stats.snapshots += 1;
        state.stats.record_time += started.elapsed();
    }

    /// Writes a pprof dump of the latest snapshot (see [`Recorder::dump_pprof`]).
    fn dump_pprof(&self) -> std::io::Result<Option<PathBuf>> {
        let (dumps, ms, profile) = {
            let mut state = self.state.lock();
            let Some(dumps) = state.pprof.clone() else {
                return Ok(None);
            };
            state.resolve_symbols();
            let snapshot = state.history.latest_snapshot();
            let ms = if state.history.is_empty() {
                state.clock.stamp(Instant::now())
            } else {
                snapshot.timestamp_ms
            };
            let profile = leakwatch_report::render::pprof::pprof(&snapshot, &state.symbols);
            (dumps, ms, profile)
        };
        // The file is written outside the lock; only the counts are taken under it.
        let written = dumps.write(ms, &profile);
        let mut state = self.state.lock();
        match written {
            Ok((path, deleted)) => {
                state.stats.files.pprof_dumps += 1;
                state.stats.files.pprof_deleted += deleted;
                Ok(Some(path))
            }
            Err(e) => {
                state.stats.files.pprof_errors += 1;
                if !state.pprof_failed {
                    state.pprof_failed = true;
                    log::error!(target: "leakwatch", "pprof dump: {e}");
                }
                Err(e)
            }
        }
    }

    fn check_alerts(&self) -> Vec<SiteReport> {
        let started = Instant::now();
        let settings = &self.settings;
        let mut options = settings.report.clone();
        options.detail = options.detail.max(5);
        let mut fresh = Vec::new();
        let report = {
            let mut state = self.state.lock();
            // The report ranks the whole history and recent windows (the options'
            // `recent_windows`): slow leaks stand out over hours, a leak that starts
            // after hours of uptime in the last minutes.
            // Alerts are about leaks, and every line that is not `stable` is named.
            let report = state.report(&options, Some(options.top.unwrap_or(options.detail)));
            let long_enough = report.window_seconds >= settings.alerts.min_window.as_secs_f64();
            let mut leaking: HashSet<String> = HashSet::new();
            for site in report.leaks().filter(|_| long_enough) {
                if site.rate.max(site.recent_rate) < settings.alerts.min_rate
                    || site.p_increasing > settings.alerts.max_p_value
                {
                    continue;
                }
                if leaking.insert(site.tagged_label())
                    && !state.alerted.contains_key(&site.tagged_label())
                {
                    fresh.push(site.clone());
                }
            }
            // A site alerts when it turns into a leak. It can alert again only after it
            // has not been one for `REARM_CHECKS` checks in a row (no alert storm from a
            // verdict that flickers; no false alarm silencing a later real leak).
            for label in &leaking {
                state.alerted.insert(label.clone(), 0);
            }
            state.alerted.retain(|label, quiet| {
                if !leaking.contains(label) {
                    *quiet += 1;
                }
                *quiet < REARM_CHECKS
            });
            state.stats.rankings += 1;
            state.stats.alerts += fresh.len() as u64;
            state.stats.ranking_time += started.elapsed();
            report
        };
        // Outside the lock: hooks may call back into the recorder.
        for site in &fresh {
            if settings.alerts.log {
                log::warn!(target: "leakwatch", "{}", alert_line(site, &report));
            }
            #[cfg(feature = "tracing")]
            if settings.alerts.tracing {
                alert_event(site, &report);
            }
            for hook in &settings.hooks {
                hook(site);
            }
        }
        fresh
    }
}

/// The `tracing` event of an alert: the log line as its message, the site's numbers as
/// fields (in the span current here).
#[cfg(feature = "tracing")]
fn alert_event(site: &SiteReport, report: &Report) {
    let window_seconds = if site.verdict_window_seconds > 0.0 {
        site.verdict_window_seconds
    } else {
        report.window_seconds
    };
    tracing::warn!(
        target: "leakwatch",
        site = %site.tagged_label(),
        function = site.function.as_deref(),
        file = site.file.as_deref(),
        line = site.line,
        verdict = site.verdict.as_str(),
        live_bytes = site.live_bytes,
        growth_bytes = site.growth,
        window_seconds,
        rate_bytes_per_second = leakwatch_report::render::text::current_rate(site),
        seconds_to_limit = site.seconds_to_limit,
        "{}",
        alert_line(site, report)
    );
}

/// Checks in a row without a `leak` verdict after which a site can alert again.
const REARM_CHECKS: u32 = 3;

/// The log line of an alert.
pub(crate) fn alert_line(site: &SiteReport, report: &Report) -> String {
    let mut line = format!(
        "leak: {} grows {} ({} over {}), {} live",
        site.tagged_label(),
        rate(leakwatch_report::render::text::current_rate(site)),
        bytes(site.growth),
        duration(if site.verdict_window_seconds > 0.0 {
            site.verdict_window_seconds
        } else {
            report.window_seconds
        }),
        bytes(site.live_bytes as f64),
    );
    if let Some(seconds) = site.seconds_to_limit {
        line.push_str(&format!(
            "; at this rate the process reaches its memory limit in {}",
            duration(seconds)
        ));
    }
    line
}

impl State {
    /// Whether the symbol table is below its budget, so new sites may be symbolized
    /// (measured again whenever it has grown).
    fn symbols_fit(&mut self) -> bool {
        if self.symbols_size.0 != self.symbols.len() {
            self.symbols_size = (self.symbols.len(), self.symbols.memory_bytes());
        }
        self.symbols_size.1 < self.symbol_budget
    }

    /// The recorder's memory, part by part.
    fn memory(&mut self) -> RecorderMemory {
        let fits = self.symbols_fit();
        let mut memory = RecorderMemory::default();
        memory.history_bytes = self.history.memory_bytes() as u64;
        memory.history_budget_bytes = self.history.budget_bytes() as u64;
        memory.history_thinned_points = self.history.thinned();
        memory.sites_bytes = (self.history.sites_memory_bytes()
            + self.symbolized.capacity()
            + self.alerted.capacity() * std::mem::size_of::<(String, u32)>()
            + self.alerted.keys().map(String::capacity).sum::<usize>())
            as u64;
        memory.sites = self.history.site_count() as u64;
        memory.symbols_bytes = self.symbols_size.1 as u64;
        memory.symbols_budget_bytes = self.symbol_budget as u64;
        // Sites not symbolized yet are only left so while the table is full (otherwise
        // they are symbolized when next written or reported).
        if !fits {
            memory.unsymbolized_sites = self
                .history
                .sites()
                .filter(|site| {
                    !self
                        .symbolized
                        .get(site.id as usize)
                        .copied()
                        .unwrap_or(false)
                })
                .count() as u64;
        }
        memory.labels_bytes = self.labels.memory_bytes() as u64;
        memory.files_bytes = self.sink.as_ref().map_or(0, |s| s.memory_bytes() as u64);
        memory.summed()
    }

    fn stats(&mut self) -> RecorderStats {
        let mut stats = self.stats;
        stats.memory = self.memory();
        stats.symbolizer = self.symbolizer.stats();
        if let Some(sink) = &self.sink {
            let pprof = stats.files;
            stats.files = FileStats {
                pprof_dumps: pprof.pprof_dumps,
                pprof_deleted: pprof.pprof_deleted,
                pprof_errors: pprof.pprof_errors,
                ..sink.stats
            };
        }
        stats
    }

    /// Symbolizes the frames of every site of the history not symbolized yet (nothing
    /// with symbolization off, or once the symbol table is full).
    fn resolve_symbols(&mut self) {
        if !self.symbolize || !self.symbols_fit() {
            return;
        }
        self.symbolize_sites(|_| true);
    }

    /// Symbolizes the sites of the history that `wanted` picks and that are not
    /// symbolized yet, counting the addresses; returns how many it resolved.
    fn symbolize_sites(&mut self, wanted: impl Fn(&SiteStats) -> bool) -> u64 {
        let State {
            history,
            symbols,
            symbolized,
            symbolizer,
            stats,
            ..
        } = self;
        let sites = history.sites().filter(|site| wanted(site));
        let added = symbolize_new_sites(symbols, symbolized, symbolizer, sites);
        stats.symbolized_addresses += added;
        added
    }

    /// Builds the report, first naming the sites of its first `shown` lines (see
    /// [`State::symbolize_shown`]), or every site (`None`).
    fn build(&mut self, options: &ReportOptions, shown: Option<usize>) -> Report {
        match shown {
            Some(top) => self.symbolize_shown(options, top),
            None => self.resolve_symbols(),
        }
        self.mark_unnamed();
        Report::build_cached(&self.history, &self.symbols, options, &mut self.labels)
    }

    /// Tells the label cache which sites are not symbolized yet (labelled by module and
    /// offset until they are, not by the frames they share with named sites).
    fn mark_unnamed(&mut self) {
        let symbolized = &self.symbolized;
        let unnamed = self
            .history
            .sites()
            .filter(|site| {
                self.symbolize && !symbolized.get(site.id as usize).copied().unwrap_or(false)
            })
            .map(|site| site.id);
        self.labels.set_unnamed(unnamed);
    }

    /// Symbolizes the sites of the lines a report of the first `top` lines may show,
    /// not the whole history: a site is named when, ranked with what is named so far
    /// (the rest labelled by module and offset, a line of its own per stack), it is on
    /// one of the first `4 x top` lines (at least [`SHOWN_MARGIN`]) or on any line that
    /// is not `stable`. Naming merges lines, which moves others up: this repeats while
    /// those lines hold unnamed sites, at most [`NAMING_ROUNDS`] times. Sites named
    /// once stay named (the symbol table keeps them).
    fn symbolize_shown(&mut self, options: &ReportOptions, top: usize) {
        if !self.symbolize {
            return;
        }
        let mut ranking = options.clone();
        ranking.top = None;
        ranking.detail = 0;
        let shown = top.saturating_mul(4).max(SHOWN_MARGIN);
        for _ in 0..NAMING_ROUNDS {
            if !self.symbols_fit() {
                return;
            }
            self.mark_unnamed();
            let report =
                Report::build_cached(&self.history, &self.symbols, &ranking, &mut self.labels);
            let wanted: HashSet<u32> = report
                .sites
                .iter()
                .enumerate()
                .filter(|(i, line)| *i < shown || line.verdict != leakwatch_report::Verdict::Stable)
                .flat_map(|(_, line)| line.site_ids.iter().copied())
                .collect();
            if self.symbolize_sites(|site| wanted.contains(&site.id)) == 0 {
                return;
            }
        }
    }

    /// The report with the recorder's warnings and memory, naming the sites of its
    /// first `shown` lines (`None`: every site).
    fn report(&mut self, options: &ReportOptions, shown: Option<usize>) -> Report {
        let mut report = self.build(options, shown);
        if self.symbolize {
            report.symbolizer = Some(symbolizer_cost(&self.symbolizer.stats()));
        }
        if let Some(sink) = &self.sink {
            if sink.failed {
                report.warnings.push(format!(
                    "{} line(s) could not be written to {}",
                    self.stats.file_errors,
                    sink.path.display()
                ));
            }
        }
        if let Some(warning) = &self.symbolize_warning {
            report.warnings.push(warning.clone());
        }
        if let Some(pprof) = &self.pprof {
            if self.stats.files.pprof_errors > 0 {
                report.warnings.push(format!(
                    "{} pprof dump(s) could not be written to {}",
                    self.stats.files.pprof_errors,
                    pprof.dir.display()
                ));
            }
        }
        let memory = self.memory();
        report.warnings.extend(memory.warnings());
        report.recorder = Some(memory);
        if self.history.thinned() > 0 {
            report.warnings.push(format!(
                "older history is thinned to fit its memory budget ({} points dropped)",
                self.history.thinned()
            ));
        }
        report
    }

    fn write_line(&mut self, snapshot: &Snapshot, limit: Option<u64>) {
        // Symbols of sites the file has not described yet must be known first (with
        // symbolization off the line carries addresses and modules only).
        if self.symbolize && self.symbols_fit() {
            self.stats.symbolized_addresses += symbolize_new_sites(
                &mut self.symbols,
                &mut self.symbolized,
                &mut self.symbolizer,
                &snapshot.sites,
            );
        }
        let State {
            history,
            symbols,
            sink,
            stats,
            ..
        } = self;
        let Some(sink) = sink else { return };
        // A file's first line (and the one after a failed write) describes every site
        // the history holds, from its latest counters.
        let written = sink.append(snapshot, || history.latest_snapshot(), symbols, limit);
        if let Err(e) = written {
            stats.file_errors += 1;
            if !sink.failed {
                sink.failed = true;
                log::error!(target: "leakwatch", "cannot write to {}: {e}", sink.path.display());
            }
        }
    }
}

/// Adds the symbols of the frames of `sites` whose ids `symbolized` does not mark yet,
/// and marks them: each site's frames are looked up once in the life of the recorder, all
/// of a call's in one batch. Returns the number of addresses resolved.
fn symbolize_new_sites<'a>(
    symbols: &mut SymbolTable,
    symbolized: &mut Vec<bool>,
    symbolizer: &mut Symbolizer,
    sites: impl IntoIterator<Item = &'a SiteStats>,
) -> u64 {
    let mut fresh = Vec::new();
    for site in sites {
        let id = site.id as usize;
        if id >= symbolized.len() {
            symbolized.resize(id + 1, false);
        }
        if symbolized[id] {
            continue;
        }
        symbolized[id] = true;
        fresh.push(site.frames.as_slice());
    }
    crate::symbols::symbolize_missing(symbols, symbolizer, fresh)
}

/// Whether the recorder symbolizes: the builder's choice unless `LEAKWATCH_SYMBOLIZE`
/// (`env`) is set to a switch, and a warning for a value that is not one.
fn symbolize_setting(builder: bool, env: Option<std::ffi::OsString>) -> (bool, Option<String>) {
    let Some(value) = env else {
        return (builder, None);
    };
    match value.to_str().map(str::trim) {
        Some("0" | "off" | "false" | "no") => (false, None),
        Some("1" | "on" | "true" | "yes") => (true, None),
        _ => (
            builder,
            Some(format!(
                "LEAKWATCH_SYMBOLIZE={value:?} is not 0/off/false/no or 1/on/true/yes: ignored (symbolization {})",
                if builder { "on" } else { "off" }
            )),
        ),
    }
}

/// The report's view of the symbolizer's counters.
fn symbolizer_cost(stats: &SymbolizerStats) -> SymbolizerCost {
    let mut cost = SymbolizerCost::default();
    cost.batches = stats.batches;
    cost.resolved = stats.resolved;
    cost.cached = stats.cached as u64;
    cost.cache_bytes = stats.cache_bytes as u64;
    cost.evictions = stats.evictions;
    cost.peak_mapped_bytes = stats.peak_mapped_bytes;
    cost.peak_batch_rss_bytes = stats.peak_batch_rss_bytes;
    cost
}

/// A report of the first `top` lines names the sites of at least this many lines (see
/// [`State::symbolize_shown`]).
const SHOWN_MARGIN: usize = 64;

/// Rounds of ranking and naming a report of the first `top` lines takes at most.
const NAMING_ROUNDS: usize = 3;

/// Addresses the recorder's symbolizer caches: none, the symbol table keeps every result
/// (and each site is symbolized once).
const SYMBOLIZER_CACHE: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_testsupport::temp_dir;

    #[test]
    fn stamps_follow_the_monotonic_clock_from_the_wall_clock_at_start() {
        let t0 = Instant::now();
        let mut clock = Clock::starting_at(1_700_000_000_000, t0);
        assert_eq!(clock.stamp(t0), 1_700_000_000_000);
        assert_eq!(
            clock.stamp(t0 + Duration::from_millis(1500)),
            1_700_000_001_500
        );
        // Taken in the same millisecond, or (as a racing caller could) a moment earlier:
        // still later than the stamp before.
        assert_eq!(
            clock.stamp(t0 + Duration::from_millis(1500)),
            1_700_000_001_501
        );
        assert_eq!(clock.stamp(t0), 1_700_000_001_502);
        assert_eq!(clock.stamp(t0 + Duration::from_secs(10)), 1_700_000_010_000);
    }

    #[inline(never)]
    fn a_site_of_this_test() -> u64 {
        std::hint::black_box(a_site_of_this_test as *const () as usize as u64 + 1)
    }

    #[test]
    fn reports_carry_the_symbolizers_cost_in_stats_and_the_tracker_line() {
        let recorder = Recorder::builder().manual().start().expect("recorder");
        assert_eq!(recorder.stats().symbolizer.batches, 0);
        let mut site = SiteStats::default();
        site.id = 1;
        site.frames = vec![a_site_of_this_test()];
        site.live_bytes = 1 << 20;
        let mut snapshot = Snapshot::default();
        snapshot.timestamp_ms = 1_000;
        snapshot.sites = vec![site];
        recorder.push(&snapshot);
        let report = recorder.report();
        let stats = recorder.stats().symbolizer;
        assert_eq!((stats.batches, stats.resolved), (1, 1), "{stats:?}");
        assert!(stats.files_mapped >= 1, "{stats:?}");
        assert!(stats.peak_mapped_bytes > 0, "{stats:?}");
        let cost = report
            .symbolizer
            .expect("the report carries the symbolizer's cost");
        assert_eq!(cost.resolved, 1);
        assert_eq!(cost.peak_mapped_bytes, stats.peak_mapped_bytes);
        assert!(
            report.sites[0].label.contains("a_site_of_this_test"),
            "{:?}",
            report.sites[0].label
        );
        let text = leakwatch_report::render::text::text(&report, 10);
        assert!(
            text.contains("symbolizer:") && text.contains("mapped"),
            "{text}"
        );
        // The site is symbolized once: a second report runs no batch.
        recorder.report();
        assert_eq!(recorder.stats().symbolizer.batches, 1);
    }

    #[test]
    fn leakwatch_symbolize_overrides_the_builder_and_a_bad_value_is_ignored_with_a_warning() {
        let env = |v: &str| Some(std::ffi::OsString::from(v));
        assert_eq!(symbolize_setting(true, None), (true, None));
        assert_eq!(symbolize_setting(false, None), (false, None));
        for off in ["0", "off", "false", "no"] {
            assert_eq!(symbolize_setting(true, env(off)), (false, None), "{off}");
        }
        for on in ["1", "on", "true", "yes"] {
            assert_eq!(symbolize_setting(false, env(on)), (true, None), "{on}");
        }
        let (symbolize, warning) = symbolize_setting(false, env("maybe"));
        assert!(!symbolize);
        assert_eq!(
            warning.as_deref(),
            Some(
                "LEAKWATCH_SYMBOLIZE=\"maybe\" is not 0/off/false/no or 1/on/true/yes: ignored (symbolization off)"
            )
        );
    }

    #[test]
    fn recorded_snapshots_are_stamped_in_increasing_order_near_the_wall_clock() {
        let recorder = Recorder::builder().manual().start().expect("recorder");
        let wall = |d: std::time::Duration| d.as_millis() as u64;
        let before = wall(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let mut stamps = Vec::new();
        for _ in 0..5 {
            recorder.record();
            stamps.push(recorder.latest().0.timestamp_ms);
        }
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        // The axis starts at the wall clock of the start (give or take a second).
        assert!(stamps[0].abs_diff(before) < 1000, "{stamps:?} vs {before}");
        assert_eq!(recorder.history_size().0, 5);
        assert!(recorder.report().clock.is_none());
    }

    /// A snapshot at second `t` with `sites` sites, site `k` holding `k * t` bytes.
    fn synthetic(t: u64, sites: u32) -> Snapshot {
        let mut s = Snapshot::default();
        s.pid = 4242;
        s.timestamp_ms = 1_700_000_000_000 + t * 1000;
        s.epoch = t + 1;
        s.sample_rate = 1;
        s.mode = leakwatch_alloc::Mode::Exact;
        for id in 0..sites {
            let mut site = SiteStats::default();
            site.id = id;
            site.frames = vec![0x10_0000 + u64::from(id) * 16, 0x20_0000];
            site.alloc_bytes = u64::from(id) * t;
            site.live_bytes = site.alloc_bytes;
            site.alloc_blocks = t as f64;
            site.live_blocks = t as f64;
            s.sites.push(site);
        }
        s
    }

    /// 300 steady sites and, last, one that leaks 4 KiB a second, over 30 s; each with an
    /// address of its own (nameless) called from a function of this test.
    fn steady_sites_and_a_leak() -> Recorder {
        let recorder = Recorder::builder()
            .manual()
            .memory_limit(None)
            .start()
            .unwrap();
        let caller = a_site_of_this_test();
        for t in 0..30u64 {
            let mut snapshot = synthetic(t, 0);
            for id in 0..=SITES {
                let mut site = SiteStats::default();
                site.id = id;
                site.frames = vec![0x10_0000 + u64::from(id) * 16, caller];
                site.live_bytes = if id == LEAK {
                    4096 * (t + 1)
                } else {
                    1000 + u64::from(id)
                };
                site.alloc_bytes = site.live_bytes;
                site.alloc_blocks = 1.0;
                site.live_blocks = 1.0;
                snapshot.sites.push(site);
            }
            recorder.push(&snapshot);
        }
        recorder
    }

    const SITES: u32 = 300;
    const LEAK: u32 = SITES;

    #[test]
    fn a_report_of_the_top_lines_names_only_the_sites_it_may_show() {
        let recorder = steady_sites_and_a_leak();
        let options = ReportOptions {
            top: Some(5),
            ..ReportOptions::default()
        };
        let report = recorder.report_with(&options);
        let named = recorder.stats().symbolized_addresses;
        // The first 4 x 5 lines, at least SHOWN_MARGIN (the leak among them): their own
        // address each, and the caller they share. Named, they merge into one line (the
        // caller names them), which moves SHOWN_MARGIN - 1 unnamed lines up: named in
        // the next round, and again in the last.
        assert_eq!(NAMING_ROUNDS, 3);
        let margin = SHOWN_MARGIN as u64;
        assert_eq!(named, 1 + margin + 2 * (margin - 1), "{named}");
        let merged = (margin + 2 * (margin - 1)) as usize;
        assert_eq!(report.sites.len(), 5);
        let first = &report.sites[0];
        assert!(
            first.label.contains("a_site_of_this_test"),
            "{}",
            first.label
        );
        assert_eq!(first.site_ids.len(), merged);
        assert!(first.site_ids.contains(&LEAK));
        assert_eq!(first.verdict, leakwatch_report::Verdict::Leak);
        // The sites not named yet are not named by the caller they share with named
        // ones (which would merge them all into that line): each is a line of its own,
        // by module and offset, and the report says how many of those it shows.
        for line in &report.sites[1..] {
            assert_eq!(line.site_ids.len(), 1);
            assert!(line.label.contains('#'), "{}", line.label);
        }
        let offline = report
            .warnings
            .iter()
            .find(|w| w.contains("module and offset"))
            .expect("the unnamed lines shown are said");
        assert!(
            offline.starts_with(&format!("4 of {} sites", merged + 4)),
            "{offline}"
        );
        // The Prometheus families rank every line and name only the ones they show.
        let other = steady_sites_and_a_leak();
        let metrics = other.prometheus(5);
        let stable = SITES as usize + 1 - merged;
        assert!(
            metrics.contains(&format!(
                "leakwatch_report_sites{{verdict=\"stable\"}} {stable}"
            )),
            "{metrics}"
        );
        assert_eq!(other.stats().symbolized_addresses, named);
        // A report of every line names every site: by the caller, the first frame with
        // a name, so all of them are one line.
        let all = recorder.report();
        assert_eq!(all.sites.len(), 1, "{:?}", all.sites);
        assert_eq!(all.sites[0].site_ids.len(), SITES as usize + 1);
        assert_eq!(
            recorder.stats().symbolized_addresses,
            u64::from(SITES) + 2,
            "each site's own address and the shared one"
        );
        assert!(
            !all.warnings.iter().any(|w| w.contains("module and offset")),
            "{:?}",
            all.warnings
        );
    }

    #[test]
    fn a_rotating_recorder_keeps_its_files_and_counts_what_it_deleted() {
        let dir = temp_dir("recorder-rotate");
        let path = dir.join("series.jsonl");
        let recorder = Recorder::builder()
            .manual()
            .memory_limit(None)
            .file(&path)
            .rotate(4 << 10, 2)
            .start()
            .unwrap();
        for t in 0..200 {
            recorder.push(&synthetic(t, 5));
        }
        let stats = recorder.stats();
        assert_eq!(stats.file_errors, 0);
        assert_eq!(stats.files.lines, 200);
        assert!(stats.files.rotations >= 3, "{:?}", stats.files);
        assert_eq!(stats.files.deleted_files, stats.files.rotations - 2);
        assert_eq!(stats.files.bytes, std::fs::metadata(&path).unwrap().len());
        let set = leakwatch_report::recording::rotated_set(&path);
        assert_eq!(set.len(), 3, "{set:?}");
        let files = set
            .iter()
            .map(|p| {
                let f = std::fs::File::open(p).unwrap();
                (p.display().to_string(), std::io::BufReader::new(f))
            })
            .collect();
        let recording = leakwatch_report::Recording::read_files(files, History::default()).unwrap();
        assert!(recording.lines < 200);
        assert_eq!(
            recording.history.latest_snapshot().sites,
            recorder.latest().0.sites
        );
    }

    #[test]
    fn the_recorders_memory_is_reported_part_by_part_with_its_bounds() {
        let dir = temp_dir("recorder-memory");
        let recorder = Recorder::builder()
            .manual()
            .memory_limit(None)
            .history_budget(1 << 20, 3600)
            .file(dir.join("series.jsonl"))
            .start()
            .unwrap();
        for t in 0..100 {
            recorder.push(&synthetic(t, 300));
        }
        let report = recorder.report();
        let memory = recorder.stats().memory;
        assert_eq!(report.recorder, Some(memory));
        assert_eq!(memory.sites, 300);
        assert_eq!(memory.history_budget_bytes, 1 << 20);
        assert_eq!(memory.symbols_budget_bytes, DEFAULT_SYMBOL_BUDGET as u64);
        for (part, bytes) in [
            ("history", memory.history_bytes),
            ("sites", memory.sites_bytes),
            ("symbols", memory.symbols_bytes),
            ("labels", memory.labels_bytes),
            ("files", memory.files_bytes),
        ] {
            assert!(bytes > 0, "{part}: {memory:?}");
        }
        assert_eq!(
            memory.total_bytes,
            memory.history_bytes
                + memory.sites_bytes
                + memory.symbols_bytes
                + memory.labels_bytes
                + memory.files_bytes
        );
        // Within the points' budget, however long it runs.
        assert!(memory.history_bytes <= 1 << 20, "{memory:?}");
        assert_eq!(memory.unsymbolized_sites, 0);
        let text = leakwatch_report::render::text::text(&report, 5);
        assert!(text.contains("; recorder: "), "{text}");
        let json = report.to_json();
        let back = Report::from_json("r.json", &json).unwrap();
        assert_eq!(back.recorder, Some(memory));
        assert!(
            recorder
                .prometheus(5)
                .contains("leakwatch_recorder_memory_bytes{part=\"symbols\"}")
        );
    }

    #[test]
    fn a_full_symbol_table_leaves_new_sites_unsymbolized_and_says_so() {
        let recorder = Recorder::builder()
            .manual()
            .memory_limit(None)
            .symbol_budget(1)
            .start()
            .unwrap();
        // The first sites are symbolized (the table was empty), then it is full.
        recorder.push(&synthetic(0, 10));
        let _ = recorder.report();
        recorder.push(&synthetic(1, 30));
        let report = recorder.report();
        let memory = recorder.stats().memory;
        assert_eq!(memory.unsymbolized_sites, 20, "{memory:?}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with("20 site(s) left unsymbolized")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn pprof_dumps_are_written_periodically_and_their_failures_reported() {
        let scratch = temp_dir("recorder-pprof");
        let dir = scratch.join("dumps");
        let recorder = Recorder::builder()
            .interval(Duration::from_millis(10))
            .memory_limit(None)
            .pprof_dir(&dir, Duration::from_millis(20), 2)
            .start()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while recorder.stats().files.pprof_dumps < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(recorder.stats().files.pprof_dumps >= 4);
        recorder.stop();
        let names = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let periodic = names(&dir);
        assert_eq!(periodic.len(), 2, "{periodic:?}");
        assert!(
            periodic
                .iter()
                .all(|n| n.starts_with("heap-") && n.ends_with(".pb.gz"))
        );

        // On demand: each dump counted, the oldest deleted beyond `keep`; a dump named
        // earlier than those there (these snapshots are from 2023) is kept all the same.
        let recorder = Recorder::builder()
            .manual()
            .memory_limit(None)
            .pprof_dir(&dir, Duration::from_secs(60), 2)
            .start()
            .unwrap();
        let mut written = Vec::new();
        for t in 0..3 {
            recorder.push(&synthetic(1_000 + t, 3));
            written.push(recorder.dump_pprof().unwrap().unwrap());
        }
        let stats = recorder.stats().files;
        assert_eq!(
            (stats.pprof_dumps, stats.pprof_deleted),
            (3, 3),
            "{stats:?}"
        );
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names(&dir), [name(&written[2]), periodic[1].clone()]);
        let profile = std::fs::read(&written[2]).unwrap();
        assert_eq!(profile, recorder.pprof(), "the latest snapshot's profile");

        // The directory replaced by a file: the dump fails, is counted and reported.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, "not a directory").unwrap();
        let before = recorder.stats().files.pprof_errors;
        assert!(recorder.dump_pprof().is_err());
        assert!(recorder.stats().files.pprof_errors > before);
        let report = recorder.report();
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("pprof dump(s) could not be written to")),
            "{:?}",
            report.warnings
        );
        recorder.stop();
    }
}
