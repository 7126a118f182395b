//! leakwatch's debug endpoints as an [axum] router a service mounts beside its own
//! routes (the `axum` cargo feature), behind an access guard.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /debug/leaks?format=text\|json\|html[&top=N]` | the ranked report: `text/plain` (the default), `application/json` ([`Report`](crate::report::Report)'s JSON, the first `top` lines, default 15) or `text/html` (the whole page with its flame graph) |
//! | `GET /debug/pprof/heap` | the latest snapshot as a gzipped pprof profile, `inuse_space` its default sample type (`go tool pprof http://HOST/debug/pprof/heap`) |
//! | `GET /debug/pprof/allocs` | the same profile with `alloc_space` its default, as Go serves `allocs` |
//!
//! Reports are rendered on a blocking thread ([`tokio::task::spawn_blocking`]): ranking
//! every site, and the first symbolization, take CPU seconds that would stall a runtime
//! worker.
//!
//! # The guard
//!
//! Every request first passes [`Guard::check`], in this order:
//!
//! 1. An `Origin` other than `http://` + the request's own `Host`, or a
//!    `Sec-Fetch-Site` other than `same-origin` or `none`: **403**. A web page the
//!    operator has open cannot read or trigger the endpoints (cross-site request
//!    forgery; DNS rebinding, whose page's origin is its own name). Requests without
//!    these headers, as from curl or `go tool pprof`, pass this step.
//! 2. `Authorization: Bearer TOKEN` matching the [`Token`]: allowed.
//! 3. The peer (axum's [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo)) on a
//!    loopback address, unless [`Guard::trust_loopback`] turned that off: allowed if its
//!    `Host` names loopback (`localhost`, `127.0.0.1`, `[::1]`, any loopback address,
//!    with the port of [`Guard::listening_on`] when that is given), else **403**: a
//!    DNS-rebinding page reaches a loopback server under its own name.
//! 4. Otherwise **401**, with `WWW-Authenticate: Bearer`: no token, a wrong one, or no
//!    token configured. A request without `ConnectInfo` (a server not started with
//!    `into_make_service_with_connect_info::<SocketAddr>()`) has no known peer and needs
//!    the token.
//!
//! 401 rather than 403 for a missing or wrong token, because the right credentials
//! would let the request in (RFC 9110, 15.5.2); 403 where none would (another site's
//! page). A wrong token is not told apart from a missing one.
//!
//! Refusals and bad requests are one line of text (`text/plain`), unless
//! [`Guard::errors`] renders them the service's way; the unknown `format` of
//! `/debug/leaks` and a malformed query are 400, and a router given no recorder answers
//! 503.
//!
//! The [`guard`] middleware puts the same check in front of a service's own admin
//! routes.
//!
//! # Mounting
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use leakwatch::http::{Guard, Token};
//!
//! # async fn run() -> std::io::Result<()> {
//! let recorder = Arc::new(leakwatch::Recorder::start()?);
//! // Loopback clients need no token; others send `Authorization: Bearer $DEBUG_TOKEN`.
//! let token = std::env::var("DEBUG_TOKEN").ok().map(|t| Token::new(&t));
//! let app = Router::new()
//!     .route("/healthz", get(|| async { "ok" }))
//!     .merge(leakwatch::http::router(recorder, Guard::new().token(token)));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // `ConnectInfo` tells the guard who the peer is: without it, everyone needs the token.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
//! # }
//! ```

use crate::Recorder;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// A bearer token, kept only as a keyed hash (SipHash-1-3 with a random key per token,
/// from the standard library's [`RandomState`](std::hash::RandomState)): a presented
/// token is hashed with the same key and the two fixed-size digests compared without an
/// early exit, so the time a check takes depends neither on the secret's length nor on
/// how much of it matched; only on the length of what was presented. `Debug` prints
/// `<redacted>`.
#[derive(Clone)]
pub struct Token {
    key: std::hash::RandomState,
    digest: [u64; 2],
}

impl Token {
    /// A token from its text (the caller refuses an empty one: every client would have
    /// to send an empty bearer token, which is no secret).
    pub fn new(secret: &str) -> Token {
        let key = std::hash::RandomState::new();
        let digest = Token::digest_with(&key, secret.as_bytes());
        Token { key, digest }
    }

    /// 128 bits: two keyed hashes of `bytes`, told apart by a leading byte.
    fn digest_with(key: &std::hash::RandomState, bytes: &[u8]) -> [u64; 2] {
        use std::hash::{BuildHasher, Hasher};
        let half = |domain: u8| {
            let mut hasher = key.build_hasher();
            hasher.write_u8(domain);
            hasher.write(bytes);
            hasher.finish()
        };
        [half(0), half(1)]
    }

    /// Whether `given` is the token.
    pub fn matches(&self, given: &[u8]) -> bool {
        let given = Token::digest_with(&self.key, given);
        let differ = (given[0] ^ self.digest[0]) | (given[1] ^ self.digest[1]);
        std::hint::black_box(differ) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How error responses are rendered: from their status and one-line message.
type ErrorRenderer = Arc<dyn Fn(StatusCode, &str) -> Response + Send + Sync>;

/// Who may reach the debug endpoints (see the [module documentation](self) for the
/// rules), and how refusals look. Cheap to clone.
///
/// The default: loopback peers allowed, no token (so nobody else), any port in `Host`,
/// errors as one line of text.
#[derive(Clone)]
pub struct Guard {
    token: Option<Token>,
    trust_loopback: bool,
    listening_on: Option<SocketAddr>,
    errors: ErrorRenderer,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("token", &self.token)
            .field("trust_loopback", &self.trust_loopback)
            .field("listening_on", &self.listening_on)
            .finish_non_exhaustive()
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            token: None,
            trust_loopback: true,
            listening_on: None,
            errors: Arc::new(error_line),
        }
    }
}

/// Why [`Guard::check`] refused a request: the status to answer and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// 401 (no valid token) or 403 (another site's page, or a `Host` that is not
    /// loopback's).
    pub status: StatusCode,
    /// What was refused and why, one line.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl Guard {
    /// The default guard: loopback peers only.
    pub fn new() -> Guard {
        Guard::default()
    }

    /// The bearer token that lets any peer in (`None`: none does).
    pub fn token(mut self, token: impl Into<Option<Token>>) -> Self {
        self.token = token.into();
        self
    }

    /// Whether a loopback peer needs no token (default `true`). Turn it off where
    /// loopback peers are not only the machine's operators: behind a reverse proxy or
    /// sidecar on the same host, every remote client arrives from loopback.
    pub fn trust_loopback(mut self, trust: bool) -> Self {
        self.trust_loopback = trust;
        self
    }

    /// The address the service listens on: a loopback peer's `Host` must then carry its
    /// port (none meaning 80), not only a loopback name.
    pub fn listening_on(mut self, addr: SocketAddr) -> Self {
        self.listening_on = Some(addr);
        self
    }

    /// Renders refusals and bad requests (status and one-line message) the service's
    /// way, for example as its JSON errors. The guard adds `WWW-Authenticate: Bearer`
    /// to 401s itself.
    pub fn errors(
        mut self,
        render: impl Fn(StatusCode, &str) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.errors = Arc::new(render);
        self
    }

    /// An error response as [`Guard::errors`] renders it.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        (self.errors)(status, message)
    }

    /// Whether `request` may pass: the peer from its `ConnectInfo<SocketAddr>` extension
    /// (none: unknown), and its `Host`, `Origin`, `Sec-Fetch-Site` and `Authorization`
    /// headers.
    ///
    /// # Errors
    /// The [`Refusal`], with its status (401 or 403) and message.
    pub fn check<B>(&self, request: &axum::http::Request<B>) -> Result<(), Refusal> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        let headers = request.headers();
        // HTTP/2 carries the host in the URI's authority rather than a `Host` header.
        let host = match headers.get(header::HOST) {
            Some(value) => Some(value.to_str().unwrap_or("\u{fffd}")),
            None => request.uri().authority().map(|a| a.as_str()),
        };
        cross_site(headers, host)?;
        if let (Some(token), Some(given)) = (&self.token, bearer(headers)) {
            if token.matches(given) {
                return Ok(());
            }
        }
        let loopback_peer = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
        if self.trust_loopback && loopback_peer {
            return self.loopback_host(host);
        }
        let why = if self.token.is_none() {
            match peer {
                None => {
                    "no peer address (serve with into_make_service_with_connect_info::<SocketAddr>()) and no token configured: refused"
                }
                Some(_) if self.trust_loopback => {
                    "open to loopback clients only: no token is configured for others"
                }
                Some(_) => "no token is configured: every request is refused",
            }
        } else {
            "missing or wrong bearer token (Authorization: Bearer TOKEN)"
        };
        Err(Refusal::new(StatusCode::UNAUTHORIZED, why))
    }

    /// A loopback peer's `Host`: a loopback name, with the port listened on if known.
    fn loopback_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        let Some(host) = host else {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "no Host header"));
        };
        if is_loopback_host(host, self.listening_on.map(|a| a.port())) {
            return Ok(());
        }
        let port = match self.listening_on {
            Some(addr) => format!(" with port {}", addr.port()),
            None => String::new(),
        };
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not this server (localhost, 127.0.0.1 or [::1]{port}): a page under another name cannot reach it"
            ),
        ))
    }
}

/// Refuses what only a web page sends: an `Origin` other than the request's own, or a
/// `Sec-Fetch-Site` saying it comes from another site.
fn cross_site(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(origin) = text(header::ORIGIN) {
        let own = host.is_some_and(|host| {
            origin
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
                && origin[7..].eq_ignore_ascii_case(host)
        });
        if !own {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!("Origin {origin:?} is not this server's: other sites' pages are refused"),
            ));
        }
    }
    match text(HeaderName::from_static("sec-fetch-site")) {
        None | Some("same-origin" | "none") => Ok(()),
        Some(site) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("Sec-Fetch-Site {site:?}: other sites' pages are refused"),
        )),
    }
}

/// The credentials of `Authorization: Bearer CREDENTIALS` (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// Whether `host` (a `Host` header) names loopback: `localhost` or a loopback address,
/// with `port` when given (a `Host` without one means 80).
fn is_loopback_host(host: &str, port: Option<u16>) -> bool {
    let (name, given) = match host.rsplit_once(':') {
        // `[::1]` has colons of its own: a port follows the bracket.
        Some((name, given)) if !given.contains(']') => (name, given.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    if given.is_none() || port.is_some_and(|port| given != Some(port)) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let address = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().map(IpAddr::V6),
        None => name.parse::<std::net::Ipv4Addr>().map(IpAddr::V4),
    };
    address.is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The [`Guard`] as axum middleware, for a service's own routes:
/// `.route_layer(axum::middleware::from_fn_with_state(guard, leakwatch::http::guard))`.
/// Refused requests get the guard's error (401s with `WWW-Authenticate: Bearer`).
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.check(&request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let mut response = guard.error(refusal.status, &refusal.message);
            if refusal.status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// The default error response: `message` and a newline, as `text/plain`. A message
/// holding a line break is cut at it, so the body stays one line.
pub fn error_line(status: StatusCode, message: &str) -> Response {
    let line = message.lines().next().unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{line}\n"),
    )
        .into_response()
}

/// What the handlers share.
struct Endpoints {
    recorder: Option<Arc<Recorder>>,
    guard: Guard,
}

/// `/debug/leaks`, `/debug/pprof/heap` and `/debug/pprof/allocs` behind `guard`, as a
/// router to merge into the service's (whatever its state type `S`; it sets no
/// fallback, so the service's own answers unknown paths). Without a recorder
/// (`None`: leakwatch is off) every endpoint answers 503.
///
/// Give the server `ConnectInfo<SocketAddr>`
/// (`into_make_service_with_connect_info::<SocketAddr>()`), or loopback peers need the
/// token as well (see the [module documentation](self)).
pub fn router<S>(recorder: impl Into<Option<Arc<Recorder>>>, guard: Guard) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let endpoints = Arc::new(Endpoints {
        recorder: recorder.into(),
        guard: guard.clone(),
    });
    Router::new()
        .route("/debug/leaks", get(leaks))
        .route("/debug/pprof/heap", get(pprof_heap))
        .route("/debug/pprof/allocs", get(pprof_allocs))
        .route_layer(middleware::from_fn_with_state(guard, self::guard))
        .with_state(endpoints)
}

#[derive(Debug, Deserialize)]
struct LeaksQuery {
    format: Option<String>,
    top: Option<usize>,
}

/// The report's formats, as `format=` names them.
#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    Json,
    Html,
}

/// `GET /debug/leaks?format=text|json|html[&top=N]`.
async fn leaks(
    State(endpoints): State<Arc<Endpoints>>,
    query: Result<Query<LeaksQuery>, QueryRejection>,
) -> Response {
    let bad = |message: String| endpoints.guard.error(StatusCode::BAD_REQUEST, &message);
    let Ok(Query(query)) = query else {
        return bad("malformed query: format=text|json|html, top=N (1 to 1000)".into());
    };
    let format = match query.format.as_deref() {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some("html") => Format::Html,
        Some(other) => return bad(format!("unknown format {other:?}: text, json or html")),
    };
    let top = query.top.unwrap_or(15).clamp(1, 1000);
    off_the_runtime(&endpoints, move |recorder| match format {
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            recorder.text(top),
        )
            .into_response(),
        Format::Json => {
            let options = crate::report::ReportOptions {
                top: Some(top),
                ..Default::default()
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                recorder.report_with(&options).to_json(),
            )
                .into_response()
        }
        Format::Html => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            recorder.html(),
        )
            .into_response(),
    })
    .await
}

/// `GET /debug/pprof/heap`: live heap by stack.
async fn pprof_heap(State(endpoints): State<Arc<Endpoints>>) -> Response {
    off_the_runtime(&endpoints, |recorder| {
        profile("attachment; filename=\"heap.pb.gz\"", recorder.pprof())
    })
    .await
}

/// `GET /debug/pprof/allocs`: the same samples, bytes allocated since tracking began the
/// default.
async fn pprof_allocs(State(endpoints): State<Arc<Endpoints>>) -> Response {
    off_the_runtime(&endpoints, |recorder| {
        let bytes = crate::untracked(|| {
            let (snapshot, symbols) = recorder.latest();
            crate::report::render::pprof::pprof_allocs(&snapshot, &symbols)
        });
        profile("attachment; filename=\"allocs.pb.gz\"", bytes)
    })
    .await
}

/// A profile's response: gzipped protobuf, an attachment as `disposition` names it.
fn profile(disposition: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

/// Runs `render` with the recorder on a blocking thread; 503 without a recorder.
async fn off_the_runtime(
    endpoints: &Arc<Endpoints>,
    render: impl FnOnce(&Recorder) -> Response + Send + 'static,
) -> Response {
    let Some(recorder) = endpoints.recorder.clone() else {
        return endpoints.guard.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leakwatch is not recording (no recorder)",
        );
    };
    match tokio::task::spawn_blocking(move || render(&recorder)).await {
        Ok(response) => response,
        Err(_) => endpoints.guard.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the report failed",
        ),
    }
}
