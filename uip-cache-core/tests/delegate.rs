//! Test stores that wrap a [`MemoryStore`](uip_cache_core::store::MemoryStore)
//! in their field `.0` and change only some coordination: the storage and
//! status parts, passed on to it.

/// Implements `Storage` and `StoreStatus` for `$t` by passing every call
/// to its field `.0`.
macro_rules! delegate_storage_and_status {
    ($t:ty) => {
        impl uip_cache_core::store::Storage for $t {
            fn get<'a>(
                &'a self,
                key: &'a str,
            ) -> uip_cache_core::store::StoreFuture<'a, Option<bytes::Bytes>> {
                self.0.get(key)
            }
            uip_cache_testkit::storage_put_to!(0);
            uip_cache_testkit::storage_removals_to!(0);
            fn soft_invalidate_tags<'a>(
                &'a self,
                tags: &'a [String],
                rewrite: &'a uip_cache_core::store::Rewrite<'a>,
            ) -> uip_cache_core::store::StoreFuture<'a, Option<u64>> {
                self.0.soft_invalidate_tags(tags, rewrite)
            }
        }

        uip_cache_testkit::store_status_of!($t, 0);
    };
}
