//! The Redis store, [`RedisStore`], one concern per file:
//!
//! - `connection`: the multiplexed connection, the pool or the cluster
//!   client, and pipelines of slot-sharing groups;
//! - `keys`: every key name, and the index members written and parsed;
//! - `scripts`: the Lua scripts (`scripts/*.lua`);
//! - `call`: every call under a timeout and the circuit breaker;
//!   `error`: what a Redis error means for the cache;
//! - `storage`, `coordination`, `status`: the store traits;
//! - `purge`: hard and soft purges through the indexes; `prune`: expired
//!   index members; `log`: the bounds of the shared invalidation log;
//! - `copies`: local copies of large entries; `batch`: concurrent reads
//!   sent as one pipeline; `eviction`: the eviction policies that keep
//!   purges working.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uip_cache_core::config::StoreKind;
use uip_cache_core::CacheConfig;

use crate::breaker::Breaker;

mod batch;
mod call;
mod connection;
mod coordination;
mod copies;
mod error;
mod eviction;
mod keys;
mod log;
mod prune;
mod purge;
mod scripts;
mod status;
mod storage;

use batch::Batch;
use connection::Connections;
use copies::LocalCopies;
pub use error::RedisConfigError;
use eviction::Eviction;
use keys::Keys;

/// A [`Store`](uip_cache_core::Store) in Redis or Redis Cluster.
///
/// Layout, all under the configured key prefix (`cache:` by default):
///
/// - an entry is a string `<prefix><sha256>` holding an 8-byte write
///   generation, an 8-byte write version and the entry bytes, with a `PX`
///   expiry: a hit is one `GET`, or for an entry of 16 KB or more held in
///   a local copy (`redis.local_copies`), one 16-byte `GETRANGE` that
///   checks the copy is still the stored value;
/// - every tag is a sorted set `<prefix>idx:tag:<tag>` and all entries are in
///   `<prefix>idx:{paths}` (ordered by path, for prefix ranges) and
///   `<prefix>idx:{paths}:exp` (scored by expiry, for pruning). Their members
///   are `path \0 query \0 key \0 generation`. `<prefix>idx:{paths}:tags`
///   scores every tag by the latest expiry of its entries, so that the sets
///   of tags whose entries have all expired are emptied (and so deleted),
///   in proportion to writes: every write with tags pays for pruning more
///   expired tags than it can create, so unique tags (one per URL) cannot
///   grow Redis without bound.
/// - Entries carry a TTL; index keys carry none, so that a `volatile-*`
///   eviction policy evicts entries, never an index a purge needs. Under an
///   `allkeys-*` policy (with `maxmemory` set) an index could go before its
///   entries, and purges would miss them: the store refuses to work there
///   (every call fails at once, a miss for the cache; health is degraded and
///   says why).
///
/// Invalidation pops members in batches of 500 and deletes each key only if
/// it still holds the indexed generation (a one-key script, so it works on a
/// cluster), so its cost follows the entries removed, never the keyspace, and
/// a rewrite with other tags is not removed by an old tag. No command spans
/// two slots.
///
/// Every call has a timeout (`store.timeout`); after 5 failures in a row the
/// circuit opens and Redis is skipped for 3 seconds, then tried again.
/// Purges are not request-path calls: one runs, page after page, for up to
/// `store.purge_timeout` (its log record and backplane messages included),
/// is tried even while the circuit is open, and never counts toward opening
/// it; one cut short fails with the number of entries it removed
/// ([`StoreError::partial`](uip_cache_core::store::StoreError::partial)).
/// Reads of the shared invalidation log do not count toward opening the
/// circuit either (see the `log` module).
/// Connections are made lazily: building the store never touches the network.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    keys: Keys,
    op_timeout: Duration,
    purge_timeout: Duration,
    breaker: Breaker,
    eviction: Eviction,
    /// How many expired tags the writes since the last pruning round paid
    /// for (see the `prune` module).
    tag_prune_debt: AtomicU64,
    /// Whether a pruning task runs (one at a time per instance).
    tag_pruning: AtomicBool,
    generation: AtomicU64,
    copies: Option<LocalCopies>,
    batch: Batch,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl RedisStore {
    /// Builds the store the config names (`store.type: redis` or
    /// `redis_cluster`, or any config with `redis.cluster_nodes`). Never
    /// connects: the first call does, and failures are misses.
    pub fn from_config(config: &CacheConfig) -> Result<Self, RedisConfigError> {
        let r = &config.redis;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connections: Connections::from_config(config)?,
                keys: Keys::new(&config.key.prefix),
                op_timeout: config.store.timeout.get(),
                purge_timeout: config.store.purge_timeout.get(),
                breaker: Breaker::new(5, Duration::from_secs(3)),
                eviction: Eviction::default(),
                tag_prune_debt: AtomicU64::new(0),
                tag_pruning: AtomicBool::new(false),
                generation: AtomicU64::new(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos() as u64
                        ^ (u64::from(std::process::id()) << 40),
                ),
                // A tiered store's L1 already holds entries here.
                copies: if config.store.kind == StoreKind::Tiered {
                    None
                } else {
                    LocalCopies::new(r.local_copies.bytes())
                },
                batch: Batch::default(),
            }),
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.backend())
            .field("prefix", &self.inner.keys.prefix())
            .field("timeout", &self.inner.op_timeout)
            .field("circuit_open", &self.inner.breaker.is_open())
            .finish()
    }
}
