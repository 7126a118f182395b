//! The memory and time of symbolizing N addresses of this binary, one method per run (a
//! process's resident set cannot be unwound between methods):
//!
//! - `backtrace`: `backtrace::resolve` plus a symbol-table lookup per address, as the
//!   in-process symbolizer did before `leakwatch-symbolize` (backtrace keeps every
//!   module's parsed DWARF for the life of the process);
//! - `batch`: `leakwatch::Symbolizer::symbolize_many`, one batch (the file mapped, the
//!   DWARF units the addresses need parsed, both dropped after it).
//!
//! `symbolize_cost METHOD [N] [ROUNDS]`: N addresses (default 2,000) spread over the
//! binary's functions, symbolized ROUNDS times (default 10; later rounds miss any cache:
//! each round asks for other addresses of the same functions). Prints one JSON line:
//! RSS before, after and at its peak (VmHWM, reset once the addresses are picked, so it
//! is the method's), and the time of the first and the other rounds.
//!
//! `symbolize_cost file PATH [N]`: N addresses (default 300, one in the middle of every
//! k-th function of PATH's symbol table) of the ELF file PATH symbolized offline in one
//! batch by `leakwatch_symbolize::Symbolizer` (as `leakwatch report --symbols` does),
//! on this thread; prints the same RSS figures, the time, how many addresses got a
//! file, and the symbolizer's stats.
use object::{Object, ObjectSymbol};
use std::process::ExitCode;
use std::time::Instant;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux: 5 to `clear_refs`), so the peak read later
/// is what came after: reading the binary for its symbol table raised it.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `symbolize_cost file PATH [N]`.
fn offline(args: &[String]) -> ExitCode {
    let Some(path) = args.first() else {
        eprintln!("usage: symbolize_cost file PATH [N]");
        return ExitCode::from(2);
    };
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("symbolize_cost: cannot read {path}");
        return ExitCode::from(2);
    };
    let Ok(file) = object::File::parse(&*bytes) else {
        eprintln!("symbolize_cost: {path} is not an object file");
        return ExitCode::from(2);
    };
    let mut funcs: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() >= 16)
        .map(|s| (s.address(), s.size()))
        .collect();
    funcs.sort_unstable();
    funcs.dedup();
    let step = (funcs.len() / n.max(1)).max(1);
    // Return addresses: one past a byte in the middle of each function.
    let addresses: Vec<u64> = funcs
        .iter()
        .step_by(step)
        .take(n)
        .map(|f| f.0 + f.1 / 2 + 1)
        .collect();
    let (low, high) = (
        funcs.first().map_or(0, |f| f.0),
        funcs.last().map_or(0, |f| f.0 + f.1),
    );
    drop(file);
    drop(bytes);
    let mut files = leakwatch_symbolize::SymbolFiles::new();
    if let Err(e) = files.add(std::path::Path::new(path)) {
        eprintln!("symbolize_cost: {e}");
        return ExitCode::from(2);
    }
    let id = leakwatch_symbolize::build_id(std::path::Path::new(path))
        .ok()
        .flatten();
    let module = leakwatch_symbolize::ModuleRef {
        path,
        base: 0,
        start: low,
        end: high + 1,
        build_id: id.as_deref(),
    };
    let mut symbolizer = leakwatch_symbolize::Symbolizer::with_capacity(0);
    reset_peak();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let frames = symbolizer.symbolize(&[module], &addresses, &mut files);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let with_file = frames
        .iter()
        .filter(|f| f.first().is_some_and(|s| s.file.is_some()))
        .count();
    let after = status_kib("VmRSS:");
    println!(
        "{}",
        serde_json::json!({
            "method": "file",
            "addresses": addresses.len(),
            "with_file": with_file,
            "frames": frames.iter().map(Vec::len).sum::<usize>(),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_growth_kib": after.saturating_sub(before),
            "peak_rss_kib": status_kib("VmHWM:"),
            "ms": ms,
            "symbolizer": format!("{:?}", symbolizer.stats()),
            "warnings": symbolizer.warnings(),
        })
    );
    ExitCode::SUCCESS
}

/// `(runtime address, size)` of every `step`-th function of this binary, N of them.
fn functions(n: usize) -> Vec<(u64, u64)> {
    let bytes = std::fs::read("/proc/self/exe").expect("read /proc/self/exe");
    let file = object::File::parse(&*bytes).expect("parse /proc/self/exe");
    let mut funcs: Vec<(u64, u64, String)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() >= 16)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
        .collect();
    funcs.sort_unstable();
    let this = main as *const () as usize as u64;
    let (file_main, ..) = funcs
        .iter()
        .find(|f| format!("{:#}", rustc_demangle::demangle(&f.2)) == "symbolize_cost::main")
        .expect("symbolize_cost::main in the symbol table");
    let base = this - file_main;
    let step = (funcs.len() / n).max(1);
    funcs
        .iter()
        .step_by(step)
        .take(n)
        .map(|f| (f.0 + base, f.1))
        .collect()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let method = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    if method == "file" {
        return offline(&std::env::args().skip(2).collect::<Vec<_>>());
    }
    if !["backtrace", "batch", "compare"].contains(&method.as_str()) {
        eprintln!("symbolize_cost: unknown method {method:?} (backtrace|batch|compare|file)");
        return ExitCode::from(2);
    }
    let funcs = functions(n);
    if method == "compare" {
        return compare(&funcs);
    }
    reset_peak();
    let rss_before = status_kib("VmRSS:");
    let mut first_ms = 0.0;
    let mut rest_ms = 0.0;
    let mut frames = 0usize;
    let mut named = 0usize;
    let mut symbolizer = leakwatch::Symbolizer::with_capacity(0);
    for round in 0..rounds {
        // A "return address" inside each function, another one each round.
        let addresses: Vec<u64> = funcs
            .iter()
            .map(|&(start, size)| start + 1 + (round * 4) % (size - 1))
            .collect();
        let started = Instant::now();
        for symbols in resolve(&method, &mut symbolizer, &addresses) {
            frames += symbols.len();
            named += symbols.iter().filter(|s| s.file.is_some()).count();
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if round == 0 {
            first_ms = ms;
        } else {
            rest_ms += ms;
        }
    }
    let rss_after = status_kib("VmRSS:");
    println!(
        "{}",
        serde_json::json!({
            "method": method,
            "addresses": funcs.len(),
            "rounds": rounds,
            "frames": frames,
            "frames_with_file": named,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "rss_growth_kib": rss_after.saturating_sub(rss_before),
            "peak_rss_kib": status_kib("VmHWM:"),
            "first_round_ms": first_ms,
            "later_round_ms": if rounds > 1 { rest_ms / (rounds - 1) as f64 } else { 0.0 },
            "symbolizer": format!("{:?}", symbolizer.stats()),
        })
    );
    ExitCode::SUCCESS
}

/// Whether both methods give every address the same frames (function, file, line).
fn compare(funcs: &[(u64, u64)]) -> ExitCode {
    let addresses: Vec<u64> = funcs
        .iter()
        .map(|&(start, size)| start + size / 2)
        .collect();
    let mut symbolizer = leakwatch::Symbolizer::with_capacity(0);
    let key = |frames: &[leakwatch::Symbol]| -> Vec<(Option<String>, Option<String>, Option<u32>)> {
        frames
            .iter()
            .map(|s| (s.function.clone(), s.file.clone(), s.line))
            .collect()
    };
    let old = resolve("backtrace", &mut symbolizer, &addresses);
    let new = resolve("batch", &mut symbolizer, &addresses);
    let mut differ = 0;
    for ((a, o), n) in addresses.iter().zip(&old).zip(&new) {
        if key(o) != key(n) {
            differ += 1;
            if differ <= 3 {
                eprintln!(
                    "{a:#x}:\n  backtrace {:?}\n  batch     {:?}",
                    key(o),
                    key(n)
                );
            }
        }
    }
    println!(
        "{} addresses, {differ} with different frames",
        addresses.len()
    );
    if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn resolve(
    method: &str,
    symbolizer: &mut leakwatch::Symbolizer,
    addresses: &[u64],
) -> Vec<Vec<leakwatch::Symbol>> {
    if method == "batch" {
        return symbolizer.symbolize_many(addresses);
    }
    addresses
        .iter()
        .map(|&address| {
            let mut out = Vec::new();
            // `backtrace::resolve` looks up the address before the one it is given (the
            // old symbolizer subtracted one more: it looked up address - 2).
            backtrace::resolve(address as usize as *mut std::ffi::c_void, |symbol| {
                let mut s = leakwatch::Symbol::default();
                s.address = address;
                s.function = symbol.name().map(|n| format!("{n:#}"));
                s.file = symbol.filename().map(|p| p.display().to_string());
                s.line = symbol.lineno();
                out.push(s);
            });
            out
        })
        .collect()
}
