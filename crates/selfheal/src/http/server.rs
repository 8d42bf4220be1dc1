//! The admin server's connections: the accept loop, a bound on open connections, timeouts for
//! slow and idle ones, and an orderly stop. The routes are in [`super`].
//!
//! Why not `axum::serve`: it has no connection bound and no timeouts, so a local client holding
//! idle connections could take every descriptor; then probes could not connect and `/healthz`
//! stopped answering.
//!
//! At the bound, a new connection takes the slot of the open connection that has been idle
//! (no request being served) the longest, which is closed. Refusing the newcomer instead would
//! let whoever holds idle connections lock out `/healthz` until they time out; evicting the
//! longest idle one means a client that sends its request at once is served, however many idle
//! connections others hold. Only when every slot is serving a request is the newcomer closed
//! at once.

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Default bound on open admin connections. The admin server is read-only and local: a
/// Prometheus, a health check and a few people with curl need a handful. 256 is a quarter of
/// 1024, the smallest hard descriptor limit common on Linux, so at that limit three quarters
/// stay for probes (one descriptor each while in flight), the Docker client and the journal.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// A request head must be complete this long after its first byte (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that has sent nothing of a next request this long is closed: longer than a
/// usual scrape interval (15 s), so Prometheus keeps its connection between scrapes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (out of descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the admin server treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// At most this many open connections.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Where a connection is between requests; each phase carries the time it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing of the next request received yet (a new or a kept-alive connection).
    Idle { since: Instant },
    /// Part of a request head received, since its first byte.
    ReadingHead { since: Instant },
    /// A request is being served.
    Serving,
}

impl Phase {
    /// When an idle or slow connection is to be closed; `None` while serving.
    fn deadline(self, limits: &ConnectionLimits) -> Option<Instant> {
        match self {
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::ReadingHead { since } => Some(since + limits.header_read_timeout),
            Phase::Serving => None,
        }
    }

    /// Since when no request has been served; `None` while serving.
    fn waiting_since(self) -> Option<Instant> {
        match self {
            Phase::Idle { since } | Phase::ReadingHead { since } => Some(since),
            Phase::Serving => None,
        }
    }
}

/// One open connection as the slots see it.
#[derive(Debug)]
struct TrackedConnection {
    phase: watch::Sender<Phase>,
    evicted: CancellationToken,
}

impl TrackedConnection {
    fn first_byte(&self) {
        self.phase.send_if_modified(|p| match p {
            Phase::Idle { .. } => {
                *p = Phase::ReadingHead {
                    since: Instant::now(),
                };
                true
            }
            _ => false,
        });
    }
}

/// The open connections, at most `max`.
#[derive(Debug)]
struct Slots {
    max: usize,
    inner: Mutex<SlotsInner>,
}

#[derive(Debug, Default)]
struct SlotsInner {
    next_id: u64,
    open: HashMap<u64, Arc<TrackedConnection>>,
}

/// What became of a new connection.
#[derive(Debug)]
enum Admission {
    /// A free slot.
    Admitted(u64, Arc<TrackedConnection>),
    /// The longest idle connection was closed to make room.
    Evicted(u64, Arc<TrackedConnection>),
    /// Every slot is serving a request.
    Refused,
}

impl Slots {
    fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::default(),
        }
    }

    fn admit(&self) -> Admission {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = false;
        if s.open.len() >= self.max {
            let victim = s
                .open
                .iter()
                .filter_map(|(id, c)| Some((c.phase.borrow().waiting_since()?, *id)))
                .min();
            let Some((_, victim)) = victim else {
                return Admission::Refused;
            };
            if let Some(c) = s.open.remove(&victim) {
                c.evicted.cancel();
            }
            evicted = true;
        }
        let id = s.next_id;
        s.next_id += 1;
        let conn = Arc::new(TrackedConnection {
            phase: watch::Sender::new(Phase::Idle {
                since: Instant::now(),
            }),
            evicted: CancellationToken::new(),
        });
        s.open.insert(id, conn.clone());
        if evicted {
            Admission::Evicted(id, conn)
        } else {
            Admission::Admitted(id, conn)
        }
    }

    fn release(&self, id: u64) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.open.remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }
}

/// Gives the slot back when the connection's task ends, however it ends.
struct SlotGuard<'a>(&'a Slots, u64);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// A stream that tells its connection when the first byte of a request arrives.
struct WatchedStream {
    inner: TcpStream,
    conn: Arc<TrackedConnection>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.first_byte();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `cancel`; then stops accepting, lets requests in flight
/// finish, closes idle connections and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Slots::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin server: accept failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        let (id, conn) = match slots.admit() {
            Admission::Admitted(id, conn) => (id, conn),
            Admission::Evicted(id, conn) => {
                tracing::trace!(
                    max = limits.max_connections,
                    "admin server: at the connection bound, closed the longest idle connection"
                );
                (id, conn)
            }
            Admission::Refused => {
                tracing::trace!(
                    max = limits.max_connections,
                    "admin server: every connection is serving a request, closed a new one"
                );
                continue;
            }
        };
        let slots = slots.clone();
        let app = app.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _slot = SlotGuard(&slots, id);
            serve_connection(stream, conn, app, limits, cancel).await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    conn: Arc<TrackedConnection>,
    app: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut phase = conn.phase.subscribe();
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        conn: conn.clone(),
    });
    let app = TowerToHyperService::new(app);
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            conn.phase.send_replace(Phase::Serving);
            let conn = conn.clone();
            let response = hyper::service::Service::call(&app, req);
            async move {
                let r = response.await;
                conn.phase.send_replace(Phase::Idle {
                    since: Instant::now(),
                });
                r
            }
        })
    };
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = phase.borrow_and_update().deadline(&limits);
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = conn.evicted.cancelled() => return,
            _ = cancel.cancelled(), if !stopping => {
                // Idle connections close now; a request in flight is answered first.
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
            _ = phase.changed() => {}
            _ = expired => {
                tracing::trace!(phase = ?*phase.borrow(), "admin server: closed an idle or slow connection");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
