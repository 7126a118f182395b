//! `blazesym-cost FILE blazesym|leakwatch [N]`: symbolizes N addresses (default 2,000,
//! one inside every k-th function of FILE's symbol table) of the ELF file FILE, offline,
//! with one library per process, and prints one line: RSS before, after and at its peak
//! (VmHWM), the time, and how many addresses got a function and a file:line. Run each
//! method in its own process: a process's resident set cannot be unwound between them.
use object::{Object, ObjectSymbol};
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

/// File addresses inside every k-th function of `path`, `n` of them, and the file's
/// lowest and highest function addresses.
fn addresses(path: &str, n: usize) -> (Vec<u64>, u64, u64) {
    let bytes = std::fs::read(path).expect("read FILE");
    let file = object::File::parse(&*bytes).expect("parse FILE as ELF");
    let mut funcs: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() >= 16)
        .map(|s| (s.address(), s.size()))
        .collect();
    funcs.sort_unstable();
    funcs.dedup();
    let low = funcs.first().map_or(0, |f| f.0);
    let high = funcs.last().map_or(0, |f| f.0 + f.1);
    let step = (funcs.len() / n).max(1);
    let picked = funcs
        .iter()
        .step_by(step)
        .take(n)
        .map(|f| f.0 + f.1 / 2)
        .collect();
    (picked, low, high)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(method)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: blazesym-cost FILE blazesym|leakwatch [N]");
        std::process::exit(2);
    };
    let n = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let (addrs, low, high) = addresses(path, n);
    // Reading FILE for its symbol table raised the high-water mark: reset it (Linux:
    // writing 5 to clear_refs), so the peak is the symbolizer's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let path = &std::fs::canonicalize(path)
        .expect("FILE's absolute path")
        .display()
        .to_string();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let (named, with_line) = match method.as_str() {
        "blazesym" => {
            use blazesym::symbolize::source::{Elf, Source};
            use blazesym::symbolize::{Input, Symbolized, Symbolizer};
            let symbolizer = Symbolizer::new();
            let src = Source::Elf(Elf::new(path));
            let out = symbolizer
                .symbolize(&src, Input::VirtOffset(&addrs))
                .expect("blazesym symbolize");
            let named = out
                .iter()
                .filter(|s| matches!(s, Symbolized::Sym(_)))
                .count();
            let with_line = out
                .iter()
                .filter(|s| match s {
                    Symbolized::Sym(sym) => {
                        sym.code_info.as_ref().is_some_and(|c| c.line.is_some())
                    }
                    _ => false,
                })
                .count();
            drop(out);
            drop(symbolizer);
            (named, with_line)
        }
        "leakwatch" => {
            use leakwatch_symbolize::{LoadedFiles, ModuleRef, Symbolizer};
            let module = ModuleRef {
                path,
                base: 0,
                start: low,
                end: high,
                build_id: None,
            };
            let mut symbolizer = Symbolizer::with_capacity(0);
            // `symbolize` takes return addresses (it looks up address - 1).
            let returns: Vec<u64> = addrs.iter().map(|a| a + 1).collect();
            let out = symbolizer.symbolize(&[module], &returns, &mut LoadedFiles);
            let named = out
                .iter()
                .filter(|f| f.iter().any(|s| s.function.is_some()))
                .count();
            let with_line = out
                .iter()
                .filter(|f| f.iter().any(|s| s.line.is_some()))
                .count();
            (named, with_line)
        }
        other => {
            eprintln!("unknown method {other}: blazesym or leakwatch");
            std::process::exit(2);
        }
    };
    let elapsed = started.elapsed();
    println!(
        "{method}: {} addresses, {named} named, {with_line} with a line; {:.1} ms; RSS before {before} KiB, after {} KiB, peak {} KiB",
        addrs.len(),
        elapsed.as_secs_f64() * 1e3,
        status_kib("VmRSS:"),
        status_kib("VmHWM:")
    );
}
