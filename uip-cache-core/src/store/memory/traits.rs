//! The store traits for [`MemoryStore`]: its work is synchronous, so each
//! future is ready at once.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::index::Keyed;
use super::MemoryStore;
use crate::pattern::UrlPattern;
use crate::store::{
    Coordination, HealthStatus, MemoryUsage, PutOptions, Rewrite, Storage, StoreFuture,
    StoreHealth, StoreStatus,
};

impl Storage for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        let v = self.get_sync(key);
        Box::pin(async move { Ok(v) })
    }

    fn get_now(&self, key: &str) -> Option<Bytes> {
        self.get_sync(key)
    }

    fn get_now_is_whole(&self) -> bool {
        true
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()> {
        self.put_sync(key, value, options);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        let probe = self.inner.keys.probe(key);
        let removed = self.inner.cache.remove(&probe as &dyn Keyed).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        let n = self.invalidate_tags_sync(tags);
        Box::pin(async move { Ok(n) })
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        let n = self.invalidate_pattern_sync(pattern);
        Box::pin(async move { Ok(n) })
    }

    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_tags(tags), None, rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }

    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_pattern(pattern), Some(pattern), rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }
}

/// One process alone: the cache's own log and locks cover it.
impl Coordination for MemoryStore {}

impl StoreStatus for MemoryStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.inner.cache.run_pending_tasks();
        let n = self.inner.cache.entry_count();
        Box::pin(async move { Ok(n) })
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.inner.cache.run_pending_tasks();
        let usage = MemoryUsage::new(
            self.inner.cache.weighted_size(),
            Some(self.inner.max_bytes),
            self.inner.evictions.load(Ordering::Relaxed),
        )
        .with_expirations(self.inner.expirations.load(Ordering::Relaxed));
        Box::pin(async move { Ok(usage) })
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async { Ok(StoreHealth::new(HealthStatus::Connected, "memory", None)) })
    }
}
