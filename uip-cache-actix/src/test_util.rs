//! For an application's own tests of its cached app (feature `test-util`):
//! a [`MockClock`] the cache reads instead of the system clock, and an
//! [`OriginCounter`] the app's handlers bump, so a test can say "the second
//! request did not reach the origin" and "61 s later it did" without
//! waiting.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! uip-cache-actix = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use actix_web::{test, web, App, HttpResponse};
//! use uip_cache_actix::test_util::{MockClock, OriginCounter};
//! use uip_cache_actix::Cache;
//! use uip_cache_core::{CacheConfig, HttpCache};
//!
//! # actix_web::rt::System::new().block_on(async {
//! let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
//! let clock = MockClock::new();
//! let cache = Cache::new(HttpCache::builder(&config).clock(clock.clone()).build()?);
//! let origin = OriginCounter::new();
//! let counter = origin.clone();
//! let app = test::init_service(App::new().wrap(cache).route(
//!     "/items",
//!     web::get().to(move || {
//!         counter.count();
//!         async { HttpResponse::Ok().body("[]") }
//!     }),
//! ))
//! .await;
//!
//! let get = || test::TestRequest::get().uri("/items").insert_header(("host", "api.example")).to_request();
//! fn x_cache<B>(resp: &actix_web::dev::ServiceResponse<B>) -> String {
//!     resp.headers().get("x-cache").unwrap().to_str().unwrap().to_owned()
//! }
//!
//! let resp = test::call_service(&app, get()).await;
//! assert_eq!(x_cache(&resp), "MISS");
//! // Read to the end: the entry is stored as the body ends.
//! test::read_body(resp).await;
//! let resp = test::call_service(&app, get()).await;
//! assert_eq!((x_cache(&resp), origin.calls()), ("HIT".to_owned(), 1));
//!
//! clock.advance(Duration::from_secs(61));
//! let resp = test::call_service(&app, get()).await;
//! assert_eq!((x_cache(&resp), origin.calls()), ("EXPIRED".to_owned(), 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The clock decides ages, freshness and the stale windows, hit-for-miss
//! windows and lease waits; timers that wait (store timeouts, the wait for
//! a coalesced request's leader) stay on the runtime's time. The store
//! keeps its own expiry in real time: see [`uip_cache_core::clock`].

pub use uip_cache_core::clock::Clock;
pub use uip_cache_core::test_util::{MockClock, OriginCounter};
