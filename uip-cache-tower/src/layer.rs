use std::sync::Arc;

use tower_layer::Layer;
use uip_cache_core::{CacheConfig, ConfigError, HttpCache, Store};

use crate::CacheService;

/// Adds uip-cache to a Tower stack (axum, hyper, tonic).
///
/// Holds the shared [`HttpCache`] handle; every service it makes shares the
/// same store, policies, statistics and coalescing table.
#[derive(Clone, Debug)]
pub struct CacheLayer {
    cache: HttpCache,
}

impl CacheLayer {
    /// A layer with the config's policies and the store it names: memory, or
    /// with the `redis` feature Redis / Redis Cluster (connected lazily).
    /// Without the feature a config asking for Redis is an error. Never blocks.
    pub fn from_config(config: &CacheConfig) -> Result<Self, ConfigError> {
        #[cfg(feature = "redis")]
        let cache = uip_cache_redis::http_cache_from_config(config)?;
        #[cfg(not(feature = "redis"))]
        let cache = HttpCache::with_memory_store(config)?;
        Ok(CacheLayer { cache })
    }

    /// A builder for a layer with a store chosen in code.
    pub fn builder(config: CacheConfig) -> CacheLayerBuilder {
        CacheLayerBuilder {
            config,
            store: None,
        }
    }

    /// A layer over an existing cache handle (shared with admin routes or another layer).
    pub fn new(cache: HttpCache) -> Self {
        CacheLayer { cache }
    }

    /// The shared cache handle.
    pub fn cache(&self) -> &HttpCache {
        &self.cache
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService::new(inner, self.cache.clone())
    }
}

/// Builds a [`CacheLayer`] with a store chosen in code.
#[derive(Debug)]
#[must_use]
pub struct CacheLayerBuilder {
    config: CacheConfig,
    store: Option<Arc<dyn Store>>,
}

impl CacheLayerBuilder {
    /// The store entries live in (default: a memory store sized by the config).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The store, already shared.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Builds the layer; fails only if the config's policies do not compile.
    pub fn build(self) -> Result<CacheLayer, ConfigError> {
        let cache = match self.store {
            Some(store) => HttpCache::new(&self.config, store)?,
            None => HttpCache::new(
                &self.config,
                Arc::new(uip_cache_core::MemoryStore::from_config(&self.config)),
            )?,
        };
        Ok(CacheLayer { cache })
    }
}
