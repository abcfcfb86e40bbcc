//! Fences against other instances' invalidations that a slow store cannot
//! bend: when the shared invalidation counter cannot be read as a fetch
//! starts, what other instances invalidate meanwhile cannot be known, so
//! the response is not stored (it used to be, unfenced).

use bytes::Bytes;
use uip_cache_core::store::{
    Coordination, MemoryStore, MemoryUsage, PutOptions, Storage, StoreError, StoreErrorKind,
    StoreFuture, StoreHealth, StoreStatus,
};
use uip_cache_core::UrlPattern;
use uip_cache_testkit::tower::{config, get, ok};
use uip_cache_testkit::{wait_until, Origin, Reply};
use uip_cache_tower::CacheLayer;

/// A memory store shared "with other instances" whose invalidation counter
/// cannot be read (a log read that timed out).
#[derive(Debug)]
struct EpochUnreadable(MemoryStore);

impl Storage for EpochUnreadable {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.0.get(key)
    }
    fn put<'a>(&'a self, key: &'a str, v: Bytes, o: PutOptions<'a>) -> StoreFuture<'a, ()> {
        self.0.put(key, v, o)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.0.delete(key)
    }
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        self.0.invalidate_tags(tags)
    }
    fn invalidate_pattern<'a>(&'a self, p: &'a UrlPattern) -> StoreFuture<'a, u64> {
        self.0.invalidate_pattern(p)
    }
}

impl StoreStatus for EpochUnreadable {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.0.keys_count()
    }
    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.0.memory()
    }
    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        self.0.health()
    }
}

impl Coordination for EpochUnreadable {
    fn epoch(&self) -> StoreFuture<'_, u64> {
        Box::pin(async { Err(StoreError::from_kind(StoreErrorKind::Timeout)) })
    }
}

#[tokio::test]
async fn a_fetch_whose_invalidation_counter_was_unreadable_is_not_stored() {
    let yaml = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";
    let layer = CacheLayer::builder(config(yaml))
        .store(EpochUnreadable(MemoryStore::new(1 << 20)))
        .build()
        .unwrap();
    let origin = Origin::always(Reply::ok("v")).chunked();
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
    let cache = svc.cache().clone();
    let s = wait_until(&cache, "the response is stored or refused", |s| {
        s.uncacheable.contains_key("invalidated") || s.sets > 0
    })
    .await;
    assert_eq!(s.sets, 0, "{s:?}");
    assert_eq!(s.uncacheable.get("invalidated"), Some(&1), "{s:?}");
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
}
