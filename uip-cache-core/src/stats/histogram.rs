//! The histogram of store operation times.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (seconds) of the store latency buckets: 50 us to 2.5 s.
pub const STORE_LATENCY_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// A histogram of store operation times in lock-free counters: a store call
/// on the request path pays two relaxed additions, never a lock.
#[derive(Debug, Default)]
pub(super) struct LatencyHistogram {
    /// Per bucket (not cumulative), plus the overflow bucket.
    buckets: [AtomicU64; STORE_LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub(super) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = STORE_LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(STORE_LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, SeqCst);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), SeqCst);
    }

    pub(super) fn snapshot(&self) -> HistogramSnapshot {
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
