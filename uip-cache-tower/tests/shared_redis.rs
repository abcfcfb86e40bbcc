//! Several cache instances sharing one Redis coalesce their misses: one
//! instance fetches from the origin while the others wait for its entry.
#![cfg(feature = "redis")]

use std::time::Duration;

use uip_cache_testkit::tower::{config, get, ok, req};
use uip_cache_testkit::{wait_for_sets, Origin, RedisServer, Reply};
use uip_cache_tower::CacheLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_redis_make_one_origin_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n");
    let origin = Origin::always(Reply::ok("shared").delay(Duration::from_millis(300))).chunked();
    // Two layers built separately: two processes' worth of state, one Redis.
    let a = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let b = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            ok(&mut svc, get("/items?shared=1")).await
        }));
    }
    for t in tasks {
        assert_eq!(&t.await.unwrap().body[..], b"shared");
    }
    assert_eq!(
        origin.calls(),
        1,
        "one instance fetched, the other waited for its entry"
    );
    // And the entry is shared afterwards.
    let mut b = b;
    assert_eq!(ok(&mut b, get("/items?shared=1")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_fetches_itself_once_its_peer_gives_back_an_uncacheable_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("defaults:\n  lock_timeout: 500ms\npolicies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n");
    let origin = Origin::always(
        Reply::ok("private")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(100)),
    )
    .chunked();
    let a = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let b = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let (mut a2, mut b2) = (a.clone(), b.clone());
    let (ra, rb) = tokio::join!(ok(&mut a2, get("/items")), ok(&mut b2, get("/items")));
    assert_eq!(
        (&ra.body[..], &rb.body[..]),
        (&b"private"[..], &b"private"[..])
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_on_another_instance_stops_a_fetch_in_flight_from_being_stored() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml(
        "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    tags: [items]\n",
    );
    let origin = Origin::new(|_, n| {
        Reply::ok(&format!("v{n}")).delay(Duration::from_millis(if n == 0 { 300 } else { 0 }))
    })
    .chunked();
    let a = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let other = CacheLayer::from_config(&config(&yaml)).unwrap();
    let mut a2 = a.clone();
    let fetch = tokio::spawn(async move { ok(&mut a2, get("/items")).await });
    origin.wait_for_calls(1).await;
    // Instance B invalidates while A's origin request is in flight.
    other
        .cache()
        .invalidate_tags(&["items".into()])
        .await
        .unwrap();
    assert_eq!(&fetch.await.unwrap().body[..], b"v0");
    let mut a3 = a.clone();
    let got = ok(&mut a3, get("/items")).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"v1"[..]),
        "v0 was not stored"
    );
    assert_eq!(
        a.cache().stats().snapshot().uncacheable.get("invalidated"),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_invalidation_on_another_instance_leaves_a_fetch_alone() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml(
        "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    tags: [items]\n",
    );
    let origin = Origin::new(|_, n| {
        Reply::ok(&format!("v{n}")).delay(Duration::from_millis(if n == 0 { 300 } else { 0 }))
    })
    .chunked();
    let a = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let other = CacheLayer::from_config(&config(&yaml)).unwrap();
    let mut a2 = a.clone();
    let fetch = tokio::spawn(async move { ok(&mut a2, get("/items/1")).await });
    origin.wait_for_calls(1).await;
    // Instance B invalidates other things while A's fetch is in flight.
    other
        .cache()
        .invalidate_tags(&["path:/items/2".into(), "cameras".into()])
        .await
        .unwrap();
    other
        .cache()
        .invalidate_pattern(&uip_cache_core::UrlPattern::glob("/elsewhere/*").unwrap())
        .await
        .unwrap();
    assert_eq!(&fetch.await.unwrap().body[..], b"v0");
    let mut a3 = a.clone();
    wait_for_sets(a.cache(), 1).await;
    let got = ok(&mut a3, get("/items/1")).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"v0"[..]));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_on_another_instance_checks_the_entry_before_a_hit() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("policies:\n  - name: items\n    pattern: \"/items*\"\n");
    // Stored (it has a validator) but must be revalidated on every use.
    let origin = Origin::new(|_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "no-cache")
            .header("etag", format!("\"{n}\""))
            .delay(Duration::from_millis(300))
    })
    .chunked();
    let a = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let b = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let (mut a2, mut b2) = (a.clone(), b.clone());
    let lead = tokio::spawn(async move { ok(&mut a2, get("/items")).await });
    origin.wait_for_calls(1).await;
    // B waits on A's lease, then finds A's entry: no-cache, so not a HIT.
    let follower = ok(&mut b2, get("/items")).await;
    lead.await.unwrap();
    assert_ne!(follower.x_cache(), "HIT", "{:?}", follower.headers);
    assert_eq!(origin.calls(), 2, "the follower went to the origin");
}

/// A part another instance stored in the shared Redis is completed here:
/// a whole GET on this instance asks the origin for the rest of the part
/// only (with the part's validator), and the client gets the exact whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_stored_by_another_instance_is_completed_here() {
    const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml(
        "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    range_passthrough_above: 0\n",
    );
    let origin = Origin::new(|seen, _| {
        let range = seen.header("range").and_then(|r| r.strip_prefix("bytes="));
        let reply = match range.and_then(|r| r.split_once('-')) {
            Some((first, last)) => {
                let first: usize = first.parse().unwrap();
                let last: usize = if last.is_empty() {
                    BODY.len() - 1
                } else {
                    last.parse().unwrap()
                };
                Reply::ok(&BODY[first..=last]).status(206).header(
                    "content-range",
                    format!("bytes {first}-{last}/{}", BODY.len()),
                )
            }
            None => Reply::ok(BODY),
        };
        reply
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=60")
    });
    let a_layer = CacheLayer::from_config(&config(&yaml)).unwrap();
    let mut a = tower::Layer::layer(&a_layer, origin.clone());
    let mut b = tower::Layer::layer(
        &CacheLayer::from_config(&config(&yaml)).unwrap(),
        origin.clone(),
    );
    let part = ok(&mut a, req("GET", "/items/c", &[("range", "bytes=0-9")])).await;
    assert_eq!((part.status, &part.body[..]), (206, &b"0123456789"[..]));
    wait_for_sets(a_layer.cache(), 1).await;

    let whole = ok(&mut b, get("/items/c")).await;
    assert_eq!((whole.status, &whole.body[..]), (200, BODY.as_bytes()));
    let seen = origin.last_seen().unwrap();
    assert_eq!(
        (seen.header("range"), seen.header("if-range")),
        (Some("bytes=10-"), Some("\"v1\"")),
        "the rest of the part only was asked for"
    );
    assert_eq!(origin.calls(), 2);
}
