//! The accept loop: HTTP/1.1 with keep-alive or HTTP/2 with prior knowledge (h2c), each request through the
//! cache layer to the [`Upstream`], and a graceful shutdown that drains the
//! requests in flight within a bound.

use std::future::Future;
use std::io;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
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
use crate::proxy::{normalize, ClientConn, RequestBody, Upstream};

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
    accept_loop(listener, MAX_CONNECTIONS, "proxy", grace, shutdown, move |remote| {
        let service = service.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(RequestBody::Client);
            req.extensions_mut().insert(ClientConn { remote });
            let refused = normalize(&mut req).err();
            let started = std::time::Instant::now();
            let method = req.method().clone();
            let uri = req.uri().clone();
            let service = service.clone();
            async move {
                if let Some(r) = refused {
                    return Ok(r.map(uip_cache_tower::CacheBody::passthrough));
                }
                let resp = service.oneshot(req).await;
                if let Ok(r) = &resp {
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

/// The accept loop both listeners share: HTTP/1.1 with keep-alive, or
/// HTTP/2 when the client opens with its preface (h2c), at most
/// `max` connections (more are refused, not queued), a bound on the time
/// to send request headers, and on `shutdown` a drain of at most `grace`.
async fn accept_loop<S, B>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    make: impl Fn(std::net::SocketAddr) -> S,
) -> io::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(max));
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
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            // The version is read in the connection's own task, in the time
            // a client has for its request headers.
            let (h2, io) =
                match tokio::time::timeout(HEADER_READ_TIMEOUT, ClientStream::detect(stream)).await
                {
                    Ok(Ok(detected)) => detected,
                    _ => return,
                };
            let io = TokioIo::new(io);
            let result = if h2 {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    // Dead peers are found by pings, not left to hold a
                    // connection slot.
                    .keep_alive_interval(H2_PING_INTERVAL)
                    .keep_alive_timeout(H2_PING_INTERVAL)
                    .serve_connection(io, service);
                watcher.watch(conn).await
            } else {
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    // A client that does not finish its request headers in
                    // time is dropped (hyper needs a timer for this, or the
                    // limit is off).
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(io, service);
                watcher.watch(conn).await
            };
            if let Err(e) = result {
                tracing::debug!(listener = what, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(listener = what, grace = ?grace, "shutting down: finishing requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
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
