//! The store guard: every store call of the request path is bounded by the
//! store timeout, and a failure is counted, logged and taken as "no answer"
//! (fail-open); the admin side's probes are bounded more loosely.

use std::future::Future;
use std::time::Duration;

use super::HttpCache;
use crate::store::{HealthStatus, MemoryUsage, StoreError, StoreHealth};

impl HttpCache {
    /// Runs a store call with the store timeout; failures are counted, logged
    /// and returned as `None` (fail-open).
    pub(super) async fn guarded<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.store_timeout(), f).await;
        self.inner.stats.store_op(started.elapsed());
        match result {
            Ok(Ok(v)) => Some(v),
            // A line a second at most: when the store is down every
            // request fails here, several times (see `crate::quiet`).
            Ok(Err(e)) => {
                self.inner.stats.store_error();
                if let Some(left_out) = self.inner.quiet.failed.admit() {
                    tracing::warn!(operation = what, error = %e, left_out, "cache store failed; continuing without it");
                }
                None
            }
            Err(_) => {
                self.inner.stats.store_error();
                if let Some(left_out) = self.inner.quiet.timed_out.admit() {
                    tracing::warn!(operation = what, timeout = ?self.store_timeout(), left_out, "cache store timed out; continuing without it");
                }
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
}
