//! Building an [`HttpCache`] from a config and a store.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::unsafe_request::UNSAFE_PURGES_IN_TASKS;
use super::{HttpCache, Inner};
use crate::config::{CacheConfig, ConfigError};
use crate::forwarding::TrustedProxies;
use crate::http::cache_control::is_consumed;
use crate::lock::LockTable;
use crate::policy::PolicySet;
use crate::stats::CacheStats;
use crate::store::{MemoryStore, Store};

impl HttpCache {
    /// A cache over `store` with the config's policies.
    pub fn new(config: &CacheConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        let policies =
            PolicySet::compile(config).map_err(|p| ConfigError::new(config.source_name(), p))?;
        let trusted = TrustedProxies::parse(&config.server.trusted_proxies).map_err(|(i, e)| {
            let at = config.server.trusted_proxies[i].line;
            ConfigError::single(
                config.source_name(),
                crate::config::ConfigProblem::new(
                    at,
                    format!("server.trusted_proxies[{i}]"),
                    e.to_string(),
                ),
            )
        })?;
        Ok(HttpCache {
            inner: Arc::new(Inner {
                config: config.clone(),
                stats: CacheStats::with_policies(policies.len()),
                policies,
                store,
                locks: LockTable::new(),
                epoch: AtomicU64::new(0),
                recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
                hidden: {
                    let targets = config.defaults.targeted_cache_control_names();
                    let mut hidden: Vec<String> = targets
                        .iter()
                        .filter(|t| is_consumed(t, &targets))
                        .cloned()
                        .collect();
                    if !config.defaults.forward_tag_headers {
                        hidden.extend(config.defaults.tag_header_names());
                    }
                    hidden
                },
                writes: AtomicU64::new(0),
                cache_status: Some(config.defaults.cache_status.trim().to_owned())
                    .filter(|n| !n.is_empty()),
                refresh_token: crate::refresh::RefreshToken::new(),
                trusted,
                unsafe_purges: Arc::new(tokio::sync::Semaphore::new(UNSAFE_PURGES_IN_TASKS)),
                uncacheable: (!config.defaults.hit_for_miss.get().is_zero()).then(|| {
                    moka::sync::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(config.defaults.hit_for_miss.get())
                        .build()
                }),
            }),
        })
    }

    /// A cache with the in-memory store; a config asking for another store is
    /// an error here (adapters with the `redis` feature build that one).
    pub fn with_memory_store(config: &CacheConfig) -> Result<Self, ConfigError> {
        if config.store.kind != crate::config::StoreKind::Memory {
            return Err(ConfigError::at(
                config.source_name(),
                "store.type",
                "this build has only the memory store: enable the `redis` feature of uip-cache-tower to use Redis",
            ));
        }
        Self::new(config, Arc::new(MemoryStore::from_config(config)))
    }
}
