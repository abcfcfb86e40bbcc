//! Building the middleware with a store chosen in code (and, in tests, a
//! clock of their own): [`Cache::builder`].

use std::sync::Arc;

use uip_cache_core::{CacheConfig, Clock, ConfigError, HttpCache, MemoryStore, Store};

use crate::Cache;

/// Builds a [`Cache`]: [`Cache::builder`], then the store and the clock,
/// then [`build`](CacheBuilder::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheBuilder<'a> {
    config: &'a CacheConfig,
    store: Option<Arc<dyn Store>>,
    clock: Clock,
}

impl Cache {
    /// A builder of the middleware with `config`'s policies and a store
    /// chosen in code.
    pub fn builder(config: &CacheConfig) -> CacheBuilder<'_> {
        CacheBuilder {
            config,
            store: None,
            clock: Clock::system(),
        }
    }
}

impl CacheBuilder<'_> {
    /// The store entries live in (default: a memory store sized by the
    /// config's `store` section).
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
    /// use actix_web::{test, web, App, HttpResponse};
    /// use uip_cache_actix::test_util::MockClock;
    /// use uip_cache_actix::Cache;
    /// use uip_cache_core::CacheConfig;
    ///
    /// # actix_web::rt::System::new().block_on(async {
    /// let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
    /// let clock = MockClock::new();
    /// let cache = Cache::builder(&config).clock(clock.clone()).build()?;
    /// let app = test::init_service(
    ///     App::new().wrap(cache).route("/items", web::get().to(|| async { HttpResponse::Ok().body("[]") })),
    /// )
    /// .await;
    ///
    /// let get = || test::TestRequest::get().uri("/items").insert_header(("host", "api.example")).to_request();
    /// fn x_cache<B>(resp: &actix_web::dev::ServiceResponse<B>) -> String {
    ///     resp.headers().get("x-cache").unwrap().to_str().unwrap().to_owned()
    /// }
    /// let resp = test::call_service(&app, get()).await;
    /// assert_eq!(x_cache(&resp), "MISS");
    /// // Read to the end: the entry is stored as the body ends.
    /// test::read_body(resp).await;
    /// assert_eq!(x_cache(&test::call_service(&app, get()).await), "HIT");
    ///
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(x_cache(&test::call_service(&app, get()).await), "EXPIRED");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The middleware; fails only if the config does not compile into
    /// settings (its policies, `server.trusted_proxies`, ...).
    pub fn build(self) -> Result<Cache, ConfigError> {
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryStore::from_config(self.config)),
        };
        let cache = HttpCache::builder(self.config)
            .store(store)
            .clock(self.clock)
            .build()?;
        Ok(Cache::new(cache))
    }
}
