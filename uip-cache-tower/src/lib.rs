//! The Tower layer of uip-cache: a config-driven, RFC 9111 HTTP response cache
//! for axum, hyper and tonic.
//!
//! ```
//! use axum::{routing::get, Router};
//! use uip_cache_core::CacheConfig;
//! use uip_cache_tower::CacheLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: entities
//!     pattern: "/ngsi-ld/v1/entities*"
//!     ttl: 60
//! "#)?;
//! let app: Router = Router::new()
//!     .route("/ngsi-ld/v1/entities", get(|| async { "[]" }))
//!     .layer(CacheLayer::from_config(&config)?);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! What it does, all decided by `uip-cache-core`:
//! - fresh hits never reach the inner service; responses carry `X-Cache`
//!   (`HIT`, `MISS`, `STALE`, `BYPASS`, `EXPIRED`) and a correct `Age`;
//! - RFC 9111 shared-cache rules, `Vary`, conditional requests (304) and
//!   revalidation of stale entries;
//! - one origin request per key while concurrent requests wait;
//! - stale-while-revalidate and stale-if-error;
//! - bodies stream to the client while they are recorded; past `max_size`
//!   they pass through uncached;
//! - a store that fails or hangs costs at most its timeout, never an error;
//! - `Forwarded`, `X-Forwarded-*`, `X-Original-URL` and the other
//!   forwarding headers are removed before the inner service sees a request
//!   unless its peer (axum's `ConnectInfo<SocketAddr>`, or a
//!   [`uip_cache_core::Connection`] extension) is in the config's
//!   `server.trusted_proxies`, so the scheme and host in the key are the
//!   ones extractors such as axum-extra's `Host` read.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod body;
mod headers;
mod layer;
mod request_body;
mod service;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

pub use body::CacheBody;
pub use layer::{CacheLayer, CacheLayerBuilder};
pub use request_body::RequestBody;
pub use service::{CacheService, ResponseFuture};
pub use uip_cache_core::{CacheConfig, HttpCache, OriginUnreachable};

// The README's examples are compiled and run as doctests, so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// So are those of the pages under docs/.
#[doc = include_str!("../../docs/core.md")]
#[cfg(doctest)]
pub struct CoreDocDoctests;
