//! The layer on a real axum Router, as users add it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use uip_cache_core::CacheConfig;
use uip_cache_tower::CacheLayer;

#[tokio::test]
async fn an_axum_app_caches_and_invalidates() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: e\n    pattern: \"/entities/{id}\"\n    ttl: 60\n",
    )
    .unwrap();
    let layer = CacheLayer::from_config(&config).unwrap();
    let cache = layer.cache().clone();
    let app = Router::new()
        .route(
            "/entities/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move { format!("{id} v{n}") }
                },
            ),
        )
        .route("/entities/{id}", post(|| async { "updated" }))
        .layer(layer);

    let fetch = |app: Router, method: &'static str| async move {
        let req = Request::builder()
            .method(method)
            .uri("/entities/urn:x:1")
            .header("host", "a")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
        (x, resp.into_body().collect().await.unwrap().to_bytes())
    };
    assert_eq!(
        fetch(app.clone(), "GET").await,
        ("MISS".into(), "urn:x:1 v0".into())
    );
    assert_eq!(
        fetch(app.clone(), "GET").await,
        ("HIT".into(), "urn:x:1 v0".into())
    );
    // Template parameters become tags.
    assert_eq!(
        cache.invalidate_tags(&["id:urn:x:1".into()]).await.unwrap(),
        1
    );
    assert_eq!(
        fetch(app.clone(), "GET").await,
        ("MISS".into(), "urn:x:1 v1".into())
    );
    assert_eq!(fetch(app.clone(), "POST").await.0, "BYPASS");
    assert_eq!(
        fetch(app.clone(), "GET").await,
        ("MISS".into(), "urn:x:1 v2".into())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_redis_config_without_the_feature_is_a_clear_error() {
    let config = CacheConfig::from_yaml_str("store:\n  type: redis\n").unwrap();
    let result = CacheLayer::from_config(&config);
    if cfg!(feature = "redis") {
        assert!(result.is_ok(), "built lazily, without connecting");
    } else {
        let err = result.unwrap_err().to_string();
        assert!(err.contains("store.type") && err.contains("redis"), "{err}");
    }
}

async fn body_of(app: Router, uri: &str, scheme: Option<http::uri::Scheme>) -> (String, String) {
    let mut req = Request::builder()
        .uri(uri)
        .header("host", "a")
        .body(Body::empty())
        .unwrap();
    if let Some(s) = scheme {
        req.extensions_mut().insert(s);
    }
    let resp = app.oneshot(req).await.unwrap();
    let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (x, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn nested_routers_sharing_one_layer_never_mix_entries() {
    let config =
        CacheConfig::from_yaml_str("defaults:\n  cache_unmatched: true\n  ttl: 60\npolicies: []\n")
            .unwrap();
    let layer = CacheLayer::from_config(&config).unwrap();
    // Both inner routers see the path `/x` once nest has stripped its prefix.
    let tenant = |name: &'static str| {
        Router::new()
            .route("/x", get(move || async move { name }))
            .layer(layer.clone())
    };
    let app = Router::new()
        .nest("/alice", tenant("alice's data"))
        .nest("/bob", tenant("bob's data"));
    assert_eq!(
        body_of(app.clone(), "/alice/x", None).await,
        ("MISS".into(), "alice's data".into())
    );
    assert_eq!(
        body_of(app.clone(), "/bob/x", None).await,
        ("MISS".into(), "bob's data".into())
    );
    assert_eq!(
        body_of(app.clone(), "/alice/x", None).await,
        ("HIT".into(), "alice's data".into())
    );
    assert_eq!(
        body_of(app, "/bob/x", None).await,
        ("HIT".into(), "bob's data".into())
    );
}

#[tokio::test]
async fn the_scheme_the_client_used_is_part_of_the_key() {
    let config =
        CacheConfig::from_yaml_str("defaults:\n  cache_unmatched: true\n  ttl: 60\npolicies: []\n")
            .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/x",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move { format!("v{n}") }
            }),
        )
        .layer(CacheLayer::from_config(&config).unwrap());
    let https = Some(http::uri::Scheme::HTTPS);
    assert_eq!(body_of(app.clone(), "/x", None).await.0, "MISS");
    assert_eq!(body_of(app.clone(), "/x", https.clone()).await.0, "MISS");
    assert_eq!(
        body_of(app.clone(), "/x", https).await,
        ("HIT".into(), "v1".into())
    );
    assert_eq!(body_of(app, "/x", None).await, ("HIT".into(), "v0".into()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
