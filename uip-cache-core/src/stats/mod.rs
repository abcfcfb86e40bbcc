//! Lock-free counters of what the cache did, the seed-compatible snapshot,
//! and a way to wait until the counters reach a state (for tests of work the
//! cache finishes in the background, such as storing a response).
//!
//! Here the counters and the methods that add to them; in `reason` what
//! they are kept per (why a response was not cached, what started an
//! invalidation, how warming a URL went), in `histogram` the store latency
//! histogram, in `snapshot` the counters at one moment, in `wait` waiting
//! until they reach a state.

mod histogram;
mod reason;
mod snapshot;
mod wait;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

pub use histogram::{HistogramSnapshot, STORE_LATENCY_BUCKETS};
pub use reason::{InvalidationKind, NoCacheReason, WarmOutcome};
pub use snapshot::{PolicySnapshot, StatsSnapshot};

use histogram::LatencyHistogram;
use wait::Changes;

/// The counters. Cheap to update from many threads (one atomic addition
/// each, no lock); read with [`CacheStats::snapshot`], or wait for a state
/// with [`CacheStats::wait_until`] and [`CacheStats::wait_for_sets`].
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
    /// Per policy (index in file order; one more slot for requests cached
    /// under `defaults.cache_unmatched`).
    policies: Box<[PolicyCounters]>,
    store_ops: LatencyHistogram,
    invalidations: [AtomicU64; InvalidationKind::ALL.len()],
    unknown_events: AtomicU64,
    warm_runs: AtomicU64,
    warm_success: AtomicU64,
    warm_failed: AtomicU64,
    warm_skipped: AtomicU64,
    store_evictions: AtomicU64,
    store_expirations: AtomicU64,
    hit_for_miss: AtomicU64,
    changes: Changes,
}

/// Outcomes of the requests of one policy.
#[derive(Debug, Default)]
struct PolicyCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypasses: AtomicU64,
}

impl CacheStats {
    /// A fresh set of zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Zeroed counters with per-policy counters for `policies` policies (and
    /// one more slot for `defaults.cache_unmatched`).
    pub fn with_policies(policies: usize) -> Self {
        CacheStats {
            policies: (0..=policies).map(|_| PolicyCounters::default()).collect(),
            ..Self::default()
        }
    }

    fn policy(&self, policy: Option<usize>) -> Option<&PolicyCounters> {
        let last = self.policies.len().checked_sub(1)?;
        self.policies.get(policy.unwrap_or(last))
    }

    /// A fresh entry of `policy` (None: the default policy) served.
    pub fn policy_hit(&self, policy: Option<usize>) {
        self.hit();
        if let Some(p) = self.policy(policy) {
            p.hits.fetch_add(1, SeqCst);
        }
        self.changes.changed();
    }
    /// A lookup of `policy` that found nothing usable.
    pub fn policy_miss(&self, policy: Option<usize>) {
        self.miss();
        if let Some(p) = self.policy(policy) {
            p.misses.fetch_add(1, SeqCst);
        }
        self.changes.changed();
    }
    /// A stale entry of `policy` served.
    pub fn policy_stale(&self, policy: Option<usize>) {
        self.stale();
        if let Some(p) = self.policy(policy) {
            p.stale.fetch_add(1, SeqCst);
        }
        self.changes.changed();
    }
    /// A request `policy` matched that did not use the cache (the reason is
    /// counted by [`CacheStats::bypass`]).
    pub fn policy_bypass(&self, policy: Option<usize>) {
        if let Some(p) = self.policy(policy) {
            p.bypasses.fetch_add(1, SeqCst);
        }
        self.changes.changed();
    }

    /// One store operation took `d`.
    pub fn store_op(&self, d: Duration) {
        self.store_ops.observe(d);
        self.changes.changed();
    }

    /// An invalidation ran (the entries it removed are counted by
    /// [`CacheStats::deleted`]).
    pub fn invalidation(&self, kind: InvalidationKind) {
        self.invalidations[kind as usize].fetch_add(1, SeqCst);
        self.changes.changed();
    }

    /// A webhook event that no strategy or policy names.
    pub fn unknown_event(&self) {
        self.unknown_events.fetch_add(1, SeqCst);
        self.changes.changed();
    }

    /// A warming run started.
    pub fn warm_run(&self) {
        self.warm_runs.fetch_add(1, SeqCst);
        self.changes.changed();
    }

    /// One URL warmed with `outcome`.
    pub fn warmed(&self, outcome: WarmOutcome) {
        match outcome {
            WarmOutcome::Success => &self.warm_success,
            WarmOutcome::Failed => &self.warm_failed,
            WarmOutcome::Skipped => &self.warm_skipped,
        }
        .fetch_add(1, SeqCst);
        self.changes.changed();
    }

    /// What the store reported at the last check of the time-based monitor:
    /// entries evicted for capacity and entries expired, since it started.
    pub fn store_removals(&self, evictions: u64, expirations: u64) {
        self.store_evictions.store(evictions, SeqCst);
        self.store_expirations.store(expirations, SeqCst);
        self.changes.changed();
    }

    /// A fresh entry served.
    pub fn hit(&self) {
        self.hits.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A lookup that found nothing usable.
    pub fn miss(&self) {
        self.misses.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A stale entry served (stale-while-revalidate or stale-if-error).
    pub fn stale(&self) {
        self.stale.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A request that did not use the cache, and why.
    pub fn bypass(&self, reason: NoCacheReason) {
        self.bypasses.fetch_add(1, SeqCst);
        self.uncacheable(reason);
    }
    /// A response that could not be stored, and why.
    pub fn uncacheable(&self, reason: NoCacheReason) {
        self.uncacheable[reason.index()].fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A stale entry revalidated with the origin.
    pub fn revalidation(&self) {
        self.revalidations.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A request that went to the origin without waiting for another's
    /// fetch, its key's last response having been uncacheable.
    pub fn hit_for_miss(&self) {
        self.hit_for_miss.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A request that waited for another's origin fetch instead of making its own.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// An entry written (counted once its fetch has let go of the key).
    pub fn set(&self) {
        self.sets.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// Entries deleted.
    pub fn deleted(&self, n: u64) {
        self.deletes.fetch_add(n, SeqCst);
        self.changes.changed();
    }
    /// Entries evicted for capacity.
    pub fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, SeqCst);
        self.changes.changed();
    }
    /// A store operation that failed or timed out.
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// Bytes under a key that did not decode.
    pub fn corrupt_entry(&self) {
        self.corrupt_entries.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// Time spent in one cache lookup.
    pub fn latency(&self, d: Duration) {
        self.latency_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), SeqCst);
        self.latency_samples.fetch_add(1, SeqCst);
        self.changes.changed();
    }
    /// A body compressed from `uncompressed` to `compressed` bytes.
    pub fn compressed(&self, uncompressed: u64, compressed: u64) {
        self.uncompressed_bytes.fetch_add(uncompressed, SeqCst);
        self.compressed_bytes.fetch_add(compressed, SeqCst);
        self.changes.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
