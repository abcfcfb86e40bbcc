//! Revalidation through the request protocol: a 304 is answered without
//! waiting for the store to take back the key's lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::{Coordination, MemoryStore, StoreFuture};
use uip_cache_core::{After, Begin, CacheConfig, HttpCache, Plan, RequestView};

use crate::owned;

/// A memory store shared with other instances whose every lease release
/// after the first never completes (a slow or stalled store), counted.
#[derive(Debug)]
struct StalledReleases(MemoryStore, AtomicU64);

delegate_storage_and_status!(StalledReleases);

impl Coordination for StalledReleases {
    fn release_lease<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, ()> {
        if self.1.fetch_add(1, Ordering::SeqCst) == 0 {
            Box::pin(async { Ok(()) })
        } else {
            Box::pin(std::future::pending())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_is_answered_while_the_store_takes_back_the_lease() {
    // A store call may take up to a minute here: a 304 that waited for
    // the lease's release would take that long.
    let config = CacheConfig::from_yaml_str(
        "store:\n  timeout: 60s\npolicies:\n  - name: items\n    pattern: /items\n",
    )
    .unwrap();
    let store = Arc::new(StalledReleases(
        MemoryStore::from_config(&config),
        AtomicU64::new(0),
    ));
    let cache = HttpCache::builder(&config)
        .store(store.clone())
        .build()
        .unwrap();
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    let origin = [
        ("cache-control", "no-cache"),
        ("etag", "\"v1\""),
        ("content-length", "4"),
    ];

    // The miss stores an entry to revalidate on every use.
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let Begin::Fetch(ticket) = cache.begin(plan, &req, Vec::new).await else {
        panic!("a miss")
    };
    let After::Record { mut recording, .. } = ticket.origin_responded(200, owned(&origin)).await
    else {
        panic!("recorded")
    };
    recording.chunk(&Bytes::from_static(b"body"));
    recording.ended();
    uip_cache_testkit::wait_until(&cache, "the entry stored", |s| s.sets >= 1).await;

    // The revalidation takes the key and its lease; the origin says 304.
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let Begin::Fetch(ticket) = cache.begin(plan, &req, Vec::new).await else {
        panic!("a revalidation")
    };
    assert!(format!("{ticket:?}").contains("revalidating: true"));
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        ticket.origin_responded(304, owned(&[("etag", "\"v1\"")])),
    )
    .await
    .expect("the 304 is answered without waiting for the lease's release");
    let After::Respond(r) = answered else {
        panic!("the stored entry answers")
    };
    assert_eq!(r.status, 200);
    assert!(store.1.load(Ordering::SeqCst) >= 1);
}
