//! [`HttpCache`]: the one object every adapter builds from a config. It holds
//! the store, the [`Settings`] it runs on (the compiled policies, rules,
//! header names and limits), the statistics and the coalescing table, and it
//! makes every decision of the request path, so the Tower layer, the
//! actix-web middleware and the server behave alike.
//!
//! One concern a file: construction ([`build`]), planning ([`plan`]), the
//! fail-open store guard and admin probes ([`guard`]), lookup ([`lookup`];
//! what a key holds, an entry or a `Vary` marker, in [`stored`]),
//! the request protocol ([`begin`], [`fetch`], [`recording`]), coalescing
//! across instances ([`lease`]), admission and compression on store
//! ([`write`]), responses, 304s and Cache-Status ([`respond`], [`body`]),
//! ranges of complete 200s ([`partial`]), a stored part completed by the
//! origin's rest ([`completion`]), a POST answer stored for GETs of
//! its own URL ([`content_location`]), the
//! invalidation fence ([`fence`]), hit-for-miss ([`hit_for_miss`]), purges
//! ([`purge`]) and the invalidation after unsafe requests
//! ([`unsafe_request`]).

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::clock::Clock;
use crate::config::CacheConfig;
use crate::forwarding::{ClientOrigin, Connection};
use crate::invalidate::Invalidation;
use crate::lock::LockTable;
use crate::settings::Settings;
use crate::stats::{CacheStats, NoCacheReason};
use crate::store::Store;

mod begin;
mod body;
mod build;
mod completion;
mod content_location;
mod fence;
mod fetch;
mod guard;
mod hit_for_miss;
mod lease;
mod lookup;
mod partial;
mod plan;
mod purge;
mod range_reply;
mod recording;
mod respond;
mod settings;
mod stored;
mod unsafe_request;
mod write;

pub use begin::Begin;
pub use body::CachedBody;
pub use build::HttpCacheBuilder;
pub(crate) use content_location::PostTarget;
pub use fetch::{After, FetchTicket, OriginHeaders, OwnedRequest};
pub use lookup::{AtHandOrLater, Later, LaterAnswer, Looked, Pass};
pub use plan::{CachePlan, Plan, Start};
pub use purge::InvalidateError;
pub use range_reply::RangeReply;
pub use recording::Recording;
pub(crate) use respond::forward_headers;
pub use respond::CachedResponse;
pub use unsafe_request::UnsafeRequest;

/// The shared cache handle; cheap to clone.
///
/// The request path as a small protocol every adapter follows, so that the
/// Tower layer, the actix-web middleware and the server behave alike and
/// adapters only translate types:
///
/// 1. [`HttpCache::plan`]: bypass, or handle with the cache.
/// 2. [`HttpCache::begin`]: look up, coalesce, decide. The answer is a
///    response to send ([`Begin::Respond`]), one to send while the adapter
///    refreshes the entry in the background ([`Begin::RespondAndRefresh`]),
///    or a [`FetchTicket`] for the origin ([`Begin::Fetch`]).
/// 3. The adapter applies [`FetchTicket::origin_header_changes`] to the
///    request and calls the origin, then reports the outcome:
///    [`FetchTicket::origin_failed`] or [`FetchTicket::origin_responded`],
///    which says whether to send a stored response, pass the origin's
///    response through, or stream it while recording it ([`After::Record`]),
///    or, once at most, to send the request again ([`After::Refetch`]: the
///    cache asked for the rest of a stored part, and the answer does not fit
///    it; [`FetchTicket::may_refetch`] says beforehand whether it can be).
/// 4. While a recorded body streams, the adapter feeds it to the
///    [`Recording`], which stores the entry when the body ends.
///
/// A cache is built with [`HttpCache::builder`] from a config, or with
/// [`HttpCache::from_settings`] from settings compiled already (see
/// [`HttpCacheBuilder`]); the purge API ([`HttpCache::invalidate_tags`] and
/// its kin) and the admin side's probes ([`HttpCache::store_health`]) work on
/// the same handle.
///
/// The cache runs on one [`Settings`] at a time ([`HttpCache::settings`]),
/// which [`HttpCache::replace_settings`] swaps atomically: a request keeps
/// the settings it began with ([`HttpCache::plan`]) to its end.
///
/// # Example
///
/// One request through the protocol, as an adapter drives it:
///
/// ```
/// use bytes::Bytes;
/// use uip_cache_core::{After, Begin, CacheConfig, HttpCache, Plan, RequestView};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
/// let cache = HttpCache::builder(&config).build()?;
///
/// let headers = [("host", "api.example")];
/// let req = RequestView::new("GET", "/items", &headers).authority(Some("api.example"));
/// let Plan::Cache(plan) = cache.plan(&req) else {
///     unreachable!("the policy matches")
/// };
/// let Begin::Fetch(ticket) = cache.begin(plan, &req, Vec::new).await else {
///     unreachable!("nothing is stored yet")
/// };
/// // The adapter applies `ticket.origin_header_changes()` and asks the origin.
/// let body = Bytes::from_static(b"[]");
/// let origin_headers = vec![("content-length".into(), Bytes::from_static(b"2"))];
/// match ticket.origin_responded(200, origin_headers).await {
///     After::Record { mut recording, .. } => {
///         // As the body streams to the client:
///         recording.chunk(&body);
///         // Stores the entry: here, or in a task once the store has to wait.
///         recording.ended();
///     }
///     other => unreachable!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct HttpCache {
    inner: Arc<Inner>,
    /// The settings of one request, when this handle is pinned to them
    /// ([`HttpCache::pinned`]); `None`: the settings the cache runs on.
    pinned: Option<Arc<Settings>>,
}

struct Inner {
    /// What the cache runs on; a request takes it once, when planned.
    settings: ArcSwap<Settings>,
    /// Replacements of `settings` one at a time (with the hit-for-miss
    /// table that goes with them).
    replacing: std::sync::Mutex<()>,
    store: Arc<dyn Store>,
    stats: CacheStats,
    locks: LockTable,
    epoch: AtomicU64,
    /// The last invalidations of this instance, with their sequence numbers.
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, Invalidation)>>,
    /// Entries written so far: a request that became a key's leader after a
    /// store finished during its lookup looks again before fetching.
    writes: AtomicU64,
    /// Keys whose last response could not be stored, with the end of their
    /// window on the clock: their requests go to the origin at once instead
    /// of queueing (hit-for-miss). None while `defaults.hit_for_miss` is 0.
    uncacheable: ArcSwapOption<Uncacheable>,
    /// Keys whose representation was found larger than their policy's
    /// `range_passthrough_above`, with the end of their window: their
    /// `Range` requests that miss go to the origin with the `Range`.
    large: moka::sync::Cache<String, std::time::Instant>,
    /// Hashes of the plain keys this instance stored a part under
    /// ([`CacheKey::part`](crate::CacheKey::part)), bounded by count: a
    /// whole GET that misses looks for a part to complete only when its
    /// key is here, so an ordinary miss costs no extra store round trip.
    parts: moka::sync::Cache<u64, ()>,
    /// Where the cache reads the time its decisions depend on.
    clock: Clock,
    /// Marks the refreshes this cache sends back through the app.
    refresh_token: crate::refresh::RefreshToken,
    /// Purges after unsafe requests that may run in tasks of their own at
    /// once; past it the request waits for its purge (back-pressure on the
    /// writer, not tasks without bound while the store is slow).
    unsafe_purges: Arc<tokio::sync::Semaphore>,
    /// The log lines of store failures, which a store that is down would
    /// have every request write: at most one a second of each kind.
    quiet: QuietLines,
}

/// The log lines a store outage repeats (see [`crate::quiet`]).
#[derive(Debug, Default)]
struct QuietLines {
    /// A request path's store call failed.
    failed: crate::quiet::Quiet,
    /// A request path's store call timed out.
    timed_out: crate::quiet::Quiet,
    /// A stored gzip body did not decompress (every request for it).
    corrupt: crate::quiet::Quiet,
    /// The purge after an unsafe request failed.
    purge: crate::quiet::Quiet,
    /// The shared invalidation record could not be written.
    record: crate::quiet::Quiet,
}

/// The hit-for-miss table: a key, and why its last response could not be
/// stored with the end of its mark; with the window its marks are made for
/// (`defaults.hit_for_miss` of the settings that made the table), so that a
/// mark is never made with another window than its table's.
struct Uncacheable {
    window: Duration,
    marks: moka::sync::Cache<String, (NoCacheReason, std::time::Instant)>,
}

impl HttpCache {
    /// The config of the settings the cache runs on now.
    pub fn config(&self) -> Arc<CacheConfig> {
        self.settings().shared_config().clone()
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

    /// The scheme and host a request's key holds and the forwarding headers
    /// an adapter removes before the application sees it, from the facts
    /// of its connection, by the settings the cache runs on now: see
    /// [`TrustedProxies::client_origin`](crate::forwarding::TrustedProxies::client_origin).
    pub fn client_origin<'h>(
        &self,
        conn: &Connection,
        target_authority: Option<&'h str>,
        headers: &'h dyn crate::request::HeaderSource,
    ) -> ClientOrigin<'h> {
        self.settings()
            .trusted_proxies()
            .client_origin(conn, target_authority, headers)
    }

    /// The clock the cache decides by ([`HttpCacheBuilder::clock`]).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    /// How long coalesced requests wait for the leader, by the settings the
    /// cache runs on now.
    pub fn lock_timeout(&self) -> Duration {
        self.settings().lock_timeout()
    }

    fn store_timeout(&self) -> Duration {
        self.settings().store_timeout()
    }

    fn purge_timeout(&self) -> Duration {
        self.settings().purge_timeout()
    }
}

impl fmt::Debug for HttpCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("store", &self.inner.store)
            .field("policies", &self.inner.settings.load().policies().len())
            .field("locks", &self.inner.locks)
            .field("clock", &self.inner.clock)
            .finish()
    }
}
