//! Several backends: each request goes to the backend of its route
//! (`server.routes`, then `server.upstream`; see
//! [`uip_cache_core::route`] for what is matched), over one pooled
//! [`Upstream`] client per backend URL.
//!
//! - The route is chosen once, before the cache, from the host the key
//!   holds and the path ([`Routes::route_request`]); a request no route
//!   takes is answered 404 by the proxy and one whose path some backend
//!   could read with a dot segment 400, neither looked up nor forwarded.
//!   The route travels with the request, so the fetch of a miss, the
//!   stale-while-revalidate refresh behind a stale hit, and the requests
//!   coalesced behind them go to the backend the key was made for.
//!   Warm requests, which the admin API sends straight through the cache,
//!   are routed here the same way.
//! - The backends of a route take turns. One that cannot be connected to
//!   (refused, unreachable, a TLS handshake that fails, or no connection
//!   within `server.connect_timeout`) is skipped for the route's `fail_timeout`,
//!   and the request goes on to the next backend when it can be sent again:
//!   it has no body, or its body is bytes the cache read whole to key on
//!   (POST queries under `vary_by: [body]`). A streamed body cannot be
//!   sent twice: its request answers 502, and the next one avoids that
//!   backend.
//! - Time comes from a [`Clock`], so that tests move a mock clock past
//!   `fail_timeout` instead of sleeping.
//! - The table and the cache's [`Settings`] of one config make one
//!   [`Snapshot`], and a config reload swaps that snapshot at once
//!   ([`Routes::replace_with`]). A request loads the snapshot once when it
//!   arrives ([`Routes::snapshot`]) and is routed by its table and cached
//!   by its settings ([`Snapshot::route_request`]): it never routes by one
//!   config and caches by another, and it keeps the route (and the backend
//!   clients) and the policies it was given whatever reload happens
//!   meanwhile. Those that arrive after a reload get the new snapshot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use uip_cache_core::config::ServerConfig;
use uip_cache_core::route::{passed_on_host, Lookup, Route, RouteTable};
use uip_cache_core::{CacheConfig, Clock, ConfigError, Connection, HttpCache, Settings};

use crate::proxy::{error_response, ProxyBody, Upstream, UpstreamBody};

/// One config as the proxy runs it: the cache's compiled [`Settings`]
/// (policies, defaults, trusted proxies, ...) and the route table with the
/// clients of its backends, made from the same file and swapped together.
///
/// A request takes one snapshot when it arrives and keeps it to its end:
/// its route comes from [`Snapshot::table`] and its key, policy and
/// forwarding headers from [`Snapshot::settings`], so both are always of
/// one config.
#[derive(Clone)]
pub struct Snapshot {
    settings: Arc<Settings>,
    table: Arc<RouteTable<Upstream>>,
}

impl Snapshot {
    /// The cache's settings of this config.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The routes of this config.
    pub fn table(&self) -> &Arc<RouteTable<Upstream>> {
        &self.table
    }

    /// Chooses the route of a client request before the cache sees it, by
    /// this snapshot's table, from the host the key will hold (decided by
    /// this snapshot's settings from the request's [`Connection`] and
    /// `server.trusted_proxies`) and its path; `cache` is the cache the
    /// request goes through. `Err` is the proxy's own answer: 404 when no
    /// route takes it, 400 when its path has a dot segment and routes
    /// compare paths.
    ///
    /// The request carries its route and this snapshot's settings from
    /// here on: the cache layer ([`uip_cache_tower::CacheService`]) keys
    /// and caches it by these settings, and it is sent by this table,
    /// whatever reload happens meanwhile.
    #[allow(clippy::result_large_err)]
    pub fn route_request<B>(
        &self,
        cache: &HttpCache,
        req: &mut Request<B>,
    ) -> Result<(), Response<ProxyBody>> {
        let conn = req
            .extensions()
            .get::<Connection>()
            .copied()
            .unwrap_or_default();
        let target = req.uri().authority().map(|a| a.as_str());
        let route = self.route_for(
            cache,
            &conn,
            target,
            &Fields(req.headers()),
            req.uri().path(),
        )?;
        req.extensions_mut().insert(Routed(route));
        req.extensions_mut().insert(self.settings.clone());
        Ok(())
    }

    /// The route of a request that came on `conn` for `target` (the
    /// authority of an absolute-form target) with `headers` and `path`, as
    /// [`Snapshot::route_request`] chooses it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn route_for(
        &self,
        cache: &HttpCache,
        conn: &Connection,
        target: Option<&str>,
        headers: &dyn uip_cache_core::HeaderSource,
        path: &str,
    ) -> Result<Arc<Route<Upstream>>, Response<ProxyBody>> {
        if self.table.is_single() {
            return Ok(self.table.routes()[0].clone());
        }
        let cache = cache.pinned(self.settings.clone());
        let host = cache.client_origin(conn, target, headers).host;
        lookup(&self.table, host, path)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("policies", &self.settings.policies().len())
            .field("table", &self.table)
            .finish()
    }
}

/// The routes of a proxy and the clients of their backends, with the
/// cache's settings of the same config in one [`Snapshot`]; the service
/// the cache layer wraps (see [`crate::server::proxy`]). Cheap to clone:
/// clones share the snapshot, and a reload that replaces it
/// ([`Routes::replace_with`]) replaces it for all of them.
#[derive(Clone)]
pub struct Routes {
    live: Arc<ArcSwap<Snapshot>>,
    clock: Clock,
}

/// The route chosen for a request before the cache, carried in its
/// extensions to the service behind the cache.
#[derive(Clone)]
struct Routed(Arc<Route<Upstream>>);

/// Marks the answer of an [`Upstream`] that could not connect to its
/// backend (a 502 of the proxy's own): the request never reached it.
#[derive(Clone, Copy, Debug)]
pub struct ConnectFailed;

impl Routes {
    /// The routes of `config` (`server.routes`, then `server.upstream`),
    /// with `client` making the client of each backend URL, once per URL,
    /// and the settings compiled from `config`. A config that names no
    /// backend is an error saying how to name one.
    pub fn from_config(
        config: &CacheConfig,
        client: impl FnMut(Uri) -> Upstream,
    ) -> Result<Self, ConfigError> {
        Routes::from_settings(Arc::new(Settings::compile(config)?), client)
    }

    /// The routes of the config `settings` were compiled from, with
    /// `client` making the client of each backend URL, once per URL: one
    /// [`Snapshot`] of that config.
    pub fn from_settings(
        settings: Arc<Settings>,
        mut client: impl FnMut(Uri) -> Upstream,
    ) -> Result<Self, ConfigError> {
        let config = settings.config();
        let mut clients: HashMap<String, Upstream> = HashMap::new();
        let table = RouteTable::from_config(config, |url| {
            if let Some(c) = clients.get(url) {
                return Ok(c.clone());
            }
            let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
            let c = client(uri);
            clients.insert(url.to_owned(), c.clone());
            Ok::<_, String>(c)
        })?;
        if table.is_empty() {
            return Err(ConfigError::at(
                config.source_name(),
                "server.upstream",
                "no upstream: pass --upstream http://host:port, or set server.upstream or server.routes",
            ));
        }
        Ok(Routes::of(Snapshot {
            settings,
            table: Arc::new(table),
        }))
    }

    fn of(snapshot: Snapshot) -> Self {
        Routes {
            live: Arc::new(ArcSwap::from_pointee(snapshot)),
            clock: Clock::system(),
        }
    }

    /// Routes and caches every request by the snapshot of `other` from
    /// now on (a reloaded config's settings and table, in one swap):
    /// requests that took a snapshot before keep it.
    pub fn replace_with(&self, other: &Routes) {
        self.live.store(other.live.load_full());
    }

    /// The same table, with `settings` (those of the cache the proxy
    /// runs, see [`crate::server::proxy`]) in its snapshot.
    pub(crate) fn with_settings(self, settings: Arc<Settings>) -> Self {
        let table = self.table();
        self.live.store(Arc::new(Snapshot { settings, table }));
        self
    }

    /// The same routes, reading the time from `clock` (for
    /// `fail_timeout`); the system clock by default.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock `fail_timeout` is read on.
    pub(crate) fn fail_clock(&self) -> &Clock {
        &self.clock
    }

    /// The snapshot requests are routed and cached by now: load it once
    /// per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// The compiled routes, as they are now.
    pub fn table(&self) -> Arc<RouteTable<Upstream>> {
        self.live.load().table.clone()
    }

    /// Chooses the route of a client request by the snapshot of now (see
    /// [`Snapshot::route_request`], which a caller that read the snapshot
    /// already calls instead).
    #[allow(clippy::result_large_err)]
    pub fn route_request<B>(
        &self,
        cache: &HttpCache,
        req: &mut Request<B>,
    ) -> Result<(), Response<ProxyBody>> {
        self.live.load().route_request(cache, req)
    }
}

#[allow(clippy::result_large_err)]
fn lookup(
    table: &RouteTable<Upstream>,
    host: Option<&str>,
    path: &str,
) -> Result<Arc<Route<Upstream>>, Response<ProxyBody>> {
    match table.find(host, path) {
        Lookup::Route(r) => Ok(r.clone()),
        Lookup::DotSegment => {
            tracing::debug!(path, "refused: a dot segment in the path");
            Err(error_response(
                StatusCode::BAD_REQUEST,
                "the path has a `.` or `..` segment",
            ))
        }
        _ => {
            tracing::debug!(host, path, "no route");
            Err(error_response(
                StatusCode::NOT_FOUND,
                "no route for this host and path",
            ))
        }
    }
}

impl From<Upstream> for Routes {
    /// One route to `upstream` for every request, with the settings of an
    /// empty config until [`crate::server::proxy`] gives it those of its
    /// cache.
    fn from(upstream: Upstream) -> Self {
        let settings = Settings::compile(&CacheConfig::default())
            .expect("an empty config compiles: it has nothing to check");
        Routes::of(Snapshot {
            settings: Arc::new(settings),
            table: Arc::new(RouteTable::single(upstream.base().to_string(), upstream)),
        })
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("snapshot", &self.live.load())
            .field("clock", &self.clock)
            .finish()
    }
}

/// Core's header lookup over a request's headers.
struct Fields<'a>(&'a HeaderMap);

impl uip_cache_core::HeaderSource for Fields<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

impl tower::Service<Request<UpstreamBody>> for Routes {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<UpstreamBody>) -> ResponseFuture {
        let route = match req.extensions_mut().remove::<Routed>() {
            Some(Routed(route)) => route,
            // Not routed before the cache (a request sent straight
            // through the cache layer, not by the server's listeners or
            // warmer): the host the key held is what the cache layer left
            // of the request.
            None => {
                let table = self.live.load().table.clone();
                if table.is_single() {
                    table.routes()[0].clone()
                } else {
                    let fields = Fields(req.headers());
                    match lookup(&table, passed_on_host(&fields), req.uri().path()) {
                        Ok(route) => route,
                        Err(answer) => return Box::pin(std::future::ready(Ok(answer))),
                    }
                }
            }
        };
        if route.upstreams().len() == 1 {
            let mut client = route.upstreams().client(0).clone();
            return client.call(req);
        }
        let clock = self.clock.clone();
        Box::pin(async move { Ok(send(&route, &clock, req).await) })
    }
}

/// Sends `req` to the backends of `route` in the order of
/// [`UpstreamSet::attempts`](uip_cache_core::route::UpstreamSet::attempts),
/// on to the next while one cannot be connected to and the request can be
/// sent again.
async fn send(
    route: &Route<Upstream>,
    clock: &Clock,
    req: Request<UpstreamBody>,
) -> Response<ProxyBody> {
    use tower::Service;
    let set = route.upstreams();
    let (parts, body) = req.into_parts();
    let again = replayable(&body).map(|bytes| (parts.clone(), bytes));
    let mut first = Some(Request::from_parts(parts, body));
    let mut last = None;
    for i in set.attempts(clock.instant()) {
        let req = match (first.take(), &again) {
            (Some(req), _) => req,
            (None, Some((parts, bytes))) => {
                Request::from_parts(parts.clone(), UpstreamBody::buffered(bytes.clone()))
            }
            (None, None) => break,
        };
        let Ok(mut resp) = set.client(i).clone().call(req).await;
        if resp.extensions_mut().remove::<ConnectFailed>().is_none() {
            set.succeeded(i);
            return resp;
        }
        mark_down(route, i, clock);
        last = Some(resp);
    }
    last.unwrap_or_else(|| {
        crate::proxy::unreachable(error_response(
            StatusCode::BAD_GATEWAY,
            crate::proxy::REFUSED,
        ))
    })
}

/// Marks backend `i` of `route` down for its `fail_timeout` (it could not
/// be connected to), with a log line when it was up.
pub(crate) fn mark_down(route: &Route<Upstream>, i: usize, clock: &Clock) {
    let set = route.upstreams();
    if set.failed(i, clock.instant()) {
        tracing::warn!(
            upstream = set.url(i),
            route = %route.source(),
            fail_timeout = ?set.fail_timeout(),
            "upstream marked down: it could not be connected to; skipped for fail_timeout"
        );
    }
}

/// The body again, when it can be sent twice: none, or bytes the cache
/// read whole.
fn replayable(body: &UpstreamBody) -> Option<Bytes> {
    if body.is_end_stream() {
        return Some(Bytes::new());
    }
    body.buffered_bytes().cloned()
}

/// The default of `warming.host` for the server: the host of
/// `server.upstream` when there is one; else the first route's `host`
/// when it names one host (the public name warmed entries must be keyed
/// for); else the host of the first route's first backend.
pub fn default_warm_host(server: &ServerConfig) -> Option<String> {
    let authority = |url: &str| {
        url.parse::<Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.to_string()))
    };
    if let Some(u) = &server.upstream {
        return authority(u);
    }
    let first = server.routes.first()?;
    match &first.host {
        Some(h) if !h.value.starts_with("*.") => Some(h.value.clone()),
        _ => first.urls().next().and_then(|u| authority(u)),
    }
}

/// What `check-config` prints of the routes: one line each, in the order
/// they are tried.
pub fn describe(config: &CacheConfig) -> Result<Vec<String>, ConfigError> {
    let table = RouteTable::from_config(config, |_| Ok::<_, Infallible>(()))?;
    Ok(table
        .routes()
        .iter()
        .map(|r| format!("{}  {r}", r.source()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The routes and settings of a config with `policy` on `/api/*` and
    /// one route for `/api/` to `backend`.
    fn routes(policy: &str, backend: &str) -> Routes {
        let yaml = format!(
            "policies:\n  - name: {policy}\n    pattern: \"/api/*\"\n    ttl: 60\nserver:\n  upstream: http://127.0.0.1:1\n  routes:\n    - {{ path_prefix: \"/api/\", upstream: \"{backend}\" }}\n"
        );
        let config = CacheConfig::from_yaml_str(&yaml).unwrap();
        Routes::from_config(&config, |url| {
            Upstream::new(url, Duration::from_secs(1), Duration::from_secs(1))
        })
        .unwrap()
    }

    /// What a request for `/api/x` is routed to and cached by, on `snapshot`.
    fn outcome(snapshot: &Snapshot) -> (String, String) {
        let cache = HttpCache::from_settings(snapshot.settings().clone())
            .build()
            .unwrap();
        let mut req = Request::get("/api/x")
            .header("host", "site.test")
            .body(())
            .unwrap();
        snapshot.route_request(&cache, &mut req).unwrap();
        let Routed(route) = req.extensions().get::<Routed>().unwrap().clone();
        let settings = req.extensions().get::<Arc<Settings>>().unwrap();
        assert!(
            Arc::ptr_eq(settings, snapshot.settings()),
            "the request is cached by the settings it was routed with"
        );
        let policy = settings.policies().iter().next().unwrap().name().to_owned();
        (route.upstreams().url(0).to_owned(), policy)
    }

    #[test]
    fn a_reload_swaps_settings_and_routes_together_and_a_taken_snapshot_keeps_both() {
        let running = routes("old", "http://127.0.0.1:1001");
        let before = running.snapshot();
        assert_eq!(
            outcome(&before),
            ("http://127.0.0.1:1001".to_owned(), "old".to_owned())
        );

        running.replace_with(&routes("new", "http://127.0.0.1:1002"));
        // A request that arrives now: the new route and the new policies.
        assert_eq!(
            outcome(&running.snapshot()),
            ("http://127.0.0.1:1002".to_owned(), "new".to_owned())
        );
        // One that took its snapshot before: the old route and the old
        // policies, never one of each.
        assert_eq!(
            outcome(&before),
            ("http://127.0.0.1:1001".to_owned(), "old".to_owned())
        );
        // Clones share the snapshot a reload replaces.
        let clone = running.clone();
        running.replace_with(&routes("newer", "http://127.0.0.1:1003"));
        assert_eq!(outcome(&clone.snapshot()).1, "newer");
    }

    #[test]
    fn the_proxy_runs_the_settings_of_its_cache() {
        let config = CacheConfig::from_yaml_str("policies: []\n").unwrap();
        let cache = HttpCache::with_memory_store(&config).unwrap();
        let upstream = Upstream::new(
            "http://127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let proxy = crate::server::proxy(cache.clone(), upstream);
        assert!(Arc::ptr_eq(
            proxy.get_ref().snapshot().settings(),
            &cache.settings()
        ));
    }
}
