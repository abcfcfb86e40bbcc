use std::sync::Arc;

use tower_layer::Layer;
use uip_cache_core::{CacheConfig, Clock, ConfigError, HttpCache, Store};

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
            clock: Clock::system(),
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

/// Builds a [`CacheLayer`] with a store chosen in code (and, in tests, a
/// clock of their own).
#[derive(Debug)]
#[must_use]
pub struct CacheLayerBuilder {
    config: CacheConfig,
    store: Option<Arc<dyn Store>>,
    clock: Clock,
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

    /// The clock the cache reads whenever time decides what it does (ages,
    /// freshness, stale and hit-for-miss windows): see
    /// [`HttpCacheBuilder::clock`](uip_cache_core::HttpCacheBuilder::clock).
    ///
    /// Default: the system clock. A test gives a
    /// [`MockClock`](crate::test_util::MockClock) (feature `test-util`) and
    /// moves it on instead of sleeping:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use axum::{body::Body, http::Request, routing::get, Router};
    /// use tower::ServiceExt;
    /// use uip_cache_tower::test_util::MockClock;
    /// use uip_cache_tower::{CacheConfig, CacheLayer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
    /// let clock = MockClock::new();
    /// let layer = CacheLayer::builder(config).clock(clock.clone()).build()?;
    /// let app = Router::new().route("/items", get(|| async { "[]" })).layer(layer);
    ///
    /// let x_cache = |app: Router| async move {
    ///     let req = Request::get("/items").header("host", "api.example").body(Body::empty()).unwrap();
    ///     let resp = app.oneshot(req).await.unwrap();
    ///     let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
    ///     // Read to the end: the entry is stored as the body ends.
    ///     axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    ///     x
    /// };
    /// assert_eq!(x_cache(app.clone()).await, "MISS");
    /// assert_eq!(x_cache(app.clone()).await, "HIT");
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(x_cache(app).await, "EXPIRED");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Builds the layer; fails only if the config does not compile into
    /// settings (its policies, `server.trusted_proxies`, ...).
    pub fn build(self) -> Result<CacheLayer, ConfigError> {
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(uip_cache_core::MemoryStore::from_config(&self.config)),
        };
        let cache = HttpCache::builder(&self.config)
            .store(store)
            .clock(self.clock)
            .build()?;
        Ok(CacheLayer { cache })
    }
}
