//! A real Prometheus scrapes a real model-server, with the configuration and rules that
//! docs/fleet.md tells a fleet to use (`examples/model-server/prometheus/`).
//!
//! 1. `promtool` checks the rules and runs their unit tests (`rules_test.yml`).
//! 2. model-server starts on a free loopback port (sampled, recorder every 0.5 s) and
//!    serves a few generation requests, so that the session store holds sessions and
//!    leakwatch has their sites to report.
//! 3. Prometheus starts on another free loopback port with `prometheus.yml` (its two
//!    intervals shortened to 1 s), `rules.yml`, a targets file naming the server as
//!    replica `test-1`, and its storage in a temporary directory.
//! 4. Through Prometheus's HTTP API: leakwatch's site series are there with `site`,
//!    `function`, `file` and `line` (and `job`, `instance`, `replica`), the session
//!    store's among them; both rule groups are loaded and every rule evaluates without
//!    error; the recording rules have data.
//! 5. One registry: the service's `/metrics` is its prometheus-client registry, with
//!    leakwatch's collector registered in it. Prometheus's metadata of the target lists
//!    the service's own metrics and leakwatch's families with the types and help texts
//!    of `Recorder::prometheus` (the families' one source), and the service's counter
//!    has the requests served.
//!
//! Both processes are killed on every path (their guards' `Drop`), everything listens on
//! and talks to 127.0.0.1 only, and each wait has a deadline (the whole test takes a few
//! seconds; it gives up after 45 s).
//!
//! `prometheus` and `promtool` may be missing on a developer's machine: the test then
//! prints `SKIPPED: prometheus not found (apt-get install prometheus)` and passes, unless
//! the environment variable `CI` is set.

use leakwatch_testsupport::temp_dir;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where prometheus.yml, rules.yml and rules_test.yml live.
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus");

/// The whole test gives up after this long.
const DEADLINE: Duration = Duration::from_secs(45);

/// The `replica` label the targets file gives the server.
const REPLICA: &str = "test-1";

#[test]
fn prometheus_scrapes_leakwatch_sites_and_loads_the_rules() {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let Some((prometheus, promtool)) = tools() else {
        return;
    };
    let dir = temp_dir("prometheus");

    // 1. The rules, offline.
    let config_dir = Path::new(CONFIG_DIR);
    run_tool(&promtool, &["check", "rules", "rules.yml"], config_dir);
    run_tool(&promtool, &["test", "rules", "rules_test.yml"], config_dir);

    // 2. The service, with some requests served.
    let server = Process::spawn(
        "model-server",
        Command::new(env!("CARGO_BIN_EXE_model-server"))
            .args(["serve", "--addr", "127.0.0.1:0", "--interval", "0.5"])
            // Sampled, as staging runs it, but at one sample per 16 KiB rather than
            // 512 KiB: the few requests below then surely leave samples in the session
            // store (each session's cache is two 16 KiB blocks).
            .env("LEAKWATCH_SAMPLE", "16k")
            .env("LEAKWATCH_SEED", "1")
            .env("RUST_LOG", "info"),
        dir.path(),
        true,
    );
    let server_addr = server.listening_address(deadline);
    for i in 0..60 {
        let body = format!(
            r#"{{"session_id": "prometheus-test-{}", "prompt": "the keeper of the lighthouse", "max_tokens": 8}}"#,
            i % 40
        );
        let (status, text) = http(server_addr, "POST", "/v1/generate", Some(&body))
            .unwrap_or_else(|e| server.fail(&format!("POST /v1/generate: {e}")));
        if status != 200 {
            server.fail(&format!("POST /v1/generate: {status} {text}"));
        }
    }

    // 3. Prometheus, scraping it every second.
    let config = std::fs::read_to_string(config_dir.join("prometheus.yml"))
        .expect("read prometheus/prometheus.yml");
    let config = replace_once(&config, "scrape_interval: 15s", "scrape_interval: 1s");
    let config = replace_once(
        &config,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    std::fs::copy(config_dir.join("rules.yml"), dir.join("rules.yml")).expect("copy rules");
    std::fs::create_dir_all(dir.join("targets")).expect("create targets/");
    let targets = serde_json::json!([
        { "targets": [server_addr.to_string()], "labels": { "replica": REPLICA } }
    ]);
    std::fs::write(dir.join("targets/test.json"), targets.to_string()).expect("targets");
    run_tool(
        &promtool,
        &["check", "config", "prometheus.yml"],
        dir.path(),
    );

    let port = free_port();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let prom = Process::spawn(
        "prometheus",
        Command::new(&prometheus).args([
            "--config.file=prometheus.yml".to_string(),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={prom_addr}"),
        ]),
        dir.path(),
        false,
    );
    let fail =
        |message: &str| -> ! { panic!("{message}\n\n{}\n{}", server.log_tail(), prom.log_tail()) };
    wait_for(deadline, "Prometheus to be ready", &prom, || {
        matches!(http(prom_addr, "GET", "/-/ready", None), Ok((200, _))).then_some(())
    });

    // 4. leakwatch's sites, read back through Prometheus.
    let sites = wait_for(
        deadline,
        "leakwatch_site_live_bytes in Prometheus",
        &prom,
        || query(prom_addr, "leakwatch_site_live_bytes").filter(|r| !r.is_empty()),
    );
    // Every series names its site; `function`, `file` and `line` come with it where the
    // symbols know them (a frame inlined from a dependency may have a file but no line
    // in a release build), and then `site` ends in `(file:line)`.
    for series in &sites {
        let labels = &series["metric"];
        let label = |name: &str| labels[name].as_str().unwrap_or("");
        if label("site").is_empty() {
            fail(&format!("a site series without `site`: {series}"));
        }
        if !label("line").is_empty() {
            if !label("line").parse::<u32>().is_ok_and(|line| line > 0) {
                fail(&format!("`line` is not a line number: {series}"));
            }
            let place = format!("({}:{})", label("file"), label("line"));
            if !label("site").ends_with(&place) {
                fail(&format!("`site` does not end in `{place}`: {series}"));
            }
        }
        let expected = [
            ("job", "model-server"),
            ("instance", &server_addr.to_string()),
            ("replica", REPLICA),
        ];
        for (name, value) in expected {
            if label(name) != value {
                fail(&format!("`{name}` is not {value:?}: {series}"));
            }
        }
    }
    // The sessions the requests opened are live in the session store: its sites are
    // there with all four labels.
    let Some(store_site) = sites
        .iter()
        .map(|s| &s["metric"])
        .find(|m| {
            m["file"] == "model-server/src/sessions.rs"
                && m["line"].as_str().is_some_and(|l| l.parse::<u32>().is_ok())
                && m["function"].as_str().is_some_and(|f| !f.is_empty())
        })
        .and_then(|m| m["site"].as_str())
    else {
        fail(&format!(
            "no site in model-server/src/sessions.rs: {}",
            Value::from(sites.clone())
        ));
    };
    let up = query(prom_addr, "up").unwrap_or_default();
    if up.len() != 1 || up[0]["value"][1] != "1" {
        fail(&format!("expected one target, up: {}", Value::from(up)));
    }

    // 5. The service's metrics and leakwatch's, through one registry.
    let expected_metadata = [
        (
            "model_server_generate_requests_total",
            "counter",
            "Generation requests answered.",
        ),
        (
            "model_server_sessions",
            "gauge",
            "Sessions in the session store.",
        ),
        (
            "leakwatch_allocations_total",
            "counter",
            "Allocations since tracking started.",
        ),
        (
            "leakwatch_heap_live_bytes",
            "gauge",
            "Live heap bytes: allocated minus freed since tracking started.",
        ),
        (
            "leakwatch_site_live_bytes",
            "gauge",
            "Live bytes allocated at a site (an estimate in sampled mode).",
        ),
    ];
    let metadata = wait_for(deadline, "the target's metadata", &prom, || {
        let path = format!(
            "/api/v1/targets/metadata?match_target={}",
            percent_encode("{job=\"model-server\"}")
        );
        let (status, body) = http(prom_addr, "GET", &path, None).ok()?;
        let body: Value = serde_json::from_str(&body).ok()?;
        let data = body["data"].as_array()?;
        let listed = |name: &str| data.iter().any(|m| m["metric"] == name);
        (status == 200 && expected_metadata.iter().all(|(name, _, _)| listed(name)))
            .then(|| data.clone())
    });
    for (name, kind, help) in expected_metadata {
        let Some(entry) = metadata.iter().find(|m| m["metric"] == name) else {
            fail(&format!("{name} is not in the target's metadata"));
        };
        if entry["type"] != kind || entry["help"] != help {
            fail(&format!(
                "{name}: expected {kind} {help:?}, Prometheus has {entry}"
            ));
        }
    }
    let requests = query(prom_addr, "model_server_generate_requests_total").unwrap_or_default();
    if requests.len() != 1 || requests[0]["value"][1] != "60" {
        fail(&format!(
            "model_server_generate_requests_total: expected 60, Prometheus has {}",
            Value::from(requests)
        ));
    }

    // The rules: both groups loaded, every rule evaluated without error.
    let rules_yml = std::fs::read_to_string(config_dir.join("rules.yml")).expect("read rules.yml");
    let expected_groups = group_names(&rules_yml);
    assert_eq!(expected_groups.len(), 2, "rules.yml: {expected_groups:?}");
    let expected_rules = rules_yml
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("- record: ") || line.starts_with("- alert: ")
        })
        .count();
    let groups = wait_for(deadline, "every rule evaluated once", &prom, || {
        let (status, body) = http(prom_addr, "GET", "/api/v1/rules", None).ok()?;
        let body: Value = serde_json::from_str(&body).ok()?;
        if status != 200 || body["status"] != "success" {
            return None;
        }
        let groups = body["data"]["groups"].as_array()?.clone();
        let evaluated = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .all(|r| r["health"] != "unknown");
        evaluated.then_some(groups)
    });
    let loaded: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g["name"].as_str().map(String::from))
        .collect();
    if loaded != expected_groups {
        fail(&format!(
            "rule groups: expected {expected_groups:?}, Prometheus lists {loaded:?}"
        ));
    }
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
    {
        if rule["health"] != "ok" {
            fail(&format!("a rule does not evaluate: {rule}"));
        }
    }
    let rules = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    assert_eq!(
        rules, expected_rules,
        "rules Prometheus lists, rules in rules.yml"
    );

    // The recording rules see the sites.
    wait_for(
        deadline,
        "site:leakwatch_site_live_bytes:sum",
        &prom,
        || {
            query(prom_addr, "site:leakwatch_site_live_bytes:sum")
                .filter(|r| !r.is_empty() && r.iter().all(|s| s["metric"]["site"].is_string()))
        },
    );

    eprintln!(
        "prometheus test: {} site series through Prometheus (among them {store_site}), \
         {rules} rules healthy, in {:.1} s",
        sites.len(),
        started.elapsed().as_secs_f64()
    );
}

/// `prometheus` and `promtool` from `PATH`; `None` (after printing why) when either is
/// missing, unless `CI` is set.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|file| file.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(prometheus), Some(promtool)) => Some((prometheus, promtool)),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "prometheus or promtool not found on PATH and CI is set: apt-get install prometheus"
            )
        }
        _ => {
            // Straight to stderr, past libtest's capture of `eprintln!`: a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: prometheus not found (apt-get install prometheus)"
            );
            None
        }
    }
}

/// Runs `promtool ARGS` in `dir` and fails the test unless it succeeds (30 s at most).
fn run_tool(promtool: &Path, args: &[&str], dir: &Path) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = out.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        if let Some(err) = err.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let limit = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for promtool") {
            break status;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promtool {} did not finish in 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "promtool {} failed ({status}):\n{output}",
        args.join(" ")
    );
}

/// A child process, killed when dropped; its output goes to a log file.
struct Process {
    name: &'static str,
    child: RefCell<Child>,
    log: PathBuf,
    /// Lines of standard output that say where the server listens.
    listening: Option<mpsc::Receiver<String>>,
}

impl Process {
    /// Starts `command` in `dir`. With `read_stdout`, standard output is read for the
    /// `model-server listening on http://ADDR` line (the rest of it is dropped);
    /// otherwise it goes to the log with standard error.
    fn spawn(name: &'static str, command: &mut Command, dir: &Path, read_stdout: bool) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let stdout = if read_stdout {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone().expect("log file"))
        };
        let mut child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let listening = child.stdout.take().map(|stdout| {
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("model-server listening on http://") {
                        let _ = sender.send(line);
                    }
                }
            });
            receiver
        });
        Process {
            name,
            child: RefCell::new(child),
            log,
            listening,
        }
    }

    /// The address from `model-server listening on http://ADDR`.
    fn listening_address(&self, deadline: Instant) -> SocketAddr {
        let receiver = self.listening.as_ref().expect("stdout is read");
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = receiver
            .recv_timeout(wait)
            .unwrap_or_else(|_| self.fail("no `model-server listening on http://ADDR` line"));
        let addr = line.trim_start_matches("model-server listening on http://");
        addr.parse()
            .unwrap_or_else(|_| self.fail(&format!("not an address: {line:?}")))
    }

    /// The last 40 lines of the log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- {} log, last 40 lines ---\n{tail}", self.name)
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{}: {message}\n{}", self.name, self.log_tail())
    }

    /// How the process ended, if it has.
    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.borrow_mut().try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Calls `probe` every 100 ms until it returns something; fails at `deadline`, or as
/// soon as `process` exits.
fn wait_for<T>(
    deadline: Instant,
    what: &str,
    process: &Process,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if let Some(status) = process.exit_status() {
            process.fail(&format!("exited ({status}) before {what}"));
        }
        if Instant::now() > deadline {
            process.fail(&format!("gave up waiting for {what} after {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nobody listens on right now (Prometheus binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// `text` with `from` replaced by `to`; fails unless `from` occurs exactly once (so a
/// change to prometheus.yml cannot silently leave the test on other settings).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "prometheus.yml should say `{from}` once"
    );
    text.replacen(from, to, 1)
}

/// The `name`s of the groups in a rules file (`  - name: NAME` lines).
fn group_names(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|line| line.strip_prefix("  - name: "))
        .map(|name| name.trim().to_string())
        .collect()
}

/// An instant query through Prometheus's HTTP API: the `result` array, or `None` when
/// the request or the query failed.
fn query(prometheus: SocketAddr, promql: &str) -> Option<Vec<Value>> {
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    let (status, body) = http(prometheus, "GET", &path, None).ok()?;
    let body: Value = serde_json::from_str(&body).ok()?;
    if status != 200 || body["status"] != "success" {
        return None;
    }
    body["data"]["result"].as_array().cloned()
}

/// `text` with everything but unreserved characters percent-encoded (for a query string).
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 request to `addr` (so the answer is never chunked and ends when the
/// connection closes), with 2 s to connect and 5 s for each read and write. Returns the
/// status code and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| format!("set timeouts: {e}"))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send {method} {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read the answer to {method} {path}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no end of headers in {response:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("{method} {path}: a chunked answer to HTTP/1.0"));
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
