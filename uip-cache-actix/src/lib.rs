//! The actix-web middleware of uip-cache: the same cache as the Tower layer
//! (same keys, policies, headers, coalescing, stale and streaming rules,
//! fail-open), because every decision is made by `uip-cache-core`.
//!
//! Stale-while-revalidate refreshes run in the background as in the Tower
//! layer, through the app's own address (`warming.base_url`, or
//! [`Cache::refresh_through`]): an actix request cannot be answered and sent
//! on at once, since `HttpRequest::match_info_mut` takes the only reference
//! to it (`Rc::get_mut(..).unwrap()`), so the refresh is a request of its
//! own. Stale-if-error covers 5xx responses and an `Err` from the inner
//! service alike (the stale entry becomes the error's response).
//!
//! ```
//! use actix_web::{web, App, HttpResponse};
//! use uip_cache_actix::Cache;
//! use uip_cache_core::CacheConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::from_yaml_str("policies:\n  - name: e\n    pattern: \"/entities*\"\n    ttl: 60\n")?;
//! // Once, outside HttpServer::new; clone it into each worker's App.
//! let cache = Cache::from_config(&config)?;
//! let app = App::new()
//!     .wrap(cache.clone())
//!     .route("/entities", web::get().to(|| async { HttpResponse::Ok().body("[]") }));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod body;
mod builder;
mod middleware;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
mod translate;

pub use body::CacheBody;
pub use builder::CacheBuilder;
pub use middleware::{Cache, CacheMiddleware};
