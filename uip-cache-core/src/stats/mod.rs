//! Lock-free counters of what the cache did, the seed-compatible snapshot,
//! and a way to wait until the counters reach a state (for tests of work the
//! cache finishes in the background, such as storing a response).

use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

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
    /// The request body the policy keys on is larger than its `max_body`
    /// (or has no end within it): passed through unbuffered.
    BodyTooLarge,
    /// A `Cache-Control` (or targeted field) that does not follow the
    /// grammar: a response is not stored, a request bypasses the cache.
    UnparsableCacheControl,
    /// The request carries a method-override header (`X-HTTP-Method-Override`
    /// and the like): the origin may treat it as another method.
    MethodOverride,
    /// A GET or HEAD with a body the key does not hold (the policy does not
    /// key on the body): another body would get this one's answer.
    RequestBody,
    /// The request had `Range`, `If-Match`, `If-Unmodified-Since` or
    /// `If-Range` and the answer is not a complete 200: it is this
    /// request's alone, never the plain key's.
    RangeOrPrecondition,
}

impl NoCacheReason {
    /// Every reason, in counter order.
    pub const ALL: [NoCacheReason; 22] = [
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
        NoCacheReason::BodyTooLarge,
        NoCacheReason::UnparsableCacheControl,
        NoCacheReason::MethodOverride,
        NoCacheReason::RequestBody,
        NoCacheReason::RangeOrPrecondition,
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
            NoCacheReason::BodyTooLarge => "body_too_large",
            NoCacheReason::UnparsableCacheControl => "unparsable_cache_control",
            NoCacheReason::MethodOverride => "method_override",
            NoCacheReason::RequestBody => "request_body",
            NoCacheReason::RangeOrPrecondition => "range_or_precondition",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

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

/// Wakes the tasks in [`CacheStats::wait_until`] after a counter changed.
///
/// An update pays one more atomic load while nobody waits: the counters are
/// added to in sequentially consistent order and `waiting` is read the same
/// way, so either the updater sees a waiter (and wakes it) or the waiter,
/// which registers before it reads the counters, sees the update.
#[derive(Debug, Default)]
struct Changes {
    waiting: AtomicUsize,
    notify: Notify,
}

impl Changes {
    fn changed(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// Counts a waiter of [`Changes`] while it lives (a cancelled wait included).
struct Waiting<'a>(&'a Changes);

impl<'a> Waiting<'a> {
    fn enter(changes: &'a Changes) -> Self {
        changes.waiting.fetch_add(1, SeqCst);
        Waiting(changes)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
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

/// What started an invalidation, for its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidationKind {
    /// `POST /cache/invalidate/tag`.
    Tag,
    /// `POST /cache/invalidate/url` with an exact `url`.
    Url,
    /// `POST /cache/invalidate/url` with a `pattern`.
    Pattern,
    /// A webhook event (`POST /cache/invalidate`).
    Event,
    /// A successful unsafe request (RFC 9111 section 4.4).
    Unsafe,
}

impl InvalidationKind {
    /// Every kind, in counter order.
    pub const ALL: [InvalidationKind; 5] = [
        InvalidationKind::Tag,
        InvalidationKind::Url,
        InvalidationKind::Pattern,
        InvalidationKind::Event,
        InvalidationKind::Unsafe,
    ];

    /// The snake_case name used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidationKind::Tag => "tag",
            InvalidationKind::Url => "url",
            InvalidationKind::Pattern => "pattern",
            InvalidationKind::Event => "event",
            InvalidationKind::Unsafe => "unsafe",
        }
    }
}

/// The outcome of warming one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarmOutcome {
    /// Fetched through the cache.
    Success,
    /// Every attempt failed.
    Failed,
    /// A fresh entry was already there.
    Skipped,
}

/// Upper bounds (seconds) of the store latency buckets: 50 us to 2.5 s.
pub const STORE_LATENCY_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// A histogram of store operation times in lock-free counters: a store call
/// on the request path pays two relaxed additions, never a lock.
#[derive(Debug, Default)]
struct LatencyHistogram {
    /// Per bucket (not cumulative), plus the overflow bucket.
    buckets: [AtomicU64; STORE_LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = STORE_LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(STORE_LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, SeqCst);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), SeqCst);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(STORE_LATENCY_BUCKETS.len());
        for (i, &le) in STORE_LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            buckets.push((le, cumulative));
        }
        let count = cumulative + self.buckets[STORE_LATENCY_BUCKETS.len()].load(Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

/// The outcomes of one policy at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PolicySnapshot {
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
    /// An entry written.
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

    /// Waits until `ready` holds for the counters, and returns the snapshot
    /// it held for. `ready` is asked at once and again after every update of
    /// a counter; nothing polls or sleeps.
    ///
    /// For tests of work the cache finishes in the background (storing a
    /// response once its body has passed, a revalidation, a purge after an
    /// unsafe request). The wait has no bound of its own: put it under
    /// `tokio::time::timeout`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use uip_cache_core::{CacheStats, NoCacheReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let stats = Arc::new(CacheStats::new());
    /// let background = stats.clone();
    /// tokio::spawn(async move {
    ///     background.uncacheable(NoCacheReason::Invalidated);
    /// });
    /// let snap = tokio::time::timeout(
    ///     Duration::from_secs(5),
    ///     stats.wait_until(|s| s.uncacheable.contains_key("invalidated")),
    /// )
    /// .await
    /// .expect("the response was refused within 5 s");
    /// assert_eq!(snap.uncacheable["invalidated"], 1);
    /// # }
    /// ```
    pub async fn wait_until(&self, mut ready: impl FnMut(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let _waiting = Waiting::enter(&self.changes);
        loop {
            // Registered before the counters are read: an update after the
            // read wakes it.
            let changed = self.changes.notify.notified();
            fence(SeqCst);
            let snap = self.snapshot();
            if ready(&snap) {
                return snap;
            }
            changed.await;
        }
    }

    /// Waits until at least `n` entries have been written since the
    /// counters started ([`StatsSnapshot::sets`]), and returns the snapshot
    /// that showed it. An adapter answers before the entry is in the store
    /// (it is written once the body has passed); this is how a test knows the
    /// next request can be a hit. See [`CacheStats::wait_until`] for any
    /// other state.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use uip_cache_core::{CacheConfig, HttpCache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = CacheConfig::from_yaml_str(
    ///     "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n",
    /// )
    /// .unwrap();
    /// let cache = HttpCache::with_memory_store(&config).unwrap();
    /// // ... a request through an adapter misses and its response streams on ...
    /// # cache.stats().set();
    /// tokio::time::timeout(Duration::from_secs(5), cache.stats().wait_for_sets(1))
    ///     .await
    ///     .expect("the response was stored within 5 s");
    /// // ... the same request now is a hit.
    /// # }
    /// ```
    pub async fn wait_for_sets(&self, n: u64) -> StatsSnapshot {
        self.wait_until(|s| s.sets >= n).await
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
            policies: self
                .policies
                .iter()
                .map(|p| PolicySnapshot {
                    hits: p.hits.load(Relaxed),
                    misses: p.misses.load(Relaxed),
                    stale: p.stale.load(Relaxed),
                    bypasses: p.bypasses.load(Relaxed),
                })
                .collect(),
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
    /// Per policy, in file order, then the default policy of
    /// `defaults.cache_unmatched` (empty for [`CacheStats::new`]).
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

    #[tokio::test]
    async fn a_wait_that_is_already_satisfied_returns_at_once() {
        let s = CacheStats::new();
        s.set();
        let snap = futures_util::FutureExt::now_or_never(s.wait_for_sets(1))
            .expect("no waiting when the count is there");
        assert_eq!(snap.sets, 1);
        assert_eq!(s.changes.waiting.load(SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_see_every_update_made_on_other_threads() {
        let s = std::sync::Arc::new(CacheStats::new());
        for round in 1..=200u64 {
            let writer = s.clone();
            let t = std::thread::spawn(move || writer.set());
            let waited = tokio::time::timeout(Duration::from_secs(10), s.wait_for_sets(round));
            assert!(waited.await.is_ok(), "round {round}: the set was missed");
            t.join().unwrap();
        }
        let other = s.clone();
        std::thread::spawn(move || other.store_error());
        let snap = s.wait_until(|snap| snap.store_errors == 1).await;
        assert_eq!((snap.sets, snap.store_errors), (200, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_nothing_behind() {
        let s = CacheStats::new();
        let gave_up = tokio::time::timeout(Duration::from_secs(1), s.wait_for_sets(1)).await;
        assert!(gave_up.is_err());
        assert_eq!(s.changes.waiting.load(SeqCst), 0);
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
