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
//! | `GET /debug/pprof/heap` | leakwatch's heap profile (pprof, gzipped) |
//!
//! `/admin` and `/debug` are open on a loopback address; on any other address they need
//! `Authorization: Bearer <token>` (`--debug-token`), and answer 401 without it. Bad
//! requests get a JSON error: 400 (malformed), 413 (too large), 415 (not JSON).

use crate::model::{Model, Rng};
use crate::sessions::{Eviction, SessionKey, SessionStore, StoreConfig, StoreStats};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leakwatch::Recorder;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Limits and settings of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Session store settings (budget, context, fixed or leaky).
    pub store: StoreConfig,
    /// Bearer token for `/admin` and `/debug` when not on loopback.
    pub debug_token: Option<String>,
    /// Largest prompt accepted, in bytes (larger: 413).
    pub max_prompt_bytes: usize,
    /// Largest `max_tokens` accepted (larger: 400).
    pub max_tokens: u32,
    /// Largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// The first model version.
    pub initial_version: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreConfig {
                context_tokens: 128,
                budget_bytes: 8 << 20,
                idle_timeout: Duration::from_secs(120),
                eviction: Eviction::Fixed,
            },
            debug_token: None,
            max_prompt_bytes: 4096,
            max_tokens: 64,
            max_body_bytes: 64 * 1024,
            initial_version: 1,
        }
    }
}

/// Everything a request can reach.
pub struct AppState {
    config: Config,
    model: RwLock<Arc<Model>>,
    sessions: Mutex<SessionStore>,
    recorder: Option<Recorder>,
    /// The service listens on loopback only: `/admin` and `/debug` need no token.
    loopback: bool,
    metrics: Metrics,
    started: Instant,
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
        Arc::new(AppState {
            config,
            model: RwLock::new(model),
            sessions: Mutex::new(sessions),
            recorder,
            loopback: addr.ip().is_loopback(),
            metrics: Metrics::default(),
            started: Instant::now(),
        })
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
        self.recorder.as_ref()
    }

    /// The model update: builds `version` (default: the next one), serves it from now
    /// on, and tells the session store. Returns `(previous, new)` versions.
    pub fn swap_model(&self, version: Option<u32>) -> (u32, u32) {
        let previous = self.model_version();
        let version = version.unwrap_or(previous.wrapping_add(1)).max(1);
        let model = Arc::new(Model::build(crate::model::CORPUS, version));
        if let Ok(mut current) = self.model.write() {
            *current = model;
        }
        if let Ok(mut store) = self.sessions.lock() {
            store.model_swapped(version);
        }
        self.metrics.model_swaps.fetch_add(1, Relaxed);
        tracing::info!(previous, version, "model swapped");
        (previous, version)
    }
}

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/admin/model", post(swap_model))
        .route("/debug/leaks", get(debug_leaks))
        .route("/debug/pprof/heap", get(debug_pprof))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        .route("/v1/generate", post(generate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// A JSON error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
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
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
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
    let (previous, version) = state.swap_model(request.version);
    Json(serde_json::json!({ "version": version, "previous": previous })).into_response()
}

/// Checks the bearer token of `/admin` and `/debug` requests unless on loopback.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.loopback {
        return next.run(request).await;
    }
    let Some(expected) = state.config.debug_token.as_deref() else {
        state.metrics.unauthorized.fetch_add(1, Relaxed);
        return error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs a token: start the server with --debug-token when it listens beyond loopback",
        );
    };
    let given = bearer(request.headers());
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        next.run(request).await
    } else {
        state.metrics.unauthorized.fetch_add(1, Relaxed);
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct LeaksQuery {
    format: Option<String>,
    top: Option<usize>,
}

/// `GET /debug/leaks?format=text|json|html[&top=N]`.
async fn debug_leaks(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LeaksQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "query: format=text|json|html, top=N",
        );
    };
    let Some(recorder) = state.recorder() else {
        return not_recording();
    };
    let top = query.top.unwrap_or(15).clamp(1, 1000);
    match query.format.as_deref().unwrap_or("text") {
        "text" => text_response(recorder.text(top)),
        "json" => {
            let options = leakwatch::report::ReportOptions {
                top: Some(top),
                ..Default::default()
            };
            let report = recorder.report_with(&options);
            (
                [(header::CONTENT_TYPE, "application/json")],
                report.to_json(),
            )
                .into_response()
        }
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            recorder.html(),
        )
            .into_response(),
        other => error(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}: text, json or html"),
        ),
    }
}

/// `GET /debug/pprof/heap`: live heap by stack, for `go tool pprof`.
async fn debug_pprof(State(state): State<Arc<AppState>>) -> Response {
    let Some(recorder) = state.recorder() else {
        return not_recording();
    };
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"heap.pb.gz\"",
            ),
        ],
        recorder.pprof(),
    )
        .into_response()
}

fn not_recording() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "leakwatch is not recording: start the server with --leakwatch sampled (or LEAKWATCH=1)",
    )
}

fn text_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /metrics`: the service's counters, then leakwatch's (top 20 sites).
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    let store = state.store_stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "model_server_generate_requests_total",
        "counter",
        "Generation requests answered.",
        m.generate_ok.load(Relaxed).to_string(),
    );
    metric(
        "model_server_client_errors_total",
        "counter",
        "Requests refused as malformed, too large or out of bounds.",
        m.client_errors.load(Relaxed).to_string(),
    );
    metric(
        "model_server_unauthorized_requests_total",
        "counter",
        "Requests to /admin or /debug refused for lack of a token.",
        m.unauthorized.load(Relaxed).to_string(),
    );
    metric(
        "model_server_generated_tokens_total",
        "counter",
        "Words generated.",
        m.tokens.load(Relaxed).to_string(),
    );
    metric(
        "model_server_generate_seconds_total",
        "counter",
        "Time spent generating.",
        format!("{:.6}", m.generate_micros.load(Relaxed) as f64 / 1e6),
    );
    metric(
        "model_server_model_swaps_total",
        "counter",
        "Model updates.",
        m.model_swaps.load(Relaxed).to_string(),
    );
    metric(
        "model_server_model_version",
        "gauge",
        "The model version serving.",
        state.model_version().to_string(),
    );
    metric(
        "model_server_sessions",
        "gauge",
        "Sessions in the session store.",
        store.sessions.to_string(),
    );
    metric(
        "model_server_session_cache_bytes",
        "gauge",
        "Bytes of session caches the store holds.",
        store.held_bytes.to_string(),
    );
    metric(
        "model_server_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        format!("{:.3}", state.started.elapsed().as_secs_f64()),
    );
    if let Some(recorder) = state.recorder() {
        out.push_str(&recorder.prometheus(20));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
