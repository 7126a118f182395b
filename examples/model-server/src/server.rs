//! The HTTP service: generation, the model update, health, metrics, and leakwatch's
//! debug endpoints.
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /v1/generate` | `{"session_id", "prompt", "max_tokens"}` in, generated text out |
//! | `POST /admin/model` | hot-swap to a new model version (`{"version": N}`, or the next) |
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | Prometheus: the service's counters and leakwatch's |
//! | `GET /debug/leaks?format=text\|json\|html` | leakwatch's ranked report |
//! | `GET /debug/pprof/heap`, `GET /debug/pprof/allocs` | leakwatch's heap profile (pprof, gzipped; `inuse_space` or `alloc_space` its default) |
//!
//! The `/debug` endpoints are leakwatch's own ([`leakwatch::http::router`]), and
//! `/admin` sits behind the same [`leakwatch::http::Guard`]: an `Origin` that is not
//! the request's own (`http://HOST`) or a `Sec-Fetch-Site` other than `same-origin` or
//! `none` is refused (403), so a web page the operator opens cannot reach them;
//! requests without `Origin`, as from curl, pass. On a loopback address they are open
//! to requests addressed to it: the `Host` must be `localhost` or a loopback address
//! with the bound port (a DNS-rebinding page's `Host` is its own name; 403). On any
//! other address every client needs `Authorization: Bearer <token>` (`--token-file` or
//! `MODEL_SERVER_DEBUG_TOKEN`), loopback clients too (a proxy on the host would bring
//! remote clients from loopback), and gets 401 without it; the token is kept as a
//! keyed hash and compared as one. `/admin` also takes only a `Content-Type` of
//! `application/json` (415). Every refusal of the service has a JSON body (`{"error",
//! "status"}`): 400 (malformed), 401, 403, 404, 405 (with `Allow`), 408 (too slow), 409
//! (no next model version), 413 (too large), 415 (not JSON), 503 (leakwatch off).
//! hyper's own answers to a head it cannot parse (400, 414, 431: over 16 KiB or 100
//! headers) have none.

use crate::model::{Model, Rng};
use crate::sessions::{Eviction, SessionKey, SessionStore, StoreConfig, StoreStats};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leakwatch::http::Guard;
use leakwatch::{Recorder, TagSet};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// Limits and settings of the service. Its `Debug` shows the token as `<redacted>`.
#[derive(Clone)]
pub struct Config {
    /// Session store settings (budget, context, fixed or leaky).
    pub store: StoreConfig,
    /// Bearer token for `/admin` and `/debug` when not on loopback.
    pub token: Option<Token>,
    /// Largest prompt accepted, in bytes (larger: 413).
    pub max_prompt_bytes: usize,
    /// Largest `max_tokens` accepted (larger: 400).
    pub max_tokens: u32,
    /// Largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), in bytes, at least 8 KiB
    /// (larger: 431, from hyper, without a body).
    pub max_header_bytes: usize,
    /// The first model version.
    pub initial_version: u32,
    /// Connection timeouts and the shutdown deadline.
    pub timeouts: Timeouts,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("store", &self.store)
            // `<redacted>` when there is one: its length is not shown either.
            .field(
                "token",
                match &self.token {
                    Some(token) => token as &dyn std::fmt::Debug,
                    None => &None::<()>,
                },
            )
            .field("max_prompt_bytes", &self.max_prompt_bytes)
            .field("max_tokens", &self.max_tokens)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("initial_version", &self.initial_version)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// How long a connection may take over each part of its life (see [`crate::conn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From a request head's first byte to its last (default 10 s): then the
    /// connection is closed.
    pub header_read: Duration,
    /// A connection with no request, or a request or response making no progress
    /// (default 60 s): then the connection is closed.
    pub idle: Duration,
    /// One request's handling, its body read included (default 30 s): then 408.
    pub request: Duration,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take before the process
    /// exits anyway (default 5 s).
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(30),
            shutdown: Duration::from_secs(5),
        }
    }
}

/// The bearer token of `/admin` and `/debug` (leakwatch's, kept as a keyed hash).
pub use leakwatch::http::Token;

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreConfig {
                context_tokens: 128,
                budget_bytes: 8 << 20,
                idle_timeout: Duration::from_secs(120),
                eviction: Eviction::Fixed,
            },
            token: None,
            max_prompt_bytes: 4096,
            max_tokens: 64,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            initial_version: 1,
            timeouts: Timeouts::default(),
        }
    }
}

/// Everything a request can reach.
pub struct AppState {
    config: Config,
    model: RwLock<Arc<Model>>,
    sessions: Mutex<SessionStore>,
    recorder: Option<Arc<Recorder>>,
    /// The service listens on loopback only: `/admin` and `/debug` need no token.
    loopback: bool,
    /// Where it listens (the port `Host` headers must name).
    addr: SocketAddr,
    metrics: Metrics,
    started: Instant,
    /// The tags of the last model version's generations (`generate_tags`).
    generate_tags: RwLock<(u32, TagSet)>,
    /// What `GET /metrics` encodes: the service's metrics and leakwatch's collector.
    registry: Registry,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Metrics {
    generate_ok: AtomicU64,
    client_errors: AtomicU64,
    unauthorized: AtomicU64,
    tokens: AtomicU64,
    model_swaps: AtomicU64,
    generate_micros: AtomicU64,
}

impl AppState {
    /// The state of a service listening on `addr`, with `recorder` (if leakwatch runs).
    pub fn new(config: Config, addr: SocketAddr, recorder: Option<Recorder>) -> Arc<AppState> {
        let model = Arc::new(Model::build(crate::model::CORPUS, config.initial_version));
        let sessions = SessionStore::new(config.store, config.initial_version);
        // leakwatch's families (per-site series for the top 20), read at every scrape.
        let leakwatch = recorder.as_ref().map(|r| r.prometheus_collector(20));
        let registry = move |state: &Weak<AppState>| {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(ServiceMetrics(Weak::clone(state))));
            if let Some(leakwatch) = leakwatch {
                registry.register_collector(Box::new(leakwatch));
            }
            registry
        };
        Arc::new_cyclic(|state| AppState {
            registry: registry(state),
            config,
            model: RwLock::new(model),
            sessions: Mutex::new(sessions),
            recorder: recorder.map(Arc::new),
            loopback: addr.ip().is_loopback(),
            addr,
            metrics: Metrics::default(),
            started: Instant::now(),
            generate_tags: RwLock::new((0, TagSet::none())),
        })
    }

    /// The tags a generation under model `version` allocates with: `route` and `model`,
    /// so reports say which model version's memory grows. Interned once per version.
    fn generate_tags(&self, version: u32) -> TagSet {
        if let Ok(cached) = self.generate_tags.read() {
            if cached.0 == version {
                return cached.1;
            }
        }
        let tags = TagSet::none()
            .with("route", "/v1/generate")
            .with("model", &version.to_string());
        if let Ok(mut cached) = self.generate_tags.write() {
            *cached = (version, tags);
        }
        tags
    }

    /// The current model version.
    pub fn model_version(&self) -> u32 {
        self.model.read().map(|m| m.version).unwrap_or(0)
    }

    /// What the session store holds.
    pub fn store_stats(&self) -> StoreStats {
        self.sessions.lock().map(|s| s.stats()).unwrap_or_default()
    }

    /// Drops idle sessions (the fixed store); the service calls this every few seconds.
    pub fn drop_idle_sessions(&self) -> usize {
        self.sessions.lock().map(|mut s| s.drop_idle()).unwrap_or(0)
    }

    /// The leakwatch recorder, if leakwatch runs.
    pub fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_deref()
    }

    /// Who may reach `/admin` and `/debug`: on loopback, loopback clients naming this
    /// server in `Host`; beyond it, holders of the token only. Refusals are the
    /// service's JSON errors.
    fn guard(&self) -> Guard {
        Guard::new()
            .token(self.config.token.clone())
            .trust_loopback(self.loopback)
            .listening_on(self.addr)
            .errors(|status, message| {
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    return error(
                        status,
                        format!(
                            "{message}: start the server with --leakwatch sampled (or LEAKWATCH=1)"
                        ),
                    );
                }
                error(status, message)
            })
    }

    /// The model update: builds `version` (default: the next one), serves it from now
    /// on, and tells the session store. Returns `(previous, new)` versions.
    ///
    /// # Errors
    /// 400 for version 0; 409 when no version is given and the current one is the last
    /// (`u32::MAX`): versions never wrap.
    pub fn swap_model(&self, version: Option<u32>) -> Result<(u32, u32), ApiError> {
        let previous = self.model_version();
        let version = match version {
            Some(0) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("version must be 1 to {}", u32::MAX),
                ));
            }
            Some(version) => version,
            None => previous.checked_add(1).ok_or_else(|| {
                (
                    StatusCode::CONFLICT,
                    format!(
                        "model version {previous} is the last: give an explicit {{\"version\": N}}"
                    ),
                )
            })?,
        };
        let model = Arc::new(Model::build(crate::model::CORPUS, version));
        if let Ok(mut current) = self.model.write() {
            *current = model;
        }
        if let Ok(mut store) = self.sessions.lock() {
            store.model_swapped(version);
        }
        self.metrics.model_swaps.fetch_add(1, Relaxed);
        tracing::info!(previous, version, "model swapped");
        Ok((previous, version))
    }
}

/// The service's routes. `/debug` is leakwatch's router, `/admin` behind its guard;
/// the connections must carry `ConnectInfo<SocketAddr>` ([`crate::conn`] adds it).
pub fn router(state: Arc<AppState>) -> Router {
    let guard = state.guard();
    let admin = Router::new()
        .route("/admin/model", post(swap_model))
        .route_layer(middleware::from_fn_with_state(
            guard.clone(),
            leakwatch::http::guard,
        ));
    let guarded = admin
        .merge(leakwatch::http::router(state.recorder.clone(), guard))
        .route_layer(middleware::map_response_with_state(
            Arc::clone(&state),
            count_refusals,
        ));
    Router::new()
        .route("/v1/generate", post(generate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::map_response(json_if_empty))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Counts the guard's refusals of `/admin` and `/debug` requests (401, 403).
async fn count_refusals(State(state): State<Arc<AppState>>, response: Response) -> Response {
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        state.metrics.unauthorized.fetch_add(1, Relaxed);
    }
    response
}

/// Gives an error answered without a body (axum's 405, for one) a JSON one, keeping its
/// headers.
async fn json_if_empty(response: Response) -> Response {
    use axum::body::HttpBody;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.body().size_hint().exact() != Some(0)
    {
        return response;
    }
    // axum adds `Allow` to its 405s outside this layer: kept, as every header is.
    let message = status
        .canonical_reason()
        .unwrap_or("request refused")
        .to_lowercase();
    let (mut parts, _) = response.into_parts();
    let (json_parts, body) = error(status, message).into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

/// A JSON error response: `{"error": MESSAGE, "status": CODE}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
        status: u16,
    }
    let body = Body {
        error: message.into(),
        status: status.as_u16(),
    };
    (status, Json(body)).into_response()
}

/// A request body that is not what the endpoint takes: 413 when too large, 415 when not
/// JSON, 400 otherwise.
fn rejection(state: &AppState, r: &JsonRejection) -> Response {
    state.metrics.client_errors.fetch_add(1, Relaxed);
    let status = match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "request body too large (at most {} bytes)",
            state.config.max_body_bytes
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "expected Content-Type: application/json".to_string(),
        _ => format!("malformed request: {}", r.body_text()),
    };
    error(status, message)
}

/// `POST /v1/generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The client's session (letters, digits, `-`, `_`, `.`, `:`; 1 to 128 of them).
    pub session_id: String,
    /// Text to continue.
    pub prompt: String,
    /// Words to generate (default 16).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// The answer to [`GenerateRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct GenerateResponse {
    /// The session.
    pub session_id: String,
    /// The model version that answered.
    pub model_version: u32,
    /// The generated text.
    pub text: String,
    /// Words generated.
    pub tokens: usize,
    /// Words in the session's context now.
    pub context_tokens: usize,
}

/// A refused request: its status and message.
pub type ApiError = (StatusCode, String);

/// Serves one generation: validates the request, finds or opens the session (under the
/// current model version), and generates. The HTTP handler's whole work, callable
/// without HTTP (the leak test calls it directly).
///
/// # Errors
/// 400 for a bad session id or `max_tokens`, 413 for a prompt over the limit.
pub fn generate_text(
    state: &AppState,
    request: GenerateRequest,
) -> Result<GenerateResponse, ApiError> {
    let id = &request.session_id;
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "session_id must be 1 to 128 letters, digits, '-', '_', '.' or ':'".into(),
        ));
    }
    if request.prompt.len() > state.config.max_prompt_bytes {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "prompt too large: {} bytes (at most {})",
                request.prompt.len(),
                state.config.max_prompt_bytes
            ),
        ));
    }
    let max_tokens = request.max_tokens.unwrap_or(16);
    if max_tokens == 0 || max_tokens > state.config.max_tokens {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("max_tokens must be 1 to {}", state.config.max_tokens),
        ));
    }
    let unavailable = |what: &str| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} unavailable"),
        )
    };
    let model = Arc::clone(&*state.model.read().map_err(|_| unavailable("model"))?);
    // Everything this generation allocates carries its model version and route.
    let _tags = state.generate_tags(model.version).enter();
    let key = SessionKey {
        version: model.version,
        id: request.session_id.clone(),
    };
    let session = state
        .sessions
        .lock()
        .map_err(|_| unavailable("session store"))?
        .session(&key);
    let (tokens, context_tokens) = {
        let mut session = session.lock().map_err(|_| unavailable("session"))?;
        session.requests += 1;
        let mut rng = Rng::new(session.seed ^ session.requests);
        let tokens = model.generate(
            &mut session.cache,
            &request.prompt,
            max_tokens as usize,
            &mut rng,
        );
        (tokens, session.cache.len())
    };
    Ok(GenerateResponse {
        session_id: request.session_id,
        model_version: model.version,
        text: model.vocab().decode(&tokens),
        tokens: tokens.len(),
        context_tokens,
    })
}

async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(r) => return rejection(&state, &r),
    };
    let started = Instant::now();
    match generate_text(&state, request) {
        Ok(response) => {
            state.metrics.generate_ok.fetch_add(1, Relaxed);
            state
                .metrics
                .tokens
                .fetch_add(response.tokens as u64, Relaxed);
            state
                .metrics
                .generate_micros
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            Json(response).into_response()
        }
        Err((status, message)) => {
            if status.is_client_error() {
                state.metrics.client_errors.fetch_add(1, Relaxed);
            }
            error(status, message)
        }
    }
}

/// `POST /admin/model`: `{"version": N}` or an empty body for the next version.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapRequest {
    version: Option<u32>,
}

async fn swap_model(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // A JSON content type: a page's simple cross-origin POST (form, text/plain, no
    // body) cannot have one without a CORS preflight, which nothing here answers.
    if !is_json(&headers) {
        state.metrics.client_errors.fetch_add(1, Relaxed);
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(r) => {
            state.metrics.client_errors.fetch_add(1, Relaxed);
            return error(
                r.status(),
                format!("unreadable request body: {}", r.body_text()),
            );
        }
    };
    let request: SwapRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SwapRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                state.metrics.client_errors.fetch_add(1, Relaxed);
                return error(StatusCode::BAD_REQUEST, format!("malformed request: {e}"));
            }
        }
    };
    match state.swap_model(request.version) {
        Ok((previous, version)) => {
            Json(serde_json::json!({ "version": version, "previous": previous })).into_response()
        }
        Err((status, message)) => {
            state.metrics.client_errors.fetch_add(1, Relaxed);
            error(status, message)
        }
    }
}

/// `Content-Type: application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /metrics`: the service's registry in the Prometheus text format: its own
/// metrics, then leakwatch's (top 20 sites).
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // leakwatch's collector ranks the sites at every scrape: off the runtime, as the
    // reports.
    let encoded = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &state.registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

/// The service's own metrics, read from its counters and state at every scrape.
#[derive(Debug)]
struct ServiceMetrics(Weak<AppState>);

impl Collector for ServiceMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(state) = self.0.upgrade() else {
            return Ok(());
        };
        let m = &state.metrics;
        // Counters are named without `_total`: the encoder appends it.
        let counters = [
            (
                "model_server_generate_requests",
                "Generation requests answered.",
                m.generate_ok.load(Relaxed),
            ),
            (
                "model_server_client_errors",
                "Requests refused as malformed, too large or out of bounds.",
                m.client_errors.load(Relaxed),
            ),
            (
                "model_server_unauthorized_requests",
                "Requests to /admin or /debug refused: no token or a wrong one, or from another site's page.",
                m.unauthorized.load(Relaxed),
            ),
            (
                "model_server_generated_tokens",
                "Words generated.",
                m.tokens.load(Relaxed),
            ),
            (
                "model_server_model_swaps",
                "Model updates.",
                m.model_swaps.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let seconds = ConstCounter::new(m.generate_micros.load(Relaxed) as f64 / 1e6);
        seconds.encode(encoder.encode_descriptor(
            "model_server_generate_seconds",
            "Time spent generating.",
            None,
            seconds.metric_type(),
        )?)?;
        let store = state.store_stats();
        let gauges = [
            (
                "model_server_model_version",
                "The model version serving.",
                i64::from(state.model_version()),
            ),
            (
                "model_server_sessions",
                "Sessions in the session store.",
                store.sessions as i64,
            ),
            (
                "model_server_session_cache_bytes",
                "Bytes of session caches the store holds.",
                store.held_bytes as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let uptime = ConstGauge::new(state.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "model_server_uptime_seconds",
            "Seconds since the service started.",
            None,
            uptime.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = Config {
            token: Some(Token::new("hunter2-very-secret")),
            ..Config::default()
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("token: <redacted>"), "{shown}");
        let state = AppState::new(config, "127.0.0.1:1".parse().unwrap(), None);
        let shown = format!("{state:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
