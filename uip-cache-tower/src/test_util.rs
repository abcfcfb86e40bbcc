//! For an application's own tests of its cached app (feature `test-util`):
//! a [`MockClock`] the cache reads instead of the system clock, and a
//! [`CountingOrigin`] that counts the requests reaching the app's handlers,
//! so a test can say "the second request did not reach the origin" and
//! "61 s later it did" without waiting.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! uip-cache-tower = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! # Example
//!
//! An axum app with the layer, its origin counted, time moved on by the
//! test:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use tower::ServiceExt;
//! use uip_cache_tower::test_util::{CountingOrigin, MockClock};
//! use uip_cache_tower::{CacheConfig, CacheLayer, HttpCache};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
//! let clock = MockClock::new();
//! let cache = HttpCache::builder(&config).clock(clock.clone()).build()?;
//! let origin = CountingOrigin::new();
//! let app = Router::new()
//!     .route("/items", get(|| async { "[]" }))
//!     .layer(origin.clone()) // inside the cache: counts what reaches the handlers
//!     .layer(CacheLayer::new(cache));
//!
//! let x_cache = |app: Router| async move {
//!     let req = Request::get("/items").header("host", "api.example").body(Body::empty()).unwrap();
//!     let resp = app.oneshot(req).await.unwrap();
//!     let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
//!     // Read to the end: the entry is stored as the body ends.
//!     axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
//!     x
//! };
//! assert_eq!(x_cache(app.clone()).await, "MISS");
//! assert_eq!(origin.calls(), 1);
//! assert_eq!(x_cache(app.clone()).await, "HIT");
//! assert_eq!(origin.calls(), 1, "the second request did not reach the origin");
//!
//! clock.advance(Duration::from_secs(61));
//! assert_eq!(x_cache(app.clone()).await, "EXPIRED");
//! assert_eq!(origin.calls(), 2, "61 s later it did");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The clock decides ages, freshness and the stale windows, hit-for-miss
//! windows and lease waits; timers that wait (store timeouts, the wait
//! for a coalesced request's leader) stay on tokio's time, which a
//! `#[tokio::test(start_paused = true)]` test moves with
//! `tokio::time::advance`. The store keeps its own expiry in real time:
//! see [`uip_cache_core::clock`].

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

pub use uip_cache_core::clock::Clock;
pub use uip_cache_core::test_util::{MockClock, OriginCounter};

/// A mock origin's counter as a Tower layer: put it between the cache layer
/// and the app's handlers, and [`calls`](CountingOrigin::calls) says how
/// many requests got past the cache. Clones share one count.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use uip_cache_tower::test_util::CountingOrigin;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let origin = CountingOrigin::new();
/// let svc = origin.layer(service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>("[]") }));
/// svc.clone().oneshot(()).await.unwrap();
/// svc.oneshot(()).await.unwrap();
/// assert_eq!(origin.calls(), 2);
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct CountingOrigin {
    counter: OriginCounter,
}

impl CountingOrigin {
    /// A layer whose count is zero.
    pub fn new() -> Self {
        CountingOrigin::default()
    }

    /// A layer adding to `counter` (shared with handlers of another
    /// framework, say).
    pub fn with_counter(counter: OriginCounter) -> Self {
        CountingOrigin { counter }
    }

    /// The requests that reached the services it wraps so far.
    pub fn calls(&self) -> u64 {
        self.counter.calls()
    }

    /// The count it adds to.
    pub fn counter(&self) -> &OriginCounter {
        &self.counter
    }
}

impl<S> Layer<S> for CountingOrigin {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// A service that counts each request it is called with, then passes it on
/// (made by [`CountingOrigin`]).
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    counter: OriginCounter,
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.counter.count();
        self.inner.call(req)
    }
}
