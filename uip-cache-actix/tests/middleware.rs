//! The actix middleware where it differs from the Tower layer: no
//! background refresh unless told where to send it, absolute `Location`s of
//! its own host, routed handlers, its refresh marker. What both adapters do
//! alike is in the behaviour suite (`tests/tests/behaviour/`), which runs
//! every case through both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, HttpResponse};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;
use uip_cache_testkit::actix::send;
use uip_cache_testkit::{actix, wait_for_sets, Origin, Reply, Seen};

const BASIC: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

/// The middleware of `yaml` in front of a streaming origin answering as
/// `handler` says.
async fn app(
    yaml: &str,
    handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    Origin,
    Cache,
) {
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(yaml).unwrap()).unwrap();
    let origin = Origin::new(handler).chunked();
    let service = test::init_service(actix::app(cache.clone(), origin.clone())).await;
    (service, origin, cache)
}

#[actix_rt::test]
async fn vary_and_conditional_requests() {
    let (svc, origin, _) = app(BASIC, |s, _| {
        let lang = s.header("accept-language").unwrap_or_default();
        Reply::ok(&format!("hello {lang}"))
            .header("vary", "Accept-Language")
            .header("etag", format!("\"{lang}\""))
    })
    .await;
    send(&svc, "GET", "/items", &[("accept-language", "en")]).await;
    send(&svc, "GET", "/items", &[("accept-language", "fr")]).await;
    let en = send(&svc, "GET", "/items", &[("accept-language", "en")]).await;
    assert_eq!((en.x_cache(), &en.body[..]), ("HIT", &b"hello en"[..]));
    let nm = send(
        &svc,
        "GET",
        "/items",
        &[("accept-language", "fr"), ("if-none-match", "\"fr\"")],
    )
    .await;
    assert_eq!((nm.status, nm.x_cache()), (304, "HIT"));
    assert_eq!(origin.calls(), 2);
}

#[actix_rt::test]
async fn stale_while_revalidate_serves_stale_without_a_background_refresh() {
    let (svc, origin, cache) = app(BASIC, |_, n| match n {
        0 => Reply::ok("v0")
            .header("cache-control", "max-age=60, stale-while-revalidate=600")
            .header("age", "100"),
        _ => Reply::ok("v1"),
    })
    .await;
    send(&svc, "GET", "/items", &[]).await;
    for _ in 0..3 {
        let stale = send(&svc, "GET", "/items", &[]).await;
        assert_eq!((stale.x_cache(), &stale.body[..]), ("STALE", &b"v0"[..]));
    }
    // actix serves stale without a background refresh (see the crate docs).
    assert_eq!(origin.calls(), 1);
    assert_eq!(cache.cache().stats().snapshot().stale_hits, 3);
}

#[actix_rt::test]
async fn unsafe_requests_invalidate_and_tags_work() {
    let (svc, _, cache) = app(BASIC, |s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "http://origin.test/items/7"),
        _ => Reply::ok("list"),
    })
    .await;
    send(&svc, "GET", "/items", &[]).await;
    send(&svc, "GET", "/items/7", &[]).await;
    assert_eq!(send(&svc, "GET", "/items", &[]).await.x_cache(), "HIT");
    assert_eq!(send(&svc, "POST", "/items", &[]).await.x_cache(), "BYPASS");
    assert_eq!(send(&svc, "GET", "/items", &[]).await.x_cache(), "MISS");
    assert_eq!(
        send(&svc, "GET", "/items/7", &[]).await.x_cache(),
        "MISS",
        "same-host Location"
    );
    send(&svc, "GET", "/items", &[]).await;
    assert_eq!(
        cache
            .cache()
            .invalidate_tags(&["policy:items".into()])
            .await
            .unwrap(),
        2
    );
}

#[actix_rt::test]
async fn entries_are_stored_under_the_key_core_computes_for_every_adapter() {
    // Same config, same request: the same key, so a Tower layer and this
    // middleware can share one store.
    let config = CacheConfig::from_yaml_str(BASIC).unwrap();
    let cache = Cache::from_config(&config).unwrap();
    let headers = [("accept", "application/json"), ("host", "origin.test")];
    let v = uip_cache_core::RequestView::new("GET", "/items", &headers)
        .query(Some("b=2&a=1"))
        .scheme(Some("http"))
        .authority(Some("origin.test"));
    let uip_cache_core::Plan::Cache(plan) = cache.cache().plan(&v) else {
        panic!()
    };
    let (svc, _, shared) = app(BASIC, |_, _| Reply::ok("x")).await;
    send(
        &svc,
        "GET",
        "/items?a=1&b=2",
        &[("accept", "application/json")],
    )
    .await;
    wait_for_sets(shared.cache(), 1).await;
    assert!(
        shared
            .cache()
            .store()
            .get(plan.key.as_str())
            .await
            .unwrap()
            .is_some(),
        "stored under the core key"
    );
}

/// Through real routes: the router must hold the only reference to the
/// request while it matches (a clone kept by the middleware would panic).
#[actix_rt::test]
async fn works_in_front_of_routed_handlers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(BASIC).unwrap()).unwrap();
    let svc = test::init_service(App::new().wrap(cache).route(
        "/items/{id}",
        web::get().to(move |id: web::Path<String>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    // Stale on arrival, with a validator and a stale-if-error window.
                    0 => HttpResponse::Ok()
                        .insert_header(("etag", "\"v1\""))
                        .insert_header(("age", "100"))
                        .insert_header(("cache-control", "max-age=60, stale-if-error=600"))
                        .body(format!("item {id}")),
                    1 => HttpResponse::NotModified()
                        .insert_header(("cache-control", "max-age=60"))
                        .finish(),
                    _ => HttpResponse::ServiceUnavailable().finish(),
                }
            }
        }),
    ))
    .await;
    assert_eq!(send(&svc, "GET", "/items/7", &[]).await.x_cache(), "MISS");
    let revalidated = send(&svc, "GET", "/items/7", &[]).await;
    assert_eq!(
        (revalidated.x_cache(), &revalidated.body[..]),
        ("EXPIRED", &b"item 7"[..])
    );
    assert_eq!(send(&svc, "GET", "/items/7", &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(send(&svc, "GET", "/items/8", &[]).await.status, 503);
}

#[actix_web::test]
async fn a_forged_refresh_marker_is_dropped_before_the_app() {
    let (svc, origin, _) = app(BASIC, |s, _| {
        assert!(
            s.header("x-uip-cache-refresh").is_none(),
            "the marker reached the app"
        );
        Reply::ok("fine")
    })
    .await;
    let req = test::TestRequest::get()
        .uri("/items/1")
        .insert_header((
            "x-uip-cache-refresh",
            "0123456789abcdef0123456789abcdef https",
        ))
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("x-cache").unwrap(), "MISS");
    assert_eq!(origin.calls(), 1);
}

/// One request, one config: a reload while the app answers does not
/// reach the request in flight. The settings are loaded once when it
/// arrives; loading them again for the answer would name the cache of
/// the new config in its `Cache-Status`.
#[actix_rt::test]
async fn a_request_keeps_the_settings_it_arrived_with_through_a_reload() {
    let yaml = |name: &str| format!("{BASIC}defaults:\n  cache_status: {name}\n");
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(&yaml("before")).unwrap()).unwrap();
    let reloaded = Arc::new(
        uip_cache_core::Settings::compile(&CacheConfig::from_yaml_str(&yaml("after")).unwrap())
            .unwrap(),
    );
    let core = cache.cache().clone();
    let origin = Origin::new(move |_, n| {
        if n == 0 {
            // The reload lands while the first request is at the origin.
            core.replace_settings(reloaded.clone());
        }
        Reply::ok("v")
    });
    let svc = test::init_service(actix::app(cache.clone(), origin.clone())).await;
    let first = send(&svc, "GET", "/items", &[]).await;
    assert_eq!(first.x_cache(), "MISS");
    let status = first.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("before;"), "{status}");
    // The next request arrives on the new config.
    let second = send(&svc, "GET", "/items", &[]).await;
    assert_eq!(second.x_cache(), "HIT");
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("after;"), "{status}");
}
