//! Building an [`HttpCache`] from a config or compiled settings, and a
//! store.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::completion::PART_HINTS;
use super::settings::uncacheable_table;
use super::unsafe_request::UNSAFE_PURGES_IN_TASKS;
use super::{HttpCache, Inner};
use crate::clock::Clock;
use crate::config::{CacheConfig, ConfigError};
use crate::lock::LockTable;
use crate::settings::Settings;
use crate::stats::CacheStats;
use crate::store::{MemoryStore, Store};

/// Builds an [`HttpCache`]: [`HttpCache::builder`] with a config (or
/// [`HttpCache::from_settings`] with settings compiled already), then the
/// store its entries live in and the clock it reads, then
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
/// assert_eq!(cache.settings().policies().len(), 1);
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
    source: Source<'a>,
    store: Option<Arc<dyn Store>>,
    clock: Clock,
}

/// What a builder compiles its cache's settings from.
#[derive(Debug)]
enum Source<'a> {
    Config(&'a CacheConfig),
    Settings(Arc<Settings>),
}

impl HttpCache {
    /// A builder of a cache with `config`'s policies and settings: `build`
    /// compiles them ([`Settings::compile`]).
    pub fn builder(config: &CacheConfig) -> HttpCacheBuilder<'_> {
        HttpCacheBuilder {
            source: Source::Config(config),
            store: None,
            clock: Clock::system(),
        }
    }

    /// A builder of a cache running on `settings`, compiled already (and
    /// possibly shared with other caches).
    pub fn from_settings(settings: Arc<Settings>) -> HttpCacheBuilder<'static> {
        HttpCacheBuilder {
            source: Source::Settings(settings),
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
    /// The config does not compile into [`Settings`] (its policies,
    /// `server.trusted_proxies` or another check that spans sections; a
    /// config loaded with [`CacheConfig::from_file`] always does), or it asks
    /// for a store other than memory (`store.type: redis`) and none was given
    /// (adapters with the `redis` feature build that one).
    pub fn build(self) -> Result<HttpCache, ConfigError> {
        let config = match &self.source {
            Source::Config(config) => *config,
            Source::Settings(settings) => settings.config(),
        };
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
        let settings = match self.source {
            Source::Config(config) => Arc::new(Settings::compile(config)?),
            Source::Settings(settings) => settings,
        };
        Ok(HttpCache {
            inner: Arc::new(Inner {
                stats: CacheStats::with_policies(settings.policies().iter().map(|p| p.name())),
                uncacheable: ArcSwapOption::new(
                    uncacheable_table(settings.hit_for_miss()).map(Arc::new),
                ),
                settings: ArcSwap::new(settings),
                replacing: std::sync::Mutex::new(()),
                store,
                locks: LockTable::new(),
                epoch: AtomicU64::new(0),
                recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
                writes: AtomicU64::new(0),
                refresh_token: crate::refresh::RefreshToken::new(),
                unsafe_purges: Arc::new(tokio::sync::Semaphore::new(UNSAFE_PURGES_IN_TASKS)),
                // Bounded by its capacity; a mark ends when the clock passes
                // the end it holds (the hit-for-miss window of the settings
                // it was made under), so reloads need nothing here.
                large: moka::sync::Cache::builder().max_capacity(100_000).build(),
                parts: moka::sync::Cache::builder()
                    .max_capacity(PART_HINTS)
                    .build(),
                clock: self.clock,
                quiet: Default::default(),
            }),
            pinned: None,
        })
    }
}
