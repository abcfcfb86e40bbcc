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
            fn put<'a>(
                &'a self,
                key: &'a str,
                value: bytes::Bytes,
                o: uip_cache_core::store::PutOptions<'a>,
            ) -> uip_cache_core::store::StoreFuture<'a, ()> {
                self.0.put(key, value, o)
            }
            fn delete<'a>(&'a self, key: &'a str) -> uip_cache_core::store::StoreFuture<'a, bool> {
                self.0.delete(key)
            }
            fn invalidate_tags<'a>(
                &'a self,
                tags: &'a [String],
            ) -> uip_cache_core::store::StoreFuture<'a, u64> {
                self.0.invalidate_tags(tags)
            }
            fn invalidate_pattern<'a>(
                &'a self,
                pattern: &'a uip_cache_core::UrlPattern,
            ) -> uip_cache_core::store::StoreFuture<'a, u64> {
                self.0.invalidate_pattern(pattern)
            }
            fn soft_invalidate_tags<'a>(
                &'a self,
                tags: &'a [String],
                rewrite: &'a uip_cache_core::store::Rewrite<'a>,
            ) -> uip_cache_core::store::StoreFuture<'a, Option<u64>> {
                self.0.soft_invalidate_tags(tags, rewrite)
            }
        }

        impl uip_cache_core::store::StoreStatus for $t {
            fn keys_count(&self) -> uip_cache_core::store::StoreFuture<'_, u64> {
                self.0.keys_count()
            }
            fn memory(
                &self,
            ) -> uip_cache_core::store::StoreFuture<'_, uip_cache_core::store::MemoryUsage> {
                self.0.memory()
            }
            fn health(
                &self,
            ) -> uip_cache_core::store::StoreFuture<'_, uip_cache_core::store::StoreHealth> {
                self.0.health()
            }
        }
    };
}
