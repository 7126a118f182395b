//! Shared by the integration tests that run the real binary: a started `model-server`
//! child (killed and reaped when dropped, whatever happens), a small blocking HTTP/1.1
//! client for loopback with a timeout on every request, and a Prometheus text lookup.
//!
//! Each file under `tests/` is its own binary and uses only part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any one HTTP request may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the binary may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_model-server"));
    // Only what the test asks for: no leakwatch settings, token or log filter from the
    // environment the tests run in.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("LEAKWATCH") {
            command.env_remove(&name);
        }
    }
    command
        .env_remove("MODEL_SERVER_DEBUG_TOKEN")
        .env_remove("RUST_LOG");
    command
}

/// A running `model-server serve`. Dropping it kills the process and waits for it; if the
/// test is failing, what the server wrote to stderr is printed.
pub struct Server {
    child: Child,
    /// Where to connect: the bound address, with an unspecified IP replaced by 127.0.0.1.
    addr: SocketAddr,
    /// The address the server printed.
    bound: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `model-server serve --addr ADDR ARGS...` with `envs` set, and waits until it
    /// prints `model-server listening on http://ADDR`.
    ///
    /// # Panics
    /// When the binary cannot start, exits, or does not print its address in time.
    pub fn start(addr: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut command = binary();
        command
            .arg("serve")
            .args(["--addr", addr])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut text) = stderr.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            })
        };
        // From here on the guard owns the child: any panic below kills it.
        let mut server = Server {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            bound: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            // Keep reading after the address, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("model-server listening on http://") {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(rest.trim().to_string());
                    }
                }
            }
        });
        let printed = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(printed) => printed,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{command:?} did not print its address in {START_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // It is exiting, most likely: give it a moment, for its status.
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut status = server.child.try_wait();
                while matches!(status, Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                    status = server.child.try_wait();
                }
                panic!(
                    "{command:?} closed its stdout without printing its address ({status:?}):\n{}",
                    server.stderr_text()
                )
            }
        };
        let bound: SocketAddr = printed
            .parse()
            .unwrap_or_else(|e| panic!("printed address {printed:?}: {e}"));
        server.bound = bound;
        server.addr = if bound.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, bound.port()))
        } else {
            bound
        };
        server
    }

    /// `model-server serve` on a free loopback port, with `args`.
    pub fn loopback(args: &[&str]) -> Server {
        Server::start("127.0.0.1:0", args, &[])
    }

    /// Where to connect (always a loopback address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the server printed.
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// What the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM (with `kill`) and waits up to `limit` for the process to exit:
    /// how long it took and its status, or `None` if it is still running (the guard
    /// kills it when dropped).
    pub fn terminate(&mut self, limit: Duration) -> Option<(Duration, ExitStatus)> {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -TERM {pid}: {e}"));
        assert!(status.success(), "kill -TERM {pid}: {status}");
        while sent.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((sent.elapsed(), status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a request; panics on a transport error or timeout (never on a status).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.addr, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// The value of an unlabelled sample in `GET /metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200, "GET /metrics: {response:?}");
        let text = response.text();
        metric(&text, name).unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The child is gone, so its stderr pipe is closed and the reader finishes.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- model-server at {} wrote to stderr:\n{}--- end of stderr",
                self.bound,
                self.stderr_text()
            );
        }
    }
}

/// Runs the binary with `args` to completion (killed after 30 s) and returns its exit
/// status, stdout and stderr.
pub fn run_binary(args: &[&str]) -> (ExitStatus, String, String) {
    run_binary_with(args, &[])
}

/// [`run_binary`] with the environment variables `envs` set.
pub fn run_binary_with(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let child = binary()
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start model-server {args:?}: {e}"));
    wait_for(
        child,
        None,
        Duration::from_secs(30),
        &format!("model-server {args:?}"),
    )
}

/// Feeds `input` to a started child's stdin (if piped), reads its piped stdout and
/// stderr, and waits for it to exit: killed and a panic after `limit`. Returns its exit
/// status, stdout and stderr.
pub fn wait_for(
    mut child: std::process::Child,
    input: Option<&[u8]>,
    limit: Duration,
    name: &str,
) -> (ExitStatus, String, String) {
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default().to_vec();
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input))
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not exit within {limit:?} ({other:?})");
            }
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr)
}

/// An HTTP response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(2000).collect();
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &shown)
            .finish()
    }
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) to `addr` and reads the whole
/// response, within [`REQUEST_TIMEOUT`] in all. A `Content-Length` is sent with every
/// body, and with every POST.
///
/// # Errors
/// On a connection error, a timeout, or a response that is not HTTP.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let what = format!("{method} http://{addr}{path}");
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("{what}: cannot connect: {e}"))?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    // A server may answer before reading all of an oversized body, and close: a failed
    // write is only an error if no response follows.
    let written = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(response) = parse(&raw)? {
            return Ok(response);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{what}: no complete response within {REQUEST_TIMEOUT:?} ({} bytes so far)",
                raw.len()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("{what}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "{what}: reading the response: {e} (after {} bytes; writing the request: {written:?})",
                    raw.len()
                ));
            }
        }
    }
    // The server closed the connection: whatever came is the response.
    parse(&raw)?.ok_or_else(|| {
        format!(
            "{what}: connection closed after {} bytes, mid-response (writing the request: {written:?}): {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw)
        )
    })
}

/// The response in `raw`, all of it read (the connection closed).
///
/// # Errors
/// When it is not HTTP, or incomplete.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    parse(raw)?.ok_or_else(|| "an incomplete response".to_string())
}

/// A complete response in `raw`, `None` if more is needed.
fn parse(raw: &[u8]) -> Result<Option<Response>, String> {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("response head: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = value("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length:?}"))?;
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    } else {
        // Neither: the body ends when the connection does.
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        headers,
        body,
    }))
}

/// The body of a chunked message, `None` if incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers (none expected), then an empty line.
            return Ok(find(rest, b"\r\n").map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of the unlabelled sample `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
}

/// `go tool pprof -top FILE`, run in `dir` (its temporary files there too) with the Go
/// toolchain kept offline, through [`run_tool`] (`None`: Go is not installed).
pub fn pprof_top(file: &std::path::Path, dir: &std::path::Path) -> Option<(ExitStatus, String)> {
    pprof_top_with(&[], file, dir)
}

/// [`pprof_top`] with more arguments before the file (`-symbolize=none`, a binary).
pub fn pprof_top_with(
    args: &[&std::ffi::OsStr],
    file: &std::path::Path,
    dir: &std::path::Path,
) -> Option<(ExitStatus, String)> {
    run_tool(
        Command::new("go")
            .args(["tool", "pprof", "-top"])
            .args(args)
            .arg(file)
            .current_dir(dir)
            .env("PPROF_TMPDIR", dir)
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOTELEMETRY", "off"),
        None,
        "go",
        "apt-get install golang-go",
    )
}

/// Runs a tool (stdin from `input`), killed after 60 s; its exit status and its stdout
/// and stderr together. `None` when it is not installed: then prints
/// `SKIPPED: NAME not found` (straight to stderr, past libtest's capture), unless `CI` is
/// set, which fails.
pub fn run_tool(
    command: &mut Command,
    input: Option<&[u8]>,
    name: &str,
    install: &str,
) -> Option<(ExitStatus, String)> {
    let spawned = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{name} not found, and CI is set: install it ({install})"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED: {name} not found ({install})");
            return None;
        }
        Err(e) => panic!("cannot run {name}: {e}"),
    };
    let (status, stdout, stderr) = wait_for(child, input, Duration::from_secs(60), name);
    let output = stdout + &stderr;
    Some((status, output))
}
