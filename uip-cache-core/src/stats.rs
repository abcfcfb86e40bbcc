//! Lock-free counters of what the cache did, and the seed-compatible snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Why a response was not served from or stored in the cache. Counted per
/// reason and logged, so "why is my hit rate low" has an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NoCacheReason {
    /// No policy matched and `cache_unmatched` is off.
    NoPolicy,
    /// The policy does not cache this method.
    Method,
    /// The request said `no-store`.
    RequestNoStore,
    /// The response said `no-store`.
    ResponseNoStore,
    /// The response said `private`.
    Private,
    /// The response sets a cookie.
    SetCookie,
    /// The request had `Authorization` and the response did not allow sharing.
    Authorization,
    /// The status is not in the policy's `statuses`.
    Status,
    /// `Vary: *`.
    VaryStar,
    /// The body exceeded `max_size`.
    TooLarge,
    /// No policy TTL and the origin gave no freshness.
    NoFreshness,
    /// The origin failed.
    OriginError,
    /// An invalidation happened while the response was being fetched.
    Invalidated,
    /// The body stream failed or was cut short.
    IncompleteBody,
    /// The policy keys on the request body, which the adapter did not buffer.
    BodyNotBuffered,
    /// The request had `Cookie`, the response gave no explicit shared
    /// freshness, and the policy does not key on the cookie.
    Cookie,
    /// A `text/event-stream` response: it does not end.
    Streaming,
}

impl NoCacheReason {
    /// Every reason, in counter order.
    pub const ALL: [NoCacheReason; 17] = [
        NoCacheReason::NoPolicy,
        NoCacheReason::Method,
        NoCacheReason::RequestNoStore,
        NoCacheReason::ResponseNoStore,
        NoCacheReason::Private,
        NoCacheReason::SetCookie,
        NoCacheReason::Authorization,
        NoCacheReason::Status,
        NoCacheReason::VaryStar,
        NoCacheReason::TooLarge,
        NoCacheReason::NoFreshness,
        NoCacheReason::OriginError,
        NoCacheReason::Invalidated,
        NoCacheReason::IncompleteBody,
        NoCacheReason::BodyNotBuffered,
        NoCacheReason::Cookie,
        NoCacheReason::Streaming,
    ];

    /// The snake_case name used in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::NoPolicy => "no_policy",
            NoCacheReason::Method => "method",
            NoCacheReason::RequestNoStore => "request_no_store",
            NoCacheReason::ResponseNoStore => "response_no_store",
            NoCacheReason::Private => "private",
            NoCacheReason::SetCookie => "set_cookie",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::Status => "status",
            NoCacheReason::VaryStar => "vary_star",
            NoCacheReason::TooLarge => "too_large",
            NoCacheReason::NoFreshness => "no_freshness",
            NoCacheReason::OriginError => "origin_error",
            NoCacheReason::Invalidated => "invalidated",
            NoCacheReason::IncompleteBody => "incomplete_body",
            NoCacheReason::BodyNotBuffered => "body_not_buffered",
            NoCacheReason::Cookie => "cookie",
            NoCacheReason::Streaming => "streaming",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// The counters. Cheap to update from many threads (relaxed atomics); read
/// with [`CacheStats::snapshot`].
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypasses: AtomicU64,
    revalidations: AtomicU64,
    coalesced: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    evictions: AtomicU64,
    store_errors: AtomicU64,
    corrupt_entries: AtomicU64,
    latency_micros: AtomicU64,
    latency_samples: AtomicU64,
    compressed_bytes: AtomicU64,
    uncompressed_bytes: AtomicU64,
    uncacheable: [AtomicU64; NoCacheReason::ALL.len()],
}

impl CacheStats {
    /// A fresh set of zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh entry served.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    /// A lookup that found nothing usable.
    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    /// A stale entry served (stale-while-revalidate or stale-if-error).
    pub fn stale(&self) {
        self.stale.fetch_add(1, Relaxed);
    }
    /// A request that did not use the cache, and why.
    pub fn bypass(&self, reason: NoCacheReason) {
        self.bypasses.fetch_add(1, Relaxed);
        self.uncacheable(reason);
    }
    /// A response that could not be stored, and why.
    pub fn uncacheable(&self, reason: NoCacheReason) {
        self.uncacheable[reason.index()].fetch_add(1, Relaxed);
    }
    /// A stale entry revalidated with the origin.
    pub fn revalidation(&self) {
        self.revalidations.fetch_add(1, Relaxed);
    }
    /// A request that waited for another's origin fetch instead of making its own.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }
    /// An entry written.
    pub fn set(&self) {
        self.sets.fetch_add(1, Relaxed);
    }
    /// Entries deleted.
    pub fn deleted(&self, n: u64) {
        self.deletes.fetch_add(n, Relaxed);
    }
    /// Entries evicted for capacity.
    pub fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Relaxed);
    }
    /// A store operation that failed or timed out.
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Relaxed);
    }
    /// Bytes under a key that did not decode.
    pub fn corrupt_entry(&self) {
        self.corrupt_entries.fetch_add(1, Relaxed);
    }
    /// Time spent in one cache lookup.
    pub fn latency(&self, d: Duration) {
        self.latency_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.latency_samples.fetch_add(1, Relaxed);
    }
    /// A body compressed from `uncompressed` to `compressed` bytes.
    pub fn compressed(&self, uncompressed: u64, compressed: u64) {
        self.uncompressed_bytes.fetch_add(uncompressed, Relaxed);
        self.compressed_bytes.fetch_add(compressed, Relaxed);
    }

    /// A consistent-enough copy of the counters with the derived rates.
    pub fn snapshot(&self) -> StatsSnapshot {
        let hits = self.hits.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        let stale_hits = self.stale.load(Relaxed);
        let total = hits + misses + stale_hits;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let samples = self.latency_samples.load(Relaxed);
        let compressed_bytes = self.compressed_bytes.load(Relaxed);
        let uncompressed_bytes = self.uncompressed_bytes.load(Relaxed);
        StatsSnapshot {
            hit_rate: ratio(hits + stale_hits, total),
            miss_rate: ratio(misses, total),
            total_requests: total,
            hits,
            misses,
            stale_hits,
            bypasses: self.bypasses.load(Relaxed),
            revalidations: self.revalidations.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            sets: self.sets.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
            corrupt_entries: self.corrupt_entries.load(Relaxed),
            avg_latency_ms: ratio(self.latency_micros.load(Relaxed), samples) / 1000.0,
            compression_ratio: ratio(compressed_bytes, uncompressed_bytes),
            compressed_bytes,
            uncompressed_bytes,
            uncacheable: NoCacheReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.uncacheable[r.index()].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// The counters at one moment, with the seed's JSON field names
/// (`hit_rate`, `miss_rate`, `total_requests`, `hits`, `misses`, `sets`,
/// `deletes`, `evictions`, `avg_latency_ms`, `compression_ratio`,
/// `compressed_bytes`, `uncompressed_bytes`) and ours.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// (hits + stale hits) / total lookups.
    pub hit_rate: f64,
    /// misses / total lookups.
    pub miss_rate: f64,
    /// Lookups: hits + stale hits + misses (bypasses are not lookups).
    pub total_requests: u64,
    /// Fresh entries served.
    pub hits: u64,
    /// Lookups that went to the origin.
    pub misses: u64,
    /// Stale entries served.
    pub stale_hits: u64,
    /// Requests that did not use the cache.
    pub bypasses: u64,
    /// Stale entries revalidated.
    pub revalidations: u64,
    /// Requests that waited for another's origin fetch.
    pub coalesced: u64,
    /// Entries written.
    pub sets: u64,
    /// Entries deleted.
    pub deletes: u64,
    /// Entries evicted for capacity.
    pub evictions: u64,
    /// Store operations that failed or timed out.
    pub store_errors: u64,
    /// Undecodable entries found (and deleted).
    pub corrupt_entries: u64,
    /// Mean time of a cache lookup.
    pub avg_latency_ms: f64,
    /// compressed_bytes / uncompressed_bytes (0 when nothing was compressed).
    pub compression_ratio: f64,
    /// Bytes after compression.
    pub compressed_bytes: u64,
    /// Bytes before compression.
    pub uncompressed_bytes: u64,
    /// Responses not cached, by reason.
    pub uncacheable: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios() {
        let s = CacheStats::new();
        assert_eq!(s.snapshot().hit_rate, 0.0);
        for _ in 0..17 {
            s.hit();
        }
        s.stale();
        s.miss();
        s.miss();
        s.bypass(NoCacheReason::SetCookie);
        s.uncacheable(NoCacheReason::TooLarge);
        s.compressed(10_000, 3_500);
        s.latency(Duration::from_micros(500));
        s.latency(Duration::from_micros(1500));
        let snap = s.snapshot();
        assert_eq!(snap.total_requests, 20);
        assert!((snap.hit_rate - 0.9).abs() < 1e-9);
        assert!((snap.miss_rate - 0.1).abs() < 1e-9);
        assert!((snap.compression_ratio - 0.35).abs() < 1e-9);
        assert!((snap.avg_latency_ms - 1.0).abs() < 1e-9);
        assert_eq!(snap.bypasses, 1);
        assert_eq!(snap.uncacheable.get("set_cookie"), Some(&1));
        assert_eq!(snap.uncacheable.get("too_large"), Some(&1));
    }

    #[test]
    fn snapshot_serializes_with_seed_field_names() {
        let s = CacheStats::new();
        s.hit();
        let json = serde_json::to_value(s.snapshot()).unwrap();
        for field in [
            "hit_rate",
            "miss_rate",
            "total_requests",
            "hits",
            "misses",
            "sets",
            "deletes",
            "evictions",
            "avg_latency_ms",
            "compression_ratio",
            "compressed_bytes",
            "uncompressed_bytes",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["hits"], 1);
    }

    #[test]
    fn counters_are_safe_across_threads() {
        let s = std::sync::Arc::new(CacheStats::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.hit();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.snapshot().hits, 40_000);
    }
}
