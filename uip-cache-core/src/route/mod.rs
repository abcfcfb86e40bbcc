//! Which backend a request goes to: `server.routes` compiled into a
//! [`RouteTable`], the first route whose `host` and `path_prefix` match, in
//! file order; `server.upstream` is one more route, after them, matching
//! every request.
//!
//! ```
//! use std::convert::Infallible;
//! use uip_cache_core::route::{Lookup, RouteTable};
//! use uip_cache_core::CacheConfig;
//!
//! let config = CacheConfig::from_yaml_str(r#"
//! server:
//!   routes:
//!     - { host: "api.example.org", path_prefix: "/ngsi-ld/", upstream: "http://broker:1026" }
//!     - { path_prefix: "/sparql", upstreams: ["http://fuseki-1:3030", "http://fuseki-2:3030"] }
//! "#)?;
//! // The client of each backend: here only its URL.
//! let table = RouteTable::from_config(&config, |url| Ok::<_, Infallible>(url.to_owned()))?;
//!
//! let Lookup::Route(r) = table.find(Some("API.example.org:443"), "/ngsi-ld/v1/entities") else { panic!() };
//! assert_eq!(r.upstreams().client(0), "http://broker:1026");
//! let Lookup::Route(r) = table.find(Some("any.host"), "/sparql") else { panic!() };
//! assert_eq!(r.upstreams().len(), 2);
//! // A prefix ends at a segment boundary; the query is not compared.
//! assert!(matches!(table.find(Some("any.host"), "/sparqlx"), Lookup::NoRoute));
//! // The broker's route is for api.example.org only.
//! assert!(matches!(table.find(Some("other.example"), "/ngsi-ld/v1/entities"), Lookup::NoRoute));
//! // A path a backend could read as another one is not routed at all.
//! assert!(matches!(table.find(None, "/sparql/..%2fadmin"), Lookup::DotSegment));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is matched
//!
//! - The host is the one the cache key holds (core's
//!   [`forwarding`](crate::forwarding) decides it from `Host`, the
//!   target's authority and, from `server.trusted_proxies` only, the
//!   forwarding headers), compared without its port and trailing dot, in
//!   any case; `*.example.org` matches every name under `example.org`, not
//!   `example.org` itself, as nginx's `server_name`. A host that is not a
//!   valid name or address matches no route's `host`.
//! - The path is the one the key holds, byte for byte (no decoding); a
//!   prefix matches at a segment boundary: `/sparql` takes `/sparql`,
//!   `/sparql/...` and `/sparql?query=...`, not `/sparqlx` (nginx's
//!   `location` is a plain string prefix; a segment boundary is what a
//!   route to a SPARQL endpoint means).
//! - When any route has a `path_prefix`, a request whose path some backend
//!   could read with a `.` or `..` segment (after percent-decoding, with
//!   `\` and `%2F` as `/`, `..;` as `..`) is refused
//!   ([`Lookup::DotSegment`]): such a path could reach a backend under a
//!   prefix and be read there as a path outside it. Clients remove dot
//!   segments before sending (RFC 3986 section 5.2.4), so only crafted
//!   requests have them.
//!
//! Requests with the same key always take the same route, as the key holds
//! the host and path routes read. Routes by host therefore need keys that
//! hold the host: with `key.include_host: false` a route with `host` is a
//! config error.

mod host;
mod path;
#[cfg(test)]
mod tests;
mod upstreams;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

pub use upstreams::{Attempts, UpstreamSet};

use crate::config::route::{check_path_prefix, check_upstream_url, host_spec, HostSpec};
use crate::config::{RouteConfig, DEFAULT_FAIL_TIMEOUT};
use crate::forwarding::{Cidr, Connection, TrustedProxies};
use crate::request::HeaderSource;
use crate::{CacheConfig, ConfigError};
use host::RequestHost;

/// The compiled `server.routes` (and `server.upstream` after them), each
/// route with the clients `T` of its backends; see the [module
/// docs](self).
pub struct RouteTable<T> {
    routes: Vec<Arc<Route<T>>>,
    by_host: bool,
    by_path: bool,
}

/// One route: what it matches and its backends.
pub struct Route<T> {
    source: RouteSource,
    host: Option<(String, HostSpec)>,
    path_prefix: Option<String>,
    upstreams: UpstreamSet<T>,
}

/// Where in the config a route comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteSource {
    /// `server.routes[i]`.
    Routes(usize),
    /// `server.upstream` (or `--upstream`): every request no route took.
    Upstream,
}

impl fmt::Display for RouteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSource::Routes(i) => write!(f, "server.routes[{i}]"),
            RouteSource::Upstream => f.write_str("server.upstream"),
        }
    }
}

/// What [`RouteTable::find`] found for a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lookup<'a, T> {
    /// The first route that matches.
    Route(&'a Arc<Route<T>>),
    /// No route matches: the proxy answers 404 itself.
    NoRoute,
    /// The path has a segment some backend could read as `.` or `..`, and
    /// routes compare paths: the proxy answers 400 itself.
    DotSegment,
}

impl<T> RouteTable<T> {
    /// Compiles `server.routes`, then `server.upstream` as the route of
    /// every request no route took, making the client of each backend with
    /// `client` (called once per URL of each route). A config loaded with
    /// [`CacheConfig::from_file`] has been checked; one built in code gets
    /// the same checks here.
    pub fn from_config<E: fmt::Display>(
        config: &CacheConfig,
        mut client: impl FnMut(&str) -> Result<T, E>,
    ) -> Result<Self, ConfigError> {
        let err =
            |path: String, message: String| ConfigError::at(config.source_name(), path, message);
        let server = &config.server;
        let mut routes = Vec::with_capacity(server.routes.len() + 1);
        let catch_all = server.upstream.as_deref().map(RouteConfig::catch_all);
        let all = server
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (RouteSource::Routes(i), r))
            .chain(catch_all.iter().map(|r| (RouteSource::Upstream, r)));
        for (source, r) in all {
            let at = |field: &str| match source {
                RouteSource::Upstream => "server.upstream".to_owned(),
                _ => format!("{source}.{field}"),
            };
            let host = match &r.host {
                Some(h) => Some((
                    h.value.clone(),
                    host_spec(h).map_err(|e| err(at("host"), e))?,
                )),
                None => None,
            };
            if let Some(p) = &r.path_prefix {
                check_path_prefix(p).map_err(|e| err(at("path_prefix"), e))?;
            }
            let mut servers = Vec::new();
            for url in r.urls() {
                check_upstream_url(url).map_err(|e| err(at("upstream"), e))?;
                let c = client(url)
                    .map_err(|e| err(at("upstream"), format!("`{}`: {e}", url.value)))?;
                servers.push((url.value.clone(), c));
            }
            if servers.is_empty() {
                return Err(err(
                    at("upstream"),
                    "a route needs `upstream` or `upstreams`".to_owned(),
                ));
            }
            routes.push(Route {
                source,
                host,
                path_prefix: r.path_prefix.as_ref().map(|p| p.value.clone()),
                upstreams: UpstreamSet::new(servers, r.fail_timeout.get()),
            });
        }
        Ok(Self::new(routes))
    }

    /// One route to one backend for every request (`server.upstream`
    /// alone).
    pub fn single(url: impl Into<String>, client: T) -> Self {
        Self::new(vec![Route {
            source: RouteSource::Upstream,
            host: None,
            path_prefix: None,
            upstreams: UpstreamSet::new(vec![(url.into(), client)], DEFAULT_FAIL_TIMEOUT),
        }])
    }

    fn new(routes: Vec<Route<T>>) -> Self {
        RouteTable {
            by_host: routes.iter().any(|r| r.host.is_some()),
            by_path: routes.iter().any(|r| r.path_prefix.is_some()),
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The route of a request for `host` (the host its key holds, with any
    /// port: see [`crate::ClientOrigin::host`]) and `path` (as sent,
    /// without the query).
    pub fn find(&self, host: Option<&str>, path: &str) -> Lookup<'_, T> {
        if self.by_path && path::has_dot_segment(path) {
            return Lookup::DotSegment;
        }
        let host = if self.by_host {
            host.and_then(RequestHost::parse)
        } else {
            None
        };
        self.routes
            .iter()
            .find(|r| r.matches(host, path))
            .map_or(Lookup::NoRoute, Lookup::Route)
    }

    /// Whether every request takes the one route there is (only
    /// `server.upstream`, or one route without `host` and `path_prefix`):
    /// nothing to decide per request.
    pub fn is_single(&self) -> bool {
        self.routes.len() == 1 && !self.by_host && !self.by_path
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[Arc<Route<T>>] {
        &self.routes
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are none: the config names no backend.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<T> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.routes).finish()
    }
}

impl<T> Route<T> {
    fn matches(&self, host: Option<RequestHost<'_>>, path: &str) -> bool {
        self.host
            .as_ref()
            .is_none_or(|(_, spec)| host::matches(spec, host))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path::prefix_matches(p, path))
    }

    /// Where in the config it comes from.
    pub fn source(&self) -> RouteSource {
        self.source
    }

    /// Its `host`, as written; `None`: any host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_ref().map(|(h, _)| h.as_str())
    }

    /// Its `path_prefix`; `None`: any path.
    pub fn path_prefix(&self) -> Option<&str> {
        self.path_prefix.as_deref()
    }

    /// Its backends.
    pub fn upstreams(&self) -> &UpstreamSet<T> {
        &self.upstreams
    }
}

impl<T> fmt::Debug for Route<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("source", &self.source)
            .field("host", &self.host())
            .field("path_prefix", &self.path_prefix)
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

/// `host api.example.org, path /ngsi-ld/ -> http://a, http://b`.
impl<T> fmt::Display for Route<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host(), self.path_prefix()) {
            (None, None) => f.write_str("every request")?,
            (Some(h), None) => write!(f, "host {h}")?,
            (None, Some(p)) => write!(f, "path {p}")?,
            (Some(h), Some(p)) => write!(f, "host {h}, path {p}")?,
        }
        f.write_str(" -> ")?;
        let set = &self.upstreams;
        for i in 0..set.len() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(set.url(i))?;
        }
        if set.len() > 1 {
            write!(
                f,
                " (round robin, fail_timeout {}s)",
                set.fail_timeout().as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Every peer: what is left of a request's forwarding headers once the
/// cache layer removed those it did not believe is believed.
static EVERYONE: LazyLock<TrustedProxies> = LazyLock::new(|| {
    [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])]
        .into_iter()
        .filter_map(|a| Cidr::new(a, 0))
        .collect()
});

/// The host the key held for a request the cache layer has passed on to
/// the service it wraps (which removed the forwarding headers it did not
/// believe): for a service there that routes a request on its own, such as
/// a warm request.
pub fn passed_on_host(headers: &dyn HeaderSource) -> Option<&str> {
    let anyone = Connection::new(Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))), false);
    EVERYONE.client_origin(&anyone, None, headers).host
}
