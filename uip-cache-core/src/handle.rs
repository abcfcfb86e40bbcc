//! [`HttpCache`]: the one object every adapter builds from a config. It holds
//! the store, the compiled policies, the statistics and the coalescing table,
//! and it makes every decision of the request path, so the Tower layer, the
//! actix-web middleware and the server behave alike.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use crate::cache_control::CacheControl;
use crate::compress::{self, gunzip, Compressed};
use crate::config::{CacheConfig, ConfigError};
use crate::entry::{BodyEncoding, StoredResponse};
use crate::forwarding::{ClientOrigin, Connection, TrustedProxies};
use crate::invalidate::{plan_for_event, Invalidation, InvalidationPlan};
use crate::key::CacheKey;
use crate::lock::{Lock, LockTable};
use crate::pattern::UrlPattern;
use crate::policy::{Policy, PolicyMatch, PolicySet};
use crate::request::RequestView;
use crate::rules::{self, Usability};
use crate::stats::{CacheStats, InvalidationKind, NoCacheReason};
use crate::store::{
    HealthStatus, MemoryStore, MemoryUsage, PutOptions, Store, StoreError, StoreHealth,
};

/// How many of its own invalidations an instance remembers for fetches in
/// flight; a fetch older than all of them is not stored.
const RECENT_INVALIDATIONS: usize = 1024;

/// The status of the small entry stored under a key whose responses vary: it
/// lists the `Vary` headers, and the variants live under keys that include them.
const VARY_MARKER_STATUS: u16 = 0;

/// The value of the `X-Cache` response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XCache {
    /// Served from a fresh entry.
    Hit,
    /// Fetched from the origin (and stored if allowed).
    Miss,
    /// Served from a stale entry (stale-while-revalidate, stale-if-error, max-stale).
    Stale,
    /// The cache was not used.
    Bypass,
    /// An entry had expired; the origin was asked (revalidated or refetched).
    Expired,
}

impl XCache {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            XCache::Hit => "HIT",
            XCache::Miss => "MISS",
            XCache::Stale => "STALE",
            XCache::Bypass => "BYPASS",
            XCache::Expired => "EXPIRED",
        }
    }
}

/// How a response from the origin relates to the cache: what its `X-Cache`
/// and RFC 9211 `Cache-Status` headers say ([`HttpCache::forward_headers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forward {
    /// `MISS`, `EXPIRED`, `BYPASS` or `STALE`.
    pub x_cache: XCache,
    /// Whether the cache records the response for storing.
    pub stored: bool,
    /// Why it is not stored, or why the cache was bypassed.
    pub detail: Option<NoCacheReason>,
}

impl Forward {
    /// A forwarded response.
    pub fn new(x_cache: XCache, stored: bool, detail: Option<NoCacheReason>) -> Self {
        Forward {
            x_cache,
            stored,
            detail,
        }
    }

    /// A request that bypassed the cache for `reason`.
    pub fn bypass(reason: NoCacheReason) -> Self {
        Self::new(XCache::Bypass, false, Some(reason))
    }

    /// RFC 9211's `fwd` parameter: why the request went to the origin.
    fn fwd(&self) -> &'static str {
        match (self.x_cache, self.detail) {
            (XCache::Bypass, Some(NoCacheReason::Method | NoCacheReason::MethodOverride)) => {
                "method"
            }
            (
                XCache::Bypass,
                Some(NoCacheReason::RequestNoStore | NoCacheReason::UnparsableCacheControl),
            ) => "request",
            (XCache::Bypass, _) => "bypass",
            (XCache::Expired | XCache::Stale, _) => "stale",
            _ => "uri-miss",
        }
    }
}

/// Whether every quoted string in a structured-field value is closed, so
/// that a member appended after it is not read as part of a string.
fn closed_quotes(v: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for b in v.bytes() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// How the origin failed when a stale entry answers in its place.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OriginFailure {
    /// It answered with this server error.
    Status(u16),
    /// No answer: refused, reset or timed out.
    Unreachable,
}

/// A response built from a stored entry, for the adapter to send.
#[derive(Debug)]
#[non_exhaustive]
pub struct CachedResponse {
    /// Status (304 when the request's conditionals matched).
    pub status: u16,
    /// Headers, lower-case names, including `age`, `x-cache` and `content-length`.
    pub headers: Vec<(FieldName, Bytes)>,
    /// Body (empty for HEAD and 304).
    pub body: CachedBody,
}

/// The body of a [`CachedResponse`]: stored bytes, or a large gzip body the
/// cache stored, decompressed chunk by chunk as it is read for a client
/// that does not take gzip (so that no worker stalls, and no request holds
/// the whole decompressed body, however large it is).
///
/// Adapters send [`into_bytes`](CachedBody::into_bytes) when it is one
/// buffer already, and otherwise read [`next_chunk`](CachedBody::next_chunk)
/// as the client reads; [`len`](CachedBody::len) is its `Content-Length`.
#[derive(Debug)]
pub struct CachedBody {
    kind: BodyKind,
}

#[derive(Debug)]
enum BodyKind {
    Full(Bytes),
    Gunzip {
        chunks: Box<crate::compress::GunzipChunks>,
        /// Counts a body that turns out corrupt part-way.
        cache: HttpCache,
    },
}

impl CachedBody {
    /// No bytes.
    pub fn empty() -> Self {
        Bytes::new().into()
    }

    /// How many bytes are still to come (all of them before the first
    /// chunk: the `Content-Length`).
    pub fn len(&self) -> u64 {
        match &self.kind {
            BodyKind::Full(b) => b.len() as u64,
            BodyKind::Gunzip { chunks, .. } => chunks.remaining(),
        }
    }

    /// Whether no bytes are to come.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as one buffer, when it is one; otherwise itself, to be read
    /// chunk by chunk.
    pub fn into_bytes(self) -> Result<Bytes, CachedBody> {
        match self.kind {
            BodyKind::Full(b) => Ok(b),
            kind => Err(CachedBody { kind }),
        }
    }

    /// The next chunk, `None` at the end. A stored body that turns out
    /// corrupt part-way ends here, short of [`len`](CachedBody::len): the
    /// response was announced with its length, so the client sees it
    /// broken rather than complete with wrong bytes (the corrupt entry is
    /// counted and logged).
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            BodyKind::Full(b) => Some(std::mem::take(b)).filter(|b| !b.is_empty()),
            BodyKind::Gunzip { chunks, cache } => {
                let chunk = chunks.next_chunk();
                if chunk.is_none() && chunks.failed() {
                    cache.inner.stats.corrupt_entry();
                    tracing::warn!("stored gzip body does not decompress; response cut short");
                }
                chunk
            }
        }
    }

    /// All of the body at once (reading whatever is left of it); `None`
    /// when a stored gzip body turns out corrupt.
    pub fn collect(self) -> Option<Bytes> {
        let mut body = match self.into_bytes() {
            Ok(b) => return Some(b),
            Err(body) => body,
        };
        let mut all = bytes::BytesMut::with_capacity(usize::try_from(body.len()).ok()?);
        while let Some(chunk) = body.next_chunk() {
            all.extend_from_slice(&chunk);
        }
        (!body.failed()).then(|| all.freeze())
    }

    fn failed(&self) -> bool {
        matches!(&self.kind, BodyKind::Gunzip { chunks, .. } if chunks.failed())
    }
}

impl From<Bytes> for CachedBody {
    fn from(b: Bytes) -> Self {
        CachedBody {
            kind: BodyKind::Full(b),
        }
    }
}

/// Where an adapter starts with a request ([`HttpCache::start`]).
#[derive(Debug)]
pub enum Start {
    /// The policy keys on the body (`vary_by: [body]`) and caches this
    /// method: read up to this many bytes first. When the body ends within
    /// them, pass them in [`RequestView::body`] to [`HttpCache::plan`] (and
    /// send the origin exactly those bytes); otherwise bypass with
    /// [`NoCacheReason::BodyTooLarge`] and stream the body on untouched.
    ReadBody(u64),
    /// The plan; the body is not part of the key.
    Plan(Plan),
}

/// What to do with a request. Exhaustive on purpose: a new kind of plan must
/// make every adapter handle it.
// A plan is made once per request and moved, never stored in bulk; boxing
// the cache variant would cost an allocation on every hit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Plan {
    /// Do not use the cache.
    Bypass(NoCacheReason),
    /// Look up, and store what the origin answers if allowed.
    Cache(CachePlan),
}

/// A request the cache handles. Owns its data, so it can move into the task
/// that stores the response once its body has streamed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CachePlan {
    policy: Option<usize>,
    params: Vec<(String, String)>,
    /// The key before response `Vary` is known.
    pub key: CacheKey,
    /// The request's caching directives.
    pub request_cc: CacheControl,
    /// This instance's invalidation sequence when the request arrived: a
    /// response is not stored if an invalidation concerning it ran since.
    epoch: u64,
    /// The shared store's invalidation counter when the fetch started.
    store_epoch: Option<u64>,
    /// Reading that counter failed: what other instances invalidate
    /// meanwhile cannot be known, so the response is not stored.
    store_epoch_unknown: bool,
}

/// What the local leader of a key should do once instances sharing the store
/// have been consulted.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lead {
    /// Fetch from the origin (the shared lease is ours, or not to be had in time).
    Fetch,
    /// Another instance fetched and stored it meanwhile: serve this.
    Found(Box<StoredResponse>),
}

/// An invalidation that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidateError {
    /// The event or pattern is not usable (nothing was deleted).
    #[error("{0}")]
    BadRequest(String),
    /// The store failed (some entries may remain).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The shared cache handle; cheap to clone.
#[derive(Clone)]
pub struct HttpCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    policies: PolicySet,
    store: Arc<dyn Store>,
    stats: CacheStats,
    locks: LockTable,
    epoch: AtomicU64,
    /// The last invalidations of this instance, with their sequence numbers.
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, Invalidation)>>,
    /// Response headers this cache consumes and never passes on (RFC 9213
    /// targeted fields), lower case.
    hidden: Vec<String>,
    /// Entries written so far: a request that became a key's leader after a
    /// store finished during its lookup looks again before fetching.
    writes: AtomicU64,
    /// `Cache-Status` name, when the header is on.
    cache_status: Option<String>,
    /// Keys whose last response could not be stored: their requests go to
    /// the origin at once instead of queueing (hit-for-miss).
    uncacheable: Option<moka::sync::Cache<String, NoCacheReason>>,
    /// Marks the refreshes this cache sends back through the app.
    refresh_token: crate::refresh::RefreshToken,
    /// `server.trusted_proxies`, parsed.
    trusted: TrustedProxies,
    /// Purges after unsafe requests that may run in tasks of their own at
    /// once; past it the request waits for its purge (back-pressure on the
    /// writer, not tasks without bound while the store is slow).
    unsafe_purges: Arc<tokio::sync::Semaphore>,
}

/// Purges after unsafe requests running in tasks of their own, at most.
const UNSAFE_PURGES_IN_TASKS: usize = 256;

impl HttpCache {
    /// A cache over `store` with the config's policies.
    pub fn new(config: &CacheConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        let policies =
            PolicySet::compile(config).map_err(|p| ConfigError::new(config.source_name(), p))?;
        let trusted = TrustedProxies::parse(&config.server.trusted_proxies).map_err(|(i, e)| {
            let at = config.server.trusted_proxies[i].line;
            ConfigError::single(
                config.source_name(),
                crate::config::ConfigProblem::new(
                    at,
                    format!("server.trusted_proxies[{i}]"),
                    e.to_string(),
                ),
            )
        })?;
        Ok(HttpCache {
            inner: Arc::new(Inner {
                config: config.clone(),
                stats: CacheStats::with_policies(policies.len()),
                policies,
                store,
                locks: LockTable::new(),
                epoch: AtomicU64::new(0),
                recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
                hidden: {
                    let targets = config.defaults.targeted_cache_control_names();
                    let mut hidden: Vec<String> = targets
                        .iter()
                        .filter(|t| rules::is_consumed(t, &targets))
                        .cloned()
                        .collect();
                    if !config.defaults.forward_tag_headers {
                        hidden.extend(config.defaults.tag_header_names());
                    }
                    hidden
                },
                writes: AtomicU64::new(0),
                cache_status: Some(config.defaults.cache_status.trim().to_owned())
                    .filter(|n| !n.is_empty()),
                refresh_token: crate::refresh::RefreshToken::new(),
                trusted,
                unsafe_purges: Arc::new(tokio::sync::Semaphore::new(UNSAFE_PURGES_IN_TASKS)),
                uncacheable: (!config.defaults.hit_for_miss.get().is_zero()).then(|| {
                    moka::sync::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(config.defaults.hit_for_miss.get())
                        .build()
                }),
            }),
        })
    }

    /// A cache with the in-memory store; a config asking for another store is
    /// an error here (adapters with the `redis` feature build that one).
    pub fn with_memory_store(config: &CacheConfig) -> Result<Self, ConfigError> {
        if config.store.kind != crate::config::StoreKind::Memory {
            return Err(ConfigError::at(
                config.source_name(),
                "store.type",
                "this build has only the memory store: enable the `redis` feature of uip-cache-tower to use Redis",
            ));
        }
        Self::new(config, Arc::new(MemoryStore::from_config(config)))
    }

    /// The config.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The compiled policies.
    pub fn policies(&self) -> &PolicySet {
        &self.inner.policies
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The token that marks this cache's stale-while-revalidate refreshes
    /// sent back through the app ([`HttpCache::begin_refresh`]).
    pub fn refresh_token(&self) -> &crate::refresh::RefreshToken {
        &self.inner.refresh_token
    }

    /// The peers whose forwarding headers are believed
    /// (`server.trusted_proxies`).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted
    }

    /// The scheme and host a request's key holds and the forwarding headers
    /// an adapter removes before the application sees it, from the facts
    /// of its connection: see [`TrustedProxies::client_origin`].
    pub fn client_origin<'h>(
        &self,
        conn: &Connection,
        target_authority: Option<&'h str>,
        headers: &'h dyn crate::request::HeaderSource,
    ) -> ClientOrigin<'h> {
        self.inner
            .trusted
            .client_origin(conn, target_authority, headers)
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    /// Response headers the cache consumes itself (`Surrogate-Control` when
    /// obeyed, the tag headers unless forwarded): adapters remove them from
    /// responses they pass on.
    pub fn hidden_response_headers(&self) -> &[String] {
        &self.inner.hidden
    }

    /// How long coalesced requests wait for the leader.
    pub fn lock_timeout(&self) -> Duration {
        self.inner.config.defaults.lock_timeout.get()
    }

    fn store_timeout(&self) -> Duration {
        self.inner.config.store.timeout.get()
    }

    fn purge_timeout(&self) -> Duration {
        self.inner.config.store.purge_timeout.get()
    }

    /// Where an adapter starts with a request whose body it has not read:
    /// its [`Plan`], or first the body to read, with one policy match for
    /// both questions.
    pub fn start(&self, req: &RequestView<'_>) -> Start {
        let Some(m) = self.inner.policies.find(req.path, req.query) else {
            return Start::Plan(Plan::Bypass(NoCacheReason::NoPolicy));
        };
        let p = m.policy();
        if p.key_spec().uses_body() && p.allows_method(req.method) {
            Start::ReadBody(p.max_body())
        } else {
            Start::Plan(self.plan_matched(m, req))
        }
    }

    /// Decides whether the cache handles `req`.
    /// A request a policy matched but that bypasses the cache is counted for
    /// that policy here; the adapter counts the bypass and its reason with
    /// [`CacheStats::bypass`].
    pub fn plan(&self, req: &RequestView<'_>) -> Plan {
        match self.inner.policies.find(req.path, req.query) {
            Some(m) => self.plan_matched(m, req),
            None => Plan::Bypass(NoCacheReason::NoPolicy),
        }
    }

    /// [`HttpCache::plan`] once the policy is found.
    fn plan_matched(&self, m: PolicyMatch<'_>, req: &RequestView<'_>) -> Plan {
        let request_cc = rules::request_cache_control(req.headers);
        let keys_body = m.policy().key_spec().uses_body();
        let reason = if !m.policy().allows_method(req.method) {
            Some(NoCacheReason::Method)
        } else if request_cc.unparsable {
            // What the client asked of caches is not known: it gets the
            // origin's answer, and the cache is left alone.
            Some(NoCacheReason::UnparsableCacheControl)
        } else if request_cc.no_store {
            Some(NoCacheReason::RequestNoStore)
        } else if rules::has_method_override(req) {
            Some(NoCacheReason::MethodOverride)
        } else if keys_body && req.body.is_none() {
            Some(NoCacheReason::BodyNotBuffered)
        } else if !keys_body && rules::carries_body(req) {
            Some(NoCacheReason::RequestBody)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.inner.stats.policy_bypass(m.index());
            return Plan::Bypass(reason);
        }
        let key = m.policy().key_spec().key(req, &[]);
        let (policy, params) = m.into_parts();
        Plan::Cache(CachePlan {
            policy,
            params,
            key,
            request_cc,
            epoch: self.inner.epoch.load(Ordering::Acquire),
            store_epoch: None,
            store_epoch_unknown: false,
        })
    }

    /// The policy of a plan.
    pub fn policy(&self, plan: &CachePlan) -> &Policy {
        self.inner.policies.get(plan.policy)
    }

    /// Runs a store call with the store timeout; failures are counted, logged
    /// and returned as `None` (fail-open).
    async fn guarded<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.store_timeout(), f).await;
        self.inner.stats.store_op(started.elapsed());
        match result {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.inner.stats.store_error();
                tracing::warn!(operation = what, error = %e, "cache store failed; continuing without it");
                None
            }
            Err(_) => {
                self.inner.stats.store_error();
                tracing::warn!(operation = what, timeout = ?self.store_timeout(), "cache store timed out; continuing without it");
                None
            }
        }
    }

    /// A store call of the admin side (health, counts, memory): bounded by
    /// ten times the store timeout (at least 1 s) rather than the request
    /// path's, since these are heavier and a slow answer is not an outage;
    /// not counted in the request path's store metrics.
    async fn probe<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        let limit = self
            .store_timeout()
            .saturating_mul(10)
            .max(Duration::from_secs(1));
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(operation = what, error = %e, "store probe failed");
                None
            }
            Err(_) => {
                tracing::debug!(operation = what, timeout = ?limit, "store probe timed out");
                None
            }
        }
    }

    /// The store's health (a store that does not answer within the probe
    /// bound is reported down).
    pub async fn store_health(&self) -> StoreHealth {
        match self.probe("health", self.inner.store.health()).await {
            Some(h) => h,
            None => StoreHealth::new(
                HealthStatus::Down,
                "unknown",
                Some("the store did not answer its health check".into()),
            ),
        }
    }

    /// The store's entry count, if it answers.
    pub async fn store_keys_count(&self) -> Option<u64> {
        self.probe("keys count", self.inner.store.keys_count())
            .await
    }

    /// The store's memory figures, if it answers.
    pub async fn store_memory(&self) -> Option<MemoryUsage> {
        self.probe("memory", self.inner.store.memory()).await
    }

    async fn get_entry(&self, key: &str) -> Option<StoredResponse> {
        let bytes = self.guarded("get", self.inner.store.get(key)).await??;
        match StoredResponse::decode(&bytes) {
            Ok(e) => Some(e),
            Err(err) => {
                self.inner.stats.corrupt_entry();
                tracing::warn!(key, error = %err, "undecodable bytes under a cache key; deleting them");
                // Rare: boxed, so lookups do not carry room for it.
                let delete = Box::pin(self.guarded("delete", self.inner.store.delete(key)));
                delete.await;
                None
            }
        }
    }

    /// Looks up the entry for `req`: one store round trip, two when the stored
    /// response varies on request headers.
    pub async fn lookup(&self, plan: &CachePlan, req: &RequestView<'_>) -> Option<StoredResponse> {
        let started = Instant::now();
        // One await in a loop rather than two: a future holds room for
        // each await's store call.
        let mut variant = None;
        let entry = loop {
            let key = variant.as_ref().unwrap_or(&plan.key);
            let entry = self.get_entry(key.as_str()).await;
            match entry {
                Some(marker) if marker.status == VARY_MARKER_STATUS && variant.is_none() => {
                    variant = Some(self.entry_key(plan, req, &marker.vary));
                }
                entry => break entry,
            }
        };
        self.inner.stats.latency(started.elapsed());
        entry.filter(|e| e.status != VARY_MARKER_STATUS)
    }

    /// Answers `req` from an entry the store has at hand
    /// ([`Storage::get_now`](crate::store::Storage::get_now)) when that entry
    /// is fresh, or stale where the request accepts it, counted as
    /// [`HttpCache::begin`] counts it. `None` leaves the request to
    /// `begin`, with nothing counted: no entry at hand, one that needs the
    /// origin or a refresh, a gzip-stored one that goes out decompressed
    /// (decompressed there), or one that does not decode (which `begin`
    /// deletes). The hit path of stores in memory, without a future.
    pub fn answer_now(&self, plan: &CachePlan, req: &RequestView<'_>) -> Option<CachedResponse> {
        let started = Instant::now();
        let (mut entry, first) = self.entry_now(plan.key.as_str(), started)?;
        let mut second = None;
        if entry.status == VARY_MARKER_STATUS {
            let key = self.entry_key(plan, req, &entry.vary);
            let (variant, took) = self.entry_now(key.as_str(), Instant::now())?;
            if variant.status == VARY_MARKER_STATUS {
                return None;
            }
            (entry, second) = (variant, Some(took));
        }
        let looked = started.elapsed();
        // A gzip-stored body that goes out decompressed (a client without
        // gzip, a `no-transform` request or response) is decompressed, and
        // a corrupt one counted, on the usual path only: not here, where
        // the Tower service's `call` runs.
        if entry.compression == BodyEncoding::Gzip
            && !(varies_by_encoding(&entry) && takes_cache_gzip(req))
        {
            return None;
        }
        let now = SystemTime::now();
        // Stale-while-revalidate needs a refresh, which `begin` starts.
        let usability = rules::usability(&entry, &plan.request_cc, now);
        if !matches!(usability, Usability::Fresh | Usability::StaleAccepted) {
            return None;
        }
        let r = self.answer_as(plan, req, &entry, usability, now)?;
        for d in std::iter::once(first).chain(second) {
            self.inner.stats.store_op(d);
        }
        self.inner.stats.latency(looked);
        Some(r)
    }

    /// The decoded entry under `key` when the store has it at hand, and
    /// how long the store took from `started`.
    fn entry_now(&self, key: &str, started: Instant) -> Option<(StoredResponse, Duration)> {
        let bytes = self.inner.store.get_now(key)?;
        let took = started.elapsed();
        Some((StoredResponse::decode(&bytes).ok()?, took))
    }

    /// How many entries this cache has written (a cheap "did anything land
    /// meanwhile" check).
    pub(crate) fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Acquire)
    }

    /// Joins the coalescing table for the plan's key.
    pub fn lock(&self, plan: &CachePlan) -> Lock {
        self.inner.locks.acquire(plan.key.as_str())
    }

    /// Coalesces across instances sharing the store: takes a lease on the
    /// plan's key (given back when `guard` drops) or, when another instance
    /// holds it, waits for its entry to appear, bounded by `lock_timeout`.
    /// Store failures mean "fetch" (fail-open).
    ///
    /// It also notes the shared store's invalidation counter, so that a
    /// response is not stored if another instance invalidated meanwhile.
    pub async fn lead(
        &self,
        plan: &mut CachePlan,
        req: &RequestView<'_>,
        guard: &mut crate::lock::LockGuard,
    ) -> Lead {
        self.note_store_epoch(plan).await;
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed)
            ^ (SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64)
                << 16;
        let lease_key = format!("{}:lease", plan.key);
        let ttl = self.lock_timeout();
        let deadline = Instant::now() + ttl;
        loop {
            match self
                .guarded("lease", self.inner.store.try_lease(&lease_key, token, ttl))
                .await
            {
                Some(false) => {}
                // Ours, or the store cannot say: fetch.
                _ => {
                    let cache = self.clone();
                    guard.on_release(move || {
                        if let Ok(rt) = tokio::runtime::Handle::try_current() {
                            rt.spawn(async move {
                                cache
                                    .guarded(
                                        "lease",
                                        cache.inner.store.release_lease(&lease_key, token),
                                    )
                                    .await;
                            });
                        }
                    });
                    return Lead::Fetch;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(entry) = self.lookup(plan, req).await {
                self.inner.stats.coalesced();
                return Lead::Found(Box::new(entry));
            }
            if Instant::now() >= deadline {
                return Lead::Fetch;
            }
        }
    }

    /// Notes the shared store's invalidation counter before a fetch, so that
    /// what other instances invalidate meanwhile is not stored afterwards.
    pub(crate) async fn note_store_epoch(&self, plan: &mut CachePlan) {
        plan.store_epoch = self.guarded("epoch", self.inner.store.epoch()).await;
        plan.store_epoch_unknown = plan.store_epoch.is_none();
    }

    /// Decides whether the origin's response may be stored, counting the reason when not.
    pub fn admit(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        resp: &rules::OriginResponse<'_>,
    ) -> Result<StoredResponse, NoCacheReason> {
        match rules::admit(self.policy(plan), req, resp) {
            Ok(entry) => Ok(entry),
            Err(reason) => {
                self.inner.stats.uncacheable(reason);
                tracing::debug!(
                    policy = self.policy(plan).name(),
                    reason = reason.as_str(),
                    "response not stored"
                );
                Err(reason)
            }
        }
    }

    /// The largest body the plan's policy stores.
    pub fn max_size(&self, plan: &CachePlan) -> u64 {
        self.policy(plan).max_size()
    }

    /// Stores `entry` with `body` (compressing it if the policy says so and
    /// the response allows it, see [`compress::may_compress`]) unless an
    /// invalidation ran since the plan was made. Failures are counted and
    /// logged, never returned.
    pub async fn store_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: StoredResponse,
        body: Bytes,
    ) -> bool {
        self.store_body(plan, req, entry, body, true).await
    }

    /// [`HttpCache::store_entry`]; `transform` is false when headers the
    /// entry does not keep (a consumed `Surrogate-Control`) forbade
    /// transformation.
    pub(crate) async fn store_body(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        mut entry: StoredResponse,
        body: Bytes,
        transform: bool,
    ) -> bool {
        entry.body = body;
        entry.compression = BodyEncoding::Identity;
        if let Some(c) = self.policy(plan).compression() {
            if transform && compress::may_compress(&entry.headers) {
                // Large bodies are compressed off the async workers.
                let z = compress::gzip_off_runtime(entry.body.clone(), c.min_size, c.level).await;
                if let Compressed::Gzip(z) = z {
                    self.inner
                        .stats
                        .compressed(entry.body.len() as u64, z.len() as u64);
                    entry.body = Bytes::from(z);
                    entry.compression = BodyEncoding::Gzip;
                }
            }
        }
        self.put_entry(plan, req, entry).await
    }

    /// Stores an entry whose body is ready (as after a revalidation), under the
    /// plan's key or, when it varies, under its variant key with a marker.
    pub async fn put_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        mut entry: StoredResponse,
    ) -> bool {
        let policy = self.policy(plan);
        // The policy's tags, and those the origin gave (Surrogate-Key, ...).
        let mut tags = policy.entry_tags(&plan.params, req.path);
        // The tag unsafe requests to this URL on this host remove.
        tags.push(policy.key_spec().target_tag(req));
        tags.append(&mut entry.tags);
        tags.sort();
        tags.dedup();
        entry.tags = tags;
        if self.invalidated_since(plan, req, &entry.tags).await {
            self.inner.stats.uncacheable(NoCacheReason::Invalidated);
            return false;
        }
        let ttl = entry.storage_ttl();
        let options = PutOptions::new(ttl, req.path)
            .tags(&entry.tags)
            .query(req.query);
        if !entry.vary.is_empty() {
            let mut marker = StoredResponse::new(VARY_MARKER_STATUS, Bytes::new());
            marker.vary = entry.vary.clone();
            marker.freshness_lifetime = ttl;
            let Ok(bytes) = marker.encode() else {
                return false;
            };
            self.guarded(
                "put",
                self.inner.store.put(plan.key.as_str(), bytes, options),
            )
            .await;
        }
        let key = self.entry_key(plan, req, &entry.vary);
        let Ok(bytes) = entry.encode() else {
            tracing::warn!("response too large to encode as an entry");
            return false;
        };
        let mut stored = self
            .guarded("put", self.inner.store.put(key.as_str(), bytes, options))
            .await
            .is_some();
        // Checked again after the put: an invalidation recorded between the
        // first check and the put is seen here, one recorded after the put
        // deletes the entry itself.
        if stored && self.invalidated_since(plan, req, &entry.tags).await {
            self.guarded("delete", self.inner.store.delete(key.as_str()))
                .await;
            self.inner.stats.uncacheable(NoCacheReason::Invalidated);
            stored = false;
        }
        if stored {
            self.inner.stats.set();
            self.inner.writes.fetch_add(1, Ordering::Release);
        }
        stored
    }

    /// The key an entry of `req` lives under: the plan's, or its variant's
    /// when the response varies on request headers (`vary`).
    fn entry_key(&self, plan: &CachePlan, req: &RequestView<'_>, vary: &[String]) -> CacheKey {
        if vary.is_empty() {
            plan.key.clone()
        } else {
            self.policy(plan).key_spec().key(req, vary)
        }
    }

    /// Removes the stored `entry` of `req` (its variant, when it varies).
    pub async fn remove_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
    ) {
        let key = self.entry_key(plan, req, &entry.vary);
        if self
            .guarded("delete", self.inner.store.delete(key.as_str()))
            .await
            == Some(true)
        {
            self.inner.stats.deleted(1);
        }
    }

    /// Builds the response for `req` from `entry`: a 304 when the request's
    /// conditionals match, the stored gzip for clients that accept it, the
    /// identity body otherwise. `None` if a compressed body does not decode.
    pub fn respond(
        &self,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        x_cache: XCache,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        self.respond_after(entry, req, x_cache, now, None)
    }

    /// [`HttpCache::respond`], for a stale entry standing in for an origin
    /// that `failed` (stale-if-error): `Cache-Status` says the request was
    /// forwarded and what came back.
    pub(crate) fn respond_after(
        &self,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        x_cache: XCache,
        now: SystemTime,
        failed: Option<OriginFailure>,
    ) -> Option<CachedResponse> {
        let age_d = entry.age(now);
        let age = age_d.as_secs().to_string();
        let status = self.inner.cache_status.as_ref().map(|name| {
            // Remaining freshness, negative once stale (RFC 9211 2.2).
            let fresh = i64::try_from(entry.freshness_lifetime.as_secs()).unwrap_or(i64::MAX);
            let ttl = fresh.saturating_sub(i64::try_from(age_d.as_secs()).unwrap_or(i64::MAX));
            let v = match (x_cache, failed) {
                // A revalidated entry: the origin said 304.
                (XCache::Expired, _) => format!("{name}; fwd=stale; fwd-status=304"),
                (_, Some(OriginFailure::Status(s))) => {
                    format!("{name}; fwd=stale; fwd-status={s}; ttl={ttl}")
                }
                (_, Some(OriginFailure::Unreachable)) => {
                    format!("{name}; fwd=stale; ttl={ttl}; detail=origin-unreachable")
                }
                _ => format!("{name}; hit; ttl={ttl}"),
            };
            ("cache-status".into(), Bytes::from(v))
        });
        // The representation this request gets: the gzip the cache made
        // for clients that take it, unless the response or the request
        // forbids transformation; the origin's identity bytes otherwise.
        let varies = varies_by_encoding(entry);
        let gzip = varies && takes_cache_gzip(req);
        let mut headers: Vec<(FieldName, Bytes)> = Vec::with_capacity(entry.headers.len() + 5);
        let etag = match gzip {
            true => entry.etag.as_deref().and_then(compress::gzip_etag),
            false => entry.etag.clone(),
        };
        if rules::not_modified_as(req, entry, etag.as_deref()) {
            const KEEP: [&str; 7] = [
                "cache-control",
                "content-location",
                "date",
                "etag",
                "expires",
                "last-modified",
                "vary",
            ];
            representation_headers(entry, gzip, varies, |n| KEEP.contains(&n), &mut headers);
            headers.push(("age".into(), Bytes::from(age)));
            headers.push((
                "x-cache".into(),
                Bytes::from_static(x_cache.as_str().as_bytes()),
            ));
            headers.extend(status);
            return Some(CachedResponse {
                status: 304,
                headers,
                body: CachedBody::empty(),
            });
        }
        let head = req.method.eq_ignore_ascii_case("HEAD");
        let (body, len) = if entry.compression == BodyEncoding::Gzip && !gzip {
            // HEAD needs only the length, which the gzip trailer gives.
            let decoded = match head {
                true => {
                    compress::gzip_content_length(&entry.body).map(|n| (CachedBody::empty(), n))
                }
                false => self.gunzipped(entry).map(|b| {
                    let n = b.len();
                    (b, n)
                }),
            };
            let Some(decoded) = decoded else {
                self.inner.stats.corrupt_entry();
                tracing::warn!("stored gzip body does not decompress");
                return None;
            };
            decoded
        } else {
            if gzip {
                headers.push(("content-encoding".into(), Bytes::from_static(b"gzip")));
            }
            (
                CachedBody::from(entry.body.clone()),
                entry.body.len() as u64,
            )
        };
        representation_headers(entry, gzip, varies, |_| true, &mut headers);
        headers.push(("content-length".into(), Bytes::from(len.to_string())));
        headers.push(("age".into(), Bytes::from(age)));
        headers.push((
            "x-cache".into(),
            Bytes::from_static(x_cache.as_str().as_bytes()),
        ));
        headers.extend(status);
        let body = if head { CachedBody::empty() } else { body };
        Some(CachedResponse {
            status: entry.status,
            headers,
            body,
        })
    }

    /// The identity body of a gzip entry the cache stored, as long as the
    /// gzip trailer says: decompressed at once when small, otherwise as it
    /// is read (see [`CachedBody`]). `None` when it is not gzip or does
    /// not decompress.
    fn gunzipped(&self, entry: &StoredResponse) -> Option<CachedBody> {
        let len = compress::gzip_content_length(&entry.body)?;
        if len > compress::INLINE_LIMIT as u64 {
            let chunks = compress::GunzipChunks::new(entry.body.clone())?;
            return Some(CachedBody {
                kind: BodyKind::Gunzip {
                    chunks: Box::new(chunks),
                    cache: self.clone(),
                },
            });
        }
        let body = gunzip(&entry.body, len).ok()?;
        (body.len() as u64 == len).then(|| Bytes::from(body).into())
    }

    /// The headers the cache adds to a response from the origin, each to
    /// be set (replacing the origin's): `X-Cache` and, unless turned off,
    /// RFC 9211 `Cache-Status` (`uip-cache; fwd=uri-miss; stored`,
    /// `fwd=bypass; detail=no_policy`, ...). `upstream` are the response's
    /// own `Cache-Status` values, from caches nearer the origin: ours is
    /// added after them, as RFC 9211 asks.
    pub fn forward_headers<'u>(
        &self,
        f: Forward,
        upstream: impl IntoIterator<Item = &'u [u8]>,
    ) -> impl Iterator<Item = (&'static str, Bytes)> {
        let status = self.inner.cache_status.as_ref().map(|name| {
            let mut v = String::new();
            for u in upstream {
                // Values that are not text are dropped, not passed on.
                if let Some(u) = std::str::from_utf8(u).ok().map(str::trim) {
                    if !u.is_empty()
                        && u.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                        && closed_quotes(u)
                        && !u.ends_with(',')
                    {
                        v.push_str(u);
                        v.push_str(", ");
                    }
                }
            }
            v.push_str(name);
            v.push_str("; fwd=");
            v.push_str(f.fwd());
            if f.stored {
                v.push_str("; stored");
            }
            if let Some(d) = f.detail {
                v.push_str("; detail=");
                v.push_str(d.as_str());
            }
            ("cache-status", Bytes::from(v))
        });
        std::iter::once(("x-cache", Bytes::from_static(f.x_cache.as_str().as_bytes())))
            .chain(status)
    }

    /// The `Cache-Status` of a response the cache makes up itself (the 504
    /// to `only-if-cached`): `detail` says why.
    pub(crate) fn own_status(&self, detail: &str) -> Option<(FieldName, Bytes)> {
        self.inner.cache_status.as_ref().map(|name| {
            (
                "cache-status".into(),
                Bytes::from(format!("{name}; detail={detail}")),
            )
        })
    }

    /// Remembers that `plan`'s key got a response that cannot be stored, so
    /// that its next requests go to the origin at once (hit-for-miss). Only
    /// reasons that come from the response: a request's own `Authorization`
    /// or `Cookie`, or a transient failure, says nothing about the next one.
    ///
    /// Not for a request with `Authorization`, `Cookie` or `Range` (its
    /// answer may be personal or partial), and not for a status (an origin
    /// error passes). A mark is not renewed while it lasts, so a key that
    /// keeps failing to store is queued again at least once a period. The
    /// table holds keys (a prefix and a SHA-256), at most 100 000.
    pub(crate) fn remember_uncacheable(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        reason: NoCacheReason,
    ) {
        let by_response = matches!(
            reason,
            NoCacheReason::ResponseNoStore
                | NoCacheReason::Private
                | NoCacheReason::SetCookie
                | NoCacheReason::VaryStar
                | NoCacheReason::TooLarge
                | NoCacheReason::NoFreshness
                | NoCacheReason::Streaming
        );
        let personal = ["authorization", "cookie", "range"]
            .iter()
            .any(|h| req.headers.first(h).is_some());
        if let (true, false, Some(u)) = (by_response, personal, &self.inner.uncacheable) {
            u.entry(plan.key.as_str().to_owned()).or_insert(reason);
        }
    }

    /// The key stores again: forget that it did not.
    pub(crate) fn forget_uncacheable(&self, plan: &CachePlan) {
        if let Some(u) = &self.inner.uncacheable {
            u.invalidate(plan.key.as_str());
        }
    }

    /// Whether `plan`'s key recently got a response that cannot be stored.
    pub(crate) fn is_uncacheable(&self, plan: &CachePlan) -> bool {
        self.inner
            .uncacheable
            .as_ref()
            .is_some_and(|u| u.contains_key(plan.key.as_str()))
    }

    /// Counts a request's outcome. Bypasses are counted with their reason by
    /// [`CacheStats::bypass`]; revalidations by [`CacheStats::revalidation`].
    pub fn count(&self, plan: &CachePlan, outcome: XCache) {
        let stats = &self.inner.stats;
        match outcome {
            XCache::Hit => stats.policy_hit(plan.policy),
            XCache::Stale => stats.policy_stale(plan.policy),
            XCache::Miss | XCache::Expired => stats.policy_miss(plan.policy),
            XCache::Bypass => stats.policy_bypass(plan.policy),
        }
    }

    /// Remembers an invalidation before it runs, here and for the instances
    /// sharing the store, so that fetches in flight for what it removes are
    /// not stored when they arrive.
    ///
    /// A failed shared record is returned (after the caller has deleted
    /// anyway): instances sharing the store may then keep a fetch that was
    /// in flight, so webhook senders should see an error and retry.
    async fn note(&self, what: Invalidation) -> Result<(), StoreError> {
        let line = what.to_line();
        {
            let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let seq = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            recent.push_back((seq, what));
            while recent.len() > RECENT_INVALIDATIONS {
                recent.pop_front();
            }
        }
        // Part of the purge: bounded by its deadline, not the request path's.
        let started = Instant::now();
        let recorded = tokio::time::timeout(
            self.purge_timeout(),
            self.inner.store.record_invalidation(&line),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::from_kind(crate::store::StoreErrorKind::Timeout)));
        self.inner.stats.store_op(started.elapsed());
        recorded.inspect_err(|e| {
            self.inner.stats.store_error();
            tracing::warn!(error = %e, "the shared invalidation record failed: instances sharing the store may store a fetch that was in flight");
        })
    }

    /// Whether an invalidation that concerns this response (its path, query
    /// or tags) ran since the plan was made, here or on an instance sharing
    /// the store. When the record no longer reaches back that far, assume so.
    async fn invalidated_since(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        tags: &[String],
    ) -> bool {
        let concerns = |inv: &Invalidation| inv.concerns(req.path, req.query, tags);
        if self.inner.epoch.load(Ordering::Acquire) != plan.epoch {
            let recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let since: Vec<&(u64, Invalidation)> =
                recent.iter().filter(|(seq, _)| *seq > plan.epoch).collect();
            let complete = since.first().is_some_and(|(seq, _)| *seq == plan.epoch + 1);
            if !complete || since.iter().any(|(_, inv)| concerns(inv)) {
                return true;
            }
        }
        if plan.store_epoch_unknown {
            return true;
        }
        let Some(before) = plan.store_epoch else {
            return false;
        };
        match self.guarded("epoch", self.inner.store.epoch()).await {
            Some(now) if now == before => false,
            Some(_) => match self
                .guarded(
                    "invalidations",
                    self.inner.store.invalidations_since(before),
                )
                .await
            {
                Some(Some(lines)) => lines
                    .iter()
                    .any(|l| Invalidation::from_line(l).is_none_or(|inv| concerns(&inv))),
                _ => true,
            },
            None => true,
        }
    }

    /// Removes every entry with any of `tags`. A purge cut short (see
    /// `store.purge_timeout`) or whose shared record failed is an error
    /// that says how many entries went ([`StoreError::partial`]).
    pub async fn invalidate_tags(&self, tags: &[String]) -> Result<u64, StoreError> {
        let noted = self.note(Invalidation::Tags(tags.to_vec())).await;
        let n = self.counted(self.inner.store.invalidate_tags(tags).await)?;
        noted.map(|()| n).map_err(|e| e.with_partial(n))
    }

    /// Removes every entry matching a URL pattern (see
    /// [`HttpCache::invalidate_tags`] for errors).
    pub async fn invalidate_pattern(&self, pattern: &UrlPattern) -> Result<u64, StoreError> {
        let noted = self.note(Invalidation::Pattern(pattern.clone())).await;
        let n = self.counted(self.inner.store.invalidate_pattern(pattern).await)?;
        noted.map(|()| n).map_err(|e| e.with_partial(n))
    }

    /// Counts the entries a purge removed, those of one cut short included.
    fn counted(&self, purged: Result<u64, StoreError>) -> Result<u64, StoreError> {
        let n = match &purged {
            Ok(n) => *n,
            Err(e) => e.partial().unwrap_or(0),
        };
        self.inner.stats.deleted(n);
        purged
    }

    /// The purge of one unsafe request's target, in a task of its own
    /// bounded by `store.purge_timeout`: neither a slow store nor the
    /// response going out cuts it part-way. The response waits for it at
    /// most `store.timeout`; how many entries went, when it was done by
    /// then. Store failures are counted and logged.
    async fn purge_unsafe_targets(&self, tags: Vec<String>) -> u64 {
        let cache = self.clone();
        let purge = async move {
            // Deleted even when the shared record failed (RFC 9111 4.4: the
            // target must go); the failure is counted and logged.
            let _ = cache.note(Invalidation::Tags(tags.clone())).await;
            let purged = tokio::time::timeout(
                cache.purge_timeout(),
                cache.inner.store.invalidate_tags(&tags),
            )
            .await
            .unwrap_or_else(|_| Err(StoreError::from_kind(crate::store::StoreErrorKind::Timeout)));
            let purged = cache.counted(purged);
            purged.unwrap_or_else(|e| {
                cache.inner.stats.store_error();
                tracing::warn!(error = %e, tags = ?tags, "the purge after an unsafe request failed");
                e.partial().unwrap_or(0)
            })
        };
        let permit = self.inner.unsafe_purges.clone().try_acquire_owned();
        let (rt, permit) = match (tokio::runtime::Handle::try_current(), permit) {
            (Ok(rt), Ok(permit)) => (rt, permit),
            // No runtime, or too many purges in tasks already: this request
            // waits for its own purge.
            _ => return purge.await,
        };
        let task = rt.spawn(async move {
            let n = purge.await;
            drop(permit);
            n
        });
        match tokio::time::timeout(self.store_timeout(), task).await {
            Ok(Ok(n)) => n,
            _ => 0,
        }
    }

    /// The rewrite of a soft purge: stale from now, servable stale (while
    /// one request revalidates) for its own stale-while-revalidate window or
    /// `defaults.soft_purge_grace`, whichever is longer.
    fn soft_rewrite(&self) -> impl Fn(&Bytes) -> Option<(Bytes, Duration)> + Send + Sync + 'static {
        let grace = self.inner.config.defaults.soft_purge_grace.get();
        move |bytes: &Bytes| {
            let mut e = StoredResponse::decode(bytes).ok()?;
            let now = SystemTime::now();
            e.freshness_lifetime = e.freshness_lifetime.min(e.age(now));
            e.stale_while_revalidate = e.stale_while_revalidate.max(grace);
            let ttl = e.storage_ttl();
            Some((e.encode().ok()?, ttl))
        }
    }

    /// Soft purge by tags: the entries are marked stale, not removed (see
    /// `defaults.soft_purge_grace`). A store that cannot rewrite entries
    /// removes them; the flag says which happened (every store of this
    /// workspace rewrites).
    pub async fn soft_invalidate_tags(&self, tags: &[String]) -> Result<(u64, bool), StoreError> {
        let rewrite = self.soft_rewrite();
        // A fetch in flight may carry the old answer: it must not store it
        // as fresh over the purge, as for a hard purge.
        let noted = self.note(Invalidation::Tags(tags.to_vec())).await;
        match self
            .inner
            .store
            .soft_invalidate_tags(tags, &rewrite)
            .await?
        {
            Some(n) => noted.map(|()| (n, true)).map_err(|e| e.with_partial(n)),
            None => Ok((self.invalidate_tags(tags).await?, false)),
        }
    }

    /// Soft purge by URL pattern (see [`HttpCache::soft_invalidate_tags`]).
    pub async fn soft_invalidate_pattern(
        &self,
        pattern: &UrlPattern,
    ) -> Result<(u64, bool), StoreError> {
        let rewrite = self.soft_rewrite();
        let noted = self.note(Invalidation::Pattern(pattern.clone())).await;
        match self
            .inner
            .store
            .soft_invalidate_pattern(pattern, &rewrite)
            .await?
        {
            Some(n) => noted.map(|()| (n, true)).map_err(|e| e.with_partial(n)),
            None => Ok((self.invalidate_pattern(pattern).await?, false)),
        }
    }

    /// Removes what a webhook event names (see
    /// [`crate::invalidate::plan_for_event`]); what it named and how many
    /// entries went.
    pub async fn invalidate_event(
        &self,
        event: &str,
        entity_id: Option<&str>,
        entity_type: Option<&str>,
    ) -> Result<(InvalidationPlan, u64), InvalidateError> {
        let plan = plan_for_event(
            &self.inner.config,
            &self.inner.policies,
            event,
            entity_id,
            entity_type,
        )
        .map_err(InvalidateError::BadRequest)?;
        // An error says how many entries went in all, earlier steps included.
        let after = |n: u64| {
            move |e: StoreError| {
                let done = n + e.partial().unwrap_or(0);
                e.with_partial(done)
            }
        };
        let mut n = 0;
        if !plan.tags.is_empty() {
            n += self.invalidate_tags(&plan.tags).await.map_err(after(n))?;
        }
        for p in &plan.patterns {
            n += self.invalidate_pattern(p).await.map_err(after(n))?;
        }
        Ok((plan, n))
    }

    /// What an unsafe request (POST, PUT, PATCH, DELETE, ...) will
    /// invalidate if it succeeds, noted from its view before it goes to the
    /// origin (the view holds the scheme and host the key holds); `None` when
    /// it invalidates nothing: a safe method, `invalidate_on_unsafe: false`,
    /// or a POST to a policy that caches POST by its body (a query, such as
    /// SPARQL or GraphQL, not a write). Pass it to
    /// [`HttpCache::invalidate_after_unsafe`] with the origin's answer.
    pub fn unsafe_request(&self, req: &RequestView<'_>) -> Option<UnsafeRequest> {
        if !self.inner.config.defaults.invalidate_on_unsafe || !rules::is_unsafe(req.method) {
            return None;
        }
        if self
            .inner
            .policies
            .find(req.path, req.query)
            .is_some_and(|m| {
                m.policy().key_spec().uses_body() && m.policy().allows_method(req.method)
            })
        {
            return None;
        }
        Some(UnsafeRequest {
            scheme: req.scheme.map(str::to_owned),
            authority: req.authority.map(str::to_owned),
            path: req.path.to_owned(),
            query: req.query.map(str::to_owned),
        })
    }

    /// After an unsafe request succeeded (2xx, 3xx), removes the entries of
    /// its target URI and of the `Location` / `Content-Location` values
    /// (`locations`, as the origin sent them) on the target's origin (RFC 9111
    /// section 4.4), and returns how many went.
    ///
    /// Only the request's own host is touched when keys hold the host
    /// (`key.include_host`, the default): the entries are found by their
    /// [`KeySpec::target_tag`](crate::KeySpec::target_tag), so a write on
    /// `attacker.example` never removes `victim.example`'s entries, and a
    /// `Location` naming another origin is ignored. Fetches in flight for
    /// these entries are not stored when they arrive. Store failures are
    /// logged and counted.
    pub async fn invalidate_after_unsafe(
        &self,
        req: &UnsafeRequest,
        status: u16,
        locations: &[&str],
    ) -> u64 {
        if !(200..400).contains(&status) {
            return 0;
        }
        let tags = self.unsafe_targets(req, locations);
        self.inner.stats.invalidation(InvalidationKind::Unsafe);
        if tags.is_empty() {
            return 0;
        }
        self.purge_unsafe_targets(tags).await
    }

    /// The target tags an unsafe request's success removes: its own target's
    /// and those of the same-origin locations, each under the policy its
    /// URL falls in (no policy: nothing of it is cached).
    fn unsafe_targets(&self, req: &UnsafeRequest, locations: &[&str]) -> Vec<String> {
        let none: [(&str, &str); 0] = [];
        let tag = |path: &str, query: Option<&str>| {
            let m = self.inner.policies.find(path, query)?;
            let view = RequestView::new("GET", path, &none)
                .query(query)
                .authority(req.authority.as_deref());
            Some(m.policy().key_spec().target_tag(&view))
        };
        let mut tags: Vec<String> = tag(&req.path, req.query.as_deref()).into_iter().collect();
        for l in locations {
            let Some(url) = rules::same_origin_target(
                l,
                req.scheme.as_deref(),
                req.authority.as_deref(),
                &req.path,
            ) else {
                continue;
            };
            let (path, query) = match url.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (url.as_str(), None),
            };
            tags.extend(tag(path, query));
        }
        tags.sort();
        tags.dedup();
        tags
    }
}

/// An unsafe request on its way to the origin, as
/// [`HttpCache::unsafe_request`] noted it: its scheme, host, path and query.
#[derive(Clone, Debug)]
pub struct UnsafeRequest {
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
}

/// Whether the representation an entry gives depends on `Accept-Encoding`:
/// it holds a gzip body the cache made, which goes out as it is or
/// decompressed. An entry whose headers forbid transformation (the origin
/// said `no-transform` in a 304 after the body was compressed, or an entry
/// written before the cache honoured it) goes out decompressed to everyone.
fn varies_by_encoding(entry: &StoredResponse) -> bool {
    entry.compression == BodyEncoding::Gzip && !compress::forbids_transform(&entry.headers)
}

/// Whether `req` takes a gzip body the cache made, when the entry allows
/// one ([`varies_by_encoding`]): the client accepts gzip and does not ask
/// for the content untransformed (`Cache-Control: no-transform`, RFC 9111
/// section 5.2.1.6). The others get the origin's identity bytes.
fn takes_cache_gzip(req: &RequestView<'_>) -> bool {
    rules::accepts_gzip(req.headers) && !rules::request_cache_control(req.headers).no_transform
}

/// Appends the entry's headers that `keep` selects, as the representation
/// sent says: for the cache's gzip (`gzip`), its own validator
/// ([`compress::gzip_etag`]), and neither `Accept-Ranges` nor digests
/// (they are about the origin's bytes, not these; a 304 may have merged
/// one in after the body was compressed); when the representation depends on
/// `Accept-Encoding` (`varies`), a `Vary` that names it, merged with the
/// origin's.
fn representation_headers(
    entry: &StoredResponse,
    gzip: bool,
    varies: bool,
    keep: impl Fn(&str) -> bool,
    out: &mut Vec<(FieldName, Bytes)>,
) {
    for (n, v) in &entry.headers {
        if !keep(n) {
            continue;
        }
        match &**n {
            "vary" if varies => {}
            "accept-ranges" | "content-digest" | "repr-digest" | "digest" | "content-md5"
                if gzip => {}
            "etag" if gzip => out.extend(compress::gzip_etag(v).map(|t| (n.clone(), t))),
            _ => out.push((n.clone(), v.clone())),
        }
    }
    if varies {
        let mut vary = entry.vary.join(", ");
        if !entry.vary.iter().any(|v| v == "accept-encoding") {
            if !vary.is_empty() {
                vary.push_str(", ");
            }
            vary.push_str("accept-encoding");
        }
        out.push(("vary".into(), Bytes::from(vary)));
    }
}

impl fmt::Debug for HttpCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("store", &self.inner.store)
            .field("policies", &self.inner.policies.len())
            .field("locks", &self.inner.locks)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::closed_quotes;
    use proptest::prelude::*;

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    #[test]
    fn upstream_members_with_open_strings_are_recognised() {
        assert!(closed_quotes("cdn; hit; ttl=40"));
        assert!(closed_quotes(r#"cdn; detail="a, \"b\"""#));
        assert!(!closed_quotes(r#"cdn; detail="x"#));
        assert!(!closed_quotes(r#"cdn; detail="x\""#));
    }

    proptest! {
        #[test]
        fn a_quoted_string_is_closed_and_one_more_quote_opens_it(s in "[ -~]{0,40}") {
            let q = quote(&s);
            let closed = format!("a; detail={q}");
            let open = format!("a; detail={q}; b=\"");
            prop_assert!(closed_quotes(&closed));
            prop_assert!(!closed_quotes(&open));
        }
    }
}
