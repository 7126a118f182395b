//! `model-server`: a small language model served over HTTP, with leakwatch watching it.
//!
//! ```text
//! model-server demo    [--out DIR] [--rate N] [--clients N] [--session-requests K]
//!                      [--update-after S] [--max-leaky S] [--fixed-seconds S]
//!                      [--leakwatch sampled|exact]
//! model-server serve   [--addr 127.0.0.1:8080] [--leaky] [--leakwatch off|sampled|exact]
//!                      [--token-file PATH] [--budget 8MiB] [--context 128]
//!                      [--interval 1s] [--memory-limit 1GiB] [--series FILE]
//!                      [--header-timeout 10] [--idle-timeout 60] [--request-timeout 30]
//!                      [--shutdown-timeout 5]
//! model-server soak    [--duration 600] [--rate N] [--clients N] [--update-every S]
//!                      [--rude-every S] [--max-latency S] [--out DIR] [--leaky]
//! model-server loadgen [--url http://127.0.0.1:8080] [--clients N] [--requests N]
//!                      [--duration S] [--rate N] [--session-requests K]
//!                      [--max-tokens LO-HI] [--timeout S]
//! ```
#![forbid(unsafe_code)]

use leakwatch::LeakWatch;
use model_server::demo::DemoOptions;
use model_server::loadgen::{self, LoadOptions};
use model_server::serve::{ServeOptions, Tracking};
use model_server::server::{Config, Token};
use model_server::sessions::Eviction;
use model_server::soak::SoakOptions;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system();

const USAGE: &str = "\
model-server: a small language model served over HTTP, with leakwatch watching it

usage:
  model-server demo [options]
      leakwatch finds the outage's leak in the service under load, then checks the fix
      (about 40 s; starts the service itself, on loopback)
      --out DIR              where the HTML report and server logs go
                             (default target/model-server-demo)
      --rate N               requests per second (default 1000)
      --clients N            concurrent clients (default 4)
      --session-requests K   a new session every K requests (default 8)
      --update-after S       model update after S seconds of load, once the caches are a
                             plateau (default 8)
      --max-leaky S          longest the leaky run may take to find the leak (default 45)
      --fixed-seconds S      length of the fixed run (default 20)
      --leakwatch MODE       sampled (default) or exact
  model-server serve [options]
      --addr ADDR            where to listen (default 127.0.0.1:8080; port 0 = any free port)
      --leaky                the session store from before the postmortem (leaks after a model update)
      --leakwatch MODE       off, sampled or exact (default: as LEAKWATCH and LEAKWATCH_SAMPLE
                             say, else sampled at LEAKWATCH_SAMPLE or 512k)
      --token-file PATH      file holding the bearer token for /admin and /debug when not
                             on loopback (or the token in MODEL_SERVER_DEBUG_TOKEN; never
                             in the arguments, which every user can read)
      --budget BYTES         session cache budget (default 8MiB)
      --context TOKENS       context words kept per session (default 128)
      --interval SECONDS     leakwatch recorder interval (default 1; fractions allowed)
      --memory-limit BYTES   memory limit for time-to-limit (default: the cgroup's)
      --series FILE          append leakwatch's series to FILE (for `leakwatch report`)
      --header-timeout S     a request head must arrive within S seconds of its first byte
                             (default 10)
      --idle-timeout S       close connections idle this long (default 60)
      --request-timeout S    answer 408 when a request takes longer (default 30)
      --shutdown-timeout S   on SIGTERM or Ctrl-C, requests in flight get S seconds, then the
                             process exits anyway (default 5)
  model-server soak [options]
      the fixed service under load with leakwatch sampled, model updates and clients that
      give up mid-request; checks: no errors, no stall, no leak verdict, flat RSS, a clean
      exit on SIGTERM (exit 1 when one fails)
      --duration SECONDS     length of the load (default 600)
      --rate N               requests per second (default 500)
      --clients N            concurrent clients (default 4)
      --session-requests K   a new session every K requests (default 8)
      --update-every S       a model update every S seconds (default 60)
      --rude-every S         a client giving up mid-request every S seconds (default 0.1)
      --max-latency S        slowest a request may be (default 2)
      --out DIR              where the service's log goes (default target/model-server-soak)
      --leaky                the leaky store, to see the checks fail
  model-server loadgen [options]
      drives POST /v1/generate at a service on this machine (loopback only)
      --url URL              http://127.x.x.x:PORT or http://localhost:PORT
                             (default http://127.0.0.1:8080)
      --clients N            concurrent clients, one connection each (default 4)
      --requests N           stop after N requests (default: no bound)
      --duration SECONDS     stop after this long (default 10)
      --rate N               requests per second over all clients (default: as fast as answered)
      --session-requests K   a new session every K requests (default 8)
      --max-tokens LO-HI     max_tokens of each request, from LO to HI (default 8-24)
      --timeout SECONDS      per request (default 10; connect: 2)
  model-server help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("model-server: no command given (try `model-server help`)");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "serve" => parse_serve(rest)
            .and_then(|options| model_server::run_service(options).map_err(|e| e.to_string())),
        "loadgen" => {
            match parse_loadgen(rest).and_then(|o| loadgen::run(o).map_err(|e| e.to_string())) {
                Ok(report) => {
                    println!("{report}");
                    // Nothing answered: say so in the exit code too.
                    if report.ok == 0 {
                        return ExitCode::FAILURE;
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        "demo" => match parse_demo(rest) {
            Ok(options) => match model_server::demo::run(&options) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("model-server demo: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => Err(e),
        },
        "soak" => match parse_soak(rest) {
            Ok(options) => match model_server::soak::run(&options) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("model-server soak: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => Err(e),
        },
        "help" | "--help" | "-h" => {
            // A closed pipe (`| head`) is no error worth a panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
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

/// Longest token file read: a token is a line, not a file's worth.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The token in `path`: its text without trailing whitespace (a newline), non-empty, at
/// most [`MAX_TOKEN_BYTES`].
fn read_token_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| format!("--token-file: cannot read {path:?}: {e}"))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(format!(
            "--token-file: {path:?} is longer than {MAX_TOKEN_BYTES} bytes: a token is one line"
        ));
    }
    let text =
        String::from_utf8(text).map_err(|_| format!("--token-file: {path:?} is not UTF-8 text"))?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(format!("--token-file: {path:?} is empty"));
    }
    Ok(token.to_string())
}

fn parse_serve(args: &[String]) -> Result<ServeOptions, String> {
    let mut options = ServeOptions {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        config: Config::default(),
        // Set below: from --leakwatch, else from the environment.
        tracking: Tracking::Sampled,
        interval: Duration::from_secs(1),
        memory_limit: None,
        series: None,
    };
    let env_token = match std::env::var_os("MODEL_SERVER_DEBUG_TOKEN") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(
            v.into_string()
                .map_err(|_| "MODEL_SERVER_DEBUG_TOKEN: not UTF-8".to_string())?,
        ),
        None => None,
    };
    let mut file_token = None;
    let mut tracking = None;
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
                tracking = Some(match value(&mut args, flag)?.as_str() {
                    "off" => Tracking::Off,
                    "sampled" => Tracking::Sampled,
                    "exact" => Tracking::Exact,
                    other => {
                        return Err(format!("--leakwatch: off, sampled or exact, not {other:?}"));
                    }
                })
            }
            "--debug-token" => {
                return Err(
                    "--debug-token: a token in the arguments is visible to every user (ps): use --token-file PATH or MODEL_SERVER_DEBUG_TOKEN".into(),
                );
            }
            "--token-file" => file_token = Some(read_token_file(value(&mut args, flag)?)?),
            "--header-timeout" => {
                options.config.timeouts.header_read = seconds(flag, value(&mut args, flag)?)?;
            }
            "--idle-timeout" => {
                options.config.timeouts.idle = seconds(flag, value(&mut args, flag)?)?;
            }
            "--request-timeout" => {
                options.config.timeouts.request = seconds(flag, value(&mut args, flag)?)?;
            }
            "--shutdown-timeout" => {
                options.config.timeouts.shutdown = seconds(flag, value(&mut args, flag)?)?;
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
    let token = match (file_token, env_token) {
        (Some(_), Some(_)) => {
            return Err(
                "both --token-file and MODEL_SERVER_DEBUG_TOKEN give a token: give one".into(),
            );
        }
        (token, None) | (None, token) => token,
    };
    options.config.token = token.as_deref().map(Token::new);
    // An explicit --leakwatch wins; otherwise LEAKWATCH and LEAKWATCH_SAMPLE decide, as
    // for any service built with leakwatch (the allocator has applied them already).
    options.tracking = match tracking {
        Some(tracking) => tracking,
        None => {
            let value = std::env::var_os("LEAKWATCH");
            let value = match &value {
                Some(v) => Some(
                    v.to_str()
                        .ok_or_else(|| format!("LEAKWATCH: not UTF-8: {v:?}"))?,
                ),
                None => None,
            };
            Tracking::from_env(value, leakwatch::sample_rate())?
        }
    };
    Ok(options)
}

fn count(flag: &str, text: &str, max: u64) -> Result<u64, String> {
    text.parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{flag}: a whole number from 1 to {max}, not {text:?}"))
}

fn rate(flag: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.01..=1e6).contains(r))
        .ok_or_else(|| format!("{flag}: requests per second from 0.01 to 1000000, not {text:?}"))
}

fn parse_loadgen(args: &[String]) -> Result<LoadOptions, String> {
    let mut options = LoadOptions {
        clients: 4,
        ..LoadOptions::default()
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut text = || value(&mut args, flag);
        match flag.as_str() {
            "--url" => options.url = text()?.clone(),
            "--clients" => {
                options.clients = count(flag, text()?, loadgen::MAX_CLIENTS as u64)? as usize;
            }
            "--requests" => options.requests = count(flag, text()?, u64::MAX)?,
            "--duration" => options.duration = seconds(flag, text()?)?,
            "--rate" => options.rate = Some(rate(flag, text()?)?),
            "--session-requests" => {
                options.session_requests = count(flag, text()?, u64::from(u32::MAX))? as u32;
            }
            "--max-tokens" => {
                let text = text()?;
                let range = text.split_once('-').unwrap_or((text, text));
                options.max_tokens = match (range.0.parse(), range.1.parse()) {
                    (Ok(lo), Ok(hi)) if lo >= 1 && lo <= hi => (lo, hi),
                    _ => return Err(format!("--max-tokens: LO-HI or N, from 1 up, not {text:?}")),
                };
            }
            "--timeout" => options.request_timeout = seconds(flag, text()?)?,
            other => {
                return Err(format!(
                    "unknown option {other:?} for loadgen (try `model-server help`)"
                ));
            }
        }
    }
    // Refuse a bad URL here, with exit code 2, rather than after starting.
    loadgen::Target::parse(&options.url).map_err(|e| e.to_string())?;
    Ok(options)
}

fn parse_soak(args: &[String]) -> Result<SoakOptions, String> {
    let mut options = SoakOptions::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut text = || value(&mut args, flag);
        match flag.as_str() {
            "--duration" => options.duration = seconds(flag, text()?)?,
            "--rate" => options.rate = rate(flag, text()?)?,
            "--clients" => options.clients = count(flag, text()?, 64)? as usize,
            "--session-requests" => options.session_requests = count(flag, text()?, 1000)? as u32,
            "--update-every" => options.update_every = seconds(flag, text()?)?,
            "--rude-every" => options.rude_every = seconds(flag, text()?)?,
            "--max-latency" => options.max_latency = seconds(flag, text()?)?,
            "--out" => options.out = text()?.into(),
            "--leaky" => options.leaky = true,
            other => {
                return Err(format!(
                    "unknown option {other:?} for soak (try `model-server help`)"
                ));
            }
        }
    }
    Ok(options)
}

fn parse_demo(args: &[String]) -> Result<DemoOptions, String> {
    let mut options = DemoOptions::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut text = || value(&mut args, flag);
        match flag.as_str() {
            "--out" => options.out = text()?.into(),
            "--rate" => options.rate = rate(flag, text()?)?,
            "--clients" => options.clients = count(flag, text()?, 64)? as usize,
            "--session-requests" => options.session_requests = count(flag, text()?, 1000)? as u32,
            "--update-after" => options.update_after = seconds(flag, text()?)?,
            "--max-leaky" => options.max_leaky = seconds(flag, text()?)?,
            "--fixed-seconds" => options.fixed_run = seconds(flag, text()?)?,
            "--leakwatch" => {
                options.tracking = match text()?.as_str() {
                    "sampled" => Tracking::Sampled,
                    "exact" => Tracking::Exact,
                    other => return Err(format!("--leakwatch: sampled or exact, not {other:?}")),
                }
            }
            other => {
                return Err(format!(
                    "unknown option {other:?} for demo (try `model-server help`)"
                ));
            }
        }
    }
    Ok(options)
}
