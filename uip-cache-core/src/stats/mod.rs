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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use histogram::{HistogramSnapshot, STORE_LATENCY_BUCKETS};
pub use reason::{ConnectionRefusal, InvalidationKind, NoCacheReason, WarmOutcome};
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
    /// Per policy, by name (in the file order of the settings the cache
    /// runs on; the requests cached under `defaults.cache_unmatched` apart).
    policies: ArcSwap<PolicyTable>,
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
    answered_at_hand: AtomicU64,
    config_reloads: AtomicU64,
    config_reload_errors: AtomicU64,
    connections_refused: [AtomicU64; ConnectionRefusal::ALL.len()],
    changes: Changes,
}

/// The per-policy counters, by name: a policy kept across a reload keeps
/// its counters (they are the same `Arc`), a removed one leaves the table
/// (a request still counting under it counts nowhere), a new one starts at
/// zero.
#[derive(Debug, Default)]
struct PolicyTable {
    /// In file order.
    named: Vec<(Box<str>, Arc<PolicyCounters>)>,
    /// `defaults.cache_unmatched`; `None` for [`CacheStats::new`].
    unmatched: Option<Arc<PolicyCounters>>,
}

impl PolicyTable {
    /// The counters of `policy` (its place in the list it was matched in,
    /// and its name), or of the unmatched requests.
    fn get(&self, policy: Option<(usize, &str)>) -> Option<&PolicyCounters> {
        match policy {
            None => self.unmatched.as_deref(),
            Some((i, name)) => match self.named.get(i) {
                // The same list as the request's: the usual case.
                Some((n, c)) if &**n == name => Some(c),
                // Matched in other settings (a reload meanwhile): by name.
                _ => self
                    .named
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, c)| &**c),
            },
        }
    }
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

    /// Zeroed counters with per-policy counters for the policies named
    /// `names`, in file order (and the requests cached under
    /// `defaults.cache_unmatched`).
    pub fn with_policies<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        let stats = Self::default();
        stats.policies.store(Arc::new(PolicyTable {
            named: names
                .into_iter()
                .map(|n| (Box::from(n), Arc::default()))
                .collect(),
            unmatched: Some(Arc::default()),
        }));
        stats
    }

    /// Counts per policy for the policies named `names` from now on (a
    /// reload's list, in file order): a policy whose name was counted
    /// before keeps its counters, one no longer named is dropped with
    /// them, a new one starts at zero.
    pub fn rename_policies<'n>(&self, names: impl IntoIterator<Item = &'n str>) {
        let old = self.policies.load_full();
        let named = names
            .into_iter()
            .map(|name| {
                let kept = old
                    .named
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, c)| c.clone());
                (Box::from(name), kept.unwrap_or_default())
            })
            .collect();
        self.policies.store(Arc::new(PolicyTable {
            named,
            unmatched: Some(old.unmatched.clone().unwrap_or_default()),
        }));
        self.changes.changed();
    }

    /// Adds one to the counter `which` picks of `policy`.
    fn count_policy(
        &self,
        policy: Option<(usize, &str)>,
        which: impl FnOnce(&PolicyCounters) -> &AtomicU64,
    ) {
        let table = self.policies.load();
        if let Some(p) = table.get(policy) {
            which(p).fetch_add(1, SeqCst);
        }
    }

    /// A fresh entry of `policy` served. A policy is given as its place in
    /// the list it was matched in and its name (`None`: the default policy
    /// of `defaults.cache_unmatched`).
    pub fn policy_hit(&self, policy: Option<(usize, &str)>) {
        self.count_policy(policy, |p| &p.hits);
        self.hit();
    }
    /// A lookup of `policy` that found nothing usable.
    pub fn policy_miss(&self, policy: Option<(usize, &str)>) {
        self.count_policy(policy, |p| &p.misses);
        self.miss();
    }
    /// A stale entry of `policy` served.
    pub fn policy_stale(&self, policy: Option<(usize, &str)>) {
        self.count_policy(policy, |p| &p.stale);
        self.stale();
    }
    /// A request `policy` matched that did not use the cache (the reason is
    /// counted by [`CacheStats::bypass`]).
    pub fn policy_bypass(&self, policy: Option<(usize, &str)>) {
        self.count_policy(policy, |p| &p.bypasses);
        self.changes.changed();
    }

    /// A reload of the config: `ok` when it was swapped in, false when it
    /// had errors and changed nothing.
    pub fn config_reload(&self, ok: bool) {
        if ok {
            &self.config_reloads
        } else {
            &self.config_reload_errors
        }
        .fetch_add(1, SeqCst);
        self.changes.changed();
    }

    /// A listener closed a connection as soon as it accepted it, for
    /// `why`.
    pub fn connection_refused(&self, why: ConnectionRefusal) {
        self.connections_refused[why as usize].fetch_add(1, SeqCst);
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
    /// A hit a front end answered from the request head alone
    /// ([`crate::HttpCache::answer_at_hand`]); counted as a hit too.
    pub fn answered_at_hand(&self) {
        self.answered_at_hand.fetch_add(1, Relaxed);
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
