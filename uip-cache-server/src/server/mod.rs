//! The listeners: plain HTTP/1.1 with keep-alive or HTTP/2 with prior
//! knowledge (h2c), TLS with HTTP/1.1 or HTTP/2 by ALPN, and the admin
//! API; each proxy request through the cache layer to the [`Routes`] (the
//! backend of its route, `http://` or `https://`), and a graceful shutdown that drains the requests in flight within a
//! bound.
//!
//! One [`Proxy`] (one cache) serves every listener: a TLS client's request
//! is keyed with the scheme `https`, a plain one's with `http` (core
//! decides from the connection's TLS flag and `server.trusted_proxies`).

mod accept;
mod clients;
mod conn;
mod hits;
mod redirect;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use uip_cache_core::admin::Admin;
use uip_cache_core::warm::WarmFetcher;
use uip_cache_core::{Connection, HttpCache};
use uip_cache_tower::admin::{AdminService, ServiceFetcher};
use uip_cache_tower::{CacheBody, CacheLayer, CacheService};

use crate::proxy::{normalize, ProxyBody, RequestBody};
use crate::routes::Routes;
use crate::slow::{ClientBody, ClientLimits, Inflight, Watch};
use crate::tls::Certificates;
use accept::{accept_loop, Listener, Protocol};
use clients::Clients;
use hits::Hits;

/// Connections served at once by a proxy listener; more are refused until
/// some close.
const MAX_CONNECTIONS: usize = 16_384;

/// Admin connections served at once (webhook senders and scrapers, not
/// clients): more are refused, so they cannot use up the descriptors the
/// proxy needs.
const MAX_ADMIN_CONNECTIONS: usize = 256;

/// The proxy: the cache layer in front of the routes to the upstreams.
pub type Proxy = CacheService<Routes>;

/// The proxy service of `cache` in front of `routes` (or of one
/// [`Upstream`](crate::proxy::Upstream) for every request). The routes'
/// [`Snapshot`](crate::routes::Snapshot) holds the settings `cache` runs
/// on now: requests are routed and cached by that one snapshot until a
/// reload swaps it.
pub fn proxy(cache: HttpCache, routes: impl Into<Routes>) -> Proxy {
    let routes = routes.into().with_settings(cache.settings());
    CacheLayer::new(cache).layer(routes)
}

/// The admin API of a proxy: warm requests go through `proxy` (the cache,
/// then the upstream) in process, keyed for `warming.host` as a client's
/// request to that host would be, each routed and cached by one snapshot
/// as a client's request is.
pub fn admin(proxy: &Proxy) -> Admin {
    let fetcher: Arc<dyn WarmFetcher> =
        ServiceFetcher::<_, RequestBody>::shared(OneSnapshot(proxy.clone()));
    Admin::with_fetcher(proxy.cache().clone(), fetcher)
}

/// The proxy as the warmer reaches it: each request takes one
/// [`Snapshot`](crate::routes::Snapshot) and is routed by its table before
/// the cache, which caches it by the same snapshot's settings, as the
/// listeners do for clients ([`connection_service`]).
#[derive(Clone)]
struct OneSnapshot(Proxy);

type OneSnapshotFuture = std::pin::Pin<
    Box<dyn Future<Output = Result<http::Response<CacheBody<ProxyBody>>, Infallible>> + Send>,
>;

impl tower::Service<Request<RequestBody>> for OneSnapshot {
    type Response = http::Response<CacheBody<ProxyBody>>;
    type Error = Infallible;
    type Future = OneSnapshotFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> OneSnapshotFuture {
        let snapshot = self.0.get_ref().snapshot();
        if let Err(answer) = snapshot.route_request(self.0.cache(), &mut req) {
            return Box::pin(std::future::ready(Ok(answer.map(CacheBody::passthrough))));
        }
        Box::pin(self.0.clone().oneshot(req))
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    admin: Admin,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let service = AdminService::new(admin);
    let config = Listener {
        max: MAX_ADMIN_CONNECTIONS,
        what: "admin",
        protocol: Protocol::Http1,
        limits: ClientLimits::default(),
        inflight: Inflight::new(ClientLimits::default().max_inflight_bytes),
        grace: Duration::from_secs(5),
        // Not counted per client: behind its own 256 connections, for
        // webhook senders and scrapers.
        per_client: None,
    };
    accept_loop(listener, config, shutdown, move |remote, _| {
        let service = service.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(remote);
            service.clone().oneshot(req)
        });
        (service, None)
    })
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
    let shared = Shared::new(&limits);
    serve_plain(listener, service, None, limits, shared, grace, shutdown).await
}

/// [`serve_with`] for `server.redirect_http`: a request gets a `308` to
/// `https://` its host on `https_port` (the TLS listener's), same path and
/// query, unless a trusted proxy in front says its client spoke HTTPS
/// (then it is served).
pub async fn serve_redirecting(
    listener: TcpListener,
    service: Proxy,
    https_port: u16,
    limits: ClientLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Shared::new(&limits);
    serve_plain(
        listener,
        service,
        Some(https_port),
        limits,
        shared,
        grace,
        shutdown,
    )
    .await
}

/// What the proxy listeners of one server share: the bound on response
/// bytes owed to clients, and the connections open per client.
#[derive(Clone)]
struct Shared {
    inflight: Arc<Inflight>,
    clients: Arc<Clients>,
}

impl Shared {
    fn new(limits: &ClientLimits) -> Self {
        Shared {
            inflight: Inflight::new(limits.max_inflight_bytes),
            clients: Clients::new(),
        }
    }
}

async fn serve_plain(
    listener: TcpListener,
    service: Proxy,
    redirect: Option<u16>,
    limits: ClientLimits,
    shared: Shared,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    crate::io::enable();
    let config = Listener {
        max: MAX_CONNECTIONS,
        what: "proxy",
        protocol: Protocol::Http1AndH2c,
        limits,
        inflight: shared.inflight,
        grace,
        per_client: Some((shared.clients, service.cache().clone())),
    };
    accept_loop(listener, config, shutdown, move |remote, watch| {
        let hits = redirect
            .is_none()
            .then(|| Hits::new(&service, Connection::new(Some(remote), false)));
        (
            connection_service(&service, remote, watch, false, redirect),
            hits,
        )
    })
    .await
}

/// Serves TLS clients on `listener` with `service` (the same proxy, and so
/// the same cache, as the plain listener's), with `certificates` (see
/// [`crate::tls`]), until `shutdown` resolves; as [`serve_with`]
/// otherwise. Each handshake must end within
/// [`crate::tls::HANDSHAKE_TIMEOUT`].
pub async fn serve_tls(
    listener: TcpListener,
    service: Proxy,
    certificates: &Certificates,
    limits: ClientLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Shared::new(&limits);
    serve_tls_with(
        listener,
        service,
        certificates,
        limits,
        shared,
        grace,
        shutdown,
    )
    .await
}

async fn serve_tls_with(
    listener: TcpListener,
    service: Proxy,
    certificates: &Certificates,
    limits: ClientLimits,
    shared: Shared,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    crate::io::enable();
    let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
    let config = Listener {
        max: MAX_CONNECTIONS,
        what: "proxy-tls",
        protocol: Protocol::Tls(acceptor),
        limits,
        inflight: shared.inflight,
        grace,
        per_client: Some((shared.clients, service.cache().clone())),
    };
    accept_loop(listener, config, shutdown, move |remote, watch| {
        let hits = Hits::new(&service, Connection::new(Some(remote), true));
        (
            connection_service(&service, remote, watch, true, None),
            Some(hits),
        )
    })
    .await
}

/// The proxy's listeners of a `server` section together: `plain` (HTTP/1.1
/// and h2c; with `redirect_http`, a 308 to the TLS listener's port) and
/// `tls` with its certificates, one service and cache, one
/// `limits.max_inflight_bytes` bound for both, and one count of the
/// connections each client holds over both
/// (`server.max_connections_per_client`, from the cache's settings; each
/// listener has its own connection limit). Runs until `shutdown`
/// resolves, then drains both within `grace`.
pub async fn serve_edge(
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, Certificates)>,
    redirect_http: bool,
    service: Proxy,
    limits: ClientLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Shared::new(&limits);
    let https_port = match &tls {
        Some((l, _)) if redirect_http => Some(l.local_addr()?.port()),
        _ => None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let when_stopped = || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let plain = async {
        match plain {
            Some(l) => {
                let (s, sh) = (service.clone(), shared.clone());
                serve_plain(l, s, https_port, limits, sh, grace, when_stopped()).await
            }
            None => Ok(()),
        }
    };
    let tls = async {
        match tls {
            Some((l, certificates)) => {
                let (s, sh) = (service.clone(), shared.clone());
                serve_tls_with(l, s, &certificates, limits, sh, grace, when_stopped()).await
            }
            None => Ok(()),
        }
    };
    let mut both = std::pin::pin!(async { tokio::join!(plain, tls) });
    let (plain, tls) = tokio::select! {
        done = &mut both => done,
        () = shutdown => {
            let _ = stop.send(true);
            both.await
        }
    };
    plain.and(tls)
}

/// The service of one proxy connection from `remote`: each request's body
/// watched, the connection's facts (peer, `tls`) passed to the cache,
/// the target made unambiguous, and on a plain listener with `redirect`
/// the 308 to HTTPS.
fn connection_service(
    service: &Proxy,
    remote: SocketAddr,
    watch: &Arc<Watch>,
    tls: bool,
    redirect: Option<u16>,
) -> impl conn::ConnService<CacheBody<crate::proxy::ProxyBody>> {
    let service = service.clone();
    let watch = watch.clone();
    let connection = Connection::new(Some(remote), tls);
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(|b| RequestBody::Watched(ClientBody::new(b, &watch)));
        req.extensions_mut().insert(connection);
        let mut refused = normalize(&mut req).err();
        // One config for the whole request, whatever reload happens while
        // it runs: one snapshot, loaded once. The redirect, the route and
        // (through the extension route_request leaves) the cache layer's
        // forwarding headers, key and policy all read its settings, and
        // the route keeps the backends of its table.
        let snapshot = service.get_ref().snapshot();
        if let (None, Some(port)) = (&refused, redirect) {
            let trusted = snapshot.settings().trusted_proxies();
            refused = redirect::to_https(&req, &connection, trusted, port);
        }
        // The route, from the host the key will hold and the path: the
        // same on the plain and the TLS listener.
        if refused.is_none() {
            refused = snapshot.route_request(service.cache(), &mut req).err();
        }
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
                return Ok(r.map(CacheBody::passthrough));
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
                    tls,
                    status = r.status().as_u16(),
                    cache = r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or(""),
                    micros = started.elapsed().as_micros() as u64,
                    "request"
                );
            }
            resp
        }
    })
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
