//! What a store reports about itself: [`StoreStatus`] and its figures.

use serde::Serialize;

use super::StoreFuture;

/// Health and metrics of a store: what `/health` and `/metrics` show.
pub trait StoreStatus: Send + Sync {
    /// Number of entries (may be approximate for remote stores), the `keys_count` of health and metrics.
    fn keys_count(&self) -> StoreFuture<'_, u64>;

    /// Memory used and available.
    fn memory(&self) -> StoreFuture<'_, MemoryUsage>;

    /// Whether the store is usable.
    fn health(&self) -> StoreFuture<'_, StoreHealth>;
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
