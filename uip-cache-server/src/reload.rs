//! Reloading the config of `uip-cache serve` without a restart: on SIGHUP
//! and on `POST /config/reload` (admin API, secret required).
//!
//! A reload reads the file again with the loader `serve` starts with (and
//! the same command-line overrides), validates all of it (the file's own
//! checks, the cross-section checks, the routes and their URLs, the
//! upstream TLS files, the certificates), and only then swaps, at once:
//!
//! - the cache's [`Settings`]: policies, defaults, trusted proxies, the
//!   timeouts the request path reads, the invalidation event rules, the
//!   admin secrets, the warming URLs and schedules (the admin API restarts
//!   its background tasks from them);
//! - the [`Routes`] and their backend clients (with `server.connect_timeout`,
//!   `server.timeout` and `server.upstream_tls`; the clients of backends
//!   whose URL and client settings did not change are kept, with their
//!   pooled connections);
//! - the TLS listener's certificates;
//! - `server.max_connections_per_client`, which the listeners read at each
//!   accept: new connections are counted against the new limit (a client
//!   over it keeps its open connections until they close).
//!
//! The store and every entry stay. A request in flight finishes on the
//! settings and the route it began with. A file with errors changes
//! nothing; the errors come back one a line, as
//! `file:line:col: field: message` where the place is known.
//!
//! What the running process cannot change is reported as needing a
//! restart and keeps its running value: listener addresses (`server.listen`,
//! `server.tls.listen`, `admin.listen`, turning TLS or the admin API on or
//! off), `server.redirect_http`, the connection limits and timeouts the
//! listeners were started with (`send_timeout`, `idle_timeout`,
//! `max_inflight_bytes`, `shutdown_grace`, `workers`), the store (its type
//! and its other fields but `timeout` and `purge_timeout`), `redis`,
//! `logging`, and the webhook's `endpoint` path.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use uip_cache_core::admin::{Reload, ReloadReport};
use uip_cache_core::{CacheConfig, ConfigError, HttpCache, Settings};

use crate::proxy::Upstream;
use crate::routes::{default_warm_host, Routes};
use crate::tls::client::client_config;
use crate::tls::{files_of, Certificates};

/// What the command line of `uip-cache serve` sets over the file; applied
/// at start and at every reload.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Overrides {
    /// `--listen`: the plain listener (over `server.listen`).
    pub listen: Option<SocketAddr>,
    /// `--upstream`: the backend (over `server.upstream`).
    pub upstream: Option<String>,
    /// `--admin`: the admin API (over `admin.listen`).
    pub admin: Option<SocketAddr>,
}

impl Overrides {
    /// The overrides of a command line.
    pub fn new(
        listen: Option<SocketAddr>,
        upstream: Option<String>,
        admin: Option<SocketAddr>,
    ) -> Self {
        Overrides {
            listen,
            upstream,
            admin,
        }
    }
}

/// Loads `file` as `serve` runs it: the file's checks, then `overrides`
/// and the server's defaults (`warming.host` from the upstream when the
/// file sets none). `Err`: every problem, one a line.
pub fn load(file: &Path, overrides: &Overrides) -> Result<CacheConfig, Vec<String>> {
    let config = CacheConfig::from_file(file).map_err(|e| lines(&e))?;
    prepare(config, overrides)
}

/// [`load`]'s second half, for a config read already.
pub fn prepare(mut config: CacheConfig, overrides: &Overrides) -> Result<CacheConfig, Vec<String>> {
    if let Some(upstream) = &overrides.upstream {
        let ok = upstream.parse::<http::Uri>().ok().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !ok {
            return Err(vec![format!(
                "--upstream `{upstream}`: expected http://host:port or https://host:port"
            )]);
        }
        config.server.upstream = Some(upstream.clone());
    }
    if let Some(listen) = overrides.listen {
        config.server.listen = Some(listen.to_string());
    }
    if let Some(admin) = overrides.admin {
        config.admin.enabled = true;
        config.admin.listen = admin.to_string();
    }
    // Warm requests go through this proxy and its routes; without a
    // warming.host or base_url they are made for the upstream's host (see
    // default_warm_host).
    if config.warming.host.is_none() && config.warming.base_url.is_none() {
        config.warming.host = default_warm_host(&config.server);
    }
    Ok(config)
}

/// One line a problem.
fn lines(e: &ConfigError) -> Vec<String> {
    e.to_string().lines().map(str::to_owned).collect()
}

/// The routes of the config `settings` were compiled from, with a client
/// for each backend made by `server.connect_timeout`, `server.timeout` and
/// `tls`; the clients of `reuse` (by URL) when given. With `settings`, one
/// [`Snapshot`](crate::routes::Snapshot) of that config.
pub fn routes_of(
    settings: Arc<Settings>,
    tls: &Arc<rustls::ClientConfig>,
    reuse: Option<&HashMap<String, Upstream>>,
) -> Result<Routes, ConfigError> {
    let server = &settings.config().server;
    let (connect_timeout, timeout) = (server.connect_timeout.get(), server.timeout.get());
    Routes::from_settings(settings.clone(), |url| {
        if let Some(kept) = reuse.and_then(|r| r.get(&url.to_string())) {
            return kept.clone();
        }
        Upstream::with_tls(url, connect_timeout, timeout, tls.clone())
    })
}

/// The reload of a running `uip-cache serve`: give it to the admin API
/// ([`Admin::reload_with`](uip_cache_core::admin::Admin::reload_with)),
/// which answers `POST /config/reload` and runs it on SIGHUP too.
pub struct ServerReload {
    file: PathBuf,
    base: PathBuf,
    overrides: Overrides,
    cache: HttpCache,
    routes: Routes,
    certificates: Option<Certificates>,
    /// The config the process started with: what needs a restart is
    /// compared with it.
    started: CacheConfig,
    /// One reload at a time, and what the last one swapped in.
    running: Mutex<Running>,
}

struct Running {
    config: CacheConfig,
    /// What the upstream TLS files held when the clients were made.
    tls_files: Vec<Option<u64>>,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ServerReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerReload")
            .field("file", &self.file)
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

/// A hash of each file `server.upstream_tls` names (none: absent or
/// unreadable; reading them for real reports the error), to tell whether
/// one changed: a CA or a client certificate renewed in place makes new
/// clients.
fn tls_files(config: &CacheConfig, base: &Path) -> Vec<Option<u64>> {
    use std::hash::{Hash, Hasher};
    let t = &config.server.upstream_tls;
    [&t.ca, &t.client_cert, &t.client_key]
        .iter()
        .map(|p| {
            let bytes = std::fs::read(base.join(p.as_ref()?)).ok()?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            Some(h.finish())
        })
        .collect()
}

impl ServerReload {
    /// The reload of a server started from `file` (relative paths in it
    /// read from `base`) with `overrides`, running `config` (as [`load`]
    /// gave it) on `cache`, `routes` (made with `tls`, the clients'
    /// TLS configuration) and `certificates` (when TLS is served).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: PathBuf,
        base: PathBuf,
        overrides: Overrides,
        config: CacheConfig,
        tls: Arc<rustls::ClientConfig>,
        cache: HttpCache,
        routes: Routes,
        certificates: Option<Certificates>,
    ) -> Self {
        let running = Running {
            tls_files: tls_files(&config, &base),
            config: config.clone(),
            tls,
        };
        ServerReload {
            file,
            base,
            overrides,
            cache,
            routes,
            certificates,
            started: config,
            running: Mutex::new(running),
        }
    }
}

impl Reload for ServerReload {
    fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // ===== read and validate everything; nothing changes yet =====
        let config = load(&self.file, &self.overrides)?;
        let mut errors = Vec::new();
        let settings = match Settings::compile(&config) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                errors.extend(lines(&e));
                None
            }
        };
        let tls_bytes = tls_files(&config, &self.base);
        let same_tls = fingerprint(&config.server.upstream_tls)
            == fingerprint(&running.config.server.upstream_tls)
            && tls_bytes == running.tls_files;
        let same_clients = same_tls
            && config.server.connect_timeout == running.config.server.connect_timeout
            && config.server.timeout == running.config.server.timeout;
        let tls = if same_clients {
            Some(running.tls.clone())
        } else {
            match client_config(&config.server.upstream_tls, &self.base) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(format!(
                        "{}: server.upstream_tls: {e}",
                        config.source_name()
                    ));
                    None
                }
            }
        };
        // The routes with the settings: one snapshot of the new config.
        let routes = match (&settings, &tls) {
            (Some(settings), Some(tls)) => {
                let reuse = same_clients.then(|| clients(&self.routes));
                match routes_of(settings.clone(), tls, reuse.as_ref()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        errors.extend(lines(&e));
                        None
                    }
                }
            }
            // Still every error of the routes, without clients.
            _ => {
                if let Err(e) = crate::routes::describe(&config) {
                    errors.extend(lines(&e));
                }
                None
            }
        };
        // The certificates the TLS listener will serve, read (and so
        // checked) now; installed once everything is known to be good.
        let new_certs = match &config.server.tls {
            Some(t) => {
                let files = files_of(t, &self.base);
                match Certificates::load(files.clone()) {
                    Ok(c) => Some((files, c.names())),
                    Err(e) => {
                        errors.push(format!(
                            "{}: server.tls.certificates: {e}",
                            config.source_name()
                        ));
                        None
                    }
                }
            }
            None => None,
        };
        let (Some(settings), Some(tls), Some(routes), true) =
            (settings, tls, routes, errors.is_empty())
        else {
            return Err(errors);
        };

        // ===== what changes, and what would need a restart =====
        let old = &running.config;
        let mut changed = policy_changes(old, &config);
        let live: [(&str, String, String); 11] = [
            (
                "defaults",
                fingerprint(&old.defaults),
                fingerprint(&config.defaults),
            ),
            ("key", fingerprint(&old.key), fingerprint(&config.key)),
            (
                "server.routes",
                fingerprint(&(&old.server.routes, &old.server.upstream)),
                fingerprint(&(&config.server.routes, &config.server.upstream)),
            ),
            (
                "server.trusted_proxies",
                fingerprint(&old.server.trusted_proxies),
                fingerprint(&config.server.trusted_proxies),
            ),
            (
                // Read by the listeners at each accept.
                "server.max_connections_per_client",
                fingerprint(&old.server.max_connections_per_client),
                fingerprint(&config.server.max_connections_per_client),
            ),
            (
                // Read by each HTTP/1.1 request's head.
                "server.fast_hits",
                fingerprint(&old.server.fast_hits),
                fingerprint(&config.server.fast_hits),
            ),
            (
                "server.connect_timeout",
                fingerprint(&old.server.connect_timeout),
                fingerprint(&config.server.connect_timeout),
            ),
            (
                "server.timeout",
                fingerprint(&old.server.timeout),
                fingerprint(&config.server.timeout),
            ),
            (
                "store.timeout",
                fingerprint(&(&old.store.timeout, &old.store.purge_timeout)),
                fingerprint(&(&config.store.timeout, &config.store.purge_timeout)),
            ),
            (
                "invalidation",
                fingerprint(&old.invalidation),
                fingerprint(&config.invalidation),
            ),
            (
                "warming",
                fingerprint(&old.warming),
                fingerprint(&config.warming),
            ),
        ];
        changed.extend(
            live.into_iter()
                .filter(|(_, a, b)| a != b)
                .map(|(what, _, _)| what.to_owned()),
        );
        if !same_tls {
            changed.push("server.upstream_tls".to_owned());
        }
        if old.admin.secret != config.admin.secret {
            changed.push("admin.secret".to_owned());
        }
        let needs_restart = restart_needed(&self.started, &config);
        let serve_tls = match (&self.certificates, &new_certs) {
            (Some(running_certs), Some((files, names)))
                if !needs_restart.iter().any(|n| n.starts_with("server.tls")) =>
            {
                if *names != running_certs.names()
                    || old.server.tls.as_ref().map(|t| files_of(t, &self.base))
                        != Some(files.clone())
                {
                    changed.push("server.tls.certificates".to_owned());
                }
                Some((running_certs, files.clone()))
            }
            _ => None,
        };

        // ===== swap =====
        if let Some((certs, files)) = serve_tls {
            match certs.replace(files) {
                Ok(n) => tracing::info!(
                    certificates = n,
                    reason = "config reload",
                    "TLS certificates reloaded"
                ),
                // Read a moment ago; changed since. Nothing else is swapped.
                Err(e) => {
                    return Err(vec![format!(
                        "{}: server.tls.certificates: {e}",
                        config.source_name()
                    )])
                }
            }
        }
        let policies = settings.policies().len();
        // The cache's own readers (the admin API, the warmer, the event
        // rules) first, then the snapshot every proxy request loads: its
        // settings and its routes in one swap, so no request routes by one
        // config and caches by the other.
        self.cache.replace_settings(settings);
        self.routes.replace_with(&routes);
        let report = ReloadReport::new(policies, routes.table().len())
            .changed(changed)
            .needs_restart(needs_restart);
        *running = Running {
            config,
            tls_files: tls_bytes,
            tls,
        };
        Ok(report)
    }
}

/// The clients of the routes running now, by URL.
fn clients(routes: &Routes) -> HashMap<String, Upstream> {
    let table = routes.table();
    let mut by_url = HashMap::new();
    for route in table.routes() {
        let set = route.upstreams();
        for i in 0..set.len() {
            by_url.insert(set.url(i).to_owned(), set.client(i).clone());
        }
    }
    by_url
}

/// A value's `Debug` text without the lines it was read from: two
/// configs that differ only in where things are in the file compare
/// equal.
fn fingerprint(v: &impl fmt::Debug) -> String {
    let text = format!("{v:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    const LINE: &str = "line: Some(";
    while let Some(at) = rest.find(LINE) {
        out.push_str(&rest[..at]);
        let after = &rest[at + LINE.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if after[digits..].starts_with(')') {
            out.push_str("line: _");
            rest = &after[digits + 1..];
        } else {
            out.push_str(LINE);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `policy added: x`, `policy removed: y`, `policy changed: z` (by name),
/// and `policies reordered` when the same policies come in another order
/// (the first that matches wins).
fn policy_changes(old: &CacheConfig, new: &CacheConfig) -> Vec<String> {
    let by_name = |c: &CacheConfig| {
        c.policies
            .iter()
            .map(|p| (p.name.value.clone(), fingerprint(p)))
            .collect::<Vec<_>>()
    };
    let (before, after) = (by_name(old), by_name(new));
    let find = |list: &[(String, String)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, f)| f.clone())
    };
    let mut out = Vec::new();
    for (name, f) in &after {
        match find(&before, name) {
            None => out.push(format!("policy added: {name}")),
            Some(g) if g != *f => out.push(format!("policy changed: {name}")),
            Some(_) => {}
        }
    }
    for (name, _) in &before {
        if find(&after, name).is_none() {
            out.push(format!("policy removed: {name}"));
        }
    }
    let kept = |list: &[(String, String)], other: &[(String, String)]| {
        list.iter()
            .filter(|(n, _)| other.iter().any(|(m, _)| m == n))
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    };
    if kept(&before, &after) != kept(&after, &before) {
        out.push("policies reordered".to_owned());
    }
    out
}

/// What a running process cannot change, each under the name a reload
/// reports when it differs from the value the process started with, with
/// what it reads of a config. `uip-cache check-config` lists the names
/// ([`needs_restart_fields`]).
type Fixed = (&'static str, fn(&CacheConfig) -> String);

const NEEDS_RESTART: [Fixed; 14] = [
    ("server.listen", |c| fingerprint(&c.server.plain_listen())),
    ("server.tls.listen", |c| {
        fingerprint(&c.server.tls.as_ref().map(|t| &t.listen))
    }),
    ("server.redirect_http", |c| {
        fingerprint(&c.server.redirect_http)
    }),
    ("server.workers", |c| fingerprint(&c.server.workers)),
    ("server.send_timeout", |c| {
        fingerprint(&c.server.send_timeout)
    }),
    ("server.idle_timeout", |c| {
        fingerprint(&c.server.idle_timeout)
    }),
    ("server.max_inflight_bytes", |c| {
        fingerprint(&c.server.max_inflight_bytes)
    }),
    ("server.shutdown_grace", |c| {
        fingerprint(&c.server.shutdown_grace)
    }),
    ("admin.listen", |c| {
        fingerprint(&(c.admin.enabled, &c.admin.listen))
    }),
    ("store.type", |c| fingerprint(&c.store.kind)),
    // The store's other fields, but the timeouts the request path reads.
    ("store", |c| {
        let (mut store, default) = (c.store.clone(), CacheConfig::default().store);
        store.timeout = default.timeout;
        store.purge_timeout = default.purge_timeout;
        fingerprint(&store)
    }),
    ("redis", |c| fingerprint(&c.redis)),
    ("logging", |c| fingerprint(&c.logging)),
    ("invalidation webhook endpoint", |c| {
        fingerprint(&c.invalidation.webhook().and_then(|w| w.endpoint.clone()))
    }),
];

/// The values a running `uip-cache serve` keeps until a restart, by the
/// names a reload reports them under (listener addresses, the store and
/// its type, ...): what differs in a reloaded file is reported as needing
/// a restart and the running value stays.
pub fn needs_restart_fields() -> impl Iterator<Item = &'static str> {
    NEEDS_RESTART.iter().map(|(name, _)| *name)
}

/// What differs between the config the process started with and `new`
/// that a running process cannot change.
fn restart_needed(started: &CacheConfig, new: &CacheConfig) -> Vec<String> {
    let mut out: Vec<String> = NEEDS_RESTART
        .iter()
        .filter(|(_, read)| read(started) != read(new))
        .map(|(name, _)| (*name).to_owned())
        .collect();
    // A store of another type differs in its other fields too: reported
    // once, as its type.
    if out.iter().any(|n| n == "store.type") {
        out.retain(|n| n != "store");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_ignore_the_lines_values_were_read_from() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Located {
            value: &'static str,
            line: Option<u64>,
        }
        let a = Located {
            value: "x",
            line: Some(3),
        };
        let b = Located {
            value: "x",
            line: Some(12),
        };
        let c = Located {
            value: "y",
            line: Some(3),
        };
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&"line: Some(x"), "\"line: Some(x\"");
    }

    proptest::proptest! {
        /// Any text: no panic, and the lines are the only difference.
        #[test]
        fn fingerprints_only_drop_line_numbers(text in ".{0,64}", a in 0u64..1000, b in 0u64..1000) {
            struct Raw(String);
            impl std::fmt::Debug for Raw {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(&self.0)
                }
            }
            let with = |n: u64| Raw(format!("{text} line: Some({n}) {text}"));
            proptest::prop_assert_eq!(fingerprint(&with(a)), fingerprint(&with(b)));
            let plain = Raw(text.replace("line: Some(", ""));
            proptest::prop_assume!(!plain.0.contains("line: Some("));
            proptest::prop_assert_eq!(fingerprint(&plain), plain.0.clone());
        }
    }
}
