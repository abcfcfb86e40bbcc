//! Building an [`HttpCache`] from a config and a store.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::unsafe_request::UNSAFE_PURGES_IN_TASKS;
use super::{HttpCache, Inner};
use crate::clock::Clock;
use crate::config::{CacheConfig, ConfigError};
use crate::forwarding::TrustedProxies;
use crate::http::cache_control::is_consumed;
use crate::lock::LockTable;
use crate::policy::PolicySet;
use crate::stats::CacheStats;
use crate::store::{MemoryStore, Store};

/// Builds an [`HttpCache`]: [`HttpCache::builder`], then the store its
/// entries live in and the clock it reads, then
/// [`build`](HttpCacheBuilder::build).
///
/// ```
/// use std::sync::Arc;
/// use uip_cache_core::{CacheConfig, HttpCache, MemoryStore};
///
/// let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
///
/// // The in-memory store the config describes.
/// let cache = HttpCache::builder(&config).build()?;
/// assert_eq!(cache.policies().len(), 1);
///
/// // A store of one's own, here shared by two caches.
/// let store = Arc::new(MemoryStore::from_config(&config));
/// let a = HttpCache::builder(&config).store(store.clone()).build()?;
/// let b = HttpCache::builder(&config).store(store).build()?;
/// assert!(Arc::ptr_eq(a.store(), b.store()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug)]
pub struct HttpCacheBuilder<'a> {
    config: &'a CacheConfig,
    store: Option<Arc<dyn Store>>,
    clock: Clock,
}

impl HttpCache {
    /// A builder of a cache with `config`'s policies and settings.
    pub fn builder(config: &CacheConfig) -> HttpCacheBuilder<'_> {
        HttpCacheBuilder {
            config,
            store: None,
            clock: Clock::system(),
        }
    }

    /// A cache over `store` with the config's policies: shorthand for
    /// `HttpCache::builder(config).store(store).build()`.
    pub fn new(config: &CacheConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        Self::builder(config).store(store).build()
    }

    /// A cache with the in-memory store; a config asking for another store is
    /// an error here (adapters with the `redis` feature build that one).
    /// Shorthand for `HttpCache::builder(config).build()`.
    pub fn with_memory_store(config: &CacheConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }
}

impl HttpCacheBuilder<'_> {
    /// The store the entries live in, shared by every clone of the cache
    /// and by any other cache given it too.
    ///
    /// Default: a [`MemoryStore`] sized by the config's `store` section,
    /// which must then ask for the memory store.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock the cache reads whenever time decides what it does: ages,
    /// freshness and stale windows, hit-for-miss windows, how long a request
    /// waits for another instance's lease (see [`crate::clock`] for what
    /// stays on the runtime's timers, and for the store's own expiry).
    ///
    /// Default: the system clock. Tests give a `MockClock` (feature
    /// `test-util`, [`crate::clock`]) and advance it instead of sleeping.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The cache.
    ///
    /// # Errors
    ///
    /// The config's policies or `server.trusted_proxies` do not compile, or
    /// it asks for a store other than memory (`store.type: redis`) and none
    /// was given (adapters with the `redis` feature build that one).
    pub fn build(self) -> Result<HttpCache, ConfigError> {
        let config = self.config;
        let store = match self.store {
            Some(store) => store,
            None => {
                if config.store.kind != crate::config::StoreKind::Memory {
                    return Err(ConfigError::at(
                        config.source_name(),
                        "store.type",
                        "this build has only the memory store: enable the `redis` feature of uip-cache-tower to use Redis",
                    ));
                }
                Arc::new(MemoryStore::from_config(config))
            }
        };
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
                // The table's own expiry, in real time, only frees room: a
                // mark ends when the clock passes the end it holds.
                uncacheable: (!config.defaults.hit_for_miss.get().is_zero()).then(|| {
                    moka::sync::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(config.defaults.hit_for_miss.get())
                        .build()
                }),
                large: (!config.defaults.hit_for_miss.get().is_zero()).then(|| {
                    moka::sync::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(config.defaults.hit_for_miss.get())
                        .build()
                }),
                clock: self.clock,
            }),
        })
    }
}
