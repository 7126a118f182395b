//! Command-line arguments, declared with clap's derive: help per subcommand, paths taken
//! as any bytes (`PathBuf`), completions from the same declaration. clap's own errors are
//! several lines (message, tip, usage); [`parse`] folds each into one line, so every
//! mistake stays one clear line with exit code 2.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// `leakwatch`: its subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "leakwatch",
    version,
    about = "Which call sites hold memory that keeps growing",
    long_about = "Which call sites hold memory that keeps growing: rank the sites of a series\n\
                  recorded by leakwatch's Recorder, compare two reports.",
    subcommand_required = true,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_STATUS: &str =
    "Exit status: 0 on success, 2 on bad arguments or unreadable input, 1 when output fails.";

/// What to do.
//
// Help text is written with its own line breaks (`verbatim_doc_comment`): clap without
// its `wrap_help` feature (a terminal-size dependency) does not wrap, and indents the
// lines it is given. The first paragraph is the `-h` summary, the whole the `--help`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Rank the sites of a series recorded by leakwatch's Recorder (one snapshot a line)
    ///
    /// Rotated files beside it (SERIES.jsonl.1, .2, ...) are read first, oldest first;
    /// name one of them (SERIES.jsonl.2) to read just that file.
    #[command(verbatim_doc_comment, after_help = EXIT_STATUS)]
    Report(ReportArgs),
    /// Compare two JSON reports: which sites hold more memory in B than in A
    ///
    /// The reports are what `leakwatch report --format json` writes, or a service's
    /// /debug/leaks?format=json.
    #[command(verbatim_doc_comment, after_help = EXIT_STATUS)]
    Diff(DiffArgs),
    /// Print a completion script for SHELL on standard output
    ///
    /// For example:
    ///   leakwatch completions bash > ~/.local/share/bash-completion/completions/leakwatch
    ///   leakwatch completions zsh > ~/.zfunc/_leakwatch   (with ~/.zfunc in $fpath)
    ///   leakwatch completions fish > ~/.config/fish/completions/leakwatch.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// The same as `leakwatch --version` (the hand-written parser took both).
    #[command(hide = true)]
    Version,
}

/// `leakwatch report`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(args_override_self = true)]
pub struct ReportArgs {
    /// The series file
    #[arg(value_name = "SERIES.jsonl")]
    pub series: PathBuf,
    /// How many sites to show
    ///
    /// [default: 10 in text, 20 in prom, all in json and html;
    /// pprof and svg hold every stack]
    #[arg(
        verbatim_doc_comment,
        long,
        value_name = "N",
        value_parser = positive_number,
        allow_negative_numbers = true
    )]
    pub top: Option<usize>,
    /// Output format
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Memory limit for time-to-limit estimates (e.g. 2g, 512MiB)
    ///
    /// [default: the limit the recorder found, if any]
    #[arg(
        verbatim_doc_comment,
        long,
        value_name = "BYTES",
        value_parser = size,
        allow_negative_numbers = true
    )]
    pub limit: Option<u64>,
    /// Write there instead of standard output (needed for pprof on a terminal)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Symbolize the addresses the file has no symbols for from PATH (repeatable)
    ///
    /// PATH is the binary, its debug file, or a directory holding
    /// .build-id/xx/rest.debug; files are matched to the recorded modules by build id.
    #[arg(verbatim_doc_comment, long, value_name = "PATH")]
    pub symbols: Vec<PathBuf>,
}

/// `leakwatch diff`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(args_override_self = true)]
pub struct DiffArgs {
    /// The earlier report
    #[arg(value_name = "A.json")]
    pub before: PathBuf,
    /// The later report
    #[arg(value_name = "B.json")]
    pub after: PathBuf,
    /// How many sites to show in text [default: 20]
    #[arg(
        long,
        value_name = "N",
        value_parser = positive_number,
        allow_negative_numbers = true
    )]
    pub top: Option<usize>,
    /// Output format
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Write there instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `leakwatch completions`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// Output formats of `leakwatch report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Terminal table, leaks first
    Text,
    /// The JSON report (docs/report-format.md), what `leakwatch diff` reads
    Json,
    /// Gzipped pprof protobuf of the latest snapshot (binary)
    Pprof,
    /// Prometheus text exposition (also: prometheus)
    #[value(alias = "prometheus")]
    Prom,
    /// Flame graph of the latest snapshot (also: flamegraph)
    #[value(alias = "flamegraph")]
    Svg,
    /// Self-contained HTML page: the report and the flame graph
    Html,
}

/// Output formats of `leakwatch diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Terminal table
    Text,
    /// The JSON diff (docs/report-format.md)
    Json,
}

/// What the arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run a command.
    Command(Command),
    /// Print this (help or the version) on standard output and succeed.
    Print(String),
}

/// Parses the arguments after the program name. The error is one line, without the
/// `leakwatch: ` every message of the command starts with.
pub fn parse(args: &[OsString]) -> Result<Parsed, String> {
    let argv = std::iter::once(OsString::from("leakwatch")).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(Parsed::Command(cli.command)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Parsed::Print(e.render().to_string()))
        }
        Err(e) => Err(one_line_error(&e, args)),
    }
}

/// What `leakwatch --version` prints.
pub fn version() -> String {
    Cli::command().render_version()
}

/// `--top`: a number above zero.
fn positive_number(value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| "not a positive number".into())
}

/// `--limit`: a size in bytes above zero (`2g`, `512MiB`, `1048576`).
fn size(value: &str) -> Result<u64, String> {
    leakwatch_types::parse_size(value)
        .filter(|&b| b > 0)
        .ok_or_else(|| "not a size (e.g. 2g, 512MiB, 1048576)".into())
}

/// clap's error `e` for `args` as one line: what was wrong, with what, and where to look.
fn one_line_error(e: &clap::Error, args: &[OsString]) -> String {
    // The command has no options that take a value before the subcommand, so the
    // subcommand, if any was reached, is the first argument.
    let root = Cli::command();
    let sub = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|name| root.find_subcommand(name));
    let (name, takes) = match sub {
        Some(sub) => {
            let positionals: Vec<String> = sub
                .get_positionals()
                .map(|p| value_name(p.get_id().as_str(), p.get_value_names()))
                .collect();
            (
                format!("leakwatch {}", sub.get_name()),
                positionals.join(" and "),
            )
        }
        None => ("leakwatch".to_string(), String::new()),
    };
    let string = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let strings = |kind| match e.get(kind) {
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    // An unknown argument is given as typed; any other names a declared one, where
    // "--top <N>" is the option "--top" and "<SHELL>" the positional "SHELL".
    let given = string(ContextKind::InvalidArg).unwrap_or_default();
    let arg = string(ContextKind::InvalidArg)
        .map(|a| a.split(' ').next().unwrap_or(a))
        .map(|a| a.trim_start_matches('<').trim_end_matches('>').to_string());
    let arg = arg.as_deref().unwrap_or("an argument");
    let value = string(ContextKind::InvalidValue).unwrap_or_default();
    let did_you_mean = |kind| {
        let suggestions = strings(kind);
        if suggestions.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", suggestions.join(" or "))
        }
    };
    let message = match e.kind() {
        ErrorKind::UnknownArgument if given.starts_with('-') && given != "-" => format!(
            "unknown option {} for `{name}`{}{}",
            given.escape_debug(),
            did_you_mean(ContextKind::SuggestedArg),
            if sub.is_none() {
                commands_taking(&root, given)
            } else {
                String::new()
            }
        ),
        ErrorKind::UnknownArgument if takes.is_empty() => {
            format!("unexpected argument {given:?} for `{name}`")
        }
        ErrorKind::UnknownArgument => {
            format!("unexpected argument {given:?}: `{name}` takes {takes}")
        }
        ErrorKind::InvalidSubcommand => {
            let sub = string(ContextKind::InvalidSubcommand).unwrap_or_default();
            format!(
                "unknown command {sub:?} (commands: {}){}",
                commands(&root),
                did_you_mean(ContextKind::SuggestedSubcommand)
            )
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            format!("no command given (commands: {})", commands(&root))
        }
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = strings(ContextKind::InvalidArg)
                .iter()
                .map(|a| a.trim_start_matches('<').trim_end_matches('>').to_string())
                .collect();
            format!("`{name}` takes {takes} (missing {})", missing.join(" and "))
        }
        ErrorKind::InvalidValue if value.is_empty() => format!("{arg} needs a value"),
        ErrorKind::InvalidValue => {
            let valid = strings(ContextKind::ValidValue);
            format!(
                "{arg}: unknown value {value:?} (one of: {}){}",
                valid.join(", "),
                did_you_mean(ContextKind::SuggestedValue)
            )
        }
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e).map_or_else(
                || "not a valid value".to_string(),
                |source| source.to_string(),
            );
            format!("{arg}: {why}: {value:?}")
        }
        ErrorKind::InvalidUtf8 => format!(
            "an argument of `{name}` that must be text is not valid UTF-8 (paths may be any \
             bytes; numbers, formats and shells may not)"
        ),
        ErrorKind::ArgumentConflict => {
            let prior = strings(ContextKind::PriorArg);
            format!("{arg} cannot be used with {}", prior.join(" or "))
        }
        // Kinds this declaration cannot produce (values counts, `=` required, I/O):
        // clap's own message, its first line.
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        }
    };
    escape_line_breaks(&format!("{message}; see `{name} --help`"))
}

/// For an option given before the command (`leakwatch --top 5 report ...`): the
/// commands it belongs to, as ` (an option of: report, diff)`.
fn commands_taking(root: &clap::Command, option: &str) -> String {
    let long = option.split('=').next().unwrap_or(option);
    let Some(long) = long.strip_prefix("--") else {
        return String::new();
    };
    let owners: Vec<&str> = root
        .get_subcommands()
        .filter(|sub| sub.get_arguments().any(|a| a.get_long() == Some(long)))
        .map(|sub| sub.get_name())
        .collect();
    if owners.is_empty() {
        String::new()
    } else {
        format!(
            " (an option of: {}; it goes after the command)",
            owners.join(", ")
        )
    }
}

/// An argument's name in messages: its value name (`SERIES.jsonl`), else its id.
fn value_name(id: &str, names: Option<&[clap::builder::Str]>) -> String {
    names
        .and_then(|names| names.first())
        .map_or_else(|| id.to_uppercase(), |name| name.to_string())
}

/// The subcommands a user can give, comma-separated.
fn commands(root: &clap::Command) -> String {
    let mut names: Vec<&str> = root
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .collect();
    names.push("help");
    names.join(", ")
}

/// `message` with any control character (a newline or carriage return a value carried)
/// written as an escape, so it stays one line whatever the arguments held.
pub fn escape_line_breaks(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// Inline, not `mod tests;`: the fuzz crate and the corpus replay include this file by
// path, where a child module's file would be looked for beside them.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, String> {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        parse(&args)
    }

    fn command(line: &str) -> Command {
        match parse_line(line) {
            Ok(Parsed::Command(command)) => command,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn report_takes_its_flags_in_any_order() {
        assert_eq!(
            command(
                "report s.jsonl --top 5 --symbols bin --format=json --limit 2g -o out.json \
                 --symbols=/usr/lib/debug"
            ),
            Command::Report(ReportArgs {
                series: "s.jsonl".into(),
                top: Some(5),
                format: Format::Json,
                limit: Some(2 << 30),
                output: Some("out.json".into()),
                symbols: vec!["bin".into(), "/usr/lib/debug".into()],
            })
        );
        assert_eq!(
            command("report --format prom s.jsonl"),
            Command::Report(ReportArgs {
                series: "s.jsonl".into(),
                top: None,
                format: Format::Prom,
                limit: None,
                output: None,
                symbols: vec![],
            })
        );
    }

    #[test]
    fn every_spelling_the_hand_written_parser_took_still_parses() {
        let report = |line| match command(line) {
            Command::Report(r) => r,
            other => panic!("{line:?}: {other:?}"),
        };
        assert_eq!(report("report --format prometheus s").format, Format::Prom);
        assert_eq!(report("report --format flamegraph s").format, Format::Svg);
        for line in [
            "report s -o=out",
            "report s -o out",
            "report s --output=out",
            "report s --output out",
        ] {
            assert_eq!(report(line).output, Some("out".into()), "{line}");
        }
        // A later flag overrides an earlier one; --symbols adds up.
        let r = report("report s --top 3 --top 4 --format json --format html");
        assert_eq!((r.top, r.format), (Some(4), Format::Html));
        // `-` and names after `--` are files.
        assert_eq!(report("report -").series, PathBuf::from("-"));
        assert_eq!(report("report -- --odd").series, PathBuf::from("--odd"));
        for line in [
            "help",
            "--help",
            "-h",
            "report --help",
            "diff -h",
            "help diff",
        ] {
            let Ok(Parsed::Print(text)) = parse_line(line) else {
                panic!("{line:?}");
            };
            assert!(text.contains("Usage: leakwatch"), "{line:?}: {text}");
        }
        for line in ["--version", "-V"] {
            assert_eq!(parse_line(line), Ok(Parsed::Print(version())), "{line}");
        }
        assert_eq!(command("version"), Command::Version);
        assert_eq!(
            version(),
            format!("leakwatch {}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn diff_takes_two_files() {
        assert_eq!(
            command("diff a.json b.json --top 3"),
            Command::Diff(DiffArgs {
                before: "a.json".into(),
                after: "b.json".into(),
                top: Some(3),
                format: DiffFormat::Text,
                output: None,
            })
        );
        assert_eq!(
            command("completions fish"),
            Command::Completions(CompletionsArgs {
                shell: clap_complete::Shell::Fish
            })
        );
    }

    #[test]
    fn each_subcommand_has_its_own_help() {
        for (line, needles) in [
            (
                "report --help",
                &[
                    "Usage: leakwatch report [OPTIONS] <SERIES.jsonl>",
                    "Rotated files beside it",
                    "--symbols <PATH>",
                    "(repeatable)",
                    ".build-id/xx/rest.debug",
                    "--limit <BYTES>",
                    "prometheus",
                    "Exit status: 0",
                ][..],
            ),
            (
                "diff --help",
                &[
                    "Usage: leakwatch diff [OPTIONS] <A.json> <B.json>",
                    "which sites hold more memory in B than in A",
                ],
            ),
            (
                "completions --help",
                &[
                    "Usage: leakwatch completions <SHELL>",
                    "bash",
                    "zsh",
                    "fish",
                ],
            ),
            ("--help", &["report", "diff", "completions", "Exit status"]),
        ] {
            let Ok(Parsed::Print(text)) = parse_line(line) else {
                panic!("{line:?}");
            };
            for needle in needles {
                assert!(text.contains(needle), "{line:?} lacks {needle:?}:\n{text}");
            }
            assert!(!text.contains("version, the same as"), "hidden: {text}");
        }
    }

    #[test]
    fn mistakes_get_one_clear_line() {
        let cases = [
            (
                "",
                "no command given (commands: report, diff, completions, help)",
            ),
            ("frobnicate", "unknown command \"frobnicate\""),
            ("reprot s", "(did you mean report?)"),
            (
                "report",
                "`leakwatch report` takes SERIES.jsonl (missing SERIES.jsonl)",
            ),
            (
                "report a b",
                "unexpected argument \"b\": `leakwatch report` takes SERIES.jsonl",
            ),
            ("report s --top", "--top needs a value"),
            ("report s --top 0", "--top: not a positive number: \"0\""),
            ("report s --top -3", "--top: not a positive number: \"-3\""),
            ("report s --top ten", "--top: not a positive number"),
            (
                "report s --format xml",
                "--format: unknown value \"xml\" (one of: text, json",
            ),
            ("report s --format jsno", "(did you mean json?)"),
            (
                "report s --limit lots",
                "--limit: not a size (e.g. 2g, 512MiB, 1048576): \"lots\"",
            ),
            (
                "report s --verbose",
                "unknown option --verbose for `leakwatch report`",
            ),
            ("report s --symbol x", "(did you mean --symbols?)"),
            ("report s -x", "unknown option -x for `leakwatch report`"),
            (
                "diff a.json",
                "`leakwatch diff` takes A.json and B.json (missing B.json)",
            ),
            (
                "diff a b --format pprof",
                "--format: unknown value \"pprof\" (one of: text, json)",
            ),
            (
                "diff a b --limit 1g",
                "unknown option --limit for `leakwatch diff`",
            ),
            (
                "diff a b --symbols bin",
                "unknown option --symbols for `leakwatch diff`",
            ),
            ("report s --symbols", "--symbols needs a value"),
            ("report s --symbols=", "--symbols needs a value"),
            (
                "completions tcsh",
                "SHELL: unknown value \"tcsh\" (one of: bash",
            ),
            ("--frob", "unknown option --frob for `leakwatch`; see"),
            (
                "--top 5 report s",
                "unknown option --top for `leakwatch` (an option of: report, diff; it goes \
                 after the command)",
            ),
            ("--limit=1g report s", "(an option of: report;"),
        ];
        for (line, expected) in cases {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(expected), "{line:?}: {e:?}");
            assert!(!e.contains(['\n', '\r']), "{line:?}: {e:?}");
            let sub = line
                .split(' ')
                .next()
                .filter(|s| ["report", "diff", "completions"].contains(s));
            let hint = match sub {
                Some(sub) => format!("; see `leakwatch {sub} --help`"),
                None => "; see `leakwatch --help`".to_string(),
            };
            assert!(e.ends_with(&hint), "{line:?}: {e:?}");
        }
    }

    /// Found by the `args` fuzz target: an option echoed as given put a carriage return
    /// or newline into the one-line error.
    #[test]
    fn unknown_options_are_echoed_on_one_line() {
        for args in [
            &["diff", "a.json", "b.json", "-\rformat"][..],
            &["report", "s", "--ver\nbose"],
            &["report", "s", "--ver\nbose=1"],
            &["report", "s", "--format", "x\n\ny"],
            &["report", "s", "--top", "1\r"],
            &["-\n"],
        ] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let e = parse(&args).unwrap_err();
            assert!(!e.contains(['\n', '\r']), "{args:?}: {e:?}");
            assert!(e.contains("\\r") || e.contains("\\n"), "{args:?}: {e:?}");
        }
    }

    #[test]
    fn arguments_are_echoed_whole() {
        for (args, expected) in [
            (
                &["report", "a", "my file.jsonl"][..],
                "unexpected argument \"my file.jsonl\": `leakwatch report` takes SERIES.jsonl",
            ),
            (&["report", "a", "<b>"], "unexpected argument \"<b>\":"),
            (
                &["report", "a", "--ver bose"],
                "unknown option --ver bose for `leakwatch report`",
            ),
            (
                &["report", "a", "--top", "1 2"],
                "not a positive number: \"1 2\"",
            ),
        ] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let e = parse(&args).unwrap_err();
            assert!(e.contains(expected), "{args:?}: {e:?}");
        }
    }

    #[test]
    fn paths_may_be_any_bytes_and_text_may_not() {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"series-\xff\xfe.jsonl");
        let args = [
            OsString::from("report"),
            odd.into(),
            "-o".into(),
            odd.into(),
        ];
        let Ok(Parsed::Command(Command::Report(r))) = parse(&args) else {
            panic!("{args:?}");
        };
        assert_eq!(
            (r.series.as_os_str(), r.output.as_deref()),
            (odd, Some(odd.as_ref()))
        );
        let args = [
            OsString::from("diff"),
            odd.into(),
            odd.into(),
            "--top".into(),
            odd.into(),
        ];
        let e = parse(&args).unwrap_err();
        assert!(e.contains("not valid UTF-8"), "{e}");
        let e = parse(&[odd.into()]).unwrap_err();
        assert!(!e.contains(['\n', '\r']), "{e}");
    }
}
