//! Invalidation an attacker cannot bend, through the actix middleware: a
//! write on one host never purges another host's entries (RFC 9111 section 4.4).

use actix_web::test;
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;
use uip_cache_testkit::actix::send;
use uip_cache_testkit::{actix, wait_for_sets, Origin, Reply};

const BASIC: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

/// Every write answers 201 with a `Location` and a `Content-Location` on
/// victim.example; every read a cacheable list, streamed.
fn origin() -> Origin {
    Origin::new(|s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "http://victim.example/items/7")
            .header("content-location", "//victim.example/items/8"),
        _ => Reply::ok("list").chunked(),
    })
}

#[actix_rt::test]
async fn a_write_on_one_host_never_purges_another_hosts_entries() {
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(BASIC).unwrap()).unwrap();
    let svc = test::init_service(actix::app(cache.clone(), origin())).await;
    let x_cache = |host, uri| {
        let svc = &svc;
        async move {
            let got = send(svc, "GET", uri, &[("host", host)]).await;
            got.x_cache().to_owned()
        }
    };
    let mut sets = 0;
    for (host, uri) in [
        ("victim.example", "/items"),
        ("victim.example", "/items/7"),
        ("victim.example", "/items/8"),
        ("attacker.example", "/items"),
    ] {
        assert_eq!(x_cache(host, uri).await, "MISS");
        sets += 1;
        wait_for_sets(cache.cache(), sets).await;
    }

    // The attacker's write purges its own host's /items, and neither the
    // victim's /items nor the victim's URLs its locations name.
    let post = send(&svc, "POST", "/items", &[("host", "attacker.example")]).await;
    assert_eq!((post.status, post.x_cache()), (201, "BYPASS"));
    assert_eq!(x_cache("victim.example", "/items").await, "HIT");
    assert_eq!(x_cache("victim.example", "/items/7").await, "HIT");
    assert_eq!(x_cache("victim.example", "/items/8").await, "HIT");
    assert_eq!(x_cache("attacker.example", "/items").await, "MISS");

    // The victim's own write purges its target and same-origin locations.
    let post = send(&svc, "POST", "/items", &[("host", "victim.example")]).await;
    assert_eq!(post.status, 201);
    assert_eq!(x_cache("victim.example", "/items").await, "MISS");
    assert_eq!(x_cache("victim.example", "/items/7").await, "MISS");
    assert_eq!(x_cache("victim.example", "/items/8").await, "MISS");
}
