//! The middleware built with a mock clock: a test moves the cache's time
//! on instead of sleeping (feature `test-util`).

use std::time::Duration;

use actix_web::{test, web, App, HttpResponse};
use uip_cache_actix::test_util::{MockClock, OriginCounter};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const ITEMS: &str = "policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n";

#[actix_web::test]
async fn a_middleware_built_with_a_clock_reads_it() {
    let config = CacheConfig::from_yaml_str(ITEMS).unwrap();
    let clock = MockClock::new();
    let cache = Cache::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(!cache.cache().clock().is_system());
    let origin = OriginCounter::new();
    let counter = origin.clone();
    let app = test::init_service(App::new().wrap(cache).route(
        "/items",
        web::get().to(move || {
            counter.count();
            async { HttpResponse::Ok().body("[]") }
        }),
    ))
    .await;

    // Each response read to its end: the entry is stored as the body ends.
    let get = || async {
        let req = test::TestRequest::get()
            .uri("/items")
            .insert_header(("host", "api.example"))
            .to_request();
        let resp = test::call_service(&app, req).await;
        let x_cache = resp
            .headers()
            .get("x-cache")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let age = resp
            .headers()
            .get("age")
            .map(|a| a.to_str().unwrap().to_owned());
        test::read_body(resp).await;
        (x_cache, age)
    };

    assert_eq!(get().await.0, "MISS");
    assert_eq!(get().await, ("HIT".to_owned(), Some("0".to_owned())));
    assert_eq!(origin.calls(), 1);

    clock.advance(Duration::from_secs(30));
    assert_eq!(
        get().await,
        ("HIT".to_owned(), Some("30".to_owned())),
        "Age follows the clock"
    );

    // Past the TTL on the middleware's clock, with no time waited.
    clock.advance(Duration::from_secs(31));
    assert_eq!(get().await.0, "EXPIRED");
    assert_eq!(origin.calls(), 2);
}
