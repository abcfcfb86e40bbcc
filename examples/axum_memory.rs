//! An axum app with uip-cache in front of a slow NGSI-LD-like handler, using
//! the in-memory store (no Redis needed).
//!
//! `cargo run --example axum_memory` warms the cache, sends a few requests
//! through the app in process, sends the seed's webhook to the admin API
//! (nested under /admin) and prints what the cache did; add `-- --serve` to
//! keep serving on 127.0.0.1:3000 and try it with curl:
//!
//! ```text
//! curl -i 'http://127.0.0.1:3000/ngsi-ld/v1/entities?type=Camera'
//! curl -s http://127.0.0.1:3000/admin/cache/metrics
//! curl -s -X POST http://127.0.0.1:3000/admin/cache/invalidate -H 'X-Webhook-Secret: demo' \
//!      -d '{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}'
//! ```

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use uip_cache_core::CacheConfig;
use uip_cache_tower::admin::{self, Admin};
use uip_cache_tower::CacheLayer;

const CONFIG: &str = r#"
policies:
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    stale_while_revalidate: 30
    tags: [camera]
    compression: {enabled: true, min_size: 1024}
  - name: entity_by_id
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
warming:
  enabled: true
  host: broker.local
  urls:
    - url: "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002"
      priority: high
invalidation:
  strategies:
    - type: webhook
      secret: demo
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
"#;

/// The slow origin: 150 ms per request, as a busy context broker might be.
async fn list(Query(q): Query<Vec<(String, String)>>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ty = q
        .iter()
        .find(|(k, _)| k == "type")
        .map_or("Thing", |(_, v)| v.as_str())
        .to_owned();
    let items: Vec<String> = (1..=40)
        .map(|i| format!(r#"{{"id":"urn:ngsi-ld:{ty}:{i:03}","type":"{ty}","status":{{"type":"Property","value":"on"}}}}"#))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/ld+json")],
        format!("[{}]", items.join(",")),
    )
}

async fn by_id(Path(id): Path<String>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(150)).await;
    if !id.starts_with("urn:") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/ld+json")],
        format!(r#"{{"id":"{id}"}}"#),
    )
        .into_response()
}

fn app(layer: CacheLayer) -> Router {
    Router::new()
        .route("/ngsi-ld/v1/entities", get(list))
        .route("/ngsi-ld/v1/entities/{id}", get(by_id))
        .layer(layer)
}

async fn send(
    app: &Router,
    req: Request<Body>,
) -> Result<(String, Vec<u8>, bool), Box<dyn std::error::Error>> {
    let resp = app.clone().oneshot(req).await?;
    let x_cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let gzip = resp.headers().contains_key(header::CONTENT_ENCODING);
    let bytes = resp.into_body().collect().await?.to_bytes().to_vec();
    Ok((x_cache, bytes, gzip))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig::from_yaml_str(CONFIG)?;
    let layer = CacheLayer::from_config(&config)?;
    let app = app(layer.clone());
    // The admin API, warming through the app (cache layer included).
    let ops = Admin::with_fetcher(layer.cache().clone(), admin::router_fetcher(app.clone()));
    let app = app.nest("/admin", admin::router(ops.clone()));

    let report = ops.warmer().expect("a fetcher was given").run().await;
    println!(
        "warmed {} of {} URL(s) in {} ms",
        report.success, report.total, report.duration_ms
    );
    let requests = [
        ("/ngsi-ld/v1/entities?type=Camera&limit=100", None),
        ("/ngsi-ld/v1/entities?limit=100&type=Camera", None),
        ("/ngsi-ld/v1/entities?type=Camera&limit=100", Some("gzip")),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002", None),
        ("/ngsi-ld/v1/entities?type=Sensor", None),
    ];
    for (uri, encoding) in requests {
        let mut req = Request::get(uri).header("host", "broker.local");
        if let Some(e) = encoding {
            req = req.header(header::ACCEPT_ENCODING, e);
        }
        let started = Instant::now();
        let (x_cache, body, gzip) = send(&app, req.body(Body::empty())?).await?;
        println!(
            "{x_cache:<7} {:>8.2} ms {:>6} bytes{}  GET {uri}",
            started.elapsed().as_secs_f64() * 1000.0,
            body.len(),
            if gzip { " (gzip)" } else { "       " }
        );
    }
    let webhook = Request::post("/admin/cache/invalidate")
        .header("x-webhook-secret", "demo")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#,
        ))?;
    let (_, body, _) = send(&app, webhook).await?;
    println!(
        "POST /admin/cache/invalidate -> {}",
        String::from_utf8_lossy(&body)
    );
    let (_, body, _) = send(
        &app,
        Request::get("/admin/cache/metrics").body(Body::empty())?,
    )
    .await?;
    let metrics = String::from_utf8_lossy(&body).into_owned();
    println!(
        "GET /admin/cache/metrics -> {}...",
        &metrics[..metrics.len().min(160)]
    );

    if std::env::args().any(|a| a == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving on http://127.0.0.1:3000 (admin API under /admin; Ctrl-C to stop)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
    }
    Ok(())
}
