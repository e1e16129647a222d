//! The server loop: hyper's HTTP/1 connections over a tokio listener, with limits on how long a connection may sit
//! idle or half-sent and on how many may be open at once.
//!
//! `axum::serve` keeps every connection as long as its client likes: a client that opens sockets and sends nothing
//! (or half a request line) holds a file descriptor each, forever, until the process runs out and real requests
//! wait. [`serve`] closes those:
//!
//! - hyper's [`header_read_timeout`](hyper::server::conn::http1::Builder::header_read_timeout) runs from the moment
//!   the server waits for a request head (a new connection, or a kept-alive one after its last response) until the
//!   head is complete, so a stalled or half-sent head and an idle keep-alive connection both end at that timeout;
//! - a connection that moves no byte either way for [`ServeLimits::idle_timeout`] is closed, whatever it is doing
//!   (a stalled body, a client that stopped reading its response);
//! - a request head over 64 KiB is refused with hyper's `431`, not buffered;
//! - at [`ServeLimits::max_connections`] (or the open-file limit less 32, if lower), a new connection makes room by closing the oldest connection that has no
//!   request in progress (idle or still sending its head, as nginx reuses its idle keep-alive connections); if every
//!   connection is busy, the new one gets a `503` JSON answer and is closed at once. When the process is out of file
//!   descriptors, idle connections are closed the same way, so a real request still gets in.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tower::ServiceExt as _;

/// How long a client has to send a complete request head, counted from the moment the server waits for one (a new
/// connection, or a kept-alive one after its last response) by default: 5 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may move no byte in either direction before it is closed, by default: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many connections are open at once at most, by default: 256.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Connection limits for [`serve`]. `ServeLimits::default()` has the documented defaults; each setter changes one.
///
/// ```
/// use std::time::Duration;
/// use agentguard::http::ServeLimits;
///
/// let limits = ServeLimits::default()
///     .header_read_timeout(Duration::from_secs(10)) // a slow network in front
///     .max_connections(1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServeLimits {
    /// How long a client has to send a whole request head (request line and headers), counted from the moment the
    /// server waits for one: when the connection opens, and on a kept-alive connection after each response. So it is
    /// also how long a kept-alive connection may sit idle between requests. Default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]; at least 100 ms.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// How long a connection may move no byte in either direction, at any point (a request body that stalls, a
    /// client that stops reading its response), before it is closed. Default [`DEFAULT_IDLE_TIMEOUT`]; at least
    /// 100 ms. Keep it above 15 s, the event stream's keep-alive interval, or quiet event streams are cut (the page
    /// reconnects, but needlessly).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// How many connections may be open at once (default [`DEFAULT_MAX_CONNECTIONS`]; at least 1). At the cap a new
    /// connection closes the oldest one that has no request in progress; if all are busy it is answered `503` and
    /// closed. The cap in force is never above the process's open-file limit less 32 (kept for the store's files
    /// and the runtime), so connections cannot starve the requests they carry: under `ulimit -n 64`, 32.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }
}

/// Serves `app` on `listener` over HTTP/1.1 with `limits`, until the returned future is dropped (which closes every
/// connection). Use it instead of `axum::serve` for the approval API and page, or for an app they are merged into.
///
/// Each request carries the peer address as [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which the
/// approval API's limit on wrong tokens needs.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use agentguard::http::{serve, ApprovalApi, ServeLimits};
/// use agentguard::AgentGuard;
///
/// let guard = AgentGuard::external().build();
/// let app = ApprovalApi::for_guard(&guard).token(std::env::var("AGENTGUARD_TOKEN")?, "alice").router()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
/// serve(listener, app, ServeLimits::default()).await;
/// # Ok(()) }
/// ```
pub async fn serve(listener: TcpListener, app: Router, limits: ServeLimits) {
    let max_connections = limits.max_connections.min(fd_budget());
    let registry = Arc::new(Registry::default());
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut backoff = Duration::from_millis(5);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(_) => {
                // Out of file descriptors (or memory): free one by closing an idle connection, and let the kernel
                // hold the waiting ones in the listen queue meanwhile.
                registry.evict_idle();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if registry.len() >= max_connections && !registry.evict_idle() {
            refuse(&stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let active = Arc::new(AtomicUsize::new(0));
        registry.insert(id, active.clone());
        let slot = SlotGuard {
            registry: registry.clone(),
            id,
        };
        let handle = tasks.spawn(connection(stream, peer, app.clone(), limits.clone(), active, slot));
        registry.set_abort(id, handle);
    }
}

/// The most a connection buffers while reading: a request head must fit in it.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// File descriptors left to everything else a request needs (the store's files, the runtime, the listener) when the
/// open-file limit, not [`ServeLimits::max_connections`], is what bounds the connections.
const FD_RESERVE: u64 = 32;

/// How many connections the process's open-file limit leaves room for (at least 1), or no bound where it is unknown.
fn fd_budget() -> usize {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(current) = limit.current {
            return usize::try_from(current.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
        }
    }
    usize::MAX
}

/// Errors that concern one connection only (it was reset before it was accepted): go on accepting.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// What a connection past the cap gets when every open one is busy: a short answer, then the socket is closed.
const REFUSAL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "cache-control: no-store\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "content-length: 112\r\n",
    "\r\n",
    r#"{"error":"too_many_connections","message":"the server has as many connections as it accepts; try again shortly"}"#,
);

/// Answers 503 without reading anything (the socket's buffer is empty, so the write does not block) and closes.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSAL.as_bytes());
}

/// The open connections in the order they were accepted, each with its count of requests in progress.
#[derive(Default)]
struct Registry {
    slots: Mutex<BTreeMap<u64, Slot>>,
}

struct Slot {
    /// Requests whose response has not been sent in full (an event stream counts until it ends).
    active: Arc<AtomicUsize>,
    abort: Option<AbortHandle>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn insert(&self, id: u64, active: Arc<AtomicUsize>) {
        self.lock().insert(id, Slot { active, abort: None });
    }

    fn set_abort(&self, id: u64, handle: AbortHandle) {
        // The connection may have ended already and removed itself: then there is nothing to close.
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.abort = Some(handle);
        }
    }

    /// Closes the oldest connection with no request in progress; `false` if every connection is busy.
    fn evict_idle(&self) -> bool {
        let mut slots = self.lock();
        let Some(id) = slots
            .iter()
            .find(|(_, slot)| slot.active.load(Ordering::Acquire) == 0 && slot.abort.is_some())
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(Slot {
            abort: Some(handle), ..
        }) = slots.remove(&id)
        {
            handle.abort();
        }
        true
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct SlotGuard {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// One connection: hyper's HTTP/1 state machine, closed when it moves no byte for the idle timeout.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServeLimits,
    active: Arc<AtomicUsize>,
    _slot: SlotGuard,
) {
    let started = Instant::now();
    let last_io = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        started,
        last_io: last_io.clone(),
    });
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::new(active.clone());
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(CountedBody {
                    inner: body,
                    _busy: busy,
                })
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A request head over 64 KiB is refused (431) instead of buffered: hyper's default, about 400 KB, would let
        // 256 half-sent heads hold 100 MB.
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    loop {
        let quiet = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last_io.load(Ordering::Relaxed)));
        if quiet >= limits.idle_timeout {
            return; // dropping the connection closes the socket
        }
        if tokio::time::timeout(limits.idle_timeout - quiet, conn.as_mut())
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// Counts a request as in progress from the moment hyper hands it over until its response body is dropped.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(active: Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::AcqRel);
        Busy(active)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress while it is being sent.
struct CountedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that notes when it last moved a byte (milliseconds since the connection started).
struct Watched {
    inner: TcpStream,
    started: Instant,
    last_io: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_json_answer() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"], "too_many_connections");
    }

    #[test]
    fn eviction_takes_the_oldest_connection_with_no_request_in_progress() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let registry = Registry::default();
            let mut tasks = JoinSet::new();
            let busy = Arc::new(AtomicUsize::new(1));
            let idle = Arc::new(AtomicUsize::new(0));
            for (id, active) in [(1, busy.clone()), (2, idle.clone()), (3, idle.clone())] {
                registry.insert(id, active);
                let handle = tasks.spawn(std::future::pending::<()>());
                registry.set_abort(id, handle);
            }
            assert!(registry.evict_idle());
            let left: Vec<u64> = registry.lock().keys().copied().collect();
            assert_eq!(left, [1, 3], "the busy one stays, the oldest idle one goes");
            assert!(tasks.join_next().await.unwrap().unwrap_err().is_cancelled());
            assert!(registry.evict_idle());
            assert!(!registry.evict_idle(), "only busy connections are left");
            tasks.abort_all();
        });
    }
}
