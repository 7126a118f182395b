//! A load generator for the service: `N` clients, each on its own HTTP/1.1 keep-alive
//! connection over loopback, sending `POST /v1/generate` requests until a request count
//! or a duration runs out (whichever comes first), as fast as the service answers or
//! paced at a target rate. Each client keeps a session for `K` requests, then opens a
//! fresh session id, so new sessions keep arriving as they do in production. Prompts
//! come from a small list and `max_tokens` varies.
//!
//! It reports requests per second, errors by kind (an HTTP status, a timeout, a
//! connection failure) and latency percentiles over every answered request.
//!
//! ```no_run
//! use model_server::loadgen::{self, LoadOptions};
//! use std::time::Duration;
//!
//! let report = loadgen::run(LoadOptions {
//!     url: "http://127.0.0.1:8080".into(),
//!     clients: 4,
//!     duration: Duration::from_secs(10),
//!     rate: Some(1000.0),
//!     ..LoadOptions::default()
//! })?;
//! println!("{report}");
//! # Ok::<(), loadgen::LoadError>(())
//! ```
//!
//! It only talks to loopback addresses (`http://127.x.x.x:PORT` or
//! `http://localhost:PORT`): it is for a service on this machine, not a tool to load
//! someone else's. Every connect and every request has a timeout, so a service that
//! stops answering ends the run on time with timeouts counted, never a hang.
//!
//! Latency is measured from sending a request to having read its whole response. When
//! paced and the service falls behind, clients send late rather than all at once, and
//! the late start is not counted as latency (no correction for coordinated omission: the
//! achieved rate, printed beside the target, shows when that happened).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The prompts clients send (words the model knows, from its corpus).
pub const PROMPTS: &[&str] = &[
    "the keeper of the lighthouse",
    "the baker opens his door",
    "the river starts in the hills",
    "the children run to the shop",
    "the wind comes from the west",
    "a small boat leaves the harbour",
    "the teacher reads to the children",
    "the mill still turns when the river is high",
];

/// Longest run a [`LoadOptions::duration`] may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Most clients a run may have.
pub const MAX_CLIENTS: usize = 1024;

/// What to send, to where, for how long.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The service: `http://127.x.x.x:PORT` or `http://localhost:PORT` (a trailing `/`
    /// is allowed; nothing else is).
    pub url: String,
    /// Concurrent clients, each with its own connection (1 to [`MAX_CLIENTS`]).
    pub clients: usize,
    /// Send at most this many requests (`u64::MAX`: no bound).
    pub requests: u64,
    /// Send for at most this long (up to [`MAX_DURATION`]).
    pub duration: Duration,
    /// Target requests per second over all clients; `None`: as fast as the service
    /// answers (each client sends its next request when the last one is answered).
    pub rate: Option<f64>,
    /// Requests per session: after this many, a client opens a fresh session id.
    pub session_requests: u32,
    /// Smallest and largest `max_tokens` sent (each request picks one in between).
    pub max_tokens: (u32, u32),
    /// Session ids are `PREFIX-CLIENT-N`; runs against one service should use
    /// different prefixes so their sessions are new.
    pub session_prefix: String,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for one request, from sending it to having read its response.
    pub request_timeout: Duration,
    /// Ends the run early when stopped (from another task or thread).
    pub stop: StopSignal,
}

impl Default for LoadOptions {
    /// One client on `http://127.0.0.1:8080` for 10 s, unpaced, sessions of 8 requests,
    /// 8 to 24 tokens, 2 s to connect, 10 s per request.
    fn default() -> Self {
        LoadOptions {
            url: "http://127.0.0.1:8080".into(),
            clients: 1,
            requests: u64::MAX,
            duration: Duration::from_secs(10),
            rate: None,
            session_requests: 8,
            max_tokens: (8, 24),
            session_prefix: "load".into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            stop: StopSignal::default(),
        }
    }
}

/// A flag that ends a run early: clients finish the request they are in and stop.
/// Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// Asks every client sharing this signal to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a run could not start, or a one-off request failed.
#[derive(Debug)]
pub enum LoadError {
    /// The URL is not `http://` to a loopback address with a port.
    Url(String),
    /// An option is out of range.
    Options(String),
    /// The client's runtime could not start.
    Runtime(std::io::Error),
    /// A one-off request ([`Target::request`]) failed: could not connect, timed out,
    /// or the connection broke.
    Http(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Url(m) | LoadError::Options(m) | LoadError::Http(m) => f.write_str(m),
            LoadError::Runtime(e) => write!(f, "cannot start the load generator's runtime: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// What went wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The service answered with this status, not 2xx.
    Status(u16),
    /// Could not connect (refused, or no answer within the connect timeout).
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// The connection broke while sending or reading.
    Connection,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "HTTP {s}"),
            Failure::Connect => f.write_str("could not connect"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Connection => f.write_str("connection broke"),
        }
    }
}

/// Latency percentiles over the answered requests of a run (nearest rank; zero when
/// nothing was answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Requests the percentiles are over.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    /// The percentiles of `latencies` (in any order; sorted here).
    pub fn of(mut latencies: Vec<Duration>) -> Latency {
        latencies.sort_unstable();
        let at = |p| percentile(&latencies, p).unwrap_or_default();
        Latency {
            count: latencies.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// The `p`-th percentile of `sorted` (ascending), by nearest rank: the smallest value
/// with at least `p`% of the values at or below it. `None` for no values or a `p`
/// outside 0 to 100 (`p` = 0 gives the smallest value).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    // p * n first: exact for whole percentages, and the small allowance keeps a product
    // like 99.9 * 1000 = 99900.00000000001 from rounding up a rank.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What a run did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadReport {
    /// Requests sent (or attempted: a failed connect counts as one).
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests that failed, by what went wrong.
    pub errors: BTreeMap<Failure, u64>,
    /// The first connection-level error's message, if any (for "could not connect").
    pub first_error: Option<String>,
    /// Sessions the clients opened (distinct session ids used).
    pub sessions: u64,
    /// From the start to the last client's end.
    pub elapsed: Duration,
    /// Latency of the answered requests (any status).
    pub latency: Latency,
    /// The target rate, if paced.
    pub target_rate: Option<f64>,
    /// Concurrent clients.
    pub clients: usize,
}

impl LoadReport {
    /// Requests per second, all of them.
    pub fn requests_per_second(&self) -> f64 {
        per_second(self.requests, self.elapsed)
    }

    /// Successful (2xx) requests per second: the throughput.
    pub fn ok_per_second(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }

    /// Requests that failed, of every kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

impl fmt::Display for LoadReport {
    /// One line: `N requests in S s (R/s, target T/s), C clients, N sessions; latency
    /// p50 .. p90 .. p99 .. max ..; errors: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:.1} s ({:.0}/s",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_second()
        )?;
        if let Some(rate) = self.target_rate {
            write!(f, ", target {rate:.0}/s")?;
        }
        write!(
            f,
            "), {} client{}, {} sessions; latency p50 {}, p90 {}, p99 {}, max {}; errors: ",
            self.clients,
            if self.clients == 1 { "" } else { "s" },
            self.sessions,
            millis(self.latency.p50),
            millis(self.latency.p90),
            millis(self.latency.p99),
            millis(self.latency.max),
        )?;
        if self.errors.is_empty() {
            f.write_str("none")?;
        }
        for (i, (failure, n)) in self.errors.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{n} {failure}")?;
        }
        if let Some(e) = &self.first_error {
            write!(f, " (first: {e})")?;
        }
        Ok(())
    }
}

/// A duration as milliseconds, with precision to suit its size.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A service on this machine: the address to connect to and the `Host` header to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header: the URL's host and port.
    pub authority: String,
}

impl Target {
    /// Parses `http://127.x.x.x:PORT` or `http://localhost:PORT` (with an optional
    /// trailing `/`). `localhost` is taken to be 127.0.0.1, without asking a resolver.
    ///
    /// # Errors
    /// [`LoadError::Url`] for anything else: another scheme, a host that is not
    /// loopback IPv4, a missing or zero port, a path, a query, user info.
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let refuse = |why: &str| {
            LoadError::Url(format!(
                "{url:?}: {why} (only http://127.x.x.x:PORT or http://localhost:PORT: the load generator talks to this machine only)"
            ))
        };
        let scheme_len = "http://".len();
        if url.len() < scheme_len || !url[..scheme_len].eq_ignore_ascii_case("http://") {
            return Err(refuse("not an http:// URL"));
        }
        let rest = &url[scheme_len..];
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(refuse("a base URL has no path, query or user"));
        }
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(refuse("no port"));
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| refuse("the port is not a number from 1 to 65535"))?;
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            match host.parse::<Ipv4Addr>() {
                Ok(ip) if ip.is_loopback() => ip,
                Ok(_) => return Err(refuse("not a loopback address")),
                Err(_) => return Err(refuse("the host is not 127.x.x.x or localhost")),
            }
        };
        Ok(Target {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            authority: authority.to_string(),
        })
    }

    /// Connects with a timeout; hyper drives the connection on a task of its own.
    async fn connect(&self, timeout: Duration) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("connect to {}: {e}", self.addr)),
            Err(_) => return Err(format!("connect to {}: timed out", self.addr)),
        };
        // Small requests and responses: do not wait to fill a segment.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {}: {e}", self.addr))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One request on a new connection: `method path` with `body` (JSON if not empty).
    /// Returns the status and the body. For the few calls around a load run (the model
    /// update, reports), not for load.
    ///
    /// # Errors
    /// [`LoadError::Http`] when it cannot connect within 2 s, gets no complete answer
    /// within `timeout`, or the connection breaks.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Bytes), LoadError> {
        let mut sender = self
            .connect(Duration::from_secs(2))
            .await
            .map_err(LoadError::Http)?;
        let request = self
            .build(method.clone(), path, Bytes::copy_from_slice(body))
            .map_err(|e| LoadError::Http(format!("{method} {path}: {e}")))?;
        match tokio::time::timeout(timeout, send(&mut sender, request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(LoadError::Http(format!("{method} {path}: {e}"))),
            Err(_) => Err(LoadError::Http(format!(
                "{method} {path}: no answer within {:.1} s",
                timeout.as_secs_f64()
            ))),
        }
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority.as_str())
            .header(CONTENT_LENGTH, body.len());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        request.body(Full::new(body))
    }
}

/// Sends `request` and reads the whole response.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Runs the load on a runtime of its own (one thread: the client stays lean beside the
/// service it loads) and returns what happened. Blocks until the run ends.
///
/// # Errors
/// A bad URL or option ([`LoadError::Url`], [`LoadError::Options`]), or a runtime that
/// cannot start. Failed requests are not errors: they are counted in the report.
///
/// # Panics
/// When called from within a tokio runtime (use [`drive`] there).
pub fn run(options: LoadOptions) -> Result<LoadReport, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(drive(options))
}

/// What one run shares between its clients.
struct Shared {
    target: Target,
    options: LoadOptions,
    /// Requests handed out so far (the request bound).
    issued: AtomicU64,
    start: Instant,
    deadline: Instant,
    /// Time between one client's requests, when paced.
    interval: Option<Duration>,
}

impl Shared {
    fn over(&self) -> bool {
        self.options.stop.is_stopped() || Instant::now() >= self.deadline
    }

    /// Takes one request from the bound; false when none are left.
    fn take(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.options.requests
    }

    /// Sleeps until `until`, the deadline or a stop, whichever comes first. False when
    /// the run is over.
    async fn sleep_until(&self, until: Instant) -> bool {
        loop {
            if self.over() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            // Short naps, so a stop is seen within 50 ms.
            let nap = (until - now).min(self.deadline - now);
            tokio::time::sleep(nap.min(Duration::from_millis(50))).await;
        }
    }
}

/// The load, as a future on the caller's runtime (see [`run`]). Clients are spawned as
/// tasks, so on a multi-threaded runtime they spread over its threads.
///
/// # Errors
/// A bad URL or option. Failed requests are counted in the report.
pub async fn drive(options: LoadOptions) -> Result<LoadReport, LoadError> {
    let target = Target::parse(&options.url)?;
    check(&options)?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        interval: options
            .rate
            .map(|r| Duration::from_secs_f64(options.clients as f64 / r)),
        issued: AtomicU64::new(0),
        start,
        deadline: start + options.duration,
        options,
    });
    let clients: Vec<_> = (0..shared.options.clients)
        .map(|n| tokio::spawn(client(n, Arc::clone(&shared))))
        .collect();
    let mut report = LoadReport {
        target_rate: shared.options.rate,
        clients: shared.options.clients,
        ..LoadReport::default()
    };
    let mut latencies = Vec::new();
    for client in clients {
        // A client task cannot panic by design; if one did, its requests are not counted.
        let Ok(done) = client.await else { continue };
        report.requests += done.requests;
        report.ok += done.ok;
        report.sessions += done.sessions;
        for (failure, n) in done.errors {
            *report.errors.entry(failure).or_default() += n;
        }
        if report.first_error.is_none() {
            report.first_error = done.first_error;
        }
        latencies.extend(done.latencies);
    }
    report.elapsed = start.elapsed();
    report.latency = Latency::of(latencies);
    Ok(report)
}

fn check(o: &LoadOptions) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::Options(m));
    if !(1..=MAX_CLIENTS).contains(&o.clients) {
        return bad(format!("clients: 1 to {MAX_CLIENTS}, not {}", o.clients));
    }
    if o.requests == 0 {
        return bad("requests: at least 1".into());
    }
    if o.duration.is_zero() || o.duration > MAX_DURATION {
        return bad(format!(
            "duration: more than 0 and at most {} s, not {:?}",
            MAX_DURATION.as_secs(),
            o.duration
        ));
    }
    if let Some(rate) = o.rate {
        if !(rate.is_finite() && (0.01..=1e6).contains(&rate)) {
            return bad(format!("rate: 0.01 to 1000000 requests/s, not {rate}"));
        }
    }
    if o.session_requests == 0 {
        return bad("session_requests: at least 1".into());
    }
    let (lo, hi) = o.max_tokens;
    if lo == 0 || lo > hi {
        return bad(format!("max_tokens: a range from 1 up, not {lo} to {hi}"));
    }
    if o.connect_timeout.is_zero() || o.request_timeout.is_zero() {
        return bad("timeouts must be more than 0".into());
    }
    if o.session_prefix.is_empty()
        || o.session_prefix.len() > 64
        || !o
            .session_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return bad(format!(
            "session_prefix: 1 to 64 letters, digits, '-', '_', '.' or ':', not {:?}",
            o.session_prefix
        ));
    }
    Ok(())
}

/// What one client did.
#[derive(Default)]
struct ClientReport {
    requests: u64,
    ok: u64,
    sessions: u64,
    errors: BTreeMap<Failure, u64>,
    first_error: Option<String>,
    latencies: Vec<Duration>,
}

impl ClientReport {
    fn fail(&mut self, failure: Failure, message: Option<String>) {
        *self.errors.entry(failure).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = message;
        }
    }
}

/// One client: a connection (re-opened when it breaks), a session every `K` requests.
async fn client(n: usize, shared: Arc<Shared>) -> ClientReport {
    let o = &shared.options;
    let mut out = ClientReport::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(n as u64 + 1) | 1;
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    let mut session_id = String::new();
    let mut left_in_session = 0;
    // Paced clients start spread over one interval, not all at once.
    let mut due = shared.start
        + shared
            .interval
            .map_or(Duration::ZERO, |i| i.mul_f64(n as f64 / o.clients as f64));
    loop {
        if let Some(interval) = shared.interval {
            if !shared.sleep_until(due).await {
                break;
            }
            due += interval;
            // Fell behind by more than a second (a stalled service): resume from now
            // rather than send the backlog in a burst.
            let now = Instant::now();
            if now > due + Duration::from_secs(1) {
                due = now;
            }
        }
        if shared.over() || !shared.take() {
            break;
        }
        out.requests += 1;
        if left_in_session == 0 {
            out.sessions += 1;
            session_id = format!("{}-{n}-{}", o.session_prefix, out.sessions);
            left_in_session = o.session_requests;
        }
        left_in_session -= 1;

        if connection.as_ref().is_some_and(SendRequest::is_closed) {
            connection = None; // the service closed it between requests: reconnect
        }
        if connection.is_none() {
            match shared.target.connect(o.connect_timeout).await {
                Ok(sender) => connection = Some(sender),
                Err(e) => {
                    out.fail(Failure::Connect, Some(e));
                    // Do not spin against a service that is not there.
                    let _ = shared
                        .sleep_until(Instant::now() + Duration::from_millis(100))
                        .await;
                    continue;
                }
            }
        }
        let Some(sender) = connection.as_mut() else {
            continue;
        };
        let prompt = PROMPTS[(next(&mut rng) % PROMPTS.len() as u64) as usize];
        let (lo, hi) = o.max_tokens;
        let max_tokens = lo + (next(&mut rng) % u64::from(hi - lo + 1)) as u32;
        let body = serde_json::json!({
            "session_id": session_id,
            "prompt": prompt,
            "max_tokens": max_tokens,
        })
        .to_string();
        let request = match shared
            .target
            .build(Method::POST, "/v1/generate", Bytes::from(body))
        {
            Ok(request) => request,
            Err(e) => {
                // Cannot happen with the values above; counted rather than trusted.
                out.fail(Failure::Connection, Some(e.to_string()));
                continue;
            }
        };
        let sent = Instant::now();
        match tokio::time::timeout(o.request_timeout, send(sender, request)).await {
            Ok(Ok((status, _))) => {
                out.latencies.push(sent.elapsed());
                if (200..300).contains(&status) {
                    out.ok += 1;
                } else {
                    out.fail(Failure::Status(status), None);
                }
            }
            Ok(Err(e)) => {
                out.fail(Failure::Connection, Some(e.to_string()));
                connection = None;
            }
            Err(_) => {
                out.fail(Failure::Timeout, None);
                connection = None;
            }
        }
    }
    out
}

/// xorshift64: the client's choice of prompt and length.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{AppState, Config, router};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 90.0), Some(90));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 99.5), Some(100));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&values, 0.5), Some(1));
        assert_eq!(percentile(&values, 1.0), Some(1));
        assert_eq!(percentile(&values, 1.5), Some(2));

        let thousand: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99.9), Some(999), "no rounding up");
        assert_eq!(percentile(&thousand, 99.0), Some(990));

        // Few values: the median of two is the lower one, p99 of ten is the largest.
        assert_eq!(percentile(&[3, 8], 50.0), Some(3));
        assert_eq!(percentile(&(1..=10).collect::<Vec<_>>(), 99.0), Some(10));
        assert_eq!(percentile(&[7], 1.0), Some(7));
        assert_eq!(percentile(&[7], 100.0), Some(7));
    }

    #[test]
    fn percentiles_refuse_nothing_and_nonsense() {
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2], -1.0), None);
        assert_eq!(percentile(&[1, 2], 100.1), None);
        assert_eq!(percentile(&[1, 2], f64::NAN), None);
    }

    #[test]
    fn latency_sorts_first() {
        let l = Latency::of(vec![ms(9), ms(1), ms(5), ms(3), ms(7)]);
        assert_eq!(l.count, 5);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (ms(5), ms(9), ms(9), ms(9)));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn loopback_urls_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = Target::parse("http://localhost:3000/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.authority, "localhost:3000");
        let t = Target::parse("HTTP://127.1.2.3:1").unwrap();
        assert_eq!(t.addr, "127.1.2.3:1".parse().unwrap());
        assert!(Target::parse("http://LocalHost:65535").is_ok());
    }

    #[test]
    fn everything_else_is_refused() {
        for url in [
            "",
            "http://",
            "127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "ftp://127.0.0.1:8080",
            "http://127.0.0.1",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:-1",
            "http://127.0.0.1:80x",
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://192.168.1.10:8080",
            "http://8.8.8.8:53",
            "http://[::1]:8080",
            "http://example.com:80",
            "http://localhost.example.com:80",
            "http://127.0.0.1.example.com:80",
            "http://127.1:8080",
            "http://127.0.0.01:8080",
            "http://user@127.0.0.1:8080",
            "http://evil.com@127.0.0.1:8080",
            "http://127.0.0.1:8080@evil.com:80",
            "http://127.0.0.1:8080/v1/generate",
            "http://127.0.0.1:8080?x=1",
            "http://127.0.0.1:8080#x",
            "http://127.0.0.1:8080//",
            "http://ünïcode:80",
        ] {
            let result = Target::parse(url);
            assert!(
                matches!(result, Err(LoadError::Url(_))),
                "{url:?}: {result:?}"
            );
        }
    }

    #[test]
    fn bad_options_are_refused_before_any_request() {
        let base = LoadOptions::default;
        for options in [
            LoadOptions {
                clients: 0,
                ..base()
            },
            LoadOptions {
                duration: Duration::ZERO,
                ..base()
            },
            LoadOptions {
                rate: Some(f64::NAN),
                ..base()
            },
            LoadOptions {
                rate: Some(0.0),
                ..base()
            },
            LoadOptions {
                session_requests: 0,
                ..base()
            },
            LoadOptions {
                max_tokens: (5, 4),
                ..base()
            },
            LoadOptions {
                session_prefix: "a b".into(),
                ..base()
            },
            LoadOptions {
                url: "http://10.1.1.1:80".into(),
                ..base()
            },
        ] {
            assert!(run(options.clone()).is_err(), "{options:?}");
        }
    }

    /// The service in this process on a free port, on a runtime of its own thread.
    fn service() -> (Target, std::sync::Arc<AppState>) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let state = AppState::new(Config::default(), addr, None);
                tx.send((addr, Arc::clone(&state))).unwrap();
                axum::serve(listener, router(state)).await.unwrap();
            });
        });
        let (addr, state) = rx.recv().unwrap();
        (Target::parse(&format!("http://{addr}")).unwrap(), state)
    }

    #[test]
    fn a_run_stops_at_its_request_bound_and_rotates_sessions() {
        let (target, state) = service();
        let report = run(LoadOptions {
            url: format!("http://{}", target.authority),
            clients: 3,
            requests: 60,
            duration: Duration::from_secs(20),
            session_requests: 4,
            ..LoadOptions::default()
        })
        .unwrap();
        assert_eq!(report.requests, 60, "{report}");
        assert_eq!(report.ok, 60, "{report}");
        assert!(report.errors.is_empty(), "{report}");
        assert_eq!(report.latency.count, 60);
        assert!(report.latency.p50 <= report.latency.p99);
        // Every client opens a session per 4 requests (rounded up for each client).
        assert!((15..=17).contains(&report.sessions), "{report}");
        assert_eq!(state.store_stats().opened, report.sessions);
    }

    #[test]
    fn a_paced_run_keeps_to_its_rate_and_duration() {
        let (target, _state) = service();
        let started = std::time::Instant::now();
        // A rate and lengths a debug build keeps up with beside parallel tests.
        let report = run(LoadOptions {
            url: format!("http://{}", target.authority),
            clients: 2,
            duration: ms(1000),
            rate: Some(40.0),
            max_tokens: (1, 2),
            ..LoadOptions::default()
        })
        .unwrap();
        assert!(started.elapsed() < ms(3000));
        // 40/s for 1 s: 40 (timer granularity on a busy machine allows some slack).
        assert!((32..=41).contains(&report.requests), "{report}");
        assert_eq!(report.ok, report.requests, "{report}");
    }

    #[test]
    fn a_service_that_never_answers_ends_in_timeouts_not_a_hang() {
        // Accepts connections and reads nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().take(8) {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_secs(5));
        });
        let started = std::time::Instant::now();
        let report = run(LoadOptions {
            url: format!("http://{addr}"),
            clients: 2,
            duration: ms(500),
            request_timeout: ms(200),
            ..LoadOptions::default()
        })
        .unwrap();
        assert!(started.elapsed() < ms(2000), "{:?}", started.elapsed());
        assert_eq!(report.ok, 0);
        assert!(
            report
                .errors
                .get(&Failure::Timeout)
                .is_some_and(|&n| n >= 2),
            "{report}"
        );
    }

    #[test]
    fn a_closed_port_is_counted_as_connect_failures() {
        // Bind and drop: nothing listens there now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = run(LoadOptions {
            url: format!("http://{addr}"),
            clients: 2,
            duration: ms(300),
            ..LoadOptions::default()
        })
        .unwrap();
        assert_eq!(report.ok, 0);
        let connects = report.errors.get(&Failure::Connect).copied().unwrap_or(0);
        // Two clients, a 100 ms pause after each failure: a handful, not thousands.
        assert!((2..=10).contains(&connects), "{report}");
        assert!(report.first_error.is_some(), "{report}");
        assert!(report.to_string().contains("could not connect"), "{report}");
    }

    #[test]
    fn one_off_requests_get_the_status_and_body() {
        let (target, _state) = service();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, body) = runtime
            .block_on(target.request(Method::GET, "/healthz", b"", ms(2000)))
            .unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
        let (status, _) = runtime
            .block_on(target.request(Method::POST, "/v1/generate", b"{", ms(2000)))
            .unwrap();
        assert_eq!(status, 400);
    }
}
