//! Time-dependent decisions of the cache read its clock: a mock clock moved
//! on by the test stands in for waiting (feature `test-util`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::clock::MockClock;
use uip_cache_core::store::{Coordination, MemoryStore, PutOptions, StoreFuture};
use uip_cache_core::{Begin, CacheConfig, HttpCache, Plan, RequestView, StoredResponse};

/// A memory store shared with another instance that holds every lease;
/// counts the leases asked for.
#[derive(Debug)]
struct LeasesHeldElsewhere(MemoryStore, AtomicU64);

delegate_storage_and_status!(LeasesHeldElsewhere);

impl Coordination for LeasesHeldElsewhere {
    fn try_lease<'a>(&'a self, _: &'a str, _: u64, _: Duration) -> StoreFuture<'a, bool> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(false) })
    }
}

const ITEMS: &str =
    "policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n    tags: [items]\n";

#[tokio::test]
async fn the_wait_for_another_instances_lease_ends_when_the_clock_passes_lock_timeout() {
    let config =
        CacheConfig::from_yaml_str(&format!("defaults:\n  lock_timeout: 60s\n{ITEMS}")).unwrap();
    let clock = MockClock::new();
    let store = Arc::new(LeasesHeldElsewhere(
        MemoryStore::from_config(&config),
        AtomicU64::new(0),
    ));
    let cache = HttpCache::builder(&config)
        .store(store.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move {
            let headers = [("host", "api.example")];
            let req = RequestView::new("GET", "/items", &headers).authority(Some("api.example"));
            let Plan::Cache(plan) = cache.plan(&req) else {
                unreachable!("the policy matches")
            };
            matches!(cache.begin(plan, &req, Vec::new).await, Begin::Fetch(_))
        }
    });
    // The other instance neither stores the entry nor lets go of its lease:
    // without the clock this request would wait a minute.
    while store.1.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    clock.advance(Duration::from_secs(61));
    let fetched = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ends once the clock passes lock_timeout")
        .unwrap();
    assert!(fetched, "then the request goes to the origin itself");
}

#[tokio::test]
async fn a_soft_purge_makes_entries_stale_from_the_clocks_now() {
    let config = CacheConfig::from_yaml_str(ITEMS).unwrap();
    let clock = MockClock::new();
    let cache = HttpCache::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let headers = [("host", "api.example")];
    let req = RequestView::new("GET", "/items", &headers).authority(Some("api.example"));
    let Plan::Cache(plan) = cache.plan(&req) else {
        unreachable!("the policy matches")
    };
    let mut entry = StoredResponse::new(200, Bytes::from_static(b"[]"));
    entry.stored_at = clock.now();
    entry.freshness_lifetime = Duration::from_secs(60);
    entry.tags = vec!["items".to_owned()];
    let opts = PutOptions::new(entry.storage_ttl(), "/items").tags(&entry.tags);
    cache
        .store()
        .put(plan.key.as_str(), entry.encode().unwrap(), opts)
        .await
        .unwrap();

    clock.advance(Duration::from_secs(25));
    let (n, soft) = cache
        .soft_invalidate_tags(&["items".to_owned()])
        .await
        .unwrap();
    assert_eq!((n, soft), (1, true));
    let purged = cache.lookup(&plan, &req).await.expect("kept, marked stale");
    assert_eq!(
        purged.freshness_lifetime,
        Duration::from_secs(25),
        "fresh until the clock's now, its age then"
    );
    assert!(!purged.is_fresh(clock.now()));
}
