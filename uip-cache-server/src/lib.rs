//! uip-cache as a standalone caching reverse proxy: the library behind the
//! `uip-cache` binary.
//!
//! ```no_run
//! use std::time::Duration;
//! use uip_cache_core::{CacheConfig, HttpCache};
//! use uip_cache_server::{proxy::Upstream, server::{proxy, serve}};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n")?;
//! let cache = HttpCache::with_memory_store(&config)?;
//! let upstream = Upstream::new("http://127.0.0.1:3000".parse()?, Duration::from_secs(5), Duration::from_secs(60));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, proxy(cache, upstream), Duration::from_secs(10), uip_cache_server::server::signal()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod demo;
pub mod interim;
pub mod io;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod slow;
pub mod tls;
