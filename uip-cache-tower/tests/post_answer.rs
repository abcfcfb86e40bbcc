//! A POST's answer stored as the GET entry of its own URL (RFC 9110
//! section 9.3.3) is there for the GETs that follow: not lost to a purge
//! of another URL that ran while the POST was at the origin, and waited
//! for by a GET sent as soon as the client has its last byte.

use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::{
    Coordination, MemoryStore, MemoryUsage, PutOptions, Storage, StoreFuture, StoreHealth,
    StoreStatus,
};
use uip_cache_core::UrlPattern;
use uip_cache_testkit::tower::{cached, config, get, ok, req};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};
use uip_cache_tower::CacheLayer;

const ITEMS: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

/// Answers POSTs with their own URL as `Content-Location` and explicit
/// freshness, after `delay`; GETs with a fresh body.
fn origin(delay: Duration) -> Origin {
    Origin::new(move |s, n| match s.method.as_str() {
        "POST" => Reply::ok(&format!("posted {n}"))
            .header("content-location", s.uri.clone())
            .header("cache-control", "max-age=60")
            .delay(delay),
        _ => Reply::ok(&format!("got {n}")),
    })
}

fn post(uri: &str) -> http::Request<http_body_util::Full<Bytes>> {
    req("POST", uri, &[("content-type", "text/plain")])
}

/// Other requests' writes (a PUT elsewhere purges its own URL) used to
/// keep out every POST answer that was at the origin while they ran,
/// whatever they purged.
#[tokio::test(start_paused = true)]
async fn only_a_write_concerning_it_keeps_a_posts_answer_out() {
    let origin = origin(Duration::from_secs(1));
    let mut svc = cached(ITEMS, &origin);
    for (uri, written, stored) in [
        ("/items/p", "/items/other", true),
        ("/items/q", "/items/q", false),
    ] {
        let calls = origin.calls();
        let sending = tokio::spawn({
            let mut svc = svc.clone();
            let uri = uri.to_owned();
            async move { ok(&mut svc, post(&uri)).await }
        });
        // The POST is at the origin (for a second): another client's PUT
        // succeeds and purges its URL.
        origin.wait_for_calls(calls + 1).await;
        let put = ok(&mut svc, req("PUT", written, &[])).await;
        assert_eq!(put.status, 200);
        let posted = sending.await.unwrap();
        assert_eq!((posted.status, posted.x_cache()), (200, "BYPASS"));
        let got = ok(&mut svc, get(uri)).await;
        if stored {
            assert_eq!(
                (got.x_cache(), &got.body),
                ("HIT", &posted.body),
                "{uri}: a write elsewhere"
            );
            assert_eq!(origin.calls(), calls + 2, "the GET did not reach it");
        } else {
            assert_eq!(got.x_cache(), "MISS", "{uri}: a write of its URL");
        }
    }
}

/// A memory store whose writes take a while (a store across the network),
/// and whose tag purges (a POST's purge of its own URL) take a while too.
#[derive(Debug)]
struct SlowWrites(MemoryStore);

impl Storage for SlowWrites {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.0.get(key)
    }
    fn put<'a>(&'a self, key: &'a str, v: Bytes, o: PutOptions<'a>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.put(key, v, o).await
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.0.delete(key)
    }
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            self.0.invalidate_tags(tags).await
        })
    }
    fn invalidate_pattern<'a>(&'a self, p: &'a UrlPattern) -> StoreFuture<'a, u64> {
        self.0.invalidate_pattern(p)
    }
}

impl StoreStatus for SlowWrites {
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

impl Coordination for SlowWrites {}

/// The POST's answer used to be written with nobody holding its GET's
/// key: a GET sent once the whole answer had arrived, before the write
/// ended, missed and went to the origin.
#[tokio::test(start_paused = true)]
async fn a_get_right_after_a_posts_answer_waits_for_its_write() {
    let layer = CacheLayer::builder(config(ITEMS))
        .store(SlowWrites(MemoryStore::new(1 << 20)))
        .build()
        .unwrap();
    let origin = origin(Duration::ZERO);
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let posted = ok(&mut svc, post("/items/p")).await;
    assert_eq!(posted.x_cache(), "BYPASS");
    // The whole answer is in: the next GET goes at once.
    let got = ok(&mut svc, get("/items/p")).await;
    assert_eq!((got.x_cache(), &got.body), ("HIT", &posted.body));
    assert_eq!(origin.calls(), 1, "the GET did not reach the origin");
    wait_for_sets(svc.cache(), 1).await;
}

/// An admin purge of the URL that ran while the POST's own purge of it
/// awaited the store used to be forgotten: the fence was moved past both
/// once the POST's purge returned, and an answer made before the admin
/// purge was stored after it.
#[tokio::test(start_paused = true)]
async fn a_purge_during_the_posts_own_purge_keeps_its_answer_out() {
    let layer = CacheLayer::builder(config(ITEMS))
        .store(SlowWrites(MemoryStore::new(1 << 20)))
        .build()
        .unwrap();
    let origin = origin(Duration::from_secs(1));
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    for (purged, stored) in [(None, true), (Some("/items/p"), false)] {
        let pattern = purged.map(UrlPattern::exact);
        let sending = tokio::spawn({
            let mut svc = svc.clone();
            async move { ok(&mut svc, post("/items/p")).await }
        });
        let calls = origin.calls();
        origin.wait_for_calls(calls + 1).await;
        // The origin answers after a second; its own purge then takes 40 ms.
        tokio::time::sleep(Duration::from_millis(1020)).await;
        if let Some(p) = &pattern {
            svc.cache().invalidate_pattern(p).await.unwrap();
        }
        let posted = sending.await.unwrap();
        assert_eq!(posted.x_cache(), "BYPASS");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = ok(&mut svc, get("/items/p")).await;
        if stored {
            assert_eq!((got.x_cache(), &got.body), ("HIT", &posted.body));
        } else {
            assert_eq!(got.x_cache(), "MISS", "purged while the POST purged");
        }
        svc.cache()
            .invalidate_pattern(&UrlPattern::glob("/items/*").unwrap())
            .await
            .unwrap();
    }
}
