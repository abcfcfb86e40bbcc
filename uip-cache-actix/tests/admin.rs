//! The admin API as an actix scope, and warming over HTTP through the
//! middleware of a real actix server.
#![cfg(feature = "admin")]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{test, web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use serde_json::Value;
use uip_cache_actix::admin::{self, Admin, HttpFetcher};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const CONFIG: &str = r#"
policies:
  - name: items
    pattern: "/items*"
    ttl: 60
    tags: [items]
invalidation:
  strategies:
    - type: webhook
      secret: hook
      events:
        - event: item_update
          invalidate_patterns: ["/items/{entity_id}"]
admin:
  secret: hook
"#;

async fn call(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    method: &str,
    path: &str,
    secret: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, Value) {
    let mut req = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path)
        .set_payload(body.into());
    if let Some(s) = secret {
        req = req.insert_header(("authorization", format!("Bearer {s}")));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let bytes = test::read_body(resp).await;
    let json = if ct == "application/json" {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8(bytes.to_vec()).unwrap())
    };
    (status, json)
}

#[actix_web::test]
async fn every_route_answers_through_the_scope() {
    let config = CacheConfig::from_yaml_str(CONFIG).unwrap();
    let cache = Cache::from_config(&config).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let ops = Admin::new(cache.cache().clone());
    let app = test::init_service(App::new().service(admin::scope("/admin", ops)).service(
        web::scope("").wrap(cache.clone()).route(
            "/items/{id}",
            web::get().to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { HttpResponse::Ok().body("item") }
            }),
        ),
    ))
    .await;
    let get_item = || async {
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/items/7").to_request()).await;
        resp.headers()
            .get("x-cache")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(get_item().await, "MISS");
    // Stored once the body was recorded (in the background).
    uip_cache_testkit::wait_for_sets(cache.cache(), 1).await;
    assert_eq!(get_item().await, "HIT");

    let (s, h) = call(&app, "GET", "/admin/health", None, "").await;
    assert_eq!((s, &h["status"]), (200, &Value::from("healthy")));
    assert_eq!(h["components"]["store"]["keys_count"], 1);
    let (s, m) = call(&app, "GET", "/admin/cache/metrics", None, "").await;
    assert_eq!((s, &m["statistics"]["misses"]), (200, &Value::from(1)));
    let (s, text) = call(&app, "GET", "/admin/metrics", None, "").await;
    assert_eq!(s, 200);
    let families = uip_cache_testkit::exposition::parse(text.as_str().unwrap()).unwrap();
    let requests = &families["uip_cache_requests_total"].samples;
    assert_eq!(
        requests["uip_cache_requests_total{policy=\"items\",outcome=\"miss\"}"],
        1.0
    );

    let purge = r#"{"event":"item_update","entity_id":"7"}"#;
    assert_eq!(
        call(&app, "POST", "/admin/cache/invalidate", None, purge)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&app, "POST", "/admin/cache/invalidate", Some("nope"), purge)
            .await
            .0,
        401
    );
    let (s, b) = call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("hook"),
        "[1,2]",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let big = format!(
        r#"{{"event":"item_update","entity_id":"7","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(
        call(&app, "POST", "/admin/cache/invalidate", Some("hook"), big)
            .await
            .0,
        413
    );
    assert_eq!(get_item().await, "HIT", "nothing changed");
    let (s, b) = call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("hook"),
        r#"{"event":"other"}"#,
    )
    .await;
    assert_eq!(
        (s, &b["matched"], &b["deleted"]),
        (200, &Value::from(false), &Value::from(0))
    );
    let (s, b) = call(&app, "POST", "/admin/cache/invalidate", Some("hook"), purge).await;
    assert_eq!((s, &b["deleted"]), (200, &Value::from(1)), "{b}");
    assert_eq!(get_item().await, "MISS");
    uip_cache_testkit::wait_for_sets(cache.cache(), 2).await;
    assert_eq!(get_item().await, "HIT");
    let (s, b) = call(
        &app,
        "POST",
        "/admin/cache/invalidate/tag",
        Some("hook"),
        r#"{"tags":["items"]}"#,
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &Value::from(1)));
    let (s, _) = call(
        &app,
        "POST",
        "/admin/cache/invalidate/url",
        Some("hook"),
        r#"{"url":"/items/7"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = call(&app, "POST", "/admin/cache/warm", Some("hook"), "").await;
    assert_eq!(s, 503, "no fetcher: {b}");
    let (s, _) = call(&app, "GET", "/admin/what", None, "").await;
    assert_eq!(s, 404);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// One HTTP/1.1 GET on a fresh connection: status line's code and `X-Cache`.
fn raw_get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let x = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-cache: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, x.to_uppercase())
}

#[actix_web::test]
async fn warming_over_http_stores_what_a_client_then_hits() {
    // Bound before the config names it: no other process can take the port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = CacheConfig::from_yaml_str(&format!(
        "{CONFIG}warming:\n  enabled: true\n  on_startup: false\n  base_url: \"http://127.0.0.1:{port}\"\n  host: api.example\n  urls: [{{url: /items/1}}, {{url: /items/2, priority: high}}]\n"
    ))
    .unwrap();
    let cache = Cache::from_config(&config).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server_cache = cache.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().wrap(server_cache.clone()).route(
            "/items/{id}",
            web::get().to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { HttpResponse::Ok().body("item") }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let fetcher = HttpFetcher::from_config(&config).unwrap().unwrap();
    let ops = Admin::with_fetcher(cache.cache().clone(), Arc::new(fetcher));
    let report = ops.warmer().unwrap().run().await;
    assert_eq!((report.success, report.failed), (2, 0), "{report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (status, x) = web::block(move || raw_get(port, "/items/1", "api.example"))
        .await
        .unwrap();
    assert_eq!((status, x.as_str()), (200, "HIT"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the warmed entry answered");
    // Another host is another key.
    let (_, x) = web::block(move || raw_get(port, "/items/1", "other.example"))
        .await
        .unwrap();
    assert_eq!(x, "MISS");
    let report = ops.warmer().unwrap().run().await;
    assert_eq!(report.skipped, 2);
    handle.stop(true).await;
}
