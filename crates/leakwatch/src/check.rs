//! Leak checks for `cargo test`: run a piece of code many times and fail, naming the
//! call site, when its live memory grows with the number of runs.
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();
//!
//! fn handle_request(log: &mut Vec<String>, n: u32) -> usize {
//!     let reply = format!("hello {n}");
//!     log.truncate(10); // bounded: keeps the last ten
//!     log.push(reply.clone());
//!     reply.len()
//! }
//!
//! let mut log = Vec::new();
//! let mut n = 0;
//! leakwatch::check(|| {
//!     n += 1;
//!     handle_request(&mut log, n)
//! })
//! .warmup(20) // the bounded log fills up during warm-up
//! .iterations(100)
//! .assert_no_leaks();
//! ```
//!
//! How it works: the check opens a [`Scope`]: every allocation the checked code makes on
//! this thread (and on threads it starts with [`spawn`] or [`spawn_scoped`]) is tracked
//! exactly, whatever the process-wide mode, and apart from every other thread, so checks
//! in tests that run at the same time do not see each other. After the warm-up runs
//! (which absorb one-time initialisation: lazy statics, first-call caches, pools), it
//! records each call site's live bytes after every run. A site leaks when its live
//! bytes grew over the measured runs by more than [`Check::max_growth_per_run`] per run,
//! still grew in the second half of them, and grew in at least two separate runs (a
//! one-time step is not a leak; a cache that fills up during the measured runs stops
//! growing in the second half).
//!
//! Async code: [`check_async`] checks a future, run by the executor's own `block_on`
//! once per run (`leakwatch::check_async(|| handle(request()), |f| runtime.block_on(f))`),
//! with the same settings and assertions. Whichever thread polls the future is in the
//! check's scope for the duration of each poll; tasks the checked code spawns count
//! when it spawns them through [`inherit`] (`tokio::spawn(leakwatch::check::inherit(task))`),
//! and a run waits for those to finish. Tasks spawned without it are not tracked.

mod async_check;

pub use async_check::{AsyncCode, DEFAULT_TASK_TIMEOUT, InScope, Scoped, check_async, inherit};

use crate::report::{Frame, LabelRules, SymbolTable};
use leakwatch_alloc::{Scope, ScopeHandle, ScopeStats, Symbolizer};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Starts a leak check of `code`; finish it with one of the `assert_*` methods or
/// [`Check::run`].
pub fn check<F: FnMut() -> R, R>(code: F) -> Check<F> {
    Check::of(code)
}

/// A leak check being configured. See the [module docs](self).
#[must_use = "a check does nothing until run or asserted"]
pub struct Check<F> {
    code: F,
    warmup: usize,
    iterations: usize,
    max_growth_per_run: u64,
    allow: Vec<String>,
}

impl<F> std::fmt::Debug for Check<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("warmup", &self.warmup)
            .field("iterations", &self.iterations)
            .field("max_growth_per_run", &self.max_growth_per_run)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// One call site of a check, with its live bytes over the measured runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckSite {
    /// `function (file:line)` of the first frame that is the checked code's own.
    pub label: String,
    /// The stack from that frame outwards, up to the check itself (recursion collapsed).
    pub stack: Vec<Frame>,
    /// Live bytes after the warm-up runs.
    pub live_after_warmup: u64,
    /// Live bytes after the last run.
    pub live_at_end: u64,
    /// Growth of live bytes per measured run.
    pub bytes_per_run: f64,
    /// Growth of live blocks per measured run.
    pub blocks_per_run: f64,
    /// Measured runs after which the site held more than after the run before.
    pub growing_runs: usize,
    /// The site leaks (see the module docs).
    pub leaking: bool,
    /// An allow-list entry matches a frame of its stack.
    pub allowed: bool,
}

impl CheckSite {
    /// Bytes allocated by the measured runs and still live at the end.
    pub fn leaked_bytes(&self) -> u64 {
        self.live_at_end.saturating_sub(self.live_after_warmup)
    }
}

/// What a check measured.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckResult {
    /// Warm-up runs.
    pub warmup: usize,
    /// Measured runs.
    pub iterations: usize,
    /// Every site that allocated during the check: leaking sites first (by bytes per
    /// run), then by leaked bytes.
    pub sites: Vec<CheckSite>,
    /// The most bytes the checked code held at once, over all runs.
    pub peak_bytes: i64,
    /// Allocations in the measured runs.
    pub allocations: u64,
    /// The most allocations one measured run made.
    pub max_allocations_per_run: u64,
    /// Allocations that could not be tracked (full tables): the check cannot vouch for
    /// them, and fails.
    pub untracked: u64,
    /// What makes the labels less precise, e.g. frames without file and line in a build
    /// without debug info (`SymbolTable::warnings`); shown with a failure.
    pub warnings: Vec<String>,
}

impl CheckResult {
    /// Leaking sites that no allow-list entry covers.
    pub fn leaks(&self) -> impl Iterator<Item = &CheckSite> {
        self.sites.iter().filter(|s| s.leaking && !s.allowed)
    }
}

impl<C> Check<C> {
    fn of(code: C) -> Check<C> {
        Check {
            code,
            warmup: 5,
            iterations: 50,
            max_growth_per_run: 0,
            allow: Vec::new(),
        }
    }

    /// Runs before measuring, to absorb one-time initialisation (default 5).
    pub fn warmup(mut self, runs: usize) -> Self {
        self.warmup = runs;
        self
    }

    /// Measured runs (default 50; at least 4).
    pub fn iterations(mut self, runs: usize) -> Self {
        self.iterations = runs.max(4);
        self
    }

    /// Growth per run that is tolerated (default 0: any sustained growth is a leak).
    pub fn max_growth_per_run(mut self, bytes: u64) -> Self {
        self.max_growth_per_run = bytes;
        self
    }

    /// Accepts sites whose stack has a frame matching `pattern`: a function path prefix
    /// (`"my_crate::metrics::"`), or, if it contains `/`, part of a file path
    /// (`"src/metrics.rs"`).
    pub fn allow(mut self, pattern: impl Into<String>) -> Self {
        self.allow.push(pattern.into());
        self
    }
}

impl<C: CheckedCode> Check<C> {
    /// Runs the check and returns what it measured, without judging it.
    ///
    /// # Panics
    /// When tracking cannot run: the global allocator is not leakwatch's, or its tables
    /// cannot be set up. A check that cannot see allocations must not pass.
    pub fn run(mut self) -> CheckResult {
        let scope = match Scope::open() {
            Ok(scope) => scope,
            Err(e) => panic!("leakwatch::check cannot run: {e}"),
        };
        verify_tracking(&scope);
        for _ in 0..self.warmup {
            self.code.run_once(&scope);
        }
        let mut readings = Vec::with_capacity(self.iterations + 1);
        let mut allocs = Vec::with_capacity(self.iterations + 1);
        let first = scope.stats();
        allocs.push(first.allocs);
        readings.push(first);
        for _ in 0..self.iterations {
            self.code.run_once(&scope);
            let stats = scope.stats();
            allocs.push(stats.allocs);
            readings.push(stats);
        }
        let notes = self.code.notes();
        crate::untracked(|| {
            let mut result = analyse(
                &readings,
                &allocs,
                self.warmup,
                self.max_growth_per_run,
                &self.allow,
            );
            result.warnings.extend(notes);
            result
        })
    }

    /// Fails when a call site leaks: its live bytes grow with the number of runs.
    ///
    /// # Panics
    /// With a report of the leaking sites (ranked, with their stacks and how to allow a
    /// known one), or when tracking cannot run.
    #[track_caller]
    pub fn assert_no_leaks(self) {
        let result = self.run();
        if result.untracked > 0 || result.leaks().next().is_some() {
            panic!("{}", leak_message(&result));
        }
    }

    /// Fails when a call site keeps more than `bytes` allocated by the measured runs
    /// (like pytest-memray's `limit_leaks`), whether or not it grows steadily.
    ///
    /// # Panics
    /// With the sites over the budget, when allocations of the checked code could not
    /// be tracked (full tables: the budget cannot be vouched for), or when tracking
    /// cannot run.
    #[track_caller]
    pub fn assert_leaked_at_most(self, bytes: u64) {
        let result = self.run();
        fail_if_untracked(&result);
        let over: Vec<&CheckSite> = result
            .sites
            .iter()
            .filter(|s| !s.allowed && s.leaked_bytes() > bytes)
            .collect();
        if !over.is_empty() {
            let mut message = format!(
                "leakwatch: {} call site(s) kept more than {} allocated by {} runs:\n",
                over.len(),
                human(bytes as f64),
                result.iterations
            );
            for (i, site) in over.iter().enumerate() {
                let _ = writeln!(message, "\n{}. {}", i + 1, site.label);
                let _ = writeln!(
                    message,
                    "   {} still live",
                    human(site.leaked_bytes() as f64)
                );
                write_stack(&mut message, site);
            }
            message.push_str(&allow_hint(over[0]));
            panic!("{message}");
        }
    }

    /// Fails when the checked code ever held more than `bytes` at once (like
    /// pytest-memray's `limit_memory`); use `.warmup(0).iterations(..)` to choose the
    /// runs.
    ///
    /// # Panics
    /// With the peak, when allocations of the checked code could not be tracked, or
    /// when tracking cannot run.
    #[track_caller]
    pub fn assert_peak_at_most(self, bytes: u64) {
        let result = self.run();
        fail_if_untracked(&result);
        if result.peak_bytes > bytes as i64 {
            panic!(
                "leakwatch: the checked code held {} at its peak, over the budget of {} ({} warm-up and {} measured runs)",
                human(result.peak_bytes as f64),
                human(bytes as f64),
                result.warmup,
                result.iterations
            );
        }
    }

    /// Fails when one measured run makes more than `count` allocations.
    ///
    /// # Panics
    /// With the count, when allocations of the checked code could not be tracked, or
    /// when tracking cannot run.
    #[track_caller]
    pub fn assert_allocations_at_most(self, count: u64) {
        let result = self.run();
        fail_if_untracked(&result);
        if result.max_allocations_per_run > count {
            panic!(
                "leakwatch: one run of the checked code made {} allocations, over the budget of {count} ({} in {} measured runs)",
                result.max_allocations_per_run, result.allocations, result.iterations
            );
        }
    }
}

/// What a check can run: a closure ([`check`]), or a future's maker and an executor
/// ([`check_async`]). Sealed: leakwatch implements it, for those two.
pub trait CheckedCode: sealed::RunOnce {}

mod sealed {
    use leakwatch_alloc::Scope;

    /// How a check runs its code.
    pub trait RunOnce {
        /// Runs the checked code once, its allocations in `scope`, and returns when the
        /// run is over (its readings can be taken).
        fn run_once(&mut self, scope: &Scope);

        /// What the check's result should say about how its runs went.
        fn notes(&mut self) -> Vec<String> {
            Vec::new()
        }
    }
}

impl<F: FnMut() -> R, R> sealed::RunOnce for F {
    fn run_once(&mut self, scope: &Scope) {
        let _inside = scope.handle().enter();
        std::hint::black_box(__leakwatch_check_boundary(self));
    }
}

impl<F: FnMut() -> R, R> CheckedCode for F {}

/// Spawns a thread whose allocations count in the calling thread's check (like
/// `std::thread::spawn`). Outside a check it is `std::thread::spawn`.
pub fn spawn<T, F>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let scope = ScopeHandle::current();
    std::thread::spawn(move || {
        let _inside = scope.map(|s| s.enter());
        __leakwatch_check_boundary_once(f)
    })
}

/// Spawns a scoped thread (see `std::thread::scope`) whose allocations count in the
/// calling thread's check.
pub fn spawn_scoped<'scope, 'env, T, F>(
    threads: &'scope std::thread::Scope<'scope, 'env>,
    f: F,
) -> std::thread::ScopedJoinHandle<'scope, T>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    let scope = ScopeHandle::current();
    threads.spawn(move || {
        let _inside = scope.map(|s| s.enter());
        __leakwatch_check_boundary_once(f)
    })
}

/// Where the checked code starts: stacks shown in reports end at the frame of this
/// function (the check's own frames and the test harness's are left out). A distinct
/// name, because release builds with line-tables-only debug info name frames without
/// their module path.
#[inline(never)]
#[doc(hidden)]
pub fn __leakwatch_check_boundary<F: FnMut() -> R, R>(code: &mut F) -> R {
    std::hint::black_box(code())
}

/// [`__leakwatch_check_boundary`] for a thread's `FnOnce`.
#[inline(never)]
#[doc(hidden)]
pub fn __leakwatch_check_boundary_once<F: FnOnce() -> R, R>(code: F) -> R {
    std::hint::black_box(code())
}

/// The name every boundary frame contains.
const BOUNDARY: &str = "__leakwatch_check_boundary";

/// Makes sure the scope sees an allocation made inside it: a check that cannot see
/// allocations must fail, not pass.
fn verify_tracking(scope: &Scope) {
    let canary = {
        let _inside = scope.handle().enter();
        std::hint::black_box(Box::new([0u8; 64]))
    };
    let seen = scope.stats();
    drop(canary);
    let after = scope.stats();
    if seen.allocs == 0 || seen.live_bytes < 64 || after.live_bytes != seen.live_bytes - 64 {
        panic!(
            "leakwatch::check cannot run: an allocation made in the check was not tracked (allocations {}, live {} bytes); is leakwatch's allocator the global allocator of this test binary?",
            seen.allocs, seen.live_bytes
        );
    }
}

/// A site's live bytes and blocks, one reading per run.
struct Readings {
    frames: Vec<u64>,
    bytes: Vec<u64>,
    blocks: Vec<f64>,
}

fn analyse(
    readings: &[ScopeStats],
    allocs: &[u64],
    warmup: usize,
    max_growth_per_run: u64,
    allow: &[String],
) -> CheckResult {
    let runs = readings.len() - 1;
    // Per site id: live bytes and blocks after each reading (0 before it appeared).
    let mut by_site: BTreeMap<u32, Readings> = BTreeMap::new();
    for (i, stats) in readings.iter().enumerate() {
        for site in &stats.sites {
            let r = by_site.entry(site.id).or_insert_with(|| Readings {
                frames: site.frames.clone(),
                bytes: vec![0; readings.len()],
                blocks: vec![0.0; readings.len()],
            });
            r.bytes[i] = site.live_bytes;
            r.blocks[i] = site.live_blocks;
        }
    }
    // Label the sites and merge by label (recursion depth or several paths into one
    // allocation line are one site).
    let rules = LabelRules::with_extra(["leakwatch::check::", BOUNDARY]);
    let mut symbols = SymbolTable::new();
    let mut symbolizer = Symbolizer::new();
    crate::symbols::symbolize_missing(
        &mut symbols,
        &mut symbolizer,
        by_site.values().map(|r| r.frames.as_slice()),
    );

    /// The sites that share a label, summed.
    struct Merged {
        stack: Vec<Frame>,
        bytes: Vec<u64>,
        blocks: Vec<f64>,
        allowed: bool,
    }
    let mut merged: BTreeMap<String, Merged> = BTreeMap::new();
    for r in by_site.values() {
        let stack = symbols.stack(&r.frames);
        let label = rules.label(&stack);
        let allowed = stack.iter().any(|f| allow.iter().any(|p| allows(p, f)));
        let entry = merged.entry(label).or_insert_with(|| Merged {
            stack: user_frames(&rules, &stack),
            bytes: vec![0; readings.len()],
            blocks: vec![0.0; readings.len()],
            allowed: false,
        });
        for (sum, b) in entry.bytes.iter_mut().zip(&r.bytes) {
            *sum += b;
        }
        for (sum, b) in entry.blocks.iter_mut().zip(&r.blocks) {
            *sum += b;
        }
        entry.allowed |= allowed;
    }
    let mut sites: Vec<CheckSite> = merged
        .into_iter()
        // Sites that held nothing at any reading (freed within every run) say nothing.
        .filter(|(_, m)| m.bytes.iter().any(|&b| b > 0))
        .map(|(label, m)| {
            let Merged {
                stack,
                bytes,
                blocks,
                allowed,
            } = m;
            let start = bytes[0];
            let end = bytes[runs];
            let growth = end as f64 - start as f64;
            let growing_runs = bytes.windows(2).filter(|w| w[1] > w[0]).count();
            let leaking = growth > (max_growth_per_run as f64) * runs as f64
                && growth > 0.0
                && end > bytes[runs / 2]
                && growing_runs >= 2;
            CheckSite {
                label,
                stack,
                live_after_warmup: start,
                live_at_end: end,
                bytes_per_run: growth / runs as f64,
                blocks_per_run: (blocks[runs] - blocks[0]) / runs as f64,
                growing_runs,
                leaking,
                allowed,
            }
        })
        .collect();
    sites.sort_by(|a, b| {
        b.leaking
            .cmp(&a.leaking)
            .then(b.bytes_per_run.total_cmp(&a.bytes_per_run))
            .then(b.leaked_bytes().cmp(&a.leaked_bytes()))
            .then_with(|| a.label.cmp(&b.label))
    });
    let last = readings.last().cloned().unwrap_or_default();
    CheckResult {
        warmup,
        iterations: runs,
        sites,
        peak_bytes: last.peak_bytes,
        allocations: allocs[runs] - allocs[0],
        max_allocations_per_run: allocs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
        untracked: last.untracked_blocks + last.site_overflow,
        warnings: symbols.warnings(),
    }
}

/// Whether allow-list `pattern` covers `frame`: a file pattern (with `/`) is a part of
/// its path; a function pattern is a prefix of its name, or, for frames named without
/// their module path (release builds with line-tables-only debug info name inlined
/// functions so), a path that ends in its name.
fn allows(pattern: &str, frame: &Frame) -> bool {
    // The label rules' syntax: a file part, or a function prefix.
    let rule = LabelRules {
        ignore: vec![pattern.to_string()],
    };
    if rule.is_ignored(frame) {
        return true;
    }
    // `forget_buffer` (or `push<T>`) against `my_crate::forget_buffer`.
    let Some(function) = frame.function.as_deref().filter(|_| !pattern.contains('/')) else {
        return false;
    };
    let bare = function.split('<').next().unwrap_or(function);
    !bare.is_empty() && !bare.contains("::") && pattern.rsplit("::").next() == Some(bare)
}

/// The checked code's part of a stack: from its label frame outwards, runtime frames
/// left out, ending where the check itself begins; recursion collapsed.
fn user_frames(rules: &LabelRules, stack: &[Frame]) -> Vec<Frame> {
    let start = rules.label_frame(stack).unwrap_or(0);
    let mut out = Vec::new();
    for frame in &stack[start.min(stack.len())..] {
        let function = frame.function.as_deref().unwrap_or("");
        if function.contains(BOUNDARY) {
            break;
        }
        if !rules.is_ignored(frame) {
            out.push(frame.clone());
        }
    }
    crate::report::symbols::collapse_recursion(&out)
}

/// Fails a check whose scope lost allocations: a budget met by what was seen says
/// nothing about what was not.
#[track_caller]
fn fail_if_untracked(result: &CheckResult) {
    if result.untracked > 0 {
        panic!("{}", untracked_message(result));
    }
}

fn untracked_message(result: &CheckResult) -> String {
    format!(
        "leakwatch: {} allocation(s) of the checked code could not be tracked (the tracker's tables are full: raise LEAKWATCH_MAX_SITES or LEAKWATCH_MAX_BLOCKS); the check cannot vouch for them\n",
        result.untracked
    )
}

fn leak_message(result: &CheckResult) -> String {
    let leaks: Vec<&CheckSite> = result.leaks().collect();
    let mut m = String::new();
    if leaks.is_empty() {
        return untracked_message(result);
    }
    let _ = writeln!(
        m,
        "leakwatch: {} call site{}: live memory grows with every run of the checked code",
        leaks.len(),
        if leaks.len() == 1 { " leaks" } else { "s leak" }
    );
    let _ = writeln!(
        m,
        "({} runs measured after {} warm-up runs; every allocation of the checked code tracked exactly)",
        result.iterations, result.warmup
    );
    for (i, site) in leaks.iter().enumerate() {
        let _ = writeln!(m, "\n{}. {}", i + 1, site.label);
        let _ = writeln!(
            m,
            "   {} and {:+.1} blocks per run ({} over {} runs, still live; grew in {} of them)",
            signed(human(site.bytes_per_run)),
            site.blocks_per_run,
            signed(human(site.leaked_bytes() as f64)),
            result.iterations,
            site.growing_runs
        );
        write_stack(&mut m, site);
    }
    if result.untracked > 0 {
        let _ = writeln!(
            m,
            "\n({} allocation(s) could not be tracked: the tracker's tables are full)",
            result.untracked
        );
    }
    for warning in &result.warnings {
        let _ = writeln!(m, "\nwarning: {warning}");
    }
    m.push_str(&allow_hint(leaks[0]));
    m
}

fn write_stack(m: &mut String, site: &CheckSite) {
    let _ = writeln!(m, "   stack, innermost first:");
    for frame in site.stack.iter().take(8) {
        let _ = writeln!(m, "     {}", frame.label());
    }
    if site.stack.len() > 8 {
        let _ = writeln!(m, "     ... {} more", site.stack.len() - 8);
    }
}

fn allow_hint(site: &CheckSite) -> String {
    let function = site
        .stack
        .first()
        .and_then(|f| f.function.clone())
        .unwrap_or_else(|| "my_crate::module::function".into());
    let file = site
        .stack
        .first()
        .and_then(|f| f.file.as_deref())
        .map(allow_path)
        .unwrap_or_else(|| "src/file.rs".into());
    format!(
        "\nIf a site is expected to grow, allow it by function or by file:\n    leakwatch::check(..).allow(\"{function}\")   or   .allow(\"{file}\")\n"
    )
}

/// A file pattern for `allow`: the path from its package directory, or at least its
/// last two components (`tests/leaks.rs`), never an absolute path that only works on
/// one machine.
fn allow_path(path: &str) -> String {
    let short = crate::report::symbols::short_path(path);
    if !short.starts_with('/') {
        return short.to_string();
    }
    let parts: Vec<&str> = short.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [file, dir, _] => format!("{dir}/{file}"),
        _ => short.trim_start_matches('/').to_string(),
    }
}

fn signed(s: String) -> String {
    if s.starts_with('-') {
        s
    } else {
        format!("+{s}")
    }
}

fn human(bytes: f64) -> String {
    crate::report::render::text::bytes(bytes)
}
