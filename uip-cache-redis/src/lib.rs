//! Redis and Redis Cluster store for uip-cache.
//!
//! ```no_run
//! use std::sync::Arc;
//! use uip_cache_core::{CacheConfig, HttpCache};
//! use uip_cache_redis::RedisStore;
//!
//! let config = CacheConfig::from_yaml_str("store:\n  type: redis\nredis:\n  host: localhost\n")?;
//! let store = RedisStore::from_config(&config)?; // connects lazily, never blocks
//! let cache = HttpCache::new(&config, Arc::new(store))?;
//! # let _ = cache;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Connections: `connection: multiplexed` (the default) is one multiplexed,
//! auto-reconnecting connection; `connection: pool` is a bb8 pool of
//! `max_connections`; `cluster_nodes` (or `store.type: redis_cluster`) uses
//! the async cluster client. When Redis goes away:
//!
//! - every call times out after `store.timeout` and becomes a miss or a
//!   dropped write in the cache above;
//! - after 5 failures in a row the circuit opens for 3 seconds: calls fail at
//!   once without touching the network;
//! - then calls go through again, and the connection reconnects by itself.
//!
//! Purges (by tag, URL, pattern, event, after an unsafe request) are not
//! request-path calls: each pages through Redis for up to
//! `store.purge_timeout` (default 10s), is tried while the circuit is open
//! and never opens it; one cut short is an error that says how many entries
//! it removed, and running it again finishes the work. Reads of the shared
//! invalidation log never open the circuit either, and the log is bounded
//! per line and per second, so no client can make those reads slow.
//!
//! Redis must not evict the indexes purges go through: run it with a
//! `volatile-*` `maxmemory-policy` (entries carry a TTL, indexes none) or
//! `noeviction`. Under `allkeys-*` (with `maxmemory` set) the store refuses
//! to work, every call a miss, and its health is degraded, saying why.
#![forbid(unsafe_code)]

mod breaker;
mod store;
mod tiered;

pub use store::{RedisConfigError, RedisStore};
pub use tiered::TieredStore;

use std::sync::Arc;

use uip_cache_core::config::StoreKind;
use uip_cache_core::{CacheConfig, ConfigError, HttpCache};

/// The cache a config describes, with the store it names: memory, Redis or
/// Redis Cluster (connected lazily). What the adapters' `from_config` use when
/// built with their `redis` feature.
pub fn http_cache_from_config(config: &CacheConfig) -> Result<HttpCache, ConfigError> {
    if config.store.kind == StoreKind::Memory {
        return HttpCache::with_memory_store(config);
    }
    if config.store.kind == StoreKind::Disk {
        return Err(ConfigError::at(
            config.source_name(),
            "store.type",
            "`disk` is built by `uip-cache serve`; elsewhere give a `uip_cache_disk::DiskStore` to the builder",
        ));
    }
    let err = |e: RedisConfigError| ConfigError::at(config.source_name(), "redis", e.to_string());
    if config.store.kind == StoreKind::Tiered {
        return HttpCache::new(
            config,
            Arc::new(TieredStore::from_config(config).map_err(err)?),
        );
    }
    let store = RedisStore::from_config(config).map_err(err)?;
    HttpCache::new(config, Arc::new(store))
}
