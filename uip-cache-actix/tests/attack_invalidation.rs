//! Invalidation an attacker cannot bend, through the actix middleware: a
//! write on one host never purges another host's entries (RFC 9111 section 4.4).

use std::convert::Infallible;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, HttpRequest, HttpResponse};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const BASIC: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

/// Every write answers 201 with a `Location` and a `Content-Location` on
/// victim.example; every read a cacheable list.
async fn origin(req: HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::POST {
        HttpResponse::Created()
            .append_header(("location", "http://victim.example/items/7"))
            .append_header(("content-location", "//victim.example/items/8"))
            .body("created")
    } else {
        HttpResponse::Ok().streaming(futures_util::stream::iter([Ok::<_, Infallible>(
            bytes::Bytes::from_static(b"list"),
        )]))
    }
}

async fn send<S, B>(svc: &S, host: &str, method: &str, uri: &str) -> (u16, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let r = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(uri)
        .insert_header(("host", host))
        .to_request();
    let res = test::call_service(svc, r).await;
    let status = res.status().as_u16();
    let x_cache = res
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    test::read_body(res).await;
    (status, x_cache)
}

/// Waits (bounded) until the cache has written `n` entries: stores run in a
/// task of their own once the body has streamed.
async fn sets_reach(cache: &Cache, n: u64) {
    for _ in 0..400 {
        if cache.cache().stats().snapshot().sets >= n {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the cache did not store {n} entries");
}

#[actix_rt::test]
async fn a_write_on_one_host_never_purges_another_hosts_entries() {
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(BASIC).unwrap()).unwrap();
    let svc = test::init_service(
        App::new()
            .wrap(cache.clone())
            .default_service(web::to(origin)),
    )
    .await;
    let x_cache = |host, uri| {
        let svc = &svc;
        async move { send(svc, host, "GET", uri).await.1 }
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
        sets_reach(&cache, sets).await;
    }

    // The attacker's write purges its own host's /items, and neither the
    // victim's /items nor the victim's URLs its locations name.
    assert_eq!(
        send(&svc, "attacker.example", "POST", "/items").await,
        (201, "BYPASS".to_owned())
    );
    assert_eq!(x_cache("victim.example", "/items").await, "HIT");
    assert_eq!(x_cache("victim.example", "/items/7").await, "HIT");
    assert_eq!(x_cache("victim.example", "/items/8").await, "HIT");
    assert_eq!(x_cache("attacker.example", "/items").await, "MISS");

    // The victim's own write purges its target and same-origin locations.
    assert_eq!(send(&svc, "victim.example", "POST", "/items").await.0, 201);
    assert_eq!(x_cache("victim.example", "/items").await, "MISS");
    assert_eq!(x_cache("victim.example", "/items/7").await, "MISS");
    assert_eq!(x_cache("victim.example", "/items/8").await, "MISS");
}
