//! `leakwatch`: rank the call sites of a recorded series whose memory keeps growing, and
//! compare two reports. Run `leakwatch --help` (or `leakwatch report --help`, ...) for
//! the usage, `leakwatch completions SHELL` for a completion script.
//!
//! Every failure is one line on standard error: exit code 2 for bad arguments or input
//! (naming the file and line), 1 when the output cannot be written.
#![forbid(unsafe_code)]

mod args;

use args::{
    Cli, Command, CompletionsArgs, DiffArgs, DiffFormat, Format, Parsed, ReportArgs,
    escape_line_breaks,
};
use clap::CommandFactory;
use leakwatch_report::recording::rotated_set;
use leakwatch_report::render::text::bytes;
use leakwatch_report::render::{flamegraph, html, pprof, prometheus, text};
use leakwatch_report::{Diff, History, Recording, Report, ReportOptions, diff};
use leakwatch_symbolize::{ModuleRef, SymbolFiles, Symbolizer};
use std::ffi::OsString;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why the command failed.
enum Failure {
    /// Bad arguments or input: exit 2.
    Input(String),
    /// The output could not be written: exit 1.
    Output(String),
}

fn main() -> ExitCode {
    // Arguments as the OS gave them: a path need not be UTF-8.
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match args::parse(&args) {
        Ok(Parsed::Print(text)) => emit(None, text.as_bytes()),
        Ok(Parsed::Command(command)) => run(command),
        Err(message) => Err(Failure::Input(message)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A file name or a line a file held may carry a newline: still one line.
        Err(Failure::Input(message)) => {
            eprintln!("leakwatch: {}", escape_line_breaks(&message));
            ExitCode::from(2)
        }
        Err(Failure::Output(message)) => {
            eprintln!("leakwatch: {}", escape_line_breaks(&message));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Version => emit(None, args::version().as_bytes()),
        Command::Completions(CompletionsArgs { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "leakwatch", &mut script);
            emit(None, &script)
        }
        Command::Report(ReportArgs {
            series,
            top,
            format,
            limit,
            output,
            symbols,
        }) => {
            if format == Format::Pprof && output.is_none() && std::io::stdout().is_terminal() {
                return Err(Failure::Input(
                    "pprof output is binary: give --output FILE or redirect standard output".into(),
                ));
            }
            // The symbol files first: a wrong path fails before a long read.
            let files = symbol_files(&symbols)?;
            let mut recording = read_series(&series)?;
            let warnings = match files {
                Some(mut files) => symbolize(&mut recording, &mut files),
                None => Vec::new(),
            };
            for warning in &warnings {
                eprintln!("leakwatch: warning: {}", escape_line_breaks(warning));
            }
            let out = render_report(&recording, top, format, limit, &warnings);
            emit(output.as_deref(), &out)
        }
        Command::Diff(DiffArgs {
            before,
            after,
            top,
            format,
            output,
        }) => {
            let a = read_report(&before)?;
            let b = read_report(&after)?;
            let d = diff(&a, &b);
            let out = match format {
                DiffFormat::Json => {
                    format!("{}\n", serde_json::to_string_pretty(&d).unwrap_or_default())
                }
                DiffFormat::Text => diff_text(&d, top.unwrap_or(20), &before, &after),
            };
            emit(output.as_deref(), out.as_bytes())
        }
    }
}

/// The `--symbols` paths, checked (each exists; a file is ELF), or `None` when none.
fn symbol_files(paths: &[PathBuf]) -> Result<Option<SymbolFiles>, Failure> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut files = SymbolFiles::new();
    for path in paths {
        files
            .add(path)
            .map_err(|e| Failure::Input(format!("--symbols {e}")))?;
    }
    Ok(Some(files))
}

/// Symbolizes, from `files`, the addresses of the recording's sites that it has no
/// symbols for (the symbols it has came from the process, and stay), against the modules
/// of its latest snapshot. Returns warnings: modules without a matching file, and how
/// many addresses stay unnamed.
fn symbolize(recording: &mut Recording, files: &mut SymbolFiles) -> Vec<String> {
    let missing = recording
        .symbols
        .missing(recording.history.sites().map(|site| site.frames.as_slice()));
    if missing.is_empty() {
        return Vec::new();
    }
    let latest = recording.history.latest_snapshot();
    let modules: Vec<ModuleRef<'_>> = latest.modules.iter().map(ModuleRef::from).collect();
    let mut symbolizer = Symbolizer::with_capacity(0);
    let resolved = symbolizer.symbolize(&modules, &missing, files);
    let mut unnamed = 0;
    for (address, frames) in missing.iter().zip(resolved) {
        if frames
            .iter()
            .any(|f| f.function.is_some() || f.file.is_some())
        {
            recording.symbols.insert(*address, frames);
        } else {
            unnamed += 1;
        }
    }
    let mut warnings: Vec<String> = symbolizer
        .warnings()
        .iter()
        .map(|w| format!("--symbols: {w}"))
        .collect();
    if unnamed > 0 {
        warnings.push(format!(
            "--symbols: {unnamed} of {} addresses without symbols stay unnamed",
            missing.len()
        ));
    }
    warnings
}

/// Reads the series file `path` with its rotated files (`path.N` .. `path.1`, oldest
/// first; see `rotated_set`). All are opened before any is read, so a recorder rotating
/// meanwhile (renaming them) does not make the set skip or repeat a file.
fn read_series(path: &Path) -> Result<Recording, Failure> {
    let mut files = Vec::new();
    for path in rotated_set(path) {
        let origin = path.display().to_string();
        let file = std::fs::File::open(&path)
            .map_err(|e| Failure::Input(format!("{origin}: cannot open: {e}")))?;
        files.push((origin, BufReader::new(file)));
    }
    Recording::read_files(files, History::default()).map_err(|e| Failure::Input(e.to_string()))
}

fn read_report(path: &Path) -> Result<Report, Failure> {
    let origin = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Input(format!("{origin}: cannot open: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Failure::Input(format!(
            "{origin}: not a text file (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Report::from_json(&origin, &text).map_err(|e| Failure::Input(e.to_string()))
}

fn render_report(
    recording: &Recording,
    top: Option<usize>,
    format: Format,
    limit: Option<u64>,
    extra_warnings: &[String],
) -> Vec<u8> {
    let mut options = ReportOptions::default();
    options.rank.limit_bytes = limit.or(recording.memory_limit);
    if matches!(format, Format::Json | Format::Html) {
        options.top = top;
    }
    let build = |options: &ReportOptions| {
        let mut report = Report::build(&recording.history, &recording.symbols, options);
        report.warnings.extend(extra_warnings.iter().cloned());
        if recording.earlier_processes > 0 {
            report.warnings.push(format!(
                "the file holds {} earlier process(es); this report covers the last one (pid {})",
                recording.earlier_processes, report.pid
            ));
        }
        report
    };
    match format {
        Format::Text => text::text(&build(&options), top.unwrap_or(10)).into_bytes(),
        Format::Json => format!("{}\n", build(&options).to_json()).into_bytes(),
        Format::Prom => prometheus::prometheus(&build(&options), top.unwrap_or(20)).into_bytes(),
        Format::Pprof => pprof::pprof(&recording.history.latest_snapshot(), &recording.symbols),
        Format::Svg => flamegraph::flamegraph(
            &recording.history.latest_snapshot(),
            &recording.symbols,
            "Live heap bytes by stack",
        )
        .into_bytes(),
        Format::Html => {
            let svg = flamegraph::flamegraph(
                &recording.history.latest_snapshot(),
                &recording.symbols,
                "Live heap bytes by stack",
            );
            html::html(&build(&options), Some(&svg)).into_bytes()
        }
    }
}

/// The diff as a terminal table, at most 100 columns wide.
fn diff_text(d: &Diff, top: usize, before: &Path, after: &Path) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "leakwatch diff: {} -> {} ({:.0} s apart)\n",
        before.display(),
        after.display(),
        d.seconds_between
    ));
    let (a, b) = d.process_live_bytes;
    out.push_str(&format!(
        "process live heap: {} -> {} ({})\n\n",
        bytes(a as f64),
        bytes(b as f64),
        signed(bytes((b - a) as f64))
    ));
    out.push_str(&format!(
        "{:>10} {:>10} {:>11}  {:<9}  {}\n",
        "before", "after", "change", "verdict", "site"
    ));
    for s in d.sites.iter().take(top) {
        let verdict = s.after_verdict.map_or("(gone)", |v| v.as_str());
        let line = format!(
            "{:>10} {:>10} {:>11}  {:<9}  {}",
            bytes(s.before_bytes as f64),
            bytes(s.after_bytes as f64),
            signed(bytes(s.change_bytes as f64)),
            verdict,
            s.label
        );
        out.push_str(&fit(&line, 100));
        out.push('\n');
    }
    if d.sites.len() > top {
        out.push_str(&format!(
            "({} more site(s); --top N shows more)\n",
            d.sites.len() - top
        ));
    }
    if d.sites.is_empty() {
        out.push_str("(no sites in either report)\n");
    }
    for w in &d.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn signed(s: String) -> String {
    if s.starts_with('-') || s.starts_with('+') {
        s
    } else {
        format!("+{s}")
    }
}

/// `line` cut to `width` characters, ending in `…` when cut.
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

fn emit(output: Option<&Path>, bytes: &[u8]) -> Result<(), Failure> {
    match output {
        Some(path) => std::fs::write(path, bytes)
            .map_err(|e| Failure::Output(format!("cannot write {}: {e}", path.display()))),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
                Ok(()) => Ok(()),
                // The reader went away (`| head`): nothing left to say.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Failure::Output(format!(
                    "cannot write to standard output: {e}"
                ))),
            }
        }
    }
}
