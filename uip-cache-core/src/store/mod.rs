//! Where entries live: the [`Store`] trait and the in-memory [`MemoryStore`].
//!
//! The trait is object-safe (`Arc<dyn Store>`), so a config can pick the store
//! at run time. Stores deal in encoded bytes; core encodes and decodes
//! [`StoredResponse`](crate::StoredResponse)s.

mod memory;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

pub use memory::MemoryStore;

use crate::pattern::UrlPattern;

/// The future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What is stored with an entry besides its bytes.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct PutOptions<'a> {
    /// How long the store keeps the entry.
    pub ttl: Duration,
    /// Tags the entry can be invalidated by.
    pub tags: &'a [String],
    /// The request's path, indexed for URL-pattern invalidation.
    pub path: &'a str,
    /// The request's raw query, matched against pattern query constraints.
    pub query: Option<&'a str>,
}

impl<'a> PutOptions<'a> {
    /// Options for an entry at `path` kept for `ttl`, without tags or query.
    pub fn new(ttl: Duration, path: &'a str) -> Self {
        PutOptions {
            ttl,
            tags: &[],
            path,
            query: None,
        }
    }

    /// Sets the tags.
    #[must_use]
    pub fn tags(mut self, tags: &'a [String]) -> Self {
        self.tags = tags;
        self
    }

    /// Sets the raw query.
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }
}

/// Rewrites one stored entry for a soft purge: its new bytes and how long to
/// keep them, or `None` to leave it as it is.
pub type Rewrite<'a> = dyn Fn(&Bytes) -> Option<(Bytes, Duration)> + Send + Sync + 'a;

/// A place to keep cache entries.
///
/// Implementations must make tag and URL-pattern invalidation cost time
/// proportional to the entries they look at under the tag or under the
/// pattern's literal path prefix, never to the size of the whole store.
/// `core`'s `conformance` feature has a suite every implementation should pass.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// The bytes under `key`, if any and not expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;

    /// The bytes under `key` when the store has them at hand without
    /// waiting (a memory store, a tiered store's first level); `None` means
    /// only [`Store::get`] can tell. Front-ends answer hits found this way
    /// without a future of their own. The default has nothing at hand.
    fn get_now(&self, key: &str) -> Option<Bytes> {
        let _ = key;
        None
    }

    /// Stores `value` under `key`, replacing any entry and its tags.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()>;

    /// Removes `key`; whether it was there.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;

    /// Removes every entry carrying any of `tags`; how many were removed.
    /// A store that pages through its entries bounds the whole purge by
    /// `store.purge_timeout` and, when it stops part-way, fails with the
    /// count of what it removed ([`StoreError::with_partial`]); running the
    /// purge again must finish the work.
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64>;

    /// Removes every entry whose path and query match `pattern`; how many.
    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64>;

    /// Soft purge: rewrites (instead of removing) every entry carrying any of
    /// `tags`; how many were rewritten, or `None` when the store cannot (the
    /// caller removes them instead).
    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let _ = (tags, rewrite);
        Box::pin(async { Ok(None) })
    }

    /// Soft purge of the entries matching `pattern` (see
    /// [`Store::soft_invalidate_tags`]).
    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let _ = (pattern, rewrite);
        Box::pin(async { Ok(None) })
    }

    /// Number of entries (may be approximate for remote stores), the `keys_count` of health and metrics.
    fn keys_count(&self) -> StoreFuture<'_, u64>;

    /// Memory used and available.
    fn memory(&self) -> StoreFuture<'_, MemoryUsage>;

    /// Whether the store is usable.
    fn health(&self) -> StoreFuture<'_, StoreHealth>;

    /// A counter every recorded invalidation raises, shared by all instances
    /// using the store. Stores local to one process return 0 (the cache's
    /// own log covers them).
    fn epoch(&self) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }

    /// Records an invalidation (one line, see
    /// [`Invalidation::to_line`](crate::invalidate::Invalidation::to_line))
    /// for the other instances sharing the store, raising the epoch. A
    /// store may bound what it keeps: it may record a wider invalidation
    /// (one concerning at least what `line` concerns), or none at all so
    /// long as [`Store::invalidations_since`] then answers `None` for the
    /// epochs before it, never a narrower one.
    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        let _ = line;
        Box::pin(async { Ok(()) })
    }

    /// The invalidations recorded since `epoch`, oldest first; `None` when the
    /// store no longer holds all of them (the caller must assume the worst).
    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        let _ = epoch;
        Box::pin(async { Ok(Some(Vec::new())) })
    }

    /// Takes a short lease on `key` for `token`, so that one of several
    /// instances sharing this store fetches it from the origin; false when
    /// another holder has it. Stores not shared between processes need no
    /// lease: the default always grants it.
    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        let _ = (key, token, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Gives back a lease taken with `token` (a lease since taken over by
    /// someone else is left alone).
    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        let _ = (key, token);
        Box::pin(async { Ok(()) })
    }
}

/// Memory figures of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Bytes used by entries (and, for Redis, everything else the server holds).
    pub used_memory_bytes: u64,
    /// The capacity, when there is one.
    pub max_memory_bytes: Option<u64>,
    /// Entries evicted for capacity since start.
    pub evictions: u64,
    /// Entries expired since start, when the store counts them.
    pub expirations: u64,
}

impl MemoryUsage {
    /// Figures with a capacity.
    pub fn new(used: u64, max: Option<u64>, evictions: u64) -> Self {
        MemoryUsage {
            used_memory_bytes: used,
            max_memory_bytes: max,
            evictions,
            expirations: 0,
        }
    }

    /// With the count of expired entries.
    #[must_use]
    pub fn with_expirations(mut self, expirations: u64) -> Self {
        self.expirations = expirations;
        self
    }

    /// used / max, when there is a max.
    pub fn usage_ratio(&self) -> Option<f64> {
        self.max_memory_bytes
            .filter(|&m| m > 0)
            .map(|m| self.used_memory_bytes as f64 / m as f64)
    }
}

/// The state of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Working.
    Connected,
    /// Working with trouble (slow, some nodes down, circuit half open).
    Degraded,
    /// Not usable: requests bypass it.
    Down,
}

/// A store's health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The state.
    pub status: HealthStatus,
    /// `memory`, `redis` or `redis_cluster`.
    pub backend: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StoreHealth {
    /// A health report.
    pub fn new(status: HealthStatus, backend: &'static str, detail: Option<String>) -> Self {
        StoreHealth {
            status,
            backend,
            detail,
        }
    }
}

/// A store operation that failed. Callers decide by asking
/// ([`is_timeout`](StoreError::is_timeout), ...), not by matching text.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    partial: Option<u64>,
}

/// The kinds of [`StoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The operation took longer than the store timeout.
    Timeout,
    /// The backend could not be reached.
    Connection,
    /// The circuit breaker is open: the backend is skipped for now.
    Unavailable,
    /// The backend answered with an error.
    Backend,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            source: Some(source.into()),
            partial: None,
        }
    }

    /// An error of `kind` with no further cause.
    pub const fn from_kind(kind: StoreErrorKind) -> Self {
        StoreError {
            kind,
            source: None,
            partial: None,
        }
    }

    /// The same error, saying that the failed invalidation had already
    /// removed (or, for a soft purge, rewritten) `done` entries when it
    /// stopped: a purge that fails part-way reports what it did.
    #[must_use]
    pub fn with_partial(mut self, done: u64) -> Self {
        self.partial = Some(done);
        self
    }

    /// How many entries a failed invalidation had already removed or
    /// rewritten, when it says (see [`StoreError::with_partial`]).
    pub fn partial(&self) -> Option<u64> {
        self.partial
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The operation timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == StoreErrorKind::Timeout
    }

    /// The backend could not be reached.
    pub fn is_connection(&self) -> bool {
        self.kind == StoreErrorKind::Connection
    }

    /// The backend is being skipped by the circuit breaker.
    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Timeout => "store operation timed out",
            StoreErrorKind::Connection => "store connection failed",
            StoreErrorKind::Unavailable => "store is unavailable (circuit open)",
            StoreErrorKind::Backend => "store returned an error",
        };
        match &self.source {
            Some(s) => write!(f, "{what}: {s}"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
