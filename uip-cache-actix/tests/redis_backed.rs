//! The middleware on a real Redis: two instances (two processes' worth of
//! state) share entries.
#![cfg(feature = "redis")]

use actix_web::test;
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;
use uip_cache_testkit::actix::send;
use uip_cache_testkit::{actix, wait_for_sets, Origin, RedisServer, Reply};

#[actix_rt::test]
async fn two_instances_share_entries_through_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n");
    let origin = Origin::always(Reply::ok("from origin"));
    let instance = || Cache::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    let (cache_a, cache_b) = (instance(), instance());
    let a = test::init_service(actix::app(cache_a.clone(), origin.clone())).await;
    let b = test::init_service(actix::app(cache_b, origin.clone())).await;
    let host = [("host", "h")];
    let first = send(&a, "GET", "/items", &host).await;
    assert_eq!(
        (first.x_cache(), &first.body[..]),
        ("MISS", &b"from origin"[..])
    );
    // The write runs in its own task once the body has passed.
    wait_for_sets(cache_a.cache(), 1).await;
    let shared = send(&b, "GET", "/items", &host).await;
    assert_eq!(
        (shared.x_cache(), &shared.body[..]),
        ("HIT", &b"from origin"[..]),
        "instance b serves instance a's entry"
    );
    assert_eq!(origin.calls(), 1);
}
