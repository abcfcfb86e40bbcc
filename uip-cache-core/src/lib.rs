//! The framework-free core of uip-cache: config, [`Settings`] (a config
//! compiled into what the cache runs on), keys, policies, stored entries,
//! compression, statistics, and the [`Store`] trait with the in-memory
//! [`MemoryStore`].
//!
//! Adapters (the Tower layer, the actix-web middleware, the server) translate
//! their requests into a [`RequestView`] and leave every decision to this
//! crate, so they behave alike: to an [`HttpCache`] (built with
//! [`HttpCache::builder`]), which applies the HTTP rules of [`http`], pure
//! functions of requests, responses and entries; [`adapter`] lists what
//! they are handed to translate back.
//!
//! # Example
//!
//! Load a config, find the policy of a request, key it and store a response:
//!
//! ```
//! use std::time::SystemTime;
//! use uip_cache_core::store::{MemoryStore, PutOptions, Storage};
//! use uip_cache_core::{CacheConfig, PolicySet, RequestView, StoredResponse};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: camera_entities
//!     pattern: "/ngsi-ld/v1/entities?type=Camera*"
//!     ttl: 60
//!     tags: [camera]
//! "#)?;
//! let policies = PolicySet::compile(&config).expect("validated when loaded");
//! let store = MemoryStore::from_config(&config);
//!
//! let headers = [("accept", "application/ld+json")];
//! let req = RequestView::new("GET", "/ngsi-ld/v1/entities", &headers)
//!     .query(Some("type=Camera&limit=100"));
//! let m = policies.find(req.path, req.query).expect("camera_entities matches");
//! let key = m.policy().key_spec().key(&req, &[]);
//!
//! let tags = m.entry_tags(req.path);
//! let mut entry = StoredResponse::new(200, "[]".into());
//! entry.freshness_lifetime = m.policy().ttl().unwrap();
//! entry.tags = tags.clone();
//! assert!(entry.is_fresh(SystemTime::now()));
//! let options = PutOptions::new(entry.storage_ttl(), req.path).tags(&tags).query(req.query);
//! store.put(key.as_str(), entry.encode().unwrap(), options).await.unwrap();
//!
//! let bytes = store.get(key.as_str()).await.unwrap().expect("stored");
//! assert_eq!(StoredResponse::decode(&bytes).unwrap().body, "[]");
//! assert_eq!(store.invalidate_tags(&["camera".to_string()]).await.unwrap(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapter;
pub mod admin;
mod cache;
pub mod clock;
pub mod compress;
pub mod config;
pub mod entry;
pub mod field;
pub mod forwarding;
pub mod http;
pub mod invalidate;
pub mod key;
pub mod lock;
pub mod pattern;
pub mod policy;
pub mod quiet;
pub mod record;
pub mod refresh;
pub mod request;
pub mod route;
pub mod schedule;
pub mod settings;
pub mod stats;
pub mod store;
pub mod task;
pub mod tee;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
pub mod warm;
pub mod zerocopy;

pub use adapter::{
    BodyRead, BodyReader, BypassTicket, HeaderEdit, HeaderEdits, OriginUnreachable, RangeReply,
    Refresh,
};
pub use cache::{
    After, AtHandOrLater, Begin, CachePlan, CachedBody, CachedResponse, FetchTicket, HttpCache,
    HttpCacheBuilder, InvalidateError, Later, LaterAnswer, Looked, OriginHeaders, OwnedRequest,
    Pass, Plan, Recording, Start, UnsafeRequest,
};
pub use clock::Clock;
pub use config::{CacheConfig, ConfigError};
pub use entry::{BodyEncoding, EntryError, StoredResponse};
pub use field::{field_name, FieldName};
pub use forwarding::{ClientOrigin, Connection, TrustedProxies};
pub use http::cache_control::CacheControl;
pub use http::cache_status::{Forward, XCache};
pub use key::{CacheKey, KeySpec};

/// How long adapters wait for a request body they buffer to key on
/// (`vary_by: [body]`) before passing it on unbuffered.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub use pattern::UrlPattern;
pub use policy::{Policy, PolicyMatch, PolicySet};
pub use request::{HeaderSource, RequestView};
pub use settings::Settings;
pub use stats::{CacheStats, NoCacheReason, StatsSnapshot};
pub use store::{MemoryStore, Store};
