//! The counters at one moment: [`StatsSnapshot`], with the seed's JSON
//! field names and the derived rates.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::{CacheStats, ConnectionRefusal, HistogramSnapshot, InvalidationKind, NoCacheReason};

/// The outcomes of one policy at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PolicySnapshot {
    /// The policy's name ([`UNMATCHED_NAME`](crate::policy::UNMATCHED_NAME)
    /// for `defaults.cache_unmatched`).
    pub name: String,
    /// Fresh entries served.
    pub hits: u64,
    /// Lookups that went to the origin.
    pub misses: u64,
    /// Stale entries served.
    pub stale: u64,
    /// Requests the policy matched that did not use the cache.
    pub bypasses: u64,
}

impl CacheStats {
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
            policies: {
                let table = self.policies.load();
                let of = |name: &str, p: &super::PolicyCounters| PolicySnapshot {
                    name: name.to_owned(),
                    hits: p.hits.load(Relaxed),
                    misses: p.misses.load(Relaxed),
                    stale: p.stale.load(Relaxed),
                    bypasses: p.bypasses.load(Relaxed),
                };
                table
                    .named
                    .iter()
                    .map(|(n, p)| of(n, p))
                    .chain(
                        table
                            .unmatched
                            .iter()
                            .map(|p| of(crate::policy::UNMATCHED_NAME, p)),
                    )
                    .collect()
            },
            store_latency: self.store_ops.snapshot(),
            invalidations: InvalidationKind::ALL
                .iter()
                .map(|k| (k.as_str(), self.invalidations[*k as usize].load(Relaxed)))
                .collect(),
            unknown_events: self.unknown_events.load(Relaxed),
            warm_runs: self.warm_runs.load(Relaxed),
            warm_success: self.warm_success.load(Relaxed),
            warm_failed: self.warm_failed.load(Relaxed),
            warm_skipped: self.warm_skipped.load(Relaxed),
            store_evictions: self.store_evictions.load(Relaxed),
            store_expirations: self.store_expirations.load(Relaxed),
            hit_for_miss: self.hit_for_miss.load(Relaxed),
            answered_at_hand: self.answered_at_hand.load(Relaxed),
            config_reloads: self.config_reloads.load(Relaxed),
            config_reload_errors: self.config_reload_errors.load(Relaxed),
            connections_refused: ConnectionRefusal::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str(),
                        self.connections_refused[*r as usize].load(Relaxed),
                    )
                })
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
    /// Per policy of the settings the cache runs on, in file order, then
    /// the default policy of `defaults.cache_unmatched` (empty for
    /// [`CacheStats::new`]).
    #[serde(skip)]
    pub policies: Vec<PolicySnapshot>,
    /// Store operation times.
    #[serde(skip)]
    pub store_latency: HistogramSnapshot,
    /// Invalidations run, by what started them.
    pub invalidations: BTreeMap<&'static str, u64>,
    /// Webhook events no strategy or policy names.
    pub unknown_events: u64,
    /// Warming runs started.
    pub warm_runs: u64,
    /// URLs warmed.
    pub warm_success: u64,
    /// URLs whose warming failed after every retry.
    pub warm_failed: u64,
    /// URLs not fetched because a fresh entry was there.
    pub warm_skipped: u64,
    /// Entries the store evicted for capacity, at the monitor's last check.
    pub store_evictions: u64,
    /// Entries the store expired, at the monitor's last check.
    pub store_expirations: u64,
    /// Requests sent straight to the origin because their key's last
    /// response could not be stored (hit-for-miss).
    pub hit_for_miss: u64,
    /// Hits a front end answered from the request head alone, without its
    /// general request path (`server.fast_hits`); each is a hit as well.
    pub answered_at_hand: u64,
    /// Config reloads swapped in.
    pub config_reloads: u64,
    /// Config reloads refused for errors (nothing changed).
    pub config_reload_errors: u64,
    /// Connections a listener closed as soon as it accepted them, by
    /// reason (`per_client_limit`, `listener_limit`).
    pub connections_refused: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{CacheStats, ConnectionRefusal, NoCacheReason};

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
    fn refused_connections_are_counted_by_reason() {
        let s = CacheStats::new();
        s.connection_refused(ConnectionRefusal::PerClientLimit);
        s.connection_refused(ConnectionRefusal::PerClientLimit);
        s.connection_refused(ConnectionRefusal::ListenerLimit);
        let snap = s.snapshot();
        assert_eq!(snap.connections_refused.get("per_client_limit"), Some(&2));
        assert_eq!(snap.connections_refused.get("listener_limit"), Some(&1));
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["connections_refused"]["per_client_limit"], 2);
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
}
