//! The accept loop: HTTP/1.1 with keep-alive or HTTP/2 with prior knowledge (h2c), each request through the
//! cache layer to the [`Upstream`], and a graceful shutdown that drains the
//! requests in flight within a bound.

use std::future::Future;
use std::io;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use uip_cache_core::admin::Admin;
use uip_cache_core::warm::WarmFetcher;
use uip_cache_core::HttpCache;
use uip_cache_tower::admin::{AdminService, ServiceFetcher};
use uip_cache_tower::{CacheLayer, CacheService};

use crate::io::ClientStream;
use crate::proxy::{normalize, RequestBody, Upstream};

/// Connections served at once; more are refused until some close.
const MAX_CONNECTIONS: usize = 16_384;

/// Admin connections served at once (webhook senders and scrapers, not
/// clients): more are refused, so they cannot use up the descriptors the
/// proxy needs.
const MAX_ADMIN_CONNECTIONS: usize = 256;

/// Time a client has to send a request's headers (also the idle time
/// between requests on a keep-alive connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an idle HTTP/2 connection is pinged, and how long the answer
/// may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Requests at once on one HTTP/2 connection (hyper's default is 200; each
/// can be a miss holding an upstream connection).
const H2_MAX_STREAMS: u32 = 64;

/// Request body bytes a client may send on an HTTP/2 stream, and on the
/// whole connection, before the proxy reads them.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;

/// Response bytes buffered per HTTP/2 stream for a slow reader.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// The proxy: the cache layer in front of the upstream.
pub type Proxy = CacheService<Upstream>;

/// The proxy service of `cache` in front of `upstream`.
pub fn proxy(cache: HttpCache, upstream: Upstream) -> Proxy {
    CacheLayer::new(cache).layer(upstream)
}

/// The admin API of a proxy: warm requests go through `proxy` (the cache,
/// then the upstream) in process, keyed for `warming.host` as a client's
/// request to that host would be.
pub fn admin(proxy: &Proxy) -> Admin {
    let fetcher: Arc<dyn WarmFetcher> = ServiceFetcher::<_, RequestBody>::shared(proxy.clone());
    Admin::with_fetcher(proxy.cache().clone(), fetcher)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    admin: Admin,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let service = AdminService::new(admin);
    accept_loop(
        listener,
        MAX_ADMIN_CONNECTIONS,
        "admin",
        Versions::Http1,
        Duration::from_secs(5),
        shutdown,
        move |remote| {
            let service = service.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(remote);
                service.clone().oneshot(req)
            })
        },
    )
    .await
}

/// Serves `listener` with `service` (see [`proxy`]) until `shutdown`
/// resolves, then lets the requests in flight finish for at most `grace`.
///
/// Large entries stored from then on are kept in sealed memory and sent
/// without copying (see [`crate::io`]).
pub async fn serve(
    listener: TcpListener,
    service: Proxy,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    crate::io::enable();
    let versions = Versions::Http1AndH2c;
    accept_loop(listener, MAX_CONNECTIONS, "proxy", versions, grace, shutdown, move |remote| {
        let service = service.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(RequestBody::Client);
            // TLS is not served here yet.
            req.extensions_mut()
                .insert(uip_cache_core::Connection::new(Some(remote), false));
            let refused = normalize(&mut req).err();
            // What the request's log line needs, only when it is written.
            let logged = tracing::enabled!(tracing::Level::DEBUG)
                .then(|| (std::time::Instant::now(), req.method().clone(), req.uri().clone()));
            let service = service.clone();
            async move {
                if let Some(r) = refused {
                    return Ok(r.map(uip_cache_tower::CacheBody::passthrough));
                }
                let resp = service.oneshot(req).await;
                if let (Some((started, method, uri)), Ok(r)) = (logged, &resp) {
                    tracing::debug!(
                        %method,
                        %uri,
                        status = r.status().as_u16(),
                        cache = r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or(""),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                }
                resp
            }
        })
    })
    .await
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves a connection with, on either HTTP version: a
/// service whose futures may move between threads (HTTP/2 spawns them).
trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + Sync
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + Sync
        + 'static
{
}

/// The response body such a service gives.
trait ConnBody: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> ConnBody for B where B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// Whether a listener offers HTTP/2 with prior knowledge next to HTTP/1.1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Versions {
    Http1,
    Http1AndH2c,
}

/// The accept loop both listeners share: HTTP/1.1 with keep-alive (and
/// HTTP/2 when offered and the client opens with its preface), at most
/// `max` connections (more are refused, not queued), a bound on the time
/// to send request headers (HTTP/1) or between requests (HTTP/2), and on
/// `shutdown` a drain of at most `grace`.
async fn accept_loop<S, B>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    versions: Versions,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    make: impl Fn(std::net::SocketAddr) -> S,
) -> io::Result<()>
where
    S: ConnService<B>,
    B: ConnBody,
{
    // Every connection holds a permit until it ends; the drain waits for
    // all of them back.
    let connections = Arc::new(Semaphore::new(max));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // At the limit: refuse rather than queue without bound.
            tracing::warn!(
                listener = what,
                max,
                "connection limit reached; refusing a connection"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = make(remote);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match versions {
                Versions::Http1 => serve_http1(ClientStream::new(stream), service, stopped).await,
                Versions::Http1AndH2c => {
                    // The version is read in the connection's own task, in
                    // the time a client has for its request headers.
                    let detected = tokio::select! {
                        d = tokio::time::timeout(HEADER_READ_TIMEOUT, ClientStream::detect(stream)) => d,
                        _ = stopped.changed() => return,
                    };
                    match detected {
                        Ok(Ok((true, io))) => serve_h2(io, service, stopped).await,
                        Ok(Ok((false, io))) => serve_http1(io, service, stopped).await,
                        _ => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(listener = what, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(listener = what, grace = ?grace, "shutting down: finishing requests in flight");
    let _ = stop.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = what,
            "requests still in flight after the shutdown grace period were cut"
        );
    }
    Ok(())
}

/// Serves one HTTP/1.1 connection until it ends; on `stopped`, finishes
/// the request in flight and closes.
async fn serve_http1<S, B>(
    io: ClientStream,
    service: S,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // A client that does not finish its request headers in time (or
        // stays idle that long between requests) is dropped; hyper needs a
        // timer for this, or the limit is off.
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    drive(conn, |c| c.graceful_shutdown(), stopped, None).await
}

/// Serves one HTTP/2 connection until it ends. Streams per connection and
/// buffered bytes per stream are bounded; a connection with no stream in
/// flight for [`HEADER_READ_TIMEOUT`] is sent a GOAWAY, as an idle HTTP/1
/// connection is closed (a long download is not idle).
async fn serve_h2<S, B>(
    io: ClientStream,
    service: S,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let service = Arc::new(service);
    let tracked = hyper::service::service_fn(move |req| {
        // The stream counts as in flight until its response body is dropped.
        let stream = Stream::start(&seen);
        let response = service.call(req);
        async move {
            let response = response.await?;
            Ok::<_, S::Error>(response.map(move |body| Tracked {
                body: Box::pin(body),
                _stream: stream,
            }))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        // Dead peers are found by pings.
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_INTERVAL)
        .serve_connection(TokioIo::new(io), tracked);
    let idle = move || activity.idle_for() >= HEADER_READ_TIMEOUT;
    drive(conn, |c| c.graceful_shutdown(), stopped, Some(&idle)).await
}

/// The streams of an HTTP/2 connection in flight, and when the last one
/// started or ended.
struct Activity {
    started: std::time::Instant,
    in_flight: AtomicU64,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: std::time::Instant::now(),
            in_flight: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long no stream has been in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// One stream in flight; ends when dropped.
struct Stream(Arc<Activity>);

impl Stream {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Stream(activity.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its stream counted as in flight until it is
/// dropped (boxed: the body need not be `Unpin`, and the crate has no
/// unsafe pin projection).
struct Tracked<B> {
    body: std::pin::Pin<Box<B>>,
    _stream: Stream,
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.get_mut().body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Runs a connection to its end, asking it to finish (`drain`) when the
/// server stops or, if `idle` is given, once it says so.
async fn drive<C, E>(
    conn: C,
    drain: impl Fn(std::pin::Pin<&mut C>),
    mut stopped: tokio::sync::watch::Receiver<bool>,
    idle: Option<&(dyn Fn() -> bool + Sync)>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    // Only connections with an idle rule need the timer.
    let mut check = idle.map(|_| tokio::time::interval(Duration::from_secs(5)));
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = stopped.changed(), if !draining => {
                draining = true;
                drain(conn.as_mut());
            }
            () = tick(&mut check), if !draining => {
                if idle.is_some_and(|idle| idle()) {
                    draining = true;
                    drain(conn.as_mut());
                }
            }
        }
    }
}

/// The next tick of `check`; never without one.
async fn tick(check: &mut Option<tokio::time::Interval>) {
    match check {
        Some(c) => drop(c.tick().await),
        None => std::future::pending().await,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_in_flight_keeps_an_http2_connection_busy() {
        let activity = Arc::new(Activity::default());
        let stream = Stream::start(&activity);
        let second = Stream::start(&activity);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(activity.idle_for(), Duration::ZERO, "a long download");
        drop(stream);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(activity.idle_for(), Duration::ZERO, "one stream left");
        drop(second);
        std::thread::sleep(Duration::from_millis(30));
        assert!(activity.idle_for() >= Duration::from_millis(30));
    }
}
