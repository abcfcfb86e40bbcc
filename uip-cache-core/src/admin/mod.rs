//! The admin API, written once: a framework-free handler from a small
//! request value ([`AdminRequest`]) to a small response value
//! ([`AdminResponse`]). The axum router, the actix scope and the server only
//! translate.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | per-component status; 503 when unhealthy |
//! | `GET /cache/metrics` | the seed's JSON statistics |
//! | `GET /metrics` | Prometheus text exposition |
//! | `POST /cache/invalidate` | webhook event `{"event","entity_id","entity_type"}` |
//! | `POST /cache/invalidate/tag` | `{"tag": ".."}` or `{"tags": [..]}` |
//! | `POST /cache/invalidate/url` | `{"url": "/path?query"}` or `{"pattern": "/glob*"}` |
//! | `POST /cache/warm` | runs warming now |
//! | `POST /config/reload` | reads the config file again and swaps it in (with a [`Reload`] only) |
//!
//! Mutating routes require the configured secret (`admin.secret`, else the
//! webhook strategy's) in `X-Webhook-Secret` or `Authorization: Bearer`,
//! compared in constant time; without it they answer 401 and change nothing.
//! The secrets, the event rules and the warming schedules are those of the
//! settings the cache runs on now: a reload that changes them applies at
//! once (the webhook's `endpoint` path is fixed when the API is built).
//! When no secret is configured they are open to loopback clients only (403
//! for others, and for requests whose peer the adapter does not know).
//!
//! # Example
//!
//! ```
//! use uip_cache_core::admin::{Admin, AdminBody, AdminRequest};
//! use uip_cache_core::{CacheConfig, HttpCache};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: cams
//!     pattern: "/ngsi-ld/v1/entities?type=Camera*"
//!     ttl: 60
//!     tags: [camera]
//! admin:
//!   secret: s3cret
//! "#)?;
//! let admin = Admin::new(HttpCache::with_memory_store(&config)?);
//! let headers = [("x-webhook-secret", "s3cret")];
//! let req = AdminRequest::new("POST", "/cache/invalidate/tag", &headers)
//!     .body(AdminBody::Complete(br#"{"tag": "camera"}"#.as_slice().into()));
//! let resp = admin.handle(req).await;
//! assert_eq!(resp.status, 200);
//! assert_eq!(&resp.body[..], br#"{"deleted":0,"tags":["camera"]}"#);
//!
//! let wrong = [("x-webhook-secret", "guess")];
//! let req = AdminRequest::new("POST", "/cache/invalidate/tag", &wrong)
//!     .body(AdminBody::Complete(br#"{"tag": "camera"}"#.as_slice().into()));
//! assert_eq!(admin.handle(req).await.status, 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod background;
mod metrics;
mod reload;
mod routes;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::request::HeaderSource;
use crate::warm::{WarmFetcher, Warmer};
use crate::HttpCache;

pub use background::StartError;
pub use metrics::prometheus_text;
pub use reload::{Reload, ReloadReport};

/// The largest admin request body; adapters stop reading past it and pass
/// [`AdminBody::TooLarge`] (the answer is 413).
pub const MAX_BODY: usize = 64 * 1024;

/// How long adapters wait for a whole admin request body before answering
/// 408: a client trickling bytes does not hold a task for long.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The body of an admin request, as the adapter read it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AdminBody {
    /// The whole body (empty when there was none).
    Complete(Bytes),
    /// The body was longer than [`MAX_BODY`]; the adapter stopped reading.
    TooLarge,
}

/// An admin request, as an adapter sees it.
#[non_exhaustive]
pub struct AdminRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// The path under the admin mount (`/health`, `/cache/invalidate`, ...).
    pub path: &'a str,
    /// Header lookup.
    pub headers: &'a (dyn HeaderSource + Sync),
    /// The body.
    pub body: AdminBody,
    /// Who sent it (the peer address), for the log line of an invalidation.
    pub peer: Option<String>,
}

impl fmt::Debug for AdminRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body", &self.body)
            .field("peer", &self.peer)
            .finish()
    }
}

impl<'a> AdminRequest<'a> {
    /// A request without a body.
    pub fn new(method: &'a str, path: &'a str, headers: &'a (dyn HeaderSource + Sync)) -> Self {
        AdminRequest {
            method,
            path,
            headers,
            body: AdminBody::Complete(Bytes::new()),
            peer: None,
        }
    }

    /// With a body.
    #[must_use]
    pub fn body(mut self, body: AdminBody) -> Self {
        self.body = body;
        self
    }

    /// With the peer that sent it.
    #[must_use]
    pub fn peer(mut self, peer: Option<String>) -> Self {
        self.peer = peer;
        self
    }
}

/// An admin response, for the adapter to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminResponse {
    /// The status.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// More headers (`Allow` of a 405, `WWW-Authenticate` of a 401).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

impl AdminResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        AdminResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(value.to_string()),
        }
    }

    /// A JSON error: `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The admin API of one cache, with its warmer and background tasks; cheap
/// to clone. The background tasks ([`Admin::start`]) stop when the last
/// clone is dropped or on [`Admin::shutdown`].
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    cache: HttpCache,
    warmer: Option<Arc<Warmer>>,
    /// The webhook route's path, as built (`invalidation` webhook
    /// `endpoint`; routers register it once).
    webhook_path: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    started: std::sync::atomic::AtomicBool,
    /// Stops the background tasks of the settings they were started for
    /// (sent, or dropped when a reload starts the next ones).
    schedules: std::sync::Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    /// What `POST /config/reload` runs, when the front-end has a file.
    reload: std::sync::OnceLock<Arc<dyn reload::Reload>>,
    /// The store's figures of the last second, shared by the read routes so
    /// that scrapers cannot multiply the load on the store.
    figures: std::sync::Mutex<Option<(std::time::Instant, Arc<Figures>)>>,
    /// The log lines of refused requests: at most one a second.
    refusals: crate::quiet::Quiet,
}

/// What the read routes report of the store.
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) health: crate::store::StoreHealth,
    pub(crate) keys: Option<u64>,
    pub(crate) memory: Option<crate::store::MemoryUsage>,
}

/// Whether a mutating request may run.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Granted,
    /// A secret is configured and the request lacks it (401).
    WrongSecret,
    /// No secret is configured and the request does not come from this
    /// host (403).
    NoSecretRemote,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("cache", &self.inner.cache)
            .field("warmer", &self.inner.warmer)
            .field("reload", &self.inner.reload.get())
            .finish()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Admin {
    /// The admin API of `cache`, without warming (`POST /cache/warm`
    /// answers 503 until a fetcher is given).
    pub fn new(cache: HttpCache) -> Self {
        Self::build(cache, None)
    }

    /// The admin API of `cache`, warming with `fetcher`.
    pub fn with_fetcher(cache: HttpCache, fetcher: Arc<dyn WarmFetcher>) -> Self {
        let warmer = Arc::new(Warmer::new(cache.clone(), fetcher));
        Self::build(cache, Some(warmer))
    }

    fn build(cache: HttpCache, warmer: Option<Arc<Warmer>>) -> Self {
        let config = cache.config();
        let webhook = config.invalidation.webhook();
        let webhook_path = webhook
            .and_then(|w| w.endpoint.clone())
            .unwrap_or_else(|| "/cache/invalidate".to_owned());
        Admin {
            inner: Arc::new(Inner {
                webhook_path,
                warmer,
                shutdown: tokio::sync::watch::channel(false).0,
                started: std::sync::atomic::AtomicBool::new(false),
                schedules: std::sync::Mutex::new(None),
                reload: std::sync::OnceLock::new(),
                figures: std::sync::Mutex::new(None),
                refusals: crate::quiet::Quiet::new(),
                cache,
            }),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &HttpCache {
        &self.inner.cache
    }

    /// The warmer, when there is a fetcher.
    pub fn warmer(&self) -> Option<&Arc<Warmer>> {
        self.inner.warmer.as_ref()
    }

    /// Whether a mutating request may run: it carries a secret this route
    /// accepts, or no secret is configured and it comes from a loopback
    /// address (an unknown peer is not trusted). Both sides are hashed
    /// first, so the comparison takes the same time whatever the secret's
    /// length or content.
    fn access(&self, headers: &dyn HeaderSource, peer: Option<&str>, webhook: bool) -> Access {
        // The secrets of the settings the cache runs on now (a reload may
        // have changed them); SHA-256 of each.
        let config = self.inner.cache.config();
        let accepted: Vec<[u8; 32]> = [
            config.admin_secret().map(digest),
            webhook
                .then(|| {
                    config
                        .invalidation
                        .webhook()
                        .and_then(|w| w.secret.as_deref())
                        .map(digest)
                })
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if accepted.is_empty() {
            let local = peer
                .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
                .is_some_and(|a| a.ip().to_canonical().is_loopback());
            return if local {
                Access::Granted
            } else {
                Access::NoSecretRemote
            };
        }
        let mut offered = Vec::with_capacity(2);
        headers.for_each_value("x-webhook-secret", &mut |v| offered.push(v.to_vec()));
        headers.for_each_value("authorization", &mut |v| {
            if let Some(token) = v
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
                .and(v.get(7..))
            {
                offered.push(token.trim_ascii().to_vec());
            }
        });
        let mut ok = subtle::Choice::from(0);
        for o in offered.iter().take(4) {
            let d: [u8; 32] = Sha256::digest(o).into();
            for a in &accepted {
                ok |= d.ct_eq(a);
            }
        }
        if bool::from(ok) {
            Access::Granted
        } else {
            Access::WrongSecret
        }
    }

    /// Whether a refusal is logged now, and how many were not since the
    /// last line: at most one line a second, so a client guessing secrets
    /// cannot flood the log.
    fn may_log_refusal(&self) -> Option<u64> {
        self.inner.refusals.admit()
    }

    /// The store's figures, read at most once a second.
    pub(crate) async fn figures(&self) -> Arc<Figures> {
        if let Some((at, f)) = &*self.inner.figures.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return f.clone();
            }
        }
        let cache = &self.inner.cache;
        let (health, keys, memory) = tokio::join!(
            cache.store_health(),
            cache.store_keys_count(),
            cache.store_memory()
        );
        let f = Arc::new(Figures {
            health,
            keys,
            memory,
        });
        *self.inner.figures.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), f.clone()));
        f
    }

    /// Forgets the figures (entries were removed).
    fn forget_figures(&self) {
        *self.inner.figures.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests;
