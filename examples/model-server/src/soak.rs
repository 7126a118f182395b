//! `model-server soak`: the service for a long while under load, with leakwatch sampled,
//! a model update every minute and clients that give up mid-request, checked for what
//! must hold in production:
//!
//! 1. **No errors** besides the injected ones: every load request answered 2xx, every
//!    model update 200.
//! 2. **No stall**: no load request slower than [`SoakOptions::max_latency`] (2 s).
//! 3. **No leak**: no site is a `leak` in any of the service's own reports
//!    (`GET /debug/leaks?format=json`, every 5 s and at the end).
//! 4. **Flat RSS**: the median RSS of the last tenth of the run exceeds the median of
//!    the tenth around its middle by at most [`rss_bound`]: what the service may
//!    legitimately still grow by in its second half.
//! 5. **A clean exit**: SIGTERM ends the service within its shutdown deadline plus a
//!    margin, with status 0, and its log has no panic.
//!
//! The injected faults, one every [`SoakOptions::rude_every`] on connections of their
//! own: half a request head and gone; a whole head and half the body and gone; a whole
//! request and gone before the answer.
//!
//! [`run`] returns whether every check passed; `model-server soak` exits 1 when not.

use crate::demo::{LISTENING, ServerProcess, driver_setup};
use crate::loadgen::{self, LoadOptions, StopSignal, Target};
use hyper::Method;
use leakwatch::report::{Report, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// The session store's budget in the soak (the service's default).
pub const STORE_BUDGET: u64 = 8 << 20;

/// Settings of the soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the load lasts.
    pub duration: Duration,
    /// Requests per second over all clients.
    pub rate: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per session.
    pub session_requests: u32,
    /// Time between model updates.
    pub update_every: Duration,
    /// Time between injected faults (a client that gives up mid-request).
    pub rude_every: Duration,
    /// Slowest a load request may be.
    pub max_latency: Duration,
    /// Where the service's log goes.
    pub out: PathBuf,
    /// The leaky store (to see the checks fail).
    pub leaky: bool,
}

impl Default for SoakOptions {
    /// Ten minutes at 500 requests/s from 4 clients, a session every 8 requests (62
    /// new 32 KiB sessions a second: the 8 MiB store turns over every 4 s), a model
    /// update every 60 s, a fault every 100 ms, 2 s at most per request.
    fn default() -> Self {
        SoakOptions {
            duration: Duration::from_secs(600),
            rate: 500.0,
            clients: 4,
            session_requests: 8,
            update_every: Duration::from_secs(60),
            rude_every: Duration::from_millis(100),
            max_latency: Duration::from_secs(2),
            out: PathBuf::from("target/model-server-soak"),
            leaky: false,
        }
    }
}

/// How much the service's RSS may grow from the middle of a run to its end: the session
/// store's budget (after a model update it empties and refills, so between any two
/// moments its caches differ by at most the budget) plus leakwatch's history budget
/// (the recorder's series fill up to it, then thin). Everything else the service holds
/// (the model, one per version and swapped in place; connections, a fixed number;
/// allocator free lists, reused) is the same size in both windows.
pub fn rss_bound() -> u64 {
    STORE_BUDGET + leakwatch::report::history::DEFAULT_BUDGET_BYTES as u64
}

/// One RSS sample: seconds of load, bytes.
type RssSample = (f64, u64);

/// Runs the soak, printing as it goes. `Ok(true)` when every check passed.
///
/// # Errors
/// When the service cannot be started or reached, or the log cannot be created.
pub fn run(options: &SoakOptions) -> Result<bool, String> {
    let (runtime, exe) = driver_setup(&options.out)?;
    let log = options.out.join("soak-server.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut command = Command::new(&exe);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--leakwatch", "sampled"])
        .args(["--interval", "1", "--memory-limit", "1GiB"])
        .stderr(log_file);
    if options.leaky {
        command.arg("--leaky");
    }
    let server = ServerProcess::start(command, Duration::from_secs(20))?;
    println!(
        "soak: {} s at {:.0} requests/s from {} clients ({} store), a model update every {} s, a client giving up mid-request every {} ms; service {} ({LISTENING}{})",
        options.duration.as_secs_f64(),
        options.rate,
        options.clients,
        if options.leaky { "leaky" } else { "fixed" },
        options.update_every.as_secs_f64(),
        options.rude_every.as_millis(),
        server.id(),
        server.url()
    );
    let outcome = runtime.block_on(soak(options, &server))?;
    let exit = server.terminate(Duration::from_secs(15));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    Ok(outcome.judge(options, exit, &log_text, &log))
}

/// What the run saw.
#[derive(Debug, Default)]
struct Outcome {
    load: loadgen::LoadReport,
    updates: u32,
    update_errors: Vec<String>,
    injected: [u64; 3],
    rss: Vec<RssSample>,
    reports: u32,
    leaks: Vec<String>,
    report_errors: Vec<String>,
    final_report: Option<Report>,
    client_errors: Option<f64>,
}

async fn soak(options: &SoakOptions, server: &ServerProcess) -> Result<Outcome, String> {
    let target = Target::parse(server.url()).map_err(|e| e.to_string())?;
    let stop = StopSignal::default();
    let load = tokio::spawn(loadgen::drive(LoadOptions {
        url: server.url().to_string(),
        clients: options.clients,
        duration: options.duration,
        rate: Some(options.rate),
        session_requests: options.session_requests,
        session_prefix: "soak".into(),
        stop: stop.clone(),
        ..LoadOptions::default()
    }));
    let rude = tokio::spawn(rude_clients(
        target.clone(),
        options.rude_every,
        stop.clone(),
    ));
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut next_update = options.update_every;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second = 0u64;
    while !load.is_finished() {
        tick.tick().await;
        let t = start.elapsed();
        if let Some(rss) = rss_bytes(server.id()) {
            out.rss.push((t.as_secs_f64(), rss));
        }
        if t >= next_update && t < options.duration {
            next_update += options.update_every;
            match target
                .request(Method::POST, "/admin/model", b"{}", Duration::from_secs(10))
                .await
            {
                Ok((200, _)) => out.updates += 1,
                Ok((status, body)) => out.update_errors.push(format!(
                    "{:.0}s: HTTP {status}: {}",
                    t.as_secs_f64(),
                    String::from_utf8_lossy(&body).trim()
                )),
                Err(e) => out
                    .update_errors
                    .push(format!("{:.0}s: {e}", t.as_secs_f64())),
            }
        }
        if second % 5 == 4 {
            match fetch_report(&target).await {
                Ok(report) => {
                    out.reports += 1;
                    out.leaks.extend(leaks_in(&report, t));
                    if second % 30 == 29 {
                        println!(
                            "  {:>4.0}s  RSS {}  open_session: {}",
                            t.as_secs_f64(),
                            mib(out.rss.last().map_or(0, |s| s.1)),
                            session_verdicts(&report)
                        );
                    }
                }
                Err(e) => out
                    .report_errors
                    .push(format!("{:.0}s: {e}", t.as_secs_f64())),
            }
        }
        second += 1;
    }
    stop.stop();
    out.load = match load.await {
        Ok(Ok(load)) => load,
        Ok(Err(e)) => return Err(format!("load generator: {e}")),
        Err(e) => return Err(format!("load generator: {e}")),
    };
    out.injected = rude.await.unwrap_or_default();
    match fetch_report(&target).await {
        Ok(report) => {
            out.leaks
                .extend(leaks_in(&report, start.elapsed()).map(|l| format!("at the end: {l}")));
            out.final_report = Some(report);
        }
        Err(e) => out.report_errors.push(format!("at the end: {e}")),
    }
    if let Ok((200, body)) = target
        .request(Method::GET, "/metrics", b"", Duration::from_secs(10))
        .await
    {
        let text = String::from_utf8_lossy(&body);
        out.client_errors = text.lines().find_map(|l| {
            l.strip_prefix("model_server_client_errors_total ")?
                .trim()
                .parse()
                .ok()
        });
    }
    Ok(out)
}

impl Outcome {
    /// Prints the figures and the checks; true when every check passed.
    fn judge(
        &self,
        options: &SoakOptions,
        exit: Result<(Duration, std::process::ExitStatus), String>,
        log_text: &str,
        log: &Path,
    ) -> bool {
        let load = &self.load;
        let duration = options.duration.as_secs_f64();
        let median_in = |from: f64, to: f64| {
            let mut window: Vec<u64> = self
                .rss
                .iter()
                .filter(|(t, _)| (from * duration..=to * duration).contains(t))
                .map(|s| s.1)
                .collect();
            window.sort_unstable();
            loadgen::percentile(&window, 50.0)
        };
        let start_rss = self.rss.first().map(|s| s.1);
        let warm = median_in(0.05, 0.15);
        let middle = median_in(0.45, 0.55);
        let end = median_in(0.9, 1.0);
        let max_rss = self.rss.iter().map(|s| s.1).max();
        let growth = middle.zip(end).map(|(m, e)| e as i64 - m as i64);
        let bound = rss_bound();
        let final_verdicts = self
            .final_report
            .as_ref()
            .map(verdict_counts)
            .unwrap_or_default();
        println!("\n== soak results\n");
        println!("load: {load}");
        println!(
            "model updates: {} ok, {} failed; faults injected: {} half heads, {} half bodies, {} requests abandoned before the answer (service's client errors: {})",
            self.updates,
            self.update_errors.len(),
            self.injected[0],
            self.injected[1],
            self.injected[2],
            self.client_errors
                .map_or("?".to_string(), |n| format!("{n:.0}"))
        );
        println!(
            "RSS: start {}, warm (5-15%) {}, middle (45-55%) {}, end (90-100%) {}, max {}; second-half growth {} (bound {}: store budget {} + history budget {})",
            opt_mib(start_rss),
            opt_mib(warm),
            opt_mib(middle),
            opt_mib(end),
            opt_mib(max_rss),
            growth.map_or("?".to_string(), |g| format!(
                "{}{}",
                if g < 0 { "-" } else { "+" },
                mib(g.unsigned_abs())
            )),
            mib(bound),
            mib(STORE_BUDGET),
            mib(bound - STORE_BUDGET)
        );
        println!(
            "leak reports: {} read, {} unreadable; final verdicts: {final_verdicts}",
            self.reports,
            self.report_errors.len()
        );
        println!(
            "exit on SIGTERM: {}",
            match &exit {
                Ok((took, status)) => format!("{status} after {:.2} s", took.as_secs_f64()),
                Err(e) => e.clone(),
            }
        );

        let mut failed = Vec::new();
        if !load.errors.is_empty() || load.ok != load.requests || load.ok == 0 {
            failed.push(format!(
                "load errors: {} of {} requests failed",
                load.requests - load.ok,
                load.requests
            ));
        }
        if !self.update_errors.is_empty() || self.updates == 0 {
            failed.push(format!(
                "model updates: {} made, failures: {}",
                self.updates,
                self.update_errors.join("; ")
            ));
        }
        if load.latency.max > options.max_latency {
            failed.push(format!(
                "a stall: the slowest request took {} (at most {})",
                loadgen::millis(load.latency.max),
                loadgen::millis(options.max_latency)
            ));
        }
        if !self.leaks.is_empty() || !self.report_errors.is_empty() || self.reports == 0 {
            failed.push(format!(
                "leak reports: {} `leak` verdicts ({}), {} unreadable ({})",
                self.leaks.len(),
                self.leaks
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
                self.report_errors.len(),
                self.report_errors.join("; ")
            ));
        }
        match growth {
            Some(g) if g <= bound as i64 => {}
            Some(g) => failed.push(format!(
                "RSS grew {} over the second half (bound {})",
                mib(g.unsigned_abs()),
                mib(bound)
            )),
            None => failed.push("RSS: too few samples (is /proc mounted?)".into()),
        }
        if self.injected.iter().sum::<u64>() == 0 {
            failed.push("no faults were injected".into());
        }
        match &exit {
            Ok((_, status)) if status.success() => {}
            Ok((_, status)) => failed.push(format!("the service exited with {status}")),
            Err(e) => failed.push(e.clone()),
        }
        if log_text.contains("panicked") {
            failed.push(format!("the service panicked: see {}", log.display()));
        }
        if failed.is_empty() {
            println!("\nsoak: PASSED (service log: {})", log.display());
            true
        } else {
            println!("\nsoak: FAILED (service log: {})", log.display());
            for f in &failed {
                println!("  - {f}");
            }
            false
        }
    }
}

/// Opens a connection every `every` and gives up mid-request, three ways in turn.
/// Returns how many of each it made.
async fn rude_clients(target: Target, every: Duration, stop: StopSignal) -> [u64; 3] {
    let mut made = [0u64; 3];
    let mut n = 0usize;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_stopped() {
        tick.tick().await;
        let kind = n % 3;
        n += 1;
        let host = &target.authority;
        let request = match kind {
            0 => format!("POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Ty"),
            1 => format!(
                "POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{{\"session_id\": \"rude\", \"pro"
            ),
            _ => format!(
                "POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n{{\"session_id\": \"rude\", \"prompt\": \"the keeper of th\"}}"
            ),
        };
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(target.addr),
        )
        .await;
        let Ok(Ok(mut stream)) = connected else {
            continue;
        };
        if stream.write_all(request.as_bytes()).await.is_ok() {
            made[kind] += 1;
        }
        // A moment for the server to start on it, then gone.
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(stream);
    }
    made
}

/// The resident set size of process `pid`, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

async fn fetch_report(target: &Target) -> Result<Report, String> {
    let path = "/debug/leaks?format=json&top=1000";
    // The first report reads the binary's debug info: seconds on a busy machine.
    let (status, body) = target
        .request(Method::GET, path, b"", Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let json = String::from_utf8_lossy(&body);
    if status != 200 {
        return Err(format!("GET {path}: HTTP {status}: {}", json.trim()));
    }
    Report::from_json(path, &json).map_err(|e| e.to_string())
}

/// Every `leak` of `report`, as `"<seconds>s: <label>"`.
fn leaks_in(report: &Report, t: Duration) -> impl Iterator<Item = String> + '_ {
    report
        .sites
        .iter()
        .filter(|s| s.verdict == Verdict::Leak)
        .map(move |s| format!("{:.0}s: {}", t.as_secs_f64(), s.tagged_label()))
}

fn session_verdicts(report: &Report) -> String {
    let verdicts: Vec<&str> = report
        .sites
        .iter()
        .filter(|s| s.label.contains("open_session"))
        .map(|s| s.verdict.as_str())
        .collect();
    if verdicts.is_empty() {
        "(not sampled)".into()
    } else {
        verdicts.join(", ")
    }
}

/// `N leak, N growing, ...` over the report's sites.
fn verdict_counts(report: &Report) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for site in &report.sites {
        let name = site.verdict.as_str();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_unstable();
    counts
        .iter()
        .map(|(n, c)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".to_string(), mib)
}
