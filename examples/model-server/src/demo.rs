//! `model-server demo`: leakwatch finds the outage's leak in the running service, then
//! shows that the fixed store does not leak.
//!
//! 1. Starts the service with the leaky session store as a child process (this same
//!    program, `serve --leaky`), drives steady load at it with the [`loadgen`], updates
//!    the model part way (`POST /admin/model`: from then on evictions miss and every new
//!    session's cache stays), and polls `GET /debug/leaks` every second until the
//!    top-ranked site is a `leak` in `open_session`. Prints the ranked report and writes
//!    the HTML report.
//! 2. Does the same with the fixed store (the default), long enough for the store to
//!    refill after the model update and level off, and checks that no site is a `leak`.
//!
//! [`run`] returns whether both checks passed; `model-server demo` exits non-zero when
//! they did not.
//!
//! [`loadgen`]: crate::loadgen

use crate::loadgen::{self, LoadOptions, LoadReport, StopSignal, Target};
use crate::serve::Tracking;
use hyper::Method;
use leakwatch::report::{Report, Verdict};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long past [`DemoOptions::update_after`] the leaky run waits for leakwatch to call
/// the filled session caches a plateau (or stable) before it updates the model anyway.
pub const UPDATE_GRACE: Duration = Duration::from_secs(4);

/// What the service prints on standard output once it listens, before the URL.
pub const LISTENING: &str = "model-server listening on ";

/// The service as a child process: started from a command, killed when dropped (so also
/// when the parent returns early on an error).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    /// Starts `command` (its standard output is taken over; set standard error as you
    /// like) and waits up to `timeout` for its `model-server listening on http://ADDR`
    /// line. Standard output is drained from then on, so the child never blocks on it.
    ///
    /// # Errors
    /// When the command cannot start, exits before listening, or does not print the
    /// line in time (it is killed then).
    pub fn start(mut command: Command, timeout: Duration) -> Result<ServerProcess, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program}: no standard output to read"));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(url) = line.strip_prefix(LISTENING) {
                        sent = tx.send(url.trim().to_string()).is_ok();
                    }
                }
            }
        });
        let mut server = ServerProcess {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(timeout) {
            Ok(url) => {
                server.url = url;
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "{program} did not say where it listens within {:.0} s",
                timeout.as_secs_f64()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().map(|s| s.to_string());
                Err(format!(
                    "{program} exited before listening ({})",
                    status.unwrap_or_else(|e| e.to_string())
                ))
            }
        }
    }

    /// The service's base URL, `http://ADDR`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (with `kill`) and waits up to `limit` for the service to exit: how
    /// long it took and its status.
    ///
    /// # Errors
    /// When `kill` cannot run, or the service is still running at `limit` (it is killed
    /// then).
    pub fn terminate(
        mut self,
        limit: Duration,
    ) -> Result<(Duration, std::process::ExitStatus), String> {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill -TERM {pid}: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {pid}: {status}"));
        }
        while sent.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok((sent.elapsed(), status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "the service was still running {:.0} s after SIGTERM",
            limit.as_secs_f64()
        ))
    }

    /// Kills the service and waits for it to exit.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the HTML report and the servers' logs go.
    pub out: PathBuf,
    /// Requests per second, over all clients.
    pub rate: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per session (a new session every this many requests).
    pub session_requests: u32,
    /// When to update the model, from the start of the load.
    pub update_after: Duration,
    /// Longest the leaky run may take to find the leak.
    pub max_leaky: Duration,
    /// How long the fixed run lasts.
    pub fixed_run: Duration,
    /// The service's recorder interval.
    pub interval: Duration,
    /// How leakwatch tracks in the service.
    pub tracking: Tracking,
}

impl Default for DemoOptions {
    /// 1,000 requests/s from 4 clients, a session every 8 requests (125 new sessions of
    /// 32 KiB a second: 4 MiB/s of session caches once they leak); model update at
    /// 8 s; at most 45 s to find the leak; 20 s of the fixed store; leakwatch sampled at
    /// the default rate, snapshots every 0.5 s.
    fn default() -> Self {
        DemoOptions {
            out: PathBuf::from("target/model-server-demo"),
            rate: 1000.0,
            clients: 4,
            session_requests: 8,
            update_after: Duration::from_secs(8),
            max_leaky: Duration::from_secs(45),
            fixed_run: Duration::from_secs(20),
            interval: Duration::from_millis(500),
            tracking: Tracking::Sampled,
        }
    }
}

/// What one run of the service under load showed.
#[derive(Debug)]
struct Phase {
    load: LoadReport,
    /// Seconds of load when the model was updated.
    updated_at: Option<f64>,
    /// Seconds of load when the leak was ranked first (leaky run).
    found_at: Option<f64>,
    /// The last JSON report.
    report: Option<Report>,
    /// Every `leak` of a per-second report: `"<seconds>s: <label>"`.
    leaks_seen: Vec<String>,
    /// `GET /debug/leaks?format=text`.
    text: String,
    /// `GET /debug/leaks?format=html`.
    html: String,
}

/// Which store a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Leaky,
    Fixed,
}

/// What a driver of the service (the demo, the soak) starts from: its output directory
/// made, a single-threaded runtime for its clients, and this program's path (it starts
/// the service as `EXE serve ...`).
pub(crate) fn driver_setup(out: &Path) -> Result<(tokio::runtime::Runtime, PathBuf), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    Ok((runtime, exe))
}

/// Runs the demo, printing as it goes. `Ok(true)` when the leak was found in the leaky
/// run and no leak was reported in the fixed one.
///
/// # Errors
/// When the service cannot be started or reached, or a file cannot be written.
pub fn run(options: &DemoOptions) -> Result<bool, String> {
    let started = Instant::now();
    let (runtime, exe) = driver_setup(&options.out)?;
    let sessions_per_second = options.rate / f64::from(options.session_requests);
    let interval = options.interval.as_secs_f64();

    println!(
        "\
leakwatch demo: find the leak in a running model server

The service (examples/model-server) serves a small language model over HTTP. Each chat
session keeps a key/value cache of 32 KiB; the session store keeps at most 8 MiB of them
(256 sessions) and evicts the least recently used. This build has the outage's bug
(--leaky): after a model update, evictions look sessions up under the old model version
and miss, so every new session's cache stays for good.
"
    );
    match options.tracking {
        Tracking::Sampled => println!(
            "\
leakwatch runs inside the service as staging would run it: sampled, one sample per {} KiB
allocated on average (about a nanosecond per allocation). Its recorder takes a snapshot
every {interval} s and ranks the call sites by how their live bytes grow. The session
cache holds 8 MiB, so only about 16 samples stand for it: its estimate wanders as
sessions come and go, and leakwatch waits until growth clearly exceeds that wander
before it says `leak`. (`--leakwatch exact` tracks every allocation: quicker verdicts,
at a cost of 10 to 20% of this service's CPU.)",
            leakwatch::DEFAULT_SAMPLE_RATE / 1024
        ),
        _ => println!(
            "\
leakwatch runs inside the service in exact mode: its allocator records every allocation
by call site (10 to 20% of this service's CPU; the default, sampled mode, costs about a
nanosecond per allocation). Its recorder takes a snapshot every {interval} s and ranks
the sites by how their live bytes grow."
        ),
    }
    println!(
        "
Load: {rate:.0} requests/s from {clients} clients over keep-alive connections, a new session
every {k} requests: {sessions:.0} new sessions/s, {mib:.1} MiB/s of session caches.

Every second below: the sessions the store holds and their caches' bytes (GET /metrics);
what leakwatch says about `open_session`, the function that allocates a session's cache
(keys and values are two lines, so two verdicts); and the site ranked first, when it is
another one (GET /debug/leaks).
",
        rate = options.rate,
        clients = options.clients,
        k = options.session_requests,
        sessions = sessions_per_second,
        mib = sessions_per_second * 32.0 / 1024.0,
    );

    println!(
        "== 1. The leaky store: model update after {:.0} s, then watch until leakwatch ranks a leak first (at most {:.0} s)\n",
        options.update_after.as_secs_f64(),
        options.max_leaky.as_secs_f64()
    );
    let leaky = runtime.block_on(phase(&exe, options, Store::Leaky))?;
    let html = options.out.join("leaky.html");
    std::fs::write(&html, &leaky.html)
        .map_err(|e| format!("cannot write {}: {e}", html.display()))?;
    let found = leaky.found_at.zip(leaky.updated_at);
    println!("\nload: {}", leaky.load);
    match found {
        Some((found, updated)) => println!(
            "leakwatch ranked the leak first after {:.0} s of load since the model update ({:.0} s since the start).",
            found - updated,
            found
        ),
        None => println!(
            "leakwatch did not rank a leak in open_session first within {:.0} s.",
            options.max_leaky.as_secs_f64()
        ),
    }
    println!("\nGET /debug/leaks?format=text&top=6, at the end of the run:\n");
    println!("{}", leaky.text.trim_end());
    if found.is_some() {
        let leaks: Vec<String> = leaky
            .report
            .iter()
            .flat_map(|r| &r.sites)
            .filter(|s| s.verdict == Verdict::Leak && s.label.contains("open_session"))
            .map(|s| format!("\n    {}", s.tagged_label()))
            .collect();
        let versions: std::collections::BTreeSet<&str> = leaky
            .report
            .iter()
            .flat_map(|r| &r.sites)
            .filter(|s| s.verdict == Verdict::Leak && s.label.contains("open_session"))
            .filter_map(|s| s.tags.get("model").map(String::as_str))
            .collect();
        let versions: Vec<&str> = versions.into_iter().collect();
        println!(
            "
What this says: ranked first as `leak`:{}
That is SessionStore::open_session, allocating each new session's keys and values, and
the tags name the model version whose sessions grow: {}. Their live bytes have grown
steadily since the model update and show no sign of stopping; before the update the
old version's lines held steady, a cache at its budget. \"rate\" is
the growth over the window and \"to limit\" when the service reaches its memory limit
(1 GiB here) at the recent rate. The fix, the default store, evicts the exact entry it
chose and drops the old model's sessions on an update.",
            leaks.concat(),
            if versions.is_empty() {
                "(no model tag)".to_string()
            } else {
                format!("model={}", versions.join(", model="))
            }
        );
    }
    println!(
        "\nThe HTML report (charts of every site, full stacks): {}",
        html.display()
    );

    println!(
        "\n== 2. The fixed store (the default): the same load and model update, {:.0} s in all\n",
        options.fixed_run.as_secs_f64()
    );
    let fixed = runtime.block_on(phase(&exe, options, Store::Fixed))?;
    println!("\nload: {}", fixed.load);
    // No site of the fixed store may be a leak, at the end or in any per-second report.
    let fixed_leaks: Vec<String> = fixed
        .report
        .iter()
        .flat_map(|r| &r.sites)
        .filter(|s| s.verdict == Verdict::Leak)
        .map(|s| format!("at the end: {}", s.label))
        .chain(fixed.leaks_seen.iter().cloned())
        .collect();
    let fixed_ok = fixed.report.is_some() && fixed_leaks.is_empty();
    println!("\nGET /debug/leaks?format=text&top=6, at the end of the run:\n");
    println!("{}", fixed.text.trim_end());
    if fixed_ok {
        println!(
            "
The update dropped the old model's sessions and the store refilled to its budget:
open_session is a cache again, and no site is a `leak`."
        );
    }

    println!("\n== Summary\n");
    match found {
        Some((found, updated)) => println!(
            "leaky store: leak in open_session{} ranked first {:.0} s after the model update ({:.0} s of load); {:.0} requests/s, p99 {}",
            leaky
                .report
                .iter()
                .flat_map(|r| &r.sites)
                .find(|s| s.verdict == Verdict::Leak && s.label.contains("open_session"))
                .map(|s| s.tags_suffix())
                .unwrap_or_default(),
            found - updated,
            found,
            leaky.load.requests_per_second(),
            loadgen::millis(leaky.load.latency.p99)
        ),
        None => println!(
            "leaky store: FAILED: leakwatch did not rank the leak in open_session first within {:.0} s",
            options.max_leaky.as_secs_f64()
        ),
    }
    if fixed_ok {
        println!(
            "fixed store: no leak after {:.0} s, model update included; {:.0} requests/s, p99 {}",
            fixed.load.elapsed.as_secs_f64(),
            fixed.load.requests_per_second(),
            loadgen::millis(fixed.load.latency.p99)
        );
    } else if fixed.report.is_none() {
        println!("fixed store: FAILED: no report from the service");
    } else {
        println!(
            "fixed store: FAILED: leakwatch reported a leak: {}",
            fixed_leaks.join("; ")
        );
    }
    println!("HTML report of the leaky run: {}", html.display());
    println!(
        "Service logs: {} and {}",
        log_path(&options.out, Store::Leaky).display(),
        log_path(&options.out, Store::Fixed).display()
    );
    println!(
        "Series (`leakwatch report FILE`): {} and {}",
        series_path(&options.out, Store::Leaky).display(),
        series_path(&options.out, Store::Fixed).display()
    );
    println!(
        "The demo took {:.0} s.",
        started.elapsed().as_secs_f64().ceil()
    );
    Ok(found.is_some() && fixed_ok)
}

fn log_path(out: &Path, store: Store) -> PathBuf {
    out.join(match store {
        Store::Leaky => "leaky-server.log",
        Store::Fixed => "fixed-server.log",
    })
}

/// Where a run's recorder writes its series (`leakwatch report` reads it; a verdict seen
/// in one per-second line can be replayed from it).
fn series_path(out: &Path, store: Store) -> PathBuf {
    out.join(match store {
        Store::Leaky => "leaky.jsonl",
        Store::Fixed => "fixed.jsonl",
    })
}

/// One run: start the service, load it, update the model, watch the reports.
async fn phase(exe: &Path, options: &DemoOptions, store: Store) -> Result<Phase, String> {
    let log = log_path(&options.out, store);
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    // The recorder appends: each run starts its own file.
    let series = series_path(&options.out, store);
    match std::fs::remove_file(&series) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", series.display())),
    }
    let mut command = Command::new(exe);
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args([
            "--leakwatch",
            match options.tracking {
                Tracking::Off => "off",
                Tracking::Sampled => "sampled",
                Tracking::Exact => "exact",
            },
        ])
        .args(["--interval", &options.interval.as_secs_f64().to_string()])
        .args(["--memory-limit", "1GiB"])
        .arg("--series")
        .arg(&series)
        .stderr(log_file);
    if store == Store::Leaky {
        command.arg("--leaky");
    }
    let server = ServerProcess::start(command, Duration::from_secs(20))?;
    let target = Target::parse(server.url()).map_err(|e| e.to_string())?;
    let run_for = match store {
        Store::Leaky => options.max_leaky,
        Store::Fixed => options.fixed_run,
    };
    let stop = StopSignal::default();
    let load = tokio::spawn(loadgen::drive(LoadOptions {
        url: server.url().to_string(),
        clients: options.clients,
        duration: run_for,
        rate: Some(options.rate),
        session_requests: options.session_requests,
        session_prefix: match store {
            Store::Leaky => "leaky".into(),
            Store::Fixed => "fixed".into(),
        },
        stop: stop.clone(),
        ..LoadOptions::default()
    }));
    let start = Instant::now();
    let mut updated_at = None;
    let mut found_at = None;
    let mut report = None;
    let mut leaks_seen = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now
    println!(
        "  {:>4}  {:>17}  {:<28}  ranked first, when another site",
        "load", "sessions (caches)", "open_session: live, verdicts"
    );
    let result: Result<(), String> = async {
        loop {
            tick.tick().await;
            let t = start.elapsed();
            if load.is_finished() {
                break;
            }
            let latest = fetch_report(&target, 8).await?;
            let store_line = store_stats(&target).await.unwrap_or_default();
            let (session_sites, first) = describe(&latest);
            leaks_seen.extend(
                latest
                    .sites
                    .iter()
                    .filter(|s| s.verdict == Verdict::Leak)
                    .map(|s| format!("{:.0}s: {}", t.as_secs_f64(), s.label)),
            );
            println!(
                "  {:>3.0}s  {store_line:>17}  {session_sites:<28}  {first}",
                t.as_secs_f64()
            );
            let leak_first = latest
                .sites
                .first()
                .is_some_and(|s| s.verdict == Verdict::Leak && s.label.contains("open_session"));
            // Update the model once the store has filled its budget and leakwatch calls
            // the session caches what they are then: a cache that stopped growing.
            // Sampled estimates of a churning cache are noisy, so that can take a few
            // seconds more; past `update_after + UPDATE_GRACE` update anyway.
            let verdicts = session_verdicts(&latest);
            let settled = !verdicts.is_empty()
                && verdicts
                    .iter()
                    .all(|v| matches!(v, Verdict::Plateau | Verdict::Stable));
            if updated_at.is_none()
                && t >= options.update_after
                && (settled || t >= options.update_after + UPDATE_GRACE)
            {
                let (status, body) = target
                    .request(Method::POST, "/admin/model", b"{}", Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                if status != 200 {
                    return Err(format!(
                        "POST /admin/model: HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                updated_at = Some(start.elapsed().as_secs_f64());
                println!(
                    "  {:>3.0}s  POST /admin/model {}{}",
                    t.as_secs_f64(),
                    String::from_utf8_lossy(&body).trim(),
                    if settled {
                        ""
                    } else {
                        "  (leakwatch has not settled on the caches yet; updating anyway)"
                    }
                );
            } else if store == Store::Leaky && updated_at.is_some() && leak_first {
                found_at = Some(t.as_secs_f64());
                break;
            }
            report = Some(latest);
        }
        Ok(())
    }
    .await;
    stop.stop();
    let load = match load.await {
        Ok(Ok(load)) => load,
        Ok(Err(e)) => return Err(format!("load generator: {e}")),
        Err(e) => return Err(format!("load generator: {e}")),
    };
    result?;
    // The final word, after the load: what a person would look at.
    let report = match fetch_report(&target, 1000).await {
        Ok(r) => Some(r),
        Err(_) => report,
    };
    let text = get_text(&target, "/debug/leaks?format=text&top=6").await?;
    let html = get_text(&target, "/debug/leaks?format=html").await?;
    server.stop();
    Ok(Phase {
        load,
        updated_at,
        found_at,
        report,
        leaks_seen,
        text,
        html,
    })
}

async fn get_text(target: &Target, path: &str) -> Result<String, String> {
    let (status, body) = target
        .request(Method::GET, path, b"", Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("GET {path}: HTTP {status}: {}", body.trim()))
    }
}

async fn fetch_report(target: &Target, top: usize) -> Result<Report, String> {
    let path = format!("/debug/leaks?format=json&top={top}");
    let json = get_text(target, &path).await?;
    Report::from_json(&path, &json).map_err(|e| e.to_string())
}

/// Sessions and their caches' bytes, from `GET /metrics`.
async fn store_stats(target: &Target) -> Option<String> {
    let metrics = get_text(target, "/metrics").await.ok()?;
    let gauge = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let sessions = gauge("model_server_sessions")?;
    let bytes = gauge("model_server_session_cache_bytes")?;
    Some(format!("{sessions:.0} ({})", mib(bytes)))
}

/// The verdicts of the session caches' sites (`open_session`: one per line, keys and
/// values), most urgent first.
fn session_verdicts(report: &Report) -> Vec<Verdict> {
    report
        .sites
        .iter()
        .filter(|s| s.label.contains("open_session"))
        .map(|s| s.verdict)
        .collect()
}

/// The session caches' sites (live bytes summed, the verdict of each), and the site
/// ranked first when it is another one.
fn describe(report: &Report) -> (String, String) {
    let sites: Vec<_> = report
        .sites
        .iter()
        .filter(|s| s.label.contains("open_session"))
        .collect();
    let live: u64 = sites.iter().map(|s| s.live_bytes).sum();
    // Per model version (the `model` tag of the service's generations), the most
    // urgent verdict of its lines: `m1 plateau, m2 leak`.
    let mut by_model: std::collections::BTreeMap<&str, Verdict> = Default::default();
    for site in &sites {
        let model = site.tags.get("model").map_or("-", String::as_str);
        // Verdicts order most urgent first.
        let verdict = by_model.entry(model).or_insert(site.verdict);
        *verdict = (*verdict).min(site.verdict);
    }
    let verdicts: Vec<String> = by_model
        .iter()
        .map(|(model, verdict)| format!("m{model} {}", verdict.as_str()))
        .collect();
    let sessions = if sites.is_empty() {
        "(not sampled yet)".to_string()
    } else {
        format!("{:>8}  {}", mib(live as f64), verdicts.join(", "))
    };
    let first = match report.sites.first() {
        Some(s) if !s.label.contains("open_session") => format!(
            "{}  {} ({} live)",
            s.verdict.as_str(),
            s.label,
            mib(s.live_bytes as f64)
        ),
        _ => String::new(),
    };
    (sessions, first)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}
