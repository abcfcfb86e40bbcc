//! Test stores that wrap another store and change only some of its
//! calls: macros that pass the others on to the wrapped store, so that
//! each test store writes only what it changes.
//!
//! ```
//! use bytes::Bytes;
//! use uip_cache_core::store::{Coordination, MemoryStore, Storage, StoreFuture, StoreStatus};
//!
//! /// A memory store with nothing at hand, as Redis.
//! #[derive(Debug)]
//! struct Remote(MemoryStore);
//!
//! impl Storage for Remote {
//!     fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
//!         self.0.get(key)
//!     }
//!     uip_cache_testkit::storage_put_to!(0);
//!     uip_cache_testkit::storage_removals_to!(0);
//! }
//! uip_cache_testkit::store_status_of!(Remote, 0);
//! impl Coordination for Remote {}
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Remote(MemoryStore::new(1 << 20));
//! assert!(store.get_now("k").is_none(), "nothing at hand");
//! assert!(store.get("k").await.unwrap().is_none());
//! assert_eq!(store.keys_count().await.unwrap(), 0);
//! # }
//! ```

/// Inside an `impl Storage` block: `put`, passed to the field `$field`
/// (a name, or `0` for a tuple struct).
#[macro_export]
macro_rules! storage_put_to {
    ($field:tt) => {
        fn put<'a>(
            &'a self,
            key: &'a str,
            value: $crate::__bytes::Bytes,
            options: $crate::__core::store::PutOptions<'a>,
        ) -> $crate::__core::store::StoreFuture<'a, ()> {
            self.$field.put(key, value, options)
        }
    };
}

/// Inside an `impl Storage` block: `delete`, `invalidate_tags` and
/// `invalidate_pattern`, passed to the field `$field`.
#[macro_export]
macro_rules! storage_removals_to {
    ($field:tt) => {
        fn delete<'a>(&'a self, key: &'a str) -> $crate::__core::store::StoreFuture<'a, bool> {
            self.$field.delete(key)
        }
        fn invalidate_tags<'a>(
            &'a self,
            tags: &'a [String],
        ) -> $crate::__core::store::StoreFuture<'a, u64> {
            self.$field.invalidate_tags(tags)
        }
        fn invalidate_pattern<'a>(
            &'a self,
            pattern: &'a $crate::__core::UrlPattern,
        ) -> $crate::__core::store::StoreFuture<'a, u64> {
            self.$field.invalidate_pattern(pattern)
        }
    };
}

/// `StoreStatus` for `$t`, every call passed to its field `$field`.
#[macro_export]
macro_rules! store_status_of {
    ($t:ty, $field:tt) => {
        impl $crate::__core::store::StoreStatus for $t {
            fn keys_count(&self) -> $crate::__core::store::StoreFuture<'_, u64> {
                self.$field.keys_count()
            }
            fn memory(
                &self,
            ) -> $crate::__core::store::StoreFuture<'_, $crate::__core::store::MemoryUsage> {
                self.$field.memory()
            }
            fn health(
                &self,
            ) -> $crate::__core::store::StoreFuture<'_, $crate::__core::store::StoreHealth> {
                self.$field.health()
            }
        }
    };
}
