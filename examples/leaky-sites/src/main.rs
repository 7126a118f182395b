//! A pretend request handler with three allocation sites: a per-request scratch buffer
//! (freed every time), a bounded cache (grows, then stays), and a "seen sessions" list
//! that is never pruned (the leak). leakwatch runs in sampled mode at its default rate
//! and this program prints the live bytes of each call site, largest first, with how
//! much each grew over the second half of the run.
//!
//! Run: `cargo run --release -p leaky-sites` (add `-- --requests N` to change the load).
#![forbid(unsafe_code)]

use leakwatch::{LeakWatch, Snapshot, Symbolizer};
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled();

/// State kept across requests.
struct Service {
    cache: HashMap<u64, Vec<u8>>,
    cache_order: VecDeque<u64>,
    seen_sessions: Vec<Vec<u8>>,
}

const CACHE_ENTRIES: usize = 2_000;

impl Service {
    fn handle(&mut self, request: u64) -> usize {
        let scratch = parse_request(request);
        let cached = self.cached_response(request % 5_000);
        self.remember_session(request);
        scratch.len() + cached
    }

    /// Bounded: at most `CACHE_ENTRIES` responses of 2 KiB, oldest evicted first.
    #[inline(never)]
    fn cached_response(&mut self, key: u64) -> usize {
        if let Some(hit) = self.cache.get(&key) {
            return hit.len();
        }
        if self.cache.len() >= CACHE_ENTRIES {
            if let Some(old) = self.cache_order.pop_front() {
                self.cache.remove(&old);
            }
        }
        let response = render_response(key);
        let len = response.len();
        self.cache.insert(key, response);
        self.cache_order.push_back(key);
        len
    }

    /// The leak: every session's context is kept forever.
    #[inline(never)]
    fn remember_session(&mut self, request: u64) {
        let context = vec![(request % 251) as u8; 700];
        self.seen_sessions.push(context);
    }
}

#[inline(never)]
fn parse_request(request: u64) -> Vec<u8> {
    let mut scratch = Vec::with_capacity(16 * 1024);
    scratch.extend((0..4096).map(|i| (request as usize + i) as u8));
    black_box(scratch)
}

#[inline(never)]
fn render_response(key: u64) -> Vec<u8> {
    vec![(key % 256) as u8; 2048]
}

/// `function (file:line)` of the first frame that is not the allocator's, std's or
/// leakwatch's own; the raw address if nothing symbolizes.
fn label(symbolizer: &mut Symbolizer, frames: &[u64]) -> String {
    let symbols = symbolizer.symbolize_stack(frames);
    let is_runtime = |file: &str, function: &str| {
        file.contains("/rustc/")
            || file.contains("crates/leakwatch")
            || file.contains("/hashbrown-")
            || [
                "std::",
                "core::",
                "alloc::",
                "hashbrown::",
                "__rust",
                "<alloc::",
                "<std::",
                "<core::",
                "<hashbrown::",
            ]
            .iter()
            .any(|p| function.starts_with(p))
    };
    let user = symbols.iter().find(|s| {
        !is_runtime(
            s.file.as_deref().unwrap_or(""),
            s.function.as_deref().unwrap_or(""),
        ) && s.function.is_some()
    });
    match user {
        Some(s) => {
            let file = s.file.as_deref().unwrap_or("?");
            let short = file.rsplit_once("/src/").map_or(file, |(_, rest)| rest);
            format!(
                "{} (src/{}:{})",
                s.function.as_deref().unwrap_or("?"),
                short,
                s.line.unwrap_or(0)
            )
        }
        None => format!("{:#x}", frames.first().copied().unwrap_or(0)),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Live bytes per site label (a label can cover several sites: e.g. unrolled loops).
fn by_label(snapshot: &Snapshot, symbolizer: &mut Symbolizer) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for site in &snapshot.sites {
        *out.entry(label(symbolizer, &site.frames)).or_insert(0.0) += site.live_bytes as f64;
    }
    out
}

fn parse_args() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut requests = 200_000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => {
                let value = args.next().ok_or("--requests needs a number")?;
                requests = value
                    .parse()
                    .map_err(|_| format!("--requests: not a number: {value}"))?;
                if requests < 2 {
                    return Err("--requests must be at least 2".into());
                }
            }
            "-h" | "--help" => {
                println!("usage: leaky-sites [--requests N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument: {other} (try --help)")),
        }
    }
    Ok(requests)
}

fn main() -> ExitCode {
    let requests = match parse_args() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("leaky-sites: {e}");
            return ExitCode::from(2);
        }
    };
    let mut service = Service {
        cache: HashMap::with_capacity(CACHE_ENTRIES + 1),
        cache_order: VecDeque::with_capacity(CACHE_ENTRIES + 1),
        seen_sessions: Vec::new(),
    };
    let mut symbolizer = Symbolizer::new();
    let mut checksum = 0;
    for request in 0..requests / 2 {
        checksum += service.handle(request);
    }
    let halfway = leakwatch::snapshot();
    for request in requests / 2..requests {
        checksum += service.handle(request);
    }
    let end = leakwatch::snapshot();
    black_box(checksum);

    let before = by_label(&halfway, &mut symbolizer);
    let mut rows: Vec<(String, f64, f64)> = by_label(&end, &mut symbolizer)
        .into_iter()
        .map(|(label, live)| {
            let growth = live - before.get(&label).copied().unwrap_or(0.0);
            (label, live, growth)
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));

    println!(
        "leakwatch: {requests} requests, {:?} mode at R = {} KiB, unwinder {:?}",
        end.mode,
        end.sample_rate / 1024,
        end.unwinder
    );
    println!(
        "process: {} live (peak {}), {} allocations; tracker memory {}",
        mib(end.process.live_bytes as f64),
        mib(end.process.peak_live_bytes as f64),
        end.process.allocs,
        mib(end.tracker.memory_bytes as f64)
    );
    println!("\n{:>12}  {:>16}  site", "live", "growth (2nd half)");
    for (label, live, growth) in rows.iter().take(8) {
        println!("{:>12}  {:>16}  {label}", mib(*live), mib(*growth));
    }
    for warning in &end.warnings {
        println!("warning: {warning}");
    }
    match rows.first() {
        Some((label, _, growth)) if label.contains("remember_session") && *growth > 0.0 => {
            println!("\nThe largest and still-growing site is {label}: that is the leak.");
            ExitCode::SUCCESS
        }
        _ => {
            println!("\nunexpected: the leaking site is not ranked first");
            ExitCode::FAILURE
        }
    }
}
