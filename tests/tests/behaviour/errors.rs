//! Errors: a failing store is a miss, never an error; a failing origin is
//! covered by a stale entry within `stale-if-error`.

use std::sync::Arc;

use uip_cache_core::Store;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::{wait_until, FailingStore, Reply};

use crate::ITEMS;

for_every_adapter_and_store!(fail_open, stale_if_error_on_failure,);

async fn fail_open(a: Adapter, b: Backend) {
    // Memory: a store that fails every call. Redis: the real server killed.
    // Disk: its bodies folder replaced by a file, so no write can succeed.
    let store: Option<Arc<dyn Store>> =
        (b == Backend::Memory).then(|| Arc::new(FailingStore::erroring()) as Arc<dyn Store>);
    let Some(mut h) =
        Harness::with_store(a, b, ITEMS, |_, _| Reply::ok("from origin"), store).await
    else {
        return;
    };
    if let Some(server) = h.redis.as_mut() {
        server.kill();
    }
    if let Some(folder) = h.disk_folder() {
        let bodies = folder.join("bodies");
        std::fs::remove_dir_all(&bodies).unwrap();
        std::fs::write(&bodies, b"not a folder").unwrap();
    }
    for _ in 0..3 {
        let got = h.get("/items").await;
        assert_eq!(
            (got.status, got.x_cache(), &got.body[..]),
            (200, "MISS", &b"from origin"[..])
        );
    }
    assert_eq!(h.send("POST", "/items", &[]).await.status, 200);
    assert_eq!(h.calls(), 4);
    // A failed read is counted before the answer, a failed write (all the
    // disk store fails here) after it.
    wait_until(&h.cache, "3 store errors", |s| s.store_errors >= 3).await;
}

async fn stale_if_error_on_failure(a: Adapter, b: Backend) {
    // The origin service fails outright (an `Err`, not a 5xx response).
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n {
        0 => Reply::ok("v0")
            .header("cache-control", "max-age=60, stale-if-error=600")
            .header("age", "100"),
        _ => Reply::error(),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    h.wait_for_sets(1).await;
    let got = h.get("/items").await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"v0"[..]),
        "{a:?}/{b:?}"
    );
    let status = got.header("cache-status").unwrap();
    assert!(
        status.starts_with("uip-cache; fwd=stale; ttl=-")
            && status.ends_with("; detail=origin-unreachable"),
        "{a:?}/{b:?}: {status}"
    );
    assert_eq!(h.calls(), 2);
}
