//! Command-line arguments: parsed by hand (two subcommands, a few flags) so that every
//! mistake gets one clear line and exit code 2.

use std::path::PathBuf;

/// The usage text of `leakwatch help`.
pub const USAGE: &str = "\
leakwatch: which call sites hold memory that keeps growing

usage:
  leakwatch report SERIES.jsonl [--top N] [--format FORMAT] [--limit BYTES] [--output FILE]
                   [--symbols PATH]...
      Rank the sites of a series recorded by leakwatch's Recorder (one snapshot a line).
      Rotated files beside it (SERIES.jsonl.1, .2, ...) are read first, oldest first;
      name one of them (SERIES.jsonl.2) to read just that file.
      FORMAT: text (default), json, pprof, prom, svg (flame graph), html
      --limit BYTES   memory limit for time-to-limit estimates (e.g. 2g, 512MiB);
                      default: the limit the recorder found, if any
      --output FILE   write there instead of standard output (needed for pprof on a terminal)
      --symbols PATH  symbolize the addresses the file has no symbols for from PATH: the
                      binary, its debug file, or a directory holding .build-id/xx/rest.debug;
                      matched to the recorded modules by build id (repeatable)
  leakwatch diff A.json B.json [--top N] [--format text|json] [--output FILE]
      Compare two JSON reports (`leakwatch report --format json`, or /debug/leaks?format=json):
      which sites hold more memory in B than in A.
  leakwatch help | --help | -h
  leakwatch --version

exit status: 0 on success, 2 on bad arguments or unreadable input, 1 when output fails";

/// Output formats of `leakwatch report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Terminal table.
    Text,
    /// The JSON report.
    Json,
    /// Gzipped pprof protobuf.
    Pprof,
    /// Prometheus text exposition.
    Prom,
    /// Flame graph SVG.
    Svg,
    /// Self-contained HTML page.
    Html,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `leakwatch report`.
    Report {
        /// The series file.
        series: PathBuf,
        /// Sites to show.
        top: Option<usize>,
        /// Output format.
        format: Format,
        /// Memory limit override.
        limit: Option<u64>,
        /// Output file.
        output: Option<PathBuf>,
        /// Binaries, debug files or `.build-id` directories to symbolize from.
        symbols: Vec<PathBuf>,
    },
    /// `leakwatch diff`.
    Diff {
        /// The earlier report.
        before: PathBuf,
        /// The later report.
        after: PathBuf,
        /// Sites to show.
        top: Option<usize>,
        /// `Text` or `Json`.
        format: Format,
        /// Output file.
        output: Option<PathBuf>,
    },
    /// Print the usage.
    Help,
    /// Print the version.
    Version,
}

/// Parses the arguments after the program name. The error is one line.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(command) = args.first() else {
        return Err("no command given (try `leakwatch help`)".into());
    };
    let rest = &args[1..];
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "--version" | "-V" | "version" => Ok(Command::Version),
        "report" => {
            let flags = Flags::parse("report", rest)?;
            let [series] = flags.files("report", ["SERIES.jsonl"])?;
            Ok(Command::Report {
                series,
                top: flags.top,
                format: flags.format.unwrap_or(Format::Text),
                limit: flags.limit,
                output: flags.output,
                symbols: flags.symbols,
            })
        }
        "diff" => {
            let flags = Flags::parse("diff", rest)?;
            if flags.limit.is_some() {
                return Err("diff does not take --limit".into());
            }
            if !flags.symbols.is_empty() {
                return Err("diff does not take --symbols (reports carry their labels)".into());
            }
            let format = match flags.format {
                None | Some(Format::Text) => Format::Text,
                Some(Format::Json) => Format::Json,
                Some(_) => return Err("diff writes --format text or json".into()),
            };
            let [before, after] = flags.files("diff", ["A.json", "B.json"])?;
            Ok(Command::Diff {
                before,
                after,
                top: flags.top,
                format,
                output: flags.output,
            })
        }
        other if other.starts_with('-') => Err(format!(
            "unknown option {} before the command (try `leakwatch help`)",
            other.escape_debug()
        )),
        other => Err(format!(
            "unknown command {other:?} (commands: report, diff, help)"
        )),
    }
}

#[derive(Default)]
struct Flags {
    top: Option<usize>,
    format: Option<Format>,
    limit: Option<u64>,
    output: Option<PathBuf>,
    symbols: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Flags {
    fn parse(command: &str, args: &[String]) -> Result<Flags, String> {
        let mut flags = Flags::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "--" {
                flags.files.extend(args[i..].iter().map(PathBuf::from));
                break;
            }
            if !(arg.starts_with("--") || arg == "-o" || arg.starts_with("-o=")) {
                if arg.starts_with('-') && arg != "-" {
                    return Err(format!(
                        "unknown option {} for `leakwatch {command}` (try `leakwatch help`)",
                        arg.escape_debug()
                    ));
                }
                flags.files.push(PathBuf::from(arg));
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                if let Some(v) = &inline {
                    return Ok(v.clone());
                }
                let v = args.get(i).ok_or_else(|| format!("{name} needs {what}"))?;
                i += 1;
                Ok(v.clone())
            };
            match name {
                "--top" => {
                    let v = value("a number")?;
                    let n: usize = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--top: not a positive number: {v:?}"))?;
                    flags.top = Some(n);
                }
                "--format" => {
                    let v = value("a format")?;
                    flags.format = Some(match v.as_str() {
                        "text" => Format::Text,
                        "json" => Format::Json,
                        "pprof" => Format::Pprof,
                        "prom" | "prometheus" => Format::Prom,
                        "svg" | "flamegraph" => Format::Svg,
                        "html" => Format::Html,
                        _ => {
                            return Err(format!(
                                "--format: unknown format {v:?} (text, json, pprof, prom, svg, html)"
                            ));
                        }
                    });
                }
                "--limit" => {
                    let v = value("a size in bytes")?;
                    let bytes = leakwatch_types::parse_size(&v)
                        .filter(|&b| b > 0)
                        .ok_or_else(|| {
                            format!("--limit: not a size: {v:?} (e.g. 2g, 512MiB, 1048576)")
                        })?;
                    flags.limit = Some(bytes);
                }
                "--output" | "-o" => flags.output = Some(PathBuf::from(value("a file")?)),
                "--symbols" => {
                    let v = value("a binary, debug file or directory")?;
                    if v.is_empty() {
                        return Err("--symbols needs a path".into());
                    }
                    flags.symbols.push(PathBuf::from(v));
                }
                _ => {
                    return Err(format!(
                        "unknown option {} for `leakwatch {command}` (try `leakwatch help`)",
                        name.escape_debug()
                    ));
                }
            }
        }
        Ok(flags)
    }

    fn files<const N: usize>(
        &self,
        command: &str,
        names: [&str; N],
    ) -> Result<[PathBuf; N], String> {
        if self.files.len() != N {
            return Err(format!(
                "`leakwatch {command}` takes {} (got {} file argument(s))",
                names.join(" and "),
                self.files.len()
            ));
        }
        Ok(std::array::from_fn(|i| self.files[i].clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn report_takes_its_flags_in_any_order() {
        assert_eq!(
            parse_line(
                "report s.jsonl --top 5 --symbols bin --format=json --limit 2g -o out.json \
                 --symbols=/usr/lib/debug"
            ),
            Ok(Command::Report {
                series: "s.jsonl".into(),
                top: Some(5),
                format: Format::Json,
                limit: Some(2 << 30),
                output: Some("out.json".into()),
                symbols: vec!["bin".into(), "/usr/lib/debug".into()],
            })
        );
        assert_eq!(
            parse_line("report --format prom s.jsonl"),
            Ok(Command::Report {
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
    fn diff_takes_two_files() {
        assert_eq!(
            parse_line("diff a.json b.json --top 3"),
            Ok(Command::Diff {
                before: "a.json".into(),
                after: "b.json".into(),
                top: Some(3),
                format: Format::Text,
                output: None,
            })
        );
    }

    #[test]
    fn mistakes_get_one_clear_line() {
        let cases = [
            ("", "no command given"),
            ("frobnicate", "unknown command \"frobnicate\""),
            ("report", "`leakwatch report` takes SERIES.jsonl (got 0"),
            ("report a b", "takes SERIES.jsonl (got 2"),
            ("report s --top", "--top needs a number"),
            ("report s --top 0", "--top: not a positive number: \"0\""),
            ("report s --top ten", "--top: not a positive number"),
            ("report s --format xml", "--format: unknown format \"xml\""),
            ("report s --limit lots", "--limit: not a size: \"lots\""),
            (
                "report s --verbose",
                "unknown option --verbose for `leakwatch report`",
            ),
            ("report s -x", "unknown option -x for `leakwatch report`"),
            ("diff a.json", "takes A.json and B.json (got 1"),
            (
                "diff a b --format pprof",
                "diff writes --format text or json",
            ),
            ("diff a b --limit 1g", "diff does not take --limit"),
            (
                "report s --symbols",
                "--symbols needs a binary, debug file or directory",
            ),
            ("report s --symbols=", "--symbols needs a path"),
            ("diff a b --symbols bin", "diff does not take --symbols"),
            ("--frob", "unknown option --frob before the command"),
        ];
        for (line, expected) in cases {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(expected), "{line:?}: {e:?}");
            assert!(!e.contains('\n'), "{line:?}: {e:?}");
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
            &["-\n"],
        ] {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let e = parse(&args).unwrap_err();
            assert!(e.starts_with("unknown option "), "{args:?}: {e:?}");
            assert!(!e.contains(['\n', '\r']), "{args:?}: {e:?}");
            assert!(e.contains("\\r") || e.contains("\\n"), "{args:?}: {e:?}");
        }
    }
}
