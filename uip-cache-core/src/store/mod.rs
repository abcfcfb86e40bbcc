//! Where entries live: the [`Store`] traits and the in-memory [`MemoryStore`].
//!
//! A store is three traits, each with its own concern:
//!
//! - [`Storage`]: get, put, delete, purges and soft purges;
//! - [`Coordination`]: the shared invalidation log and leases between the
//!   instances sharing a store; every method has a default, so a store used
//!   by one process alone implements nothing there;
//! - [`StoreStatus`]: health and metrics.
//!
//! [`Store`] is all three, implemented for every type that has them; it is
//! what the cache holds and what users bound on. It is object-safe
//! (`Arc<dyn Store>`), so a config can pick the store at run time. Stores
//! deal in encoded bytes; core encodes and decodes
//! [`StoredResponse`](crate::StoredResponse)s.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use uip_cache_core::store::{
//!     Coordination, HealthStatus, MemoryStore, MemoryUsage, PutOptions, Storage, Store,
//!     StoreFuture, StoreHealth, StoreStatus,
//! };
//! use uip_cache_core::UrlPattern;
//!
//! /// A store that keeps nothing.
//! #[derive(Debug)]
//! struct Nothing;
//!
//! impl Storage for Nothing {
//!     fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Bytes>> {
//!         Box::pin(async { Ok(None) })
//!     }
//!     fn put<'a>(&'a self, _: &'a str, _: Bytes, _: PutOptions<'a>) -> StoreFuture<'a, ()> {
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
//!         Box::pin(async { Ok(false) })
//!     }
//!     fn invalidate_tags<'a>(&'a self, _: &'a [String]) -> StoreFuture<'a, u64> {
//!         Box::pin(async { Ok(0) })
//!     }
//!     fn invalidate_pattern<'a>(&'a self, _: &'a UrlPattern) -> StoreFuture<'a, u64> {
//!         Box::pin(async { Ok(0) })
//!     }
//! }
//!
//! // One process alone: the defaults.
//! impl Coordination for Nothing {}
//!
//! impl StoreStatus for Nothing {
//!     fn keys_count(&self) -> StoreFuture<'_, u64> {
//!         Box::pin(async { Ok(0) })
//!     }
//!     fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
//!         Box::pin(async { Ok(MemoryUsage::default()) })
//!     }
//!     fn health(&self) -> StoreFuture<'_, StoreHealth> {
//!         Box::pin(async { Ok(StoreHealth::new(HealthStatus::Connected, "nothing", None)) })
//!     }
//! }
//!
//! let stores: Vec<Arc<dyn Store>> = vec![Arc::new(Nothing), Arc::new(MemoryStore::new(1 << 20))];
//! # let _ = stores;
//! ```

mod coordination;
mod error;
mod memory;
mod status;
mod storage;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::future::Future;
use std::pin::Pin;

pub use coordination::Coordination;
pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use status::{HealthStatus, MemoryUsage, StoreHealth, StoreStatus};
pub use storage::{EntryWriter, PutOptions, ReadBack, Rewrite, Storage};

/// The future returned by the store traits' methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place to keep cache entries: [`Storage`], [`Coordination`] and
/// [`StoreStatus`] together, implemented for every type that has the three.
/// The cache holds an `Arc<dyn Store>`.
///
/// Implementations must make tag and URL-pattern invalidation cost time
/// proportional to the entries they look at under the tag or under the
/// pattern's literal path prefix, never to the size of the whole store.
/// `core`'s `conformance` feature has a suite every implementation should pass.
pub trait Store: Storage + Coordination + StoreStatus {}

impl<T: Storage + Coordination + StoreStatus + ?Sized> Store for T {}
