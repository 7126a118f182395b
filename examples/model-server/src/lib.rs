//! A small language-model service with the outage's leak in it, for leakwatch's demo.
//!
//! - [`model`]: a word-level language model with one attention layer, built at start-up
//!   from the corpus in `data/` (no downloads); each session keeps a key/value cache.
//! - [`sessions`]: the session store, bounded by bytes and idle time; `--leaky` brings
//!   back the eviction bug that, after a model update, let every new session stay.
//! - [`server`]: the HTTP endpoints (generation, model update, health, metrics, and
//!   leakwatch's reports).
//! - [`serve`]: runs the service with leakwatch's recorder.
//! - [`conn`]: connections: header-read, idle and request timeouts, graceful shutdown
//!   with a deadline.
//! - [`loadgen`]: a load generator for the service (loopback only), as a library and as
//!   `model-server loadgen`.
//! - [`demo`]: `model-server demo`: the leak found by leakwatch, then the fix checked,
//!   with the service as a child process ([`demo::ServerProcess`]).
//! - [`soak`]: `model-server soak`: minutes under load with model updates and clients
//!   that give up mid-request; no errors, no stall, no leak, flat RSS.
#![forbid(unsafe_code)]

pub mod conn;
pub mod demo;
pub mod loadgen;
pub mod model;
pub mod serve;
pub mod server;
pub mod sessions;
pub mod soak;

/// Runs the service ([`serve::serve`]) on a multi-threaded runtime, with logs
/// (leakwatch's alerts among them) on standard error, until Ctrl-C or SIGTERM: what
/// `model-server serve` does, as a function for other binaries (the service benchmark
/// runs its server child with it).
///
/// # Errors
/// When the runtime cannot start, the address cannot be bound or the series file cannot
/// be opened.
pub fn run_service(options: serve::ServeOptions) -> std::io::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(serve::serve(options));
    // Past the shutdown deadline nothing may hold the exit up: tasks still running
    // (none should be) are abandoned after a second.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
