//! An axum app with the layer, tested as an application would test its own:
//! a mock clock moves the cache's time on instead of sleeping, and a
//! counting origin says which requests got past the cache (feature
//! `test-util`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use uip_cache_tower::test_util::{CountingOrigin, MockClock};
use uip_cache_tower::{CacheConfig, CacheLayer, HttpCache, OriginUnreachable};

/// An app serving `/items` through `handler`, behind the cache with
/// `yaml`'s config and `clock`; the counting origin sits between them.
fn app<H, T>(yaml: &str, clock: &MockClock, handler: H) -> (Router, CountingOrigin, HttpCache)
where
    H: axum::handler::Handler<T, ()>,
    T: 'static,
{
    let config = CacheConfig::from_yaml_str(yaml).unwrap();
    let cache = HttpCache::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let origin = CountingOrigin::new();
    let app = Router::new()
        .route("/items", get(handler))
        .layer(origin.clone())
        .layer(CacheLayer::new(cache.clone()));
    (app, origin, cache)
}

struct Got {
    status: StatusCode,
    x_cache: String,
    age: Option<u64>,
}

/// GETs `/items` and reads the body to its end (the entry is stored as it
/// ends).
async fn get_items(app: &Router) -> Got {
    let req = Request::get("/items")
        .header("host", "api.example")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let got = Got {
        status: resp.status(),
        x_cache: header("x-cache").unwrap_or_default(),
        age: header("age").map(|a| a.parse().unwrap()),
    };
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    got
}

const ITEMS: &str = "policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n";

#[tokio::test]
async fn the_second_request_stays_in_the_cache_until_the_clock_passes_the_ttl() {
    let clock = MockClock::new();
    let (app, origin, _) = app(ITEMS, &clock, || async { "[]" });

    assert_eq!(get_items(&app).await.x_cache, "MISS");
    assert_eq!(origin.calls(), 1);
    let hit = get_items(&app).await;
    assert_eq!((hit.x_cache.as_str(), hit.age), ("HIT", Some(0)));
    assert_eq!(
        origin.calls(),
        1,
        "the second request did not reach the origin"
    );

    clock.advance(Duration::from_secs(30));
    let hit = get_items(&app).await;
    assert_eq!(
        (hit.x_cache.as_str(), hit.age),
        ("HIT", Some(30)),
        "Age follows the clock"
    );
    assert_eq!(origin.calls(), 1);

    clock.advance(Duration::from_secs(31));
    assert_eq!(get_items(&app).await.x_cache, "EXPIRED");
    assert_eq!(origin.calls(), 2, "61 s later it did");
    // The refetched entry is fresh again from the clock's now.
    assert_eq!(get_items(&app).await.x_cache, "HIT");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn stale_if_error_covers_a_failing_origin_for_its_window_on_the_clock() {
    let clock = MockClock::new();
    let served = Arc::new(AtomicUsize::new(0));
    let handler = move || {
        let n = served.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => (
                    StatusCode::OK,
                    [("cache-control", "max-age=60, stale-if-error=300")],
                    "[1]",
                ),
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("cache-control", "no-store")],
                    "down",
                ),
            }
        }
    };
    let (app, origin, _) = app(ITEMS, &clock, handler);
    assert_eq!(get_items(&app).await.x_cache, "MISS");

    clock.advance(Duration::from_secs(61));
    let got = get_items(&app).await;
    assert_eq!(
        (got.status, got.x_cache.as_str()),
        (StatusCode::OK, "STALE"),
        "stale, within stale-if-error: the 503 is covered"
    );
    assert_eq!(origin.calls(), 2);

    clock.advance(Duration::from_secs(300));
    let got = get_items(&app).await;
    assert_eq!(
        got.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "past the window"
    );
    assert_eq!(origin.calls(), 3);
}

/// A handler answering 200 with `cache_control` first, then 502s; those
/// from the third call on are marked as a proxy's answer for an origin it
/// could not reach ([`OriginUnreachable`]), the second one is the origin's
/// own 502 when `own_502_second`.
fn first_ok_then_502s(
    cache_control: &'static str,
    own_502_second: bool,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    let served = Arc::new(AtomicUsize::new(0));
    move || {
        let n = served.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                return (StatusCode::OK, [("cache-control", cache_control)], "[1]").into_response();
            }
            let mut resp = (
                StatusCode::BAD_GATEWAY,
                [("cache-control", "no-store")],
                "down",
            )
                .into_response();
            if !(own_502_second && n == 1) {
                resp.extensions_mut().insert(OriginUnreachable);
            }
            resp
        })
    }
}

const UNREACHABLE_120: &str = "defaults:\n  stale_if_unreachable: 120\n";

#[tokio::test]
async fn an_unreachable_origin_is_covered_by_stale_if_unreachable_for_its_window() {
    let clock = MockClock::new();
    let (app, origin, _) = app(
        &format!("{UNREACHABLE_120}{ITEMS}"),
        &clock,
        first_ok_then_502s("max-age=60", false),
    );
    assert_eq!(get_items(&app).await.x_cache, "MISS");

    clock.advance(Duration::from_secs(61));
    let got = get_items(&app).await;
    assert_eq!(
        (got.status, got.x_cache.as_str()),
        (StatusCode::OK, "STALE"),
        "stale by 1 s, origin unreachable: the stale entry answers"
    );
    assert_eq!(origin.calls(), 2);

    clock.advance(Duration::from_secs(120));
    let got = get_items(&app).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "past the window");
    assert_eq!(origin.calls(), 3);
}

#[tokio::test]
async fn stale_if_unreachable_covers_neither_an_origin_502_nor_must_revalidate() {
    let clock = MockClock::new();
    let (own, _, _) = app(
        &format!("{UNREACHABLE_120}{ITEMS}"),
        &clock,
        first_ok_then_502s("max-age=60", true),
    );
    assert_eq!(get_items(&own).await.x_cache, "MISS");
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        get_items(&own).await.status,
        StatusCode::BAD_GATEWAY,
        "the origin's own 502 needs stale-if-error"
    );

    let clock = MockClock::new();
    let (revalidated, origin, _) = app(
        &format!("{UNREACHABLE_120}{ITEMS}"),
        &clock,
        first_ok_then_502s("max-age=60, must-revalidate", false),
    );
    assert_eq!(get_items(&revalidated).await.x_cache, "MISS");
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        get_items(&revalidated).await.status,
        StatusCode::BAD_GATEWAY,
        "must-revalidate: never stale, even unreachable"
    );
    assert_eq!(origin.calls(), 2);

    // Without the setting, an unreachable origin gets no stale answer.
    let clock = MockClock::new();
    let (off, _, _) = app(ITEMS, &clock, first_ok_then_502s("max-age=60", false));
    assert_eq!(get_items(&off).await.x_cache, "MISS");
    clock.advance(Duration::from_secs(61));
    assert_eq!(get_items(&off).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_hit_for_miss_mark_ends_when_the_clock_passes_its_window() {
    let clock = MockClock::new();
    let (app, origin, cache) = app(
        &format!("defaults:\n  hit_for_miss: 10\n{ITEMS}"),
        &clock,
        || async { ([("cache-control", "no-store")], "[]") },
    );
    assert_eq!(get_items(&app).await.x_cache, "MISS");
    // The key is marked: the next request goes to the origin at once.
    get_items(&app).await;
    assert_eq!(cache.stats().snapshot().hit_for_miss, 1);

    clock.advance(Duration::from_secs(11));
    // Past the window the key queues as any other (and is marked again).
    get_items(&app).await;
    assert_eq!(cache.stats().snapshot().hit_for_miss, 1);
    get_items(&app).await;
    assert_eq!(cache.stats().snapshot().hit_for_miss, 2);
    assert_eq!(
        origin.calls(),
        4,
        "no-store: every request reaches the origin"
    );
}

#[tokio::test]
async fn a_cache_without_a_clock_reads_the_system_clock() {
    let config = CacheConfig::from_yaml_str(ITEMS).unwrap();
    let cache = HttpCache::builder(&config).build().unwrap();
    assert!(cache.clock().is_system());
    let origin = CountingOrigin::new();
    let app = Router::new()
        .route("/items", get(|| async { "[]" }))
        .layer(origin.clone())
        .layer(CacheLayer::new(cache));
    assert_eq!(get_items(&app).await.x_cache, "MISS");
    assert_eq!(get_items(&app).await.x_cache, "HIT");
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn a_layer_built_with_a_clock_reads_it() {
    let clock = MockClock::new();
    let config = CacheConfig::from_yaml_str(ITEMS).unwrap();
    let layer = CacheLayer::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(!layer.cache().clock().is_system());
    let origin = CountingOrigin::new();
    let app = Router::new()
        .route("/items", get(|| async { "[]" }))
        .layer(origin.clone())
        .layer(layer);

    assert_eq!(get_items(&app).await.x_cache, "MISS");
    let hit = get_items(&app).await;
    assert_eq!((hit.x_cache.as_str(), hit.age), ("HIT", Some(0)));
    assert_eq!(origin.calls(), 1);

    // Past the TTL on the layer's clock, with no time waited.
    clock.advance(Duration::from_secs(61));
    assert_eq!(get_items(&app).await.x_cache, "EXPIRED");
    assert_eq!(origin.calls(), 2);
}

/// A POST whose answer would become the GET entry of its own URL (its
/// `Content-Location`, explicit freshness) is not stored when a purge of
/// that URL ran while the POST was at the origin: the answer may predate
/// the purge.
#[tokio::test]
async fn a_post_answer_is_not_stored_when_a_purge_ran_while_it_was_at_the_origin() {
    use axum::routing::post;
    let config = CacheConfig::from_yaml_str(ITEMS).unwrap();
    let cache = HttpCache::builder(&config)
        .clock(MockClock::new())
        .build()
        .unwrap();
    let purging = cache.clone();
    let app = Router::new()
        .route("/items", get(|| async { "[]" }))
        .route(
            "/items",
            post(move || {
                let cache = purging.clone();
                async move {
                    // The purge runs while this POST is at the origin.
                    cache
                        .invalidate_tags(&["policy:items".into()])
                        .await
                        .unwrap();
                    (
                        StatusCode::OK,
                        [
                            ("cache-control", "max-age=60"),
                            ("content-location", "/items"),
                        ],
                        "[posted]",
                    )
                }
            }),
        )
        .layer(CacheLayer::new(cache.clone()));
    let req = Request::post("/items")
        .header("host", "api.example")
        .body(Body::from("x"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    uip_cache_testkit::wait_until(&cache, "the POST answer refused", |s| {
        s.uncacheable.get("invalidated").copied().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(cache.stats().snapshot().sets, 0);
    assert_eq!(get_items(&app).await.x_cache, "MISS");
}
