//! `model-server`: a small language model served over HTTP, with leakwatch watching it.
//!
//! ```text
//! model-server serve [--addr 127.0.0.1:8080] [--leaky] [--leakwatch off|sampled|exact]
//!                    [--debug-token TOKEN] [--budget 8MiB] [--context 128]
//!                    [--interval 1s] [--memory-limit 1GiB] [--series FILE]
//! ```
#![forbid(unsafe_code)]

use leakwatch::LeakWatch;
use model_server::serve::{ServeOptions, Tracking, serve};
use model_server::server::Config;
use model_server::sessions::Eviction;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

const USAGE: &str = "\
model-server: a small language model served over HTTP, with leakwatch watching it

usage:
  model-server serve [options]
      --addr ADDR            where to listen (default 127.0.0.1:8080; port 0 = any free port)
      --leaky                the session store from before the postmortem (leaks after a model update)
      --leakwatch MODE       off, sampled (default) or exact
      --debug-token TOKEN    bearer token for /admin and /debug when not on loopback
                             (or MODEL_SERVER_DEBUG_TOKEN)
      --budget BYTES         session cache budget (default 8MiB)
      --context TOKENS       context words kept per session (default 128)
      --interval SECONDS     leakwatch recorder interval (default 1; fractions allowed)
      --memory-limit BYTES   memory limit for time-to-limit (default: the cgroup's)
      --series FILE          append leakwatch's series to FILE (for `leakwatch report`)
  model-server help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("model-server: no command given (try `model-server help`)");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "serve" => parse_serve(rest).and_then(|options| run(serve(options))),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!(
            "unknown command {other:?} (try `model-server help`)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("model-server: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs `future` on a multi-threaded runtime, with logs (leakwatch's alerts among them)
/// on standard error.
fn run(future: impl std::future::Future<Output = std::io::Result<()>>) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(future).map_err(|e| e.to_string())
}

/// The value after a flag.
fn value<'a>(
    args: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn size(flag: &str, text: &str) -> Result<u64, String> {
    leakwatch::parse_size(text)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{flag}: not a size: {text:?} (e.g. 8MiB, 1g, 65536)"))
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.01 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag}: not a number of seconds from 0.01 to 3600: {text:?}"))
}

fn parse_serve(args: &[String]) -> Result<ServeOptions, String> {
    let mut options = ServeOptions {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        config: Config {
            debug_token: std::env::var("MODEL_SERVER_DEBUG_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            ..Config::default()
        },
        tracking: Tracking::Sampled,
        interval: Duration::from_secs(1),
        memory_limit: None,
        series: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--addr" => {
                let text = value(&mut args, flag)?;
                options.addr = text.parse().map_err(|_| {
                    format!("--addr: not an address: {text:?} (e.g. 127.0.0.1:8080)")
                })?;
            }
            "--leaky" => options.config.store.eviction = Eviction::Leaky,
            "--leakwatch" => {
                options.tracking = match value(&mut args, flag)?.as_str() {
                    "off" => Tracking::Off,
                    "sampled" => Tracking::Sampled,
                    "exact" => Tracking::Exact,
                    other => {
                        return Err(format!("--leakwatch: off, sampled or exact, not {other:?}"));
                    }
                }
            }
            "--debug-token" => {
                let token = value(&mut args, flag)?;
                if token.is_empty() {
                    return Err("--debug-token: empty token".into());
                }
                options.config.debug_token = Some(token.clone());
            }
            "--budget" => {
                options.config.store.budget_bytes = size(flag, value(&mut args, flag)?)? as usize;
            }
            "--context" => {
                let text = value(&mut args, flag)?;
                options.config.store.context_tokens = text
                    .parse()
                    .ok()
                    .filter(|n| (8..=4096).contains(n))
                    .ok_or_else(|| format!("--context: a number from 8 to 4096, not {text:?}"))?;
            }
            "--interval" => options.interval = seconds(flag, value(&mut args, flag)?)?,
            "--memory-limit" => options.memory_limit = Some(size(flag, value(&mut args, flag)?)?),
            "--series" => options.series = Some(value(&mut args, flag)?.into()),
            other => {
                return Err(format!(
                    "unknown option {other:?} for serve (try `model-server help`)"
                ));
            }
        }
    }
    Ok(options)
}
