//! How often a request reads the store through the Tower layer: a miss of
//! a store that has all it holds at hand (the memory store) reads it once,
//! not at hand and then again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use uip_cache_core::store::{Coordination, MemoryStore, Storage, StoreFuture};
use uip_cache_testkit::tower::{config, get, ok};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};
use uip_cache_tower::CacheLayer;

/// A memory store that counts its reads, and says its reads at hand are
/// whole or not.
#[derive(Debug)]
struct Counted {
    inner: MemoryStore,
    whole: bool,
    reads: Arc<AtomicUsize>,
}

impl Storage for Counted {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key)
    }
    fn get_now(&self, key: &str) -> Option<Bytes> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_now(key)
    }
    fn get_now_is_whole(&self) -> bool {
        self.whole
    }
    uip_cache_testkit::storage_put_to!(inner);
    uip_cache_testkit::storage_removals_to!(inner);
}

uip_cache_testkit::store_status_of!(Counted, inner);

impl Coordination for Counted {}

#[tokio::test]
async fn a_miss_reads_a_store_whole_at_hand_once_and_others_twice() {
    for (whole, miss_reads) in [(true, 1), (false, 2)] {
        let reads = Arc::new(AtomicUsize::new(0));
        let store = Counted {
            inner: MemoryStore::new(1 << 20),
            whole,
            reads: reads.clone(),
        };
        let layer = CacheLayer::builder(config(
            "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n",
        ))
        .store(store)
        .build()
        .unwrap();
        let origin = Origin::new(|_, n| Reply::ok(&format!("got {n}")));
        let mut svc = tower::Layer::layer(&layer, origin.clone());
        let got = ok(&mut svc, get("/items/a")).await;
        assert_eq!(got.x_cache(), "MISS");
        assert_eq!(reads.load(Ordering::SeqCst), miss_reads, "whole: {whole}");
        wait_for_sets(svc.cache(), 1).await;
        // The hit, read at hand, and the entry is the origin's answer.
        let before = reads.load(Ordering::SeqCst);
        let hit = ok(&mut svc, get("/items/a")).await;
        assert_eq!((hit.x_cache(), &hit.body), ("HIT", &got.body));
        assert_eq!(reads.load(Ordering::SeqCst) - before, 1);
        assert_eq!(origin.calls(), 1);
    }
}
