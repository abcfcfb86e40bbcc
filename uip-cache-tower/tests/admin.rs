//! The admin API on axum, and warming through the layer in process.
#![cfg(feature = "admin")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use uip_cache_core::CacheConfig;
use uip_cache_tower::admin::{self, Admin};
use uip_cache_tower::CacheLayer;

const CONFIG: &str = r#"
policies:
  - name: items
    pattern: "/items*"
    ttl: 60
    tags: [items]
invalidation:
  strategies:
    - type: webhook
      events:
        - event: item_update
          invalidate_patterns: ["/items/{entity_id}"]
admin:
  secret: s3cret
warming:
  enabled: true
  on_startup: false
  host: api.example
  max_concurrent: 2
  urls:
    - url: "/items/1"
      priority: low
    - url: "/items/2"
      priority: high
      headers: {accept: application/json}
"#;

/// An app whose handler counts its calls, with the cache layer, and its
/// admin API (warming through the app) nested under /admin.
fn app() -> (Router, Arc<AtomicUsize>, Admin) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let config = CacheConfig::from_yaml_str(CONFIG).unwrap();
    let layer = CacheLayer::from_config(&config).unwrap();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move { format!("item {id} v{n}") }
                },
            ),
        )
        .layer(layer.clone());
    let ops = Admin::with_fetcher(layer.cache().clone(), admin::router_fetcher(app.clone()));
    let app = app.nest("/admin", admin::router(ops.clone()));
    (app, calls, ops)
}

async fn send(app: &Router, req: Request<Body>) -> (u16, Vec<(String, String)>, Bytes) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (
        status,
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn get_item(app: &Router, path: &str, accept: Option<&str>) -> (String, String) {
    let mut req = Request::get(path).header("host", "api.example");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let (_, headers, body) = send(app, req.body(Body::empty()).unwrap()).await;
    let x = headers
        .iter()
        .find(|(n, _)| n == "x-cache")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (x, String::from_utf8(body.to_vec()).unwrap())
}

async fn admin_call(
    app: &Router,
    method: &str,
    path: &str,
    secret: Option<&str>,
    body: Body,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(s) = secret {
        req = req.header("x-webhook-secret", s);
    }
    let (status, headers, bytes) = send(app, req.body(body).unwrap()).await;
    let ct = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let json = if ct == "application/json" {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8(bytes.to_vec()).unwrap())
    };
    (status, json)
}

#[tokio::test]
async fn every_route_answers_through_axum() {
    let (app, _, _) = app();
    let (s, h) = admin_call(&app, "GET", "/admin/health", None, Body::empty()).await;
    assert_eq!((s, &h["status"]), (200, &Value::from("healthy")));
    assert_eq!(h["components"]["warmer"]["status"], "enabled");
    let (s, m) = admin_call(&app, "GET", "/admin/cache/metrics", None, Body::empty()).await;
    assert_eq!(s, 200);
    assert!(m["statistics"]["hit_rate"].is_number());
    let (s, text) = admin_call(&app, "GET", "/admin/metrics", None, Body::empty()).await;
    assert_eq!(s, 200);
    let families = uip_cache_testkit::exposition::parse(text.as_str().unwrap()).unwrap();
    assert!(families.contains_key("uip_cache_requests_total"));

    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("s3cret"),
        Body::from(r#"{"event":"unknown"}"#),
    )
    .await;
    assert_eq!((s, &b["matched"]), (200, &Value::from(false)));
    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate/tag",
        Some("s3cret"),
        Body::from(r#"{"tag":"items"}"#),
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &Value::from(0)));
    let (s, _) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate/url",
        Some("s3cret"),
        Body::from(r#"{"pattern":"/items/*"}"#),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/warm",
        Some("s3cret"),
        Body::empty(),
    )
    .await;
    assert_eq!((s, &b["total"]), (200, &Value::from(2)), "{b}");
    let (s, b) = admin_call(&app, "GET", "/admin/nope", None, Body::empty()).await;
    assert_eq!(s, 404, "{b}");
    assert!(b["error"].is_string());
}

#[tokio::test]
async fn bad_secrets_bodies_and_sizes_change_nothing() {
    let (app, calls, _) = app();
    assert_eq!(get_item(&app, "/items/7", None).await.0, "MISS");
    let purge = || Body::from(r#"{"event":"item_update","entity_id":"7"}"#);
    let (s, _) = admin_call(&app, "POST", "/admin/cache/invalidate", None, purge()).await;
    assert_eq!(s, 401);
    let (s, _) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("wrong"),
        purge(),
    )
    .await;
    assert_eq!(s, 401);
    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("s3cret"),
        Body::from("{\"event\": 3}"),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("event"), "{b}");
    // Over 64 KB: announced, and streamed without a length.
    let big = format!(
        r#"{{"event":"item_update","entity_id":"7","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    let (s, _) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("s3cret"),
        Body::from(big.clone()),
    )
    .await;
    assert_eq!(s, 413);
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let (s, _) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("s3cret"),
        streamed,
    )
    .await;
    assert_eq!(s, 413);
    // Nothing changed: still a hit.
    assert_eq!(get_item(&app, "/items/7", None).await.0, "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/invalidate",
        Some("s3cret"),
        purge(),
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &Value::from(1)));
    assert_eq!(get_item(&app, "/items/7", None).await.0, "MISS");
}

#[tokio::test]
async fn a_warmed_entry_is_a_client_hit_and_a_second_run_skips_it() {
    let (app, calls, ops) = app();
    let (s, b) = admin_call(
        &app,
        "POST",
        "/admin/cache/warm",
        Some("s3cret"),
        Body::empty(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (&b["success"], &b["failed"]),
        (&Value::from(2), &Value::from(0)),
        "{b}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The client sends what the warm request sent: same host, same headers.
    assert_eq!(
        get_item(&app, "/items/1", None).await,
        ("HIT".into(), "item 1 v1".into())
    );
    let (x, body) = get_item(&app, "/items/2", Some("application/json")).await;
    assert_eq!(x, "HIT");
    assert_eq!(body, "item 2 v0", "the high-priority URL went first");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no origin call for warmed entries"
    );
    // Fresh entries are skipped.
    let report = ops.warmer().unwrap().run().await;
    assert_eq!((report.skipped, report.success), (2, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn warming_runs_on_startup_and_every_interval_until_shutdown() {
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: t\n    pattern: /t\n    ttl: 1\nwarming:\n  enabled: true\n  interval: 10\n  host: h\n  urls: [{url: /t}]\n",
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = CacheLayer::from_config(&config).unwrap();
    let app = Router::new()
        .route(
            "/t",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                // Never stored, so every run fetches it again.
                async { ([("cache-control", "no-store")], "t") }
            }),
        )
        .layer(layer.clone());
    let ops = Admin::with_fetcher(layer.cache().clone(), admin::router_fetcher(app));
    ops.start().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "on start-up");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "after one interval");
    ops.shutdown();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing after shutdown");
}

#[tokio::test]
async fn merged_routes_leave_the_app_fallback_alone() {
    let (_, _, ops) = app();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .fallback(|| async { (axum::http::StatusCode::IM_A_TEAPOT, "app fallback") })
        .merge(admin::routes(ops));
    let (s, _) = admin_call(&app, "GET", "/health", None, Body::empty()).await;
    assert_eq!(s, 200);
    let (s, _) = admin_call(&app, "GET", "/cache/nope", None, Body::empty()).await;
    assert_eq!(s, 418, "the app's own fallback answers unknown paths");
}

#[tokio::test(start_paused = true)]
async fn a_cron_schedule_warms_its_urls() {
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: t\n    pattern: /t\n    ttl: 1\nwarming:\n  enabled: true\n  on_startup: false\n  host: h\n  urls: [{url: /t, schedule: \"* * * * * *\"}]\n",
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = CacheLayer::from_config(&config).unwrap();
    let app = Router::new()
        .route(
            "/t",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { ([("cache-control", "no-store")], "t") }
            }),
        )
        .layer(layer.clone());
    let ops = Admin::with_fetcher(layer.cache().clone(), admin::router_fetcher(app));
    ops.start().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no start-up run");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "every second: {}",
        calls.load(Ordering::SeqCst)
    );
    drop(ops);
    let before = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "stopped with the last Admin"
    );
}
