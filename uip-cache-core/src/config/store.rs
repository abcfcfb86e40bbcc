//! `store`: which store holds the entries, and the memory and L1 tiers.

use std::time::Duration;

use serde::Deserialize;

use super::{ByteSize, ConfigProblem, RedisConfig, Seconds};

/// Which store holds the entries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `memory` (default), `redis`, `redis_cluster`, `tiered` or `disk`.
    #[serde(rename = "type", default)]
    pub kind: StoreKind,
    /// Capacity of the memory store in bytes of keys and entries (default 256MB).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// The same setting, nested as `store.memory.max_bytes`.
    #[serde(default)]
    pub memory: Option<MemoryStoreConfig>,
    /// How long one store operation may take before it counts as a failure and
    /// the request goes on without the cache (default 100ms).
    #[serde(default = "default_store_timeout")]
    pub timeout: Seconds,
    /// How long one purge (by tag, URL, pattern, webhook event, or after an
    /// unsafe request) may page through the store (default 10s); its
    /// record in the shared invalidation log and its messages to other
    /// instances get as long each. A purge is not cut by `timeout`, and one
    /// that stops part-way is reported as an error (the admin API answers
    /// 503 with what was done, so webhook senders retry; running it again
    /// finishes the work).
    #[serde(default = "default_purge_timeout")]
    pub purge_timeout: Seconds,
    /// The in-process tier of `type: tiered`.
    #[serde(default)]
    pub l1: L1Config,
    /// Where and how much `type: disk` keeps.
    #[serde(default)]
    pub disk: Option<DiskStoreConfig>,
}

/// `store.disk`: the disk store's folder and sizes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DiskStoreConfig {
    /// The folder entries live in (created if missing); required by `type: disk`.
    pub path: Option<String>,
    /// Capacity on disk: bodies (by the 4 KiB blocks they take), records
    /// and index members (default 1GB).
    pub max_bytes: ByteSize,
    /// Capacity of the in-process tier of hot entries (default 64MB).
    pub memory_bytes: ByteSize,
}

impl Default for DiskStoreConfig {
    fn default() -> Self {
        DiskStoreConfig {
            path: None,
            max_bytes: ByteSize(1 << 30),
            memory_bytes: ByteSize(64 << 20),
        }
    }
}

/// The in-process tier of a tiered store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct L1Config {
    /// Capacity in bytes of keys and entries (default 64MB).
    pub max_bytes: ByteSize,
    /// Longest time an entry stays in L1 (default 30s): the staleness bound
    /// should an invalidation message be lost.
    pub max_ttl: Seconds,
    /// How often the invalidation channel is pinged (default 1s). L1 is
    /// not used from the moment a ping goes unanswered for this long (a
    /// connection a NAT or firewall dropped silently delivers nothing,
    /// without an error), until the channel is back, with L1 empty.
    pub ping_interval: Seconds,
}

impl Default for L1Config {
    fn default() -> Self {
        L1Config {
            max_bytes: ByteSize(64 << 20),
            max_ttl: Seconds(Duration::from_secs(30)),
            ping_interval: Seconds(Duration::from_secs(1)),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::default(),
            max_bytes: None,
            memory: None,
            timeout: default_store_timeout(),
            purge_timeout: default_purge_timeout(),
            l1: L1Config::default(),
            disk: None,
        }
    }
}

impl StoreConfig {
    /// The memory store's capacity, from `max_bytes` or `memory.max_bytes`.
    pub fn memory_max_bytes(&self) -> u64 {
        self.max_bytes
            .or_else(|| self.memory.as_ref().and_then(|m| m.max_bytes))
            .map_or(DEFAULT_MEMORY_MAX_BYTES, ByteSize::bytes)
    }

    /// The section's own checks of what holds the entries: a cluster has
    /// `redis.cluster_nodes`, the memory capacity is set once.
    pub(super) fn check_kind_and_size(
        &self,
        redis: &RedisConfig,
        problems: &mut Vec<ConfigProblem>,
    ) {
        if self.kind == StoreKind::RedisCluster && redis.cluster_nodes.is_empty() {
            problems.push(ConfigProblem::new(
                None,
                "store.type",
                "`redis_cluster` needs `redis.cluster_nodes` (a list of host:port)",
            ));
        }
        if self.kind == StoreKind::Disk
            && self
                .disk
                .as_ref()
                .and_then(|d| d.path.as_deref())
                .is_none_or(str::is_empty)
        {
            problems.push(ConfigProblem::new(
                None,
                "store.type",
                "`disk` needs `store.disk.path` (the folder entries live in)",
            ));
        }
        if self.max_bytes.is_some() && self.memory.as_ref().is_some_and(|m| m.max_bytes.is_some()) {
            problems.push(ConfigProblem::new(
                None,
                "store.memory.max_bytes",
                "set either `store.max_bytes` or `store.memory.max_bytes`, not both",
            ));
        }
    }

    /// The section's own checks of its timeouts: none is zero.
    pub(super) fn check_timeouts(&self, problems: &mut Vec<ConfigProblem>) {
        for (field, value) in [
            ("store.timeout", self.timeout),
            ("store.purge_timeout", self.purge_timeout),
            ("store.l1.ping_interval", self.l1.ping_interval),
        ] {
            if value.get().is_zero() {
                problems.push(ConfigProblem::new(None, field, "must be greater than zero"));
            }
        }
    }
}

/// Default capacity of the memory store: 256 MiB.
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 256 << 20;

fn default_store_timeout() -> Seconds {
    Seconds(Duration::from_millis(100))
}

fn default_purge_timeout() -> Seconds {
    Seconds(Duration::from_secs(10))
}

/// `store.memory`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryStoreConfig {
    /// Capacity in bytes of keys and entries.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
}

/// The kinds of store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process memory (the default; nothing to run).
    #[default]
    Memory,
    /// One Redis server.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
    /// An in-process L1 in front of Redis or Redis Cluster (L2), kept
    /// coherent by invalidations published on a Redis channel.
    Tiered,
    /// Entries on disk (`store.disk`), surviving restarts, with an
    /// in-process tier of hot entries.
    Disk,
}
