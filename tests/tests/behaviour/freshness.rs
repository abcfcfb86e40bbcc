//! Freshness: hits and misses, revalidation with validators, stale
//! entries served while they refresh, and how `Cache-Status` reports each.

use uip_cache_testkit::harness::{Adapter, Backend, Harness, Transport};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(
    hit_and_miss,
    conditional_304,
    head_after_revalidation,
    stale,
    cache_status,
);

async fn hit_and_miss(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| Reply::ok("[1,2,3]").header("age", "10")).await
    else {
        return;
    };
    let first = h.get("/items?a=1").await;
    assert_eq!(
        (first.status, first.x_cache(), &first.body[..]),
        (200, "MISS", &b"[1,2,3]"[..])
    );
    let hit = h.get("/items?a=1").await;
    assert_eq!((hit.x_cache(), &hit.body[..]), ("HIT", &b"[1,2,3]"[..]));
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((10..15).contains(&age), "{a:?}/{b:?}: age {age}");
    let head = h.send("HEAD", "/items?a=1", &[]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("HIT", 0));
    assert_eq!(h.get("/elsewhere").await.x_cache(), "BYPASS");
    assert_eq!(h.calls(), 2);
    assert_eq!(h.cache.stats().snapshot().hits, 2, "{a:?}/{b:?}");
}

async fn conditional_304(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| {
        if n == 0 {
            Reply::ok("body")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            assert_eq!(
                s.header("if-none-match"),
                Some("\"v1\""),
                "revalidation sends the validator"
            );
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let revalidated = h.get("/items").await;
    assert_eq!(
        (revalidated.x_cache(), &revalidated.body[..]),
        ("EXPIRED", &b"body"[..])
    );
    let not_modified = h
        .send("GET", "/items", &[("if-none-match", "\"v1\"")])
        .await;
    assert_eq!((not_modified.status, not_modified.x_cache()), (304, "HIT"));
    assert_eq!(h.calls(), 2);
}

async fn head_after_revalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        if n == 0 {
            Reply::ok("twelve bytes")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let head = h.send("HEAD", "/items", &[]).await;
    assert_eq!(
        (head.status, head.x_cache(), head.body.len()),
        (200, "EXPIRED", 0),
        "{a:?}/{b:?}"
    );
    if a.transport == Transport::Socket {
        assert_eq!(head.header("content-length"), Some("12"), "{a:?}/{b:?}");
    }
    assert_eq!(h.calls(), 2);
}

async fn stale(a: Adapter, b: Backend) {
    // Stale on arrival, inside both windows.
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n {
        0 => Reply::ok("v0")
            .header("cache-control", "max-age=60, stale-while-revalidate=600")
            .header("age", "100"),
        1 => Reply::ok("v1")
            .header("cache-control", "max-age=60, stale-if-error=600")
            .header("age", "100"),
        _ => Reply::ok("down").status(503),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    // Counted once the first fetch has let go of the key (and, with Redis,
    // of its lease): the stale hit below starts the refresh.
    h.wait_for_sets(1).await;
    let got = h.get("/items").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"v0"[..]));
    // Refreshed in the background (actix: through the app's own address).
    h.wait_for_sets(2).await;
    // v1 is stale, within stale-if-error: the 503 is covered.
    let got = h.get("/items").await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"v1"[..])
    );
    assert_eq!(h.calls(), 3);
}

async fn cache_status(a: Adapter, b: Backend) {
    // RFC 9211: what the cache did, beside X-Cache.
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| match (s.uri.as_str(), n) {
        // Behind another cache, which says what it did.
        ("/items/cdn", _) => Reply::ok("cdn")
            .header("cache-control", "max-age=100")
            .header("cache-status", "origin-cache; hit; ttl=40"),
        ("/items/sie", _) if s.header("x-fail").is_some() => Reply::ok("down").status(503),
        ("/items/sie", _) => Reply::ok("sie")
            .header("cache-control", "max-age=1, stale-if-error=600")
            .header("age", "5"),
        (_, 0) => Reply::ok("v0").header("cache-control", "max-age=100"),
        _ => Reply::ok("private").header("set-cookie", "s=1"),
    })
    .await
    else {
        return;
    };
    let got = h.get("/items/1").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=uri-miss; stored"),
        "{a:?}/{b:?}"
    );
    h.wait_for_sets(1).await;
    let got = h.get("/items/1").await;
    let status = got.header("cache-status").unwrap().to_owned();
    let ttl: i64 = status
        .strip_prefix("uip-cache; hit; ttl=")
        .unwrap_or_else(|| panic!("{status}"))
        .parse()
        .unwrap();
    assert!((95..=100).contains(&ttl), "{status}");
    let got = h.get("/items/2").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=uri-miss; detail=set_cookie")
    );
    let got = h.get("/elsewhere").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=bypass; detail=no_policy")
    );
    let got = h
        .send("GET", "/items/3", &[("cache-control", "no-store")])
        .await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=request; detail=request_no_store")
    );
    // The upstream cache's member stays, ours comes after it; a hit is
    // ours alone (the upstream's member described another request).
    let got = h.get("/items/cdn").await;
    assert_eq!(
        got.header("cache-status"),
        Some("origin-cache; hit; ttl=40, uip-cache; fwd=uri-miss; stored"),
        "{a:?}/{b:?}"
    );
    h.wait_for_sets(2).await;
    let got = h.get("/items/cdn").await;
    assert!(
        got.header("cache-status")
            .unwrap()
            .starts_with("uip-cache; hit; ttl="),
        "{:?}",
        got.header("cache-status")
    );
    // Stale served because the origin failed: forwarded, and what came back.
    h.get("/items/sie").await;
    h.wait_for_sets(3).await;
    let got = h.send("GET", "/items/sie", &[("x-fail", "1")]).await;
    assert_eq!((got.status, got.x_cache()), (200, "STALE"), "{a:?}/{b:?}");
    let status = got.header("cache-status").unwrap().to_owned();
    assert!(
        status.starts_with("uip-cache; fwd=stale; fwd-status=503; ttl=-"),
        "{status}"
    );
    // only-if-cached with nothing stored: the cache's own 504 says why.
    let got = h
        .send("GET", "/items/none", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(got.status, 504);
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; detail=only-if-cached")
    );
}
