//! The recorder: a background thread that snapshots the tracker every interval into a
//! bounded [`History`], ranks it, raises alerts when a site turns into a leak, and can
//! append every snapshot to a series file for `leakwatch report`.
//!
//! Everything the recorder does runs with tracking suspended on its thread
//! ([`crate::untracked`]), so its own memory (the history, symbols, reports) never shows
//! up as a growing site.

use crate::limit::memory_limit;
use leakwatch_alloc::{SiteStats, Snapshot, Symbolizer, SymbolizerStats};
use leakwatch_report::render::text::{bytes, duration, rate};
use leakwatch_report::{
    History, LabelCache, Report, ReportOptions, SeriesWriter, SiteReport, SymbolTable,
    SymbolizerCost,
};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// No alert before the history spans this long (default 30 s): a cache that is
    /// still filling up looks like a leak until it levels off.
    pub min_window: Duration,
    /// Log each alert through the `log` facade at `warn` level, target `leakwatch`
    /// (default true). `tracing` subscribers receive it through `tracing-log`.
    pub log: bool,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            min_rate: 1024.0,
            max_p_value: 0.001,
            min_window: Duration::from_secs(30),
            log: true,
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
    /// When the series file cannot be opened for appending or the thread cannot be
    /// spawned.
    pub fn start(self) -> std::io::Result<Recorder> {
        crate::untracked(|| self.start_untracked())
    }

    fn start_untracked(self) -> std::io::Result<Recorder> {
        let sink = match &self.file {
            Some(path) => Some(Sink::open(path)?),
            None => None,
        };
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
                symbolizer: Symbolizer::with_capacity(SYMBOLIZER_CACHE),
                labels: LabelCache::new(),
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
        });
        let thread = if self.thread {
            let worker = Arc::clone(&shared);
            let alert_every = self.alert_every;
            Some(
                std::thread::Builder::new()
                    .name("leakwatch-recorder".into())
                    .spawn(move || crate::untracked(|| run(&worker, alert_every)))?,
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
    /// Lines that could not be written to the series file.
    pub file_errors: u64,
    /// The in-process symbolizer's work and memory: batches, its result cache (held
    /// between reports, bounded), the file bytes it mapped and the resident set's growth
    /// during a batch (both transient).
    pub symbolizer: SymbolizerStats,
    /// Return addresses the in-process symbolizer resolved (0 with symbolization off:
    /// see [`RecorderBuilder::symbolize`]).
    pub symbolized_addresses: u64,
}

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

struct Shared {
    state: Mutex<State>,
    settings: Settings,
    stop: Mutex<bool>,
    wake: Condvar,
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
    sink: Option<Sink>,
    /// Sites that alerted, and the checks in a row since they were last a leak.
    alerted: HashMap<String, u32>,
    /// Site ids whose frames are in `symbols` already.
    symbolized: Vec<bool>,
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

/// The series file.
struct Sink {
    path: PathBuf,
    file: File,
    writer: SeriesWriter,
    failed: bool,
}

impl Sink {
    fn open(path: &Path) -> std::io::Result<Sink> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("leakwatch: cannot open {}: {e}", path.display()),
                )
            })?;
        Ok(Sink {
            path: path.to_path_buf(),
            file,
            writer: SeriesWriter::new(),
            failed: false,
        })
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
        crate::untracked(|| {
            let mut options = options.clone();
            if options.rank.limit_bytes.is_none() {
                options.rank.limit_bytes = self.shared.settings.limit;
            }
            self.shared.state.lock().report(&options)
        })
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
        crate::untracked(|| leakwatch_report::render::text::text(&self.report(), top))
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
        crate::untracked(|| leakwatch_report::render::prometheus::prometheus(&self.report(), top))
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

    /// Counters of the recorder's own work.
    pub fn stats(&self) -> RecorderStats {
        let state = self.shared.state.lock();
        let mut stats = state.stats;
        stats.symbolizer = state.symbolizer.stats();
        stats
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
fn run(shared: &Shared, alert_every: Duration) {
    let interval = shared.settings.interval;
    let mut next = Instant::now();
    let mut next_alert = Instant::now() + alert_every;
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
            shared.check_alerts();
            next_alert = now + alert_every;
        }
        next += interval;
        if next < now {
            // Fell behind (a suspended process, a slow snapshot): skip, do not burst.
            next = now + interval;
        }
    }
}

impl Shared {
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
            let report = state.report(&options);
            let long_enough = report.window_seconds >= settings.alerts.min_window.as_secs_f64();
            let mut leaking: HashSet<String> = HashSet::new();
            for site in report.leaks().filter(|_| long_enough) {
                if site.rate.max(site.recent_rate) < settings.alerts.min_rate
                    || site.p_increasing > settings.alerts.max_p_value
                {
                    continue;
                }
                if leaking.insert(site.label.clone()) && !state.alerted.contains_key(&site.label) {
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
            for hook in &settings.hooks {
                hook(site);
            }
        }
        fresh
    }
}

/// Checks in a row without a `leak` verdict after which a site can alert again.
const REARM_CHECKS: u32 = 3;

/// The log line of an alert.
pub(crate) fn alert_line(site: &SiteReport, report: &Report) -> String {
    let mut line = format!(
        "leak: {} grows {} ({} over {}), {} live",
        site.label,
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
    /// Symbolizes the frames of every site of the history not symbolized yet (nothing
    /// with symbolization off).
    fn resolve_symbols(&mut self) {
        if !self.symbolize {
            return;
        }
        let State {
            history,
            symbols,
            symbolized,
            symbolizer,
            stats,
            ..
        } = self;
        stats.symbolized_addresses +=
            symbolize_new_sites(symbols, symbolized, symbolizer, history.sites());
    }

    fn report(&mut self, options: &ReportOptions) -> Report {
        self.resolve_symbols();
        let mut report =
            Report::build_cached(&self.history, &self.symbols, options, &mut self.labels);
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
        if self.symbolize {
            self.stats.symbolized_addresses += symbolize_new_sites(
                &mut self.symbols,
                &mut self.symbolized,
                &mut self.symbolizer,
                &snapshot.sites,
            );
        }
        let Some(sink) = &mut self.sink else { return };
        let line = sink.writer.line(snapshot, &self.symbols, limit);
        if let Err(e) = sink.file.write_all(line.as_bytes()) {
            self.stats.file_errors += 1;
            if !sink.failed {
                sink.failed = true;
                log::error!(target: "leakwatch", "cannot write to {}: {e}", sink.path.display());
            }
            // The writer believes the line landed; start over so the next line that
            // does land describes everything again.
            sink.writer = SeriesWriter::new();
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

/// Addresses the recorder's symbolizer caches: none, the symbol table keeps every result
/// (and each site is symbolized once).
const SYMBOLIZER_CACHE: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;

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
}
