//! A store that fails or hangs never fails a request, and costs at most the
//! store timeout. Time here is tokio's paused clock: the bounds below are
//! exact virtual durations, not wall-clock measurements.

use std::time::Duration;

use uip_cache_testkit::tower::{config, get, ok, req};
use uip_cache_testkit::{wait_until, FailingStore, Origin, Reply};
use uip_cache_tower::CacheLayer;

const CONFIG: &str =
    "store:\n  timeout: 100ms\npolicies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

fn service(hang: bool, origin: &Origin) -> uip_cache_tower::CacheService<Origin> {
    let layer = CacheLayer::builder(config(CONFIG))
        .store(if hang {
            FailingStore::hanging()
        } else {
            FailingStore::erroring()
        })
        .build()
        .unwrap();
    tower::Layer::layer(&layer, origin.clone())
}

#[tokio::test(start_paused = true)]
async fn an_erroring_store_is_a_miss_never_an_error() {
    let origin = Origin::always(Reply::ok("from origin")).chunked();
    let mut svc = service(false, &origin);
    for _ in 0..3 {
        let got = ok(&mut svc, get("/items")).await;
        assert_eq!(
            (got.status, got.x_cache(), &got.body[..]),
            (200, "MISS", &b"from origin"[..])
        );
    }
    // Let the background writes run (and fail) before the POST bumps the
    // invalidation epoch, which would rightly cancel them.
    wait_until(svc.cache(), "3 lookups and 3 writes failed", |s| {
        s.store_errors >= 6
    })
    .await;
    assert_eq!(
        ok(&mut svc, req("POST", "/items", &[])).await.status,
        200,
        "invalidation failures too"
    );
    assert_eq!(origin.calls(), 4);
    let snap = svc.cache().stats().snapshot();
    assert_eq!(
        snap.store_errors, 7,
        "3 lookups, 3 writes, 1 invalidation: {snap:?}"
    );
    assert_eq!(snap.sets, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_adds_at_most_its_timeout() {
    let origin =
        Origin::always(Reply::ok("from origin").delay(Duration::from_millis(20))).chunked();
    let mut svc = service(true, &origin);
    let started = tokio::time::Instant::now();
    let got = ok(&mut svc, get("/items")).await;
    let took = started.elapsed();
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "MISS", &b"from origin"[..])
    );
    // 100ms lookup timeout + 20ms origin; the write times out in the background.
    assert_eq!(took, Duration::from_millis(120), "{took:?}");

    let started = tokio::time::Instant::now();
    assert_eq!(ok(&mut svc, req("DELETE", "/items", &[])).await.status, 200);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(120),
        "unsafe invalidation is bounded too"
    );
    assert!(svc.cache().stats().snapshot().store_errors >= 2);
}

#[tokio::test(start_paused = true)]
async fn coalesced_requests_on_a_hanging_store_all_complete() {
    let origin = Origin::always(Reply::ok("x").delay(Duration::from_millis(50))).chunked();
    let svc = service(true, &origin);
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { ok(&mut svc, get("/items")).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    // Lookups time out (100ms), one leader fetches (50ms) and fails to store
    // (100ms); nothing was stored, so the others then fetch alone (50ms).
    assert_eq!(origin.calls(), 20);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}
