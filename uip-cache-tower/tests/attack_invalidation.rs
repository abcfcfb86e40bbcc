//! Invalidation an attacker cannot bend, through the Tower layer: a write on
//! one host never purges another host's entries (RFC 9111 section 4.4).

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use uip_cache_testkit::tower::{cached, ok, req};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};
use uip_cache_tower::CacheService;

const BASIC: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

fn on(host: &str, method: &str, uri: &str) -> Request<Full<Bytes>> {
    req(method, uri, &[("host", host)])
}

async fn x_cache(svc: &mut CacheService<Origin>, host: &str, uri: &str) -> String {
    ok(svc, on(host, "GET", uri)).await.x_cache().to_owned()
}

#[tokio::test]
async fn a_write_on_one_host_never_purges_another_hosts_entries() {
    // Every write answers with a Location on victim.example.
    let origin = Origin::new(|s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "http://victim.example/items/7")
            .header("content-location", "//victim.example/items/8"),
        _ => Reply::ok("list"),
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    let mut sets = 0;
    for (host, uri) in [
        ("victim.example", "/items"),
        ("victim.example", "/items/7"),
        ("victim.example", "/items/8"),
        ("attacker.example", "/items"),
    ] {
        assert_eq!(ok(&mut svc, on(host, "GET", uri)).await.x_cache(), "MISS");
        sets += 1;
        wait_for_sets(svc.cache(), sets).await;
    }
    // The attacker's write purges its own host's /items, and neither the
    // victim's /items nor the victim's URLs its Location names.
    let post = ok(&mut svc, on("attacker.example", "POST", "/items")).await;
    assert_eq!(post.status, 201);
    assert_eq!(x_cache(&mut svc, "victim.example", "/items").await, "HIT");
    assert_eq!(x_cache(&mut svc, "victim.example", "/items/7").await, "HIT");
    assert_eq!(x_cache(&mut svc, "victim.example", "/items/8").await, "HIT");
    assert_eq!(
        x_cache(&mut svc, "attacker.example", "/items").await,
        "MISS"
    );

    // The victim's own write purges its target and same-origin locations.
    assert_eq!(
        ok(&mut svc, on("victim.example", "POST", "/items"))
            .await
            .status,
        201
    );
    assert_eq!(x_cache(&mut svc, "victim.example", "/items").await, "MISS");
    assert_eq!(
        x_cache(&mut svc, "victim.example", "/items/7").await,
        "MISS"
    );
    assert_eq!(
        x_cache(&mut svc, "victim.example", "/items/8").await,
        "MISS"
    );
}
