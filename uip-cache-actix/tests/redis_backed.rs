//! The middleware on a real Redis: two instances (two processes' worth of
//! state) share entries.
#![cfg(feature = "redis")]

use actix_web::{test, web, App, HttpResponse};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;
use uip_cache_testkit::RedisServer;

#[actix_rt::test]
async fn two_instances_share_entries_through_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let make = |cache: Cache| {
        let calls = calls.clone();
        App::new().wrap(cache).route(
            "/items",
            web::get().to(move || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { HttpResponse::Ok().body("from origin") }
            }),
        )
    };
    let a = test::init_service(make(
        Cache::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap(),
    ))
    .await;
    let b = test::init_service(make(
        Cache::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap(),
    ))
    .await;
    let req = || {
        test::TestRequest::get()
            .uri("/items")
            .insert_header(("host", "h"))
            .to_request()
    };
    let first = test::call_service(&a, req()).await;
    assert_eq!(first.headers().get("x-cache").unwrap(), "MISS");
    assert_eq!(test::read_body(first).await, "from origin");
    // The write runs in its own task; give it a moment, bounded.
    let mut hit = false;
    for _ in 0..100 {
        let res = test::call_service(&b, req()).await;
        if res.headers().get("x-cache").unwrap() == "HIT" {
            assert_eq!(test::read_body(res).await, "from origin");
            hit = true;
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(hit, "instance b serves instance a's entry");
}
