//! The model server under load: throughput, latency and the server's CPU time per
//! request with leakwatch off, sampled at the default rate, and exact (issue 5:
//! "sampled costs at most 2% throughput").
//!
//! criterion's statistics do not fit an HTTP load test, so this is a harness of its own.
//! The binary runs as the server too: started with `LEAKWATCH_BENCH_SERVICE=off|sampled|
//! exact`, it serves `model_server` with leakwatch in that mode (recorder at the default
//! one-second interval). As the client it starts one server per mode, warms each up,
//! then drives them with `model_server::loadgen` in a closed loop (each client sends its
//! next request when the last is answered: maximum throughput) over loopback, in short
//! interleaved slices: rounds x modes, the order rotated each round, so that drift and
//! other processes' bursts on a shared machine fall on every mode alike. Each mode's
//! figure is the median over its slices; its ratio to `off` is the median of the
//! per-round ratios, with a 95% confidence interval. The server's CPU time per request
//! (from `/proc/PID/stat`) is reported beside throughput: on a busy machine it moves
//! less than throughput does. A second `off` server, the control, shows how far apart
//! two identical servers measure on this machine: differences within its interval are
//! noise.
//!
//! ```text
//! cargo bench -p leakwatch-benches --bench service [-- --rounds 30 --seconds 1 --clients 4 --warmup 2 --no-control]
//! ```
#![forbid(unsafe_code)]

use leakwatch::LeakWatch;
use model_server::demo::ServerProcess;
use model_server::loadgen::{self, LoadOptions, LoadReport};
use model_server::serve::{ServeOptions, Tracking};
use model_server::server::Config;
use std::process::{Command, ExitCode};
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

/// Set in the server child: the leakwatch mode to serve with.
const SERVE_ENV: &str = "LEAKWATCH_BENCH_SERVICE";

/// The modes compared; `off` first (the baseline of every ratio).
const MODES: [&str; 3] = ["off", "sampled", "exact"];

/// A second `off` server measured like the others (unless `--no-control`): its ratio to
/// `off` shows what this machine's noise alone makes of no difference at all.
const CONTROL: &str = "off (control)";

struct Args {
    rounds: usize,
    seconds: f64,
    warmup: f64,
    clients: usize,
    /// Measure a second `off` server as a control (default; `--no-control` skips it).
    control: bool,
    /// A name filter given to `cargo bench` that does not match this bench.
    filtered_out: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: 30,
        seconds: 1.0,
        warmup: 2.0,
        clients: 4,
        control: true,
        filtered_out: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |flag: &str, lo: f64, hi: f64| -> Result<f64, String> {
            it.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| (lo..=hi).contains(v))
                .ok_or_else(|| format!("{flag}: a number from {lo} to {hi}"))
        };
        match arg.as_str() {
            "--rounds" => args.rounds = number("--rounds", 1.0, 100.0)? as usize,
            "--seconds" => args.seconds = number("--seconds", 0.2, 600.0)?,
            "--warmup" => args.warmup = number("--warmup", 0.0, 60.0)?,
            "--clients" => args.clients = number("--clients", 1.0, 256.0)? as usize,
            "--no-control" => args.control = false,
            // `cargo test --benches` runs benches once, quickly, as a smoke test.
            "--test" => {
                args.rounds = 1;
                args.seconds = 0.3;
                args.warmup = 0.1;
            }
            // cargo's `--bench`, criterion's flags: not ours.
            flag if flag.starts_with('-') => {}
            // A name filter (`cargo bench -p leakwatch-benches -- churn`).
            filter => args.filtered_out |= !"service".contains(filter),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(SERVE_ENV) {
        return serve(&mode);
    }
    // The client's own allocations are not what is measured.
    leakwatch::disable();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("service bench: {e}");
            return ExitCode::from(2);
        }
    };
    if args.filtered_out {
        return ExitCode::SUCCESS;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server child: `model_server` on a free loopback port with leakwatch as `mode`.
fn serve(mode: &str) -> ExitCode {
    let tracking = match mode {
        "off" => Tracking::Off,
        "sampled" => Tracking::Sampled,
        "exact" => Tracking::Exact,
        other => {
            eprintln!("service bench: {SERVE_ENV}: off, sampled or exact, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let options = ServeOptions {
        addr: ([127, 0, 0, 1], 0).into(),
        config: Config::default(),
        tracking,
        interval: Duration::from_secs(1),
        memory_limit: None,
        series: None,
    };
    match model_server::run_service(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service bench: server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A server child in `mode` (the control is `off`).
fn start(mode: &str) -> Result<ServerProcess, String> {
    let mode = if mode == CONTROL { "off" } else { mode };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = Command::new(exe);
    command
        .env(SERVE_ENV, mode)
        // The mode alone decides: no tracking or sampling rate from the environment.
        .env_remove("LEAKWATCH")
        .env_remove("LEAKWATCH_SAMPLE")
        .env("RUST_LOG", "error");
    ServerProcess::start(command, Duration::from_secs(20))
}

/// CPU seconds (user + system, all threads) the process `pid` has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime
    // and stime the 12th and 13th. Clock ticks are USER_HZ, 100 on Linux.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// One slice of load on `server`.
struct Slice {
    load: LoadReport,
    /// Server CPU seconds per successful request.
    cpu_per_request: Option<f64>,
}

fn slice(
    server: &ServerProcess,
    args: &Args,
    seconds: f64,
    prefix: String,
) -> Result<Slice, String> {
    let before = cpu_seconds(server.id());
    let load = loadgen::run(LoadOptions {
        url: server.url().to_string(),
        clients: args.clients,
        duration: Duration::from_secs_f64(seconds),
        session_requests: 8,
        session_prefix: prefix,
        request_timeout: Duration::from_secs(5),
        ..LoadOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let after = cpu_seconds(server.id());
    let cpu_per_request = before
        .zip(after)
        .filter(|_| load.ok > 0)
        .map(|(b, a)| (a - b) / load.ok as f64);
    Ok(Slice {
        load,
        cpu_per_request,
    })
}

fn bench(args: &Args) -> Result<(), String> {
    let mut modes = MODES.to_vec();
    if args.control {
        modes.push(CONTROL);
    }
    println!(
        "service bench: {} rounds x {} modes x {:.1} s slices (after {:.1} s of warm-up each), {} closed-loop clients, sessions of 8 requests",
        args.rounds,
        modes.len(),
        args.seconds,
        args.warmup,
        args.clients
    );
    let servers = modes
        .iter()
        .map(|mode| start(mode))
        .collect::<Result<Vec<_>, _>>()?;
    if args.warmup > 0.0 {
        for (i, server) in servers.iter().enumerate() {
            slice(server, args, args.warmup, format!("warmup-{i}"))?;
        }
    }
    // slices[mode][round]
    let mut slices: Vec<Vec<Slice>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        let mut line = format!("round {:>2}:", round + 1);
        for k in 0..modes.len() {
            let m = (round + k) % modes.len();
            let s = slice(&servers[m], args, args.seconds, format!("round-{round}"))?;
            line.push_str(&format!(
                "  {} {:.0}/s p99 {} cpu {}{}",
                modes[m],
                s.load.ok_per_second(),
                loadgen::millis(s.load.latency.p99),
                micros(s.cpu_per_request),
                match s.load.failed() {
                    0 => String::new(),
                    n => format!(" ({n} errors)"),
                }
            ));
            slices[m].push(s);
        }
        println!("{line}");
    }
    for server in servers {
        server.stop();
    }

    println!();
    println!(
        "| mode | throughput | vs off [95% CI] | server CPU per request | vs off [95% CI] | p50 | p99 | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Per-round ratios of mode `m` to `off`, by `f`.
    let ratios = |m: usize, f: &dyn Fn(&Slice) -> Option<f64>| -> Vec<f64> {
        slices[m]
            .iter()
            .zip(&slices[0])
            .filter_map(|(s, off)| Some(f(s)? / f(off)?))
            .collect()
    };
    for (m, mode) in modes.iter().enumerate() {
        let runs = &slices[m];
        let throughput = median(runs.iter().map(|s| s.load.ok_per_second()).collect());
        let cpu = median(runs.iter().filter_map(|s| s.cpu_per_request).collect());
        let p50 = median(
            runs.iter()
                .map(|s| s.load.latency.p50.as_secs_f64())
                .collect(),
        );
        let p99 = median(
            runs.iter()
                .map(|s| s.load.latency.p99.as_secs_f64())
                .collect(),
        );
        let errors: u64 = runs.iter().map(|s| s.load.failed()).sum();
        println!(
            "| {mode} | {throughput:.0} req/s | {} | {} | {} | {} | {} | {errors} |",
            ratio_with_interval(ratios(m, &|s| Some(s.load.ok_per_second()))),
            micros(Some(cpu)),
            ratio_with_interval(ratios(m, &|s| s.cpu_per_request)),
            loadgen::millis(Duration::from_secs_f64(p50)),
            loadgen::millis(Duration::from_secs_f64(p99)),
        );
    }
    println!(
        "\n(medians over {} slices per mode; \"vs off\": the median of the per-round ratios, with a 95% confidence interval for it from order statistics)",
        args.rounds
    );
    let failed: u64 = slices.iter().flatten().map(|s| s.load.failed()).sum();
    if failed > 0 {
        return Err(format!(
            "{failed} requests failed: the figures above are not comparable"
        ));
    }
    Ok(())
}

/// `median (+x%) [lo, hi]`: the median of `ratios` and a distribution-free 95%
/// confidence interval for it (the order statistics `n/2 -+ 1.96 sqrt(n)/2`).
fn ratio_with_interval(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let mid = median(ratios.clone());
    let k = ((n as f64 - 1.96 * (n as f64).sqrt()) / 2.0)
        .floor()
        .max(0.0) as usize;
    match (ratios.get(k), ratios.get(n.saturating_sub(1 + k))) {
        (Some(lo), Some(hi)) if n >= 6 => {
            format!("{mid:.3} ({:+.1}%) [{lo:.3}, {hi:.3}]", (mid - 1.0) * 100.0)
        }
        _ => format!("{mid:.3} ({:+.1}%)", (mid - 1.0) * 100.0),
    }
}

fn micros(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) => format!("{:.0} µs", s * 1e6),
        None => "-".into(),
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
