//! The accept loop: HTTP/1.1 with keep-alive or HTTP/2 with prior knowledge (h2c), each request through the
//! cache layer to the [`Routes`], and a graceful shutdown that drains the
//! requests in flight within a bound.

use std::future::Future;
use std::io;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
use crate::proxy::{normalize, RequestBody};
use crate::routes::Routes;
use crate::slow::{
    now_ms, ClientBody, ClientLimits, DrainMark, Inflight, Sent, Verdict, Watch,
    HEADER_READ_TIMEOUT,
};

/// Connections served at once; more are refused until some close.
const MAX_CONNECTIONS: usize = 16_384;

/// Admin connections served at once (webhook senders and scrapers, not
/// clients): more are refused, so they cannot use up the descriptors the
/// proxy needs.
const MAX_ADMIN_CONNECTIONS: usize = 256;

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

/// The proxy: the cache layer in front of the routes to the upstreams.
pub type Proxy = CacheService<Routes>;

/// The proxy service of `cache` in front of `routes` (or of one
/// [`Upstream`](crate::proxy::Upstream) for every request).
pub fn proxy(cache: HttpCache, routes: impl Into<Routes>) -> Proxy {
    CacheLayer::new(cache).layer(routes.into())
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
        ClientLimits::default(),
        Duration::from_secs(5),
        shutdown,
        move |remote, _| {
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
/// resolves, then lets the requests in flight finish for at most `grace`;
/// slow and idle clients get the default [`ClientLimits`].
///
/// Large entries stored from then on are kept in sealed memory and sent
/// without copying (see [`crate::io`]).
pub async fn serve(
    listener: TcpListener,
    service: Proxy,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, service, ClientLimits::default(), grace, shutdown).await
}

/// [`serve`], with `limits` for slow and idle clients (the config's
/// `server.send_timeout`, `server.idle_timeout` and
/// `server.max_inflight_bytes`; see [`crate::slow`]).
pub async fn serve_with(
    listener: TcpListener,
    service: Proxy,
    limits: ClientLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    crate::io::enable();
    let versions = Versions::Http1AndH2c;
    let make = move |remote, watch: &Arc<Watch>| {
        let service = service.clone();
        let watch = watch.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(|b| RequestBody::Watched(ClientBody::new(b, &watch)));
            // TLS is not served here yet.
            req.extensions_mut()
                .insert(uip_cache_core::Connection::new(Some(remote), false));
            let refused = normalize(&mut req).err().or_else(|| {
                service
                    .get_ref()
                    .route_request(service.cache(), &mut req)
                    .err()
            });
            // What the request's log line needs, only when it is written.
            let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
                (
                    std::time::Instant::now(),
                    req.method().clone(),
                    req.uri().clone(),
                )
            });
            let service = service.clone();
            let watch = watch.clone();
            async move {
                if let Some(r) = refused {
                    return Ok(r.map(uip_cache_tower::CacheBody::passthrough));
                }
                let resp = service.oneshot(req).await;
                // A miss being stored queues what a slow client has not
                // taken: counted against max_inflight_bytes.
                if let Some(queue) = resp.as_ref().ok().and_then(|r| r.body().queue()) {
                    watch.hold(queue);
                }
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
    };
    accept_loop(
        listener,
        MAX_CONNECTIONS,
        "proxy",
        versions,
        limits,
        grace,
        shutdown,
        make,
    )
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
trait ConnBody:
    http_body::Body<Data: bytes::Buf + Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ConnBody for B where
    B: http_body::Body<Data: bytes::Buf + Send, Error: Into<BoxError>> + Send + 'static
{
}

/// Whether a listener offers HTTP/2 with prior knowledge next to HTTP/1.1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Versions {
    Http1,
    Http1AndH2c,
}

/// The accept loop both listeners share: HTTP/1.1 with keep-alive (and
/// HTTP/2 when offered and the client opens with its preface), at most
/// `max` connections (more are refused, not queued), `limits` on slow and
/// idle clients, and on `shutdown` a drain of at most `grace`.
#[allow(clippy::too_many_arguments)]
async fn accept_loop<S, B>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    versions: Versions,
    limits: ClientLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    make: impl Fn(std::net::SocketAddr, &Arc<Watch>) -> S,
) -> io::Result<()>
where
    S: ConnService<B>,
    B: ConnBody,
{
    // Every connection holds a permit until it ends; the drain waits for
    // all of them back.
    let connections = Arc::new(Semaphore::new(max));
    let inflight = Inflight::new(limits.max_inflight_bytes);
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
        let watch = inflight.watch();
        let service = make(remote, &watch);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = Conn {
                watch,
                limits,
                stopped: stopped.clone(),
            };
            let result = match versions {
                Versions::Http1 => serve_http1(ClientStream::new(stream), service, conn).await,
                Versions::Http1AndH2c => {
                    // The version is read in the connection's own task, in
                    // the time a client has for its request headers.
                    let detected = tokio::select! {
                        d = tokio::time::timeout(HEADER_READ_TIMEOUT, ClientStream::detect(stream)) => d,
                        _ = stopped.changed() => return,
                    };
                    match detected {
                        Ok(Ok((true, io))) => serve_h2(io, service, conn).await,
                        Ok(Ok((false, io))) => serve_http1(io, service, conn).await,
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

/// What a connection's task needs besides its socket and service.
struct Conn {
    watch: Arc<Watch>,
    limits: ClientLimits,
    stopped: tokio::sync::watch::Receiver<bool>,
}

/// `service`, with each request counted in progress on `watch` until its
/// response body ends, and the body handed on in watched pieces.
fn watched<S, B>(
    service: S,
    watch: Arc<Watch>,
    http2: bool,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = http::Response<Sent<B>>,
    Error = S::Error,
    Future: Send + 'static,
> + Send
       + Sync
       + 'static
where
    S: ConnService<B>,
    B: ConnBody,
{
    let service = Arc::new(service);
    hyper::service::service_fn(move |req| {
        let exchange = watch.request();
        let response = service.call(req);
        async move {
            let response = response.await?;
            Ok(response.map(move |body| Sent::new(body, exchange, http2)))
        }
    })
}

/// Serves one HTTP/1.1 connection until it ends; on `stopped`, finishes
/// the request in flight and closes.
async fn serve_http1<S, B>(io: ClientStream, service: S, conn: Conn) -> Result<(), hyper::Error>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let io = io.watched(conn.watch.clone());
    let service = watched(service, conn.watch.clone(), false);
    let http = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The watch closes idle connections and unfinished headers; hyper's
        // own header timer (which counts the idle time before a request) is
        // only a backstop past both. hyper needs a timer for it.
        .timer(TokioTimer::new())
        .header_read_timeout(conn.limits.idle_timeout + HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    drive(http, |c| c.graceful_shutdown(), conn, false).await
}

/// Serves one HTTP/2 connection until it ends. Streams per connection and
/// buffered bytes per stream are bounded; a connection with no stream in
/// flight for `idle_timeout` is sent a GOAWAY, as an idle HTTP/1
/// connection is closed (a long download is not idle).
async fn serve_h2<S, B>(io: ClientStream, service: S, conn: Conn) -> Result<(), hyper::Error>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let io = io.watched(conn.watch.clone());
    let service = watched(service, conn.watch.clone(), true);
    let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        // Dead peers are found by pings.
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_INTERVAL)
        .serve_connection(TokioIo::new(io), service);
    drive(http, |c| c.graceful_shutdown(), conn, true).await
}

/// Runs a connection to its end. It is asked to finish (`drain`) when the
/// server stops or when its watch finds it idle (and reset if it has not
/// finished `send_timeout` after that); it is reset at once when the watch
/// finds it stalled or the in-flight bound chose it (see [`crate::slow`]).
async fn drive<C, E>(
    http: C,
    drain: impl Fn(std::pin::Pin<&mut C>),
    conn: Conn,
    http2: bool,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let Conn {
        watch,
        limits,
        mut stopped,
    } = conn;
    let mut http = std::pin::pin!(http);
    let mut stopping = false;
    let mut idle_drain: Option<u64> = None;
    let mut mark = DrainMark::default();
    let tick = limits.tick();
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let doomed = watch.doomed();
    let mut doomed = std::pin::pin!(doomed);
    let why = loop {
        tokio::select! {
            result = http.as_mut() => return result,
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                if idle_drain.is_none() {
                    drain(http.as_mut());
                }
            }
            () = &mut doomed => break "past server.max_inflight_bytes, this connection stalled longest",
            _ = check.tick() => {
                let now = now_ms();
                match watch.check(&limits, now, http2, &mut mark) {
                    Verdict::Stalled(why) => break why,
                    Verdict::Idle if idle_drain.is_none() && !stopping => {
                        idle_drain = Some(now);
                        drain(http.as_mut());
                    }
                    _ => {}
                }
                let send = u64::try_from(limits.send_timeout.as_millis()).unwrap_or(u64::MAX);
                if idle_drain.is_some_and(|since| now.saturating_sub(since) >= send) {
                    break "an idle connection did not close within send_timeout";
                }
            }
        }
    };
    tracing::debug!(reason = why, "closing a slow client's connection");
    watch.reset();
    Ok(())
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
