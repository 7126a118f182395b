//! Connections: the accept loop, each connection's timeouts, and graceful shutdown with
//! a deadline.
//!
//! Every connection has a watchdog, which closes it when
//!
//! - a request's head started to arrive and is not complete within
//!   [`Timeouts::header_read`] (a slow client holding half a header: slowloris);
//! - it sat idle, between requests or before the first one, for [`Timeouts::idle`]
//!   (keep-alive), or a request or its response made no progress for as long (a client
//!   that stopped reading its answer);
//! - the service is shutting down and no request is in flight on it (within 250 ms of
//!   that, so a response just written is flushed).
//!
//! A request whose handler (its body read included) takes longer than
//! [`Timeouts::request`] is answered 408. On shutdown the listener closes at once,
//! requests in flight get up to [`Timeouts::shutdown`] to finish, and then every
//! connection still open is closed: the process exits whatever its clients do.
//!
//! A request is *in flight* from the moment its head is parsed until its response body
//! has been sent (or dropped): what each connection's `Clock` counts.

use crate::server::{Timeouts, error};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a connection with nothing in flight may stay open once shutdown began: time
/// for hyper to flush a response it has just finished.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `shutdown` completes, then drains: in-flight
/// requests get up to `timeouts.shutdown`, after which the remaining connections are
/// closed. `max_header_bytes` bounds the bytes hyper buffers for a request head (at
/// least 8 KiB, hyper's minimum; a larger head is answered 431).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    max_header_bytes: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        stream,
                        peer,
                        router.clone(),
                        timeouts,
                        max_header_bytes,
                        stopped.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close rather
                    // than spin on the error.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        // Reap finished connections, so the set holds open ones only.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(timeouts.shutdown, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if drained {
        tracing::info!(connections = open, "shut down: every connection closed");
    } else {
        tracing::warn!(
            "shutdown deadline of {:.1} s passed with {} connection(s) still open: closing them",
            timeouts.shutdown.as_secs_f64(),
            connections.len()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// One connection from `peer`: HTTP/1.1 with keep-alive, watched by its [`Clock`]. Its
/// requests carry `ConnectInfo(peer)`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    max_header_bytes: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: Arc::clone(&clock),
    });
    let service = {
        let clock = Arc::clone(&clock);
        let router = TowerToHyperService::new(router);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(&clock);
            // Who is asking, as `axum::serve` tells it: leakwatch's guard reads it.
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = hyper::service::Service::call(&router, request);
            async move {
                let response = match tokio::time::timeout(timeouts.request, answer).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "request not complete within {:.1} s",
                            timeouts.request.as_secs_f64()
                        ),
                    ),
                };
                // In flight until the body is sent or dropped: the guard goes with it.
                Ok::<Response, Infallible>(response.map(move |body| {
                    Body::new(body.map_frame(move |frame| {
                        let _in_flight = &in_flight;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog below does this, and tells header time from idle time.
        .header_read_timeout(None)
        .max_buf_size(max_header_bytes.max(8192));
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping_since = None;
    loop {
        let deadline = clock.deadline(&timeouts, stopping_since);
        tokio::select! {
            _ = &mut served => return,
            // A change, or the sender gone: either way the service is stopping.
            _ = stopped.changed(), if stopping_since.is_none() => {
                stopping_since = Some(Instant::now());
                served.as_mut().graceful_shutdown();
            }
            () = clock.moved.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                if clock.deadline(&timeouts, stopping_since) <= Instant::now() {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// What a connection's watchdog needs to know: requests in flight and when bytes last
/// moved. Updated by [`Watched`] (reads, writes) and [`InFlight`] (requests).
#[derive(Debug)]
struct Clock {
    state: Mutex<ClockState>,
    /// Wakes the watchdog when the deadline may have moved earlier (a head began, the
    /// last request in flight ended).
    moved: tokio::sync::Notify,
}

#[derive(Debug)]
struct ClockState {
    /// Requests whose response body has not been sent yet.
    in_flight: u32,
    /// When the first byte of the next request's head arrived, if one did.
    head_started: Option<Instant>,
    /// The last read or write of at least one byte, or the last request's start or end.
    last_activity: Instant,
    /// When the connection last had nothing in flight (its start, or the last response).
    idle_since: Instant,
}

impl Clock {
    fn new() -> Clock {
        let now = Instant::now();
        Clock {
            state: Mutex::new(ClockState {
                in_flight: 0,
                head_started: None,
                last_activity: now,
                idle_since: now,
            }),
            moved: tokio::sync::Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ClockState) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    fn read(&self) {
        let now = Instant::now();
        let began = self.with(|s| {
            s.last_activity = now;
            let began = s.in_flight == 0 && s.head_started.is_none();
            if began {
                s.head_started = Some(now);
            }
            began
        });
        if began {
            self.moved.notify_one();
        }
    }

    fn wrote(&self) {
        let now = Instant::now();
        self.with(|s| s.last_activity = now);
    }

    /// When the connection is to be closed, as things stand.
    fn deadline(&self, timeouts: &Timeouts, stopping_since: Option<Instant>) -> Instant {
        self.with(|s| {
            if s.in_flight > 0 {
                // A request or its answer making no progress at all.
                return s.last_activity + timeouts.idle;
            }
            if let Some(stopping) = stopping_since {
                return stopping.max(s.idle_since) + CLOSE_GRACE;
            }
            match s.head_started {
                Some(started) => started + timeouts.header_read,
                None => s.last_activity.max(s.idle_since) + timeouts.idle,
            }
        })
    }
}

/// A request in flight on a connection, from its parsed head to its sent body.
#[derive(Debug)]
struct InFlight(Arc<Clock>);

impl InFlight {
    fn begin(clock: &Arc<Clock>) -> InFlight {
        let now = Instant::now();
        clock.with(|s| {
            s.in_flight += 1;
            s.head_started = None;
            s.last_activity = now;
        });
        InFlight(Arc::clone(clock))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        let idle = self.0.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.last_activity = now;
            if s.in_flight == 0 {
                s.idle_since = now;
            }
            s.in_flight == 0
        });
        if idle {
            self.0.moved.notify_one();
        }
    }
}

/// A TCP stream that tells its [`Clock`] when bytes move.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
