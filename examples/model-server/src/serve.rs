//! Running the service: bind, start leakwatch's recorder, serve until Ctrl-C or SIGTERM.

use crate::server::{AppState, Config, router};
use leakwatch::Recorder;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How leakwatch runs in the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// Not at all (no recorder; `/debug` answers 503).
    Off,
    /// Sampled at the default rate (what staging runs).
    Sampled,
    /// Every allocation.
    Exact,
}

impl Tracking {
    /// The mode the `LEAKWATCH*` environment variables ask for, as the README documents
    /// them: `LEAKWATCH` (`value`: `1`/`on`/`true`/`yes`/`sampled`, `exact`,
    /// `0`/`off`/`false`/`no`/empty) and `LEAKWATCH_SAMPLE` (already applied by the
    /// allocator: `sample_rate` is the rate it configured; `1` means exact). Without
    /// `LEAKWATCH` the service tracks sampled (at `sample_rate`), as it always has.
    ///
    /// # Errors
    /// When `value` is none of the above.
    pub fn from_env(value: Option<&str>, sample_rate: u32) -> Result<Tracking, String> {
        let by_rate = if sample_rate <= 1 {
            Tracking::Exact
        } else {
            Tracking::Sampled
        };
        match value {
            None => Ok(by_rate),
            Some("1" | "on" | "true" | "yes" | "sampled") => Ok(by_rate),
            Some("exact") => Ok(Tracking::Exact),
            Some("0" | "off" | "false" | "no" | "") => Ok(Tracking::Off),
            Some(other) => Err(format!(
                "LEAKWATCH: 1, on, sampled, exact, 0 or off, not {other:?}"
            )),
        }
    }
}

/// Settings of `model-server serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// The service's limits and the session store (fixed or leaky).
    pub config: Config,
    /// leakwatch's mode.
    pub tracking: Tracking,
    /// Time between the recorder's snapshots.
    pub interval: Duration,
    /// Memory limit for time-to-limit (default: detected from the cgroup).
    pub memory_limit: Option<u64>,
    /// Where the recorder appends its series, if anywhere.
    pub series: Option<PathBuf>,
}

/// Starts tracking and the recorder as `tracking` asks.
///
/// # Errors
/// When the series file cannot be opened.
pub fn start_recorder(options: &ServeOptions) -> std::io::Result<Option<Recorder>> {
    match options.tracking {
        Tracking::Off => {
            leakwatch::disable();
            return Ok(None);
        }
        Tracking::Sampled => {
            if leakwatch::sample_rate() <= 1 {
                leakwatch::set_sample_rate(leakwatch::DEFAULT_SAMPLE_RATE);
            }
        }
        Tracking::Exact => leakwatch::set_sample_rate(1),
    }
    if !leakwatch::enable() {
        tracing::warn!("leakwatch could not start tracking: is it the global allocator?");
        return Ok(None);
    }
    // Alerts reach the subscriber as tracing events with their fields (leakwatch's
    // `tracing` feature); its `log` line would arrive a second time through tracing-log.
    let mut builder =
        Recorder::builder()
            .interval(options.interval)
            .alerts(leakwatch::AlertOptions {
                log: false,
                ..Default::default()
            });
    if let Some(limit) = options.memory_limit {
        builder = builder.memory_limit(Some(limit));
    }
    if let Some(path) = &options.series {
        builder = builder.file(path);
    }
    // The recorder's thread raises its alerts inside the span current here: each alert's
    // event carries `service` and `version`.
    let span = tracing::info_span!(
        "model_server",
        service = "model-server",
        version = env!("CARGO_PKG_VERSION")
    );
    span.in_scope(|| builder.start()).map(Some)
}

/// Serves until Ctrl-C or SIGTERM, then shuts down within the configured deadline
/// (requests in flight get [`Timeouts::shutdown`](crate::server::Timeouts), then the
/// remaining connections are closed; see [`crate::conn`]). Prints `model-server
/// listening on http://ADDR` once bound (tests and the demo read the address from it).
///
/// # Errors
/// When the address cannot be bound (`cannot bind ADDR: WHY`) or the series file cannot
/// be opened.
pub async fn serve(options: ServeOptions) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| bind_error(options.addr, &e))?;
    let addr = listener.local_addr()?;
    let recorder = start_recorder(&options)?;
    let state = AppState::new(options.config.clone(), addr, recorder);
    if !addr.ip().is_loopback() && options.config.token.is_none() {
        tracing::warn!(
            "listening beyond loopback without a token (--token-file or MODEL_SERVER_DEBUG_TOKEN): /admin and /debug will refuse every request"
        );
    }
    let sweeper = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                state.drop_idle_sessions();
            }
        })
    };
    println!("model-server listening on http://{addr}");
    crate::conn::serve(
        listener,
        router(Arc::clone(&state)),
        options.config.timeouts,
        options.config.max_header_bytes,
        async {
            shutdown_signal().await;
            tracing::info!(
                "shutting down: requests in flight get {:.1} s",
                options.config.timeouts.shutdown.as_secs_f64()
            );
        },
    )
    .await;
    sweeper.abort();
    Ok(())
}

/// `cannot bind ADDR: WHY`, one line (the OS error's text without its number).
fn bind_error(addr: SocketAddr, e: &std::io::Error) -> std::io::Error {
    let why = e.to_string();
    let why = why.split(" (os error").next().unwrap_or(&why);
    std::io::Error::new(e.kind(), format!("cannot bind {addr}: {why}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
