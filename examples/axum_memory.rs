//! An axum app with uip-cache in front of a slow NGSI-LD-like handler, using
//! the in-memory store (no Redis needed).
//!
//! `cargo run --example axum_memory` sends a few requests through the app in
//! process and prints what the cache did; add `-- --serve` to keep serving on
//! 127.0.0.1:3000 and try it with curl:
//!
//! ```text
//! curl -i 'http://127.0.0.1:3000/ngsi-ld/v1/entities?type=Camera'
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig::from_yaml_str(CONFIG)?;
    let layer = CacheLayer::from_config(&config)?;
    let cache = layer.cache().clone();
    let app = app(layer);

    let requests = [
        ("/ngsi-ld/v1/entities?type=Camera&limit=100", None),
        ("/ngsi-ld/v1/entities?limit=100&type=Camera", None),
        ("/ngsi-ld/v1/entities?type=Camera&limit=100", Some("gzip")),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None),
        ("/ngsi-ld/v1/entities?type=Sensor", None),
    ];
    for (uri, encoding) in requests {
        let mut req = Request::get(uri).header("host", "broker.local");
        if let Some(e) = encoding {
            req = req.header(header::ACCEPT_ENCODING, e);
        }
        let started = Instant::now();
        let resp = app.clone().oneshot(req.body(Body::empty())?).await?;
        let x_cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let gzip = resp.headers().contains_key(header::CONTENT_ENCODING);
        let bytes = resp.into_body().collect().await?.to_bytes().len();
        println!(
            "{x_cache:<7} {:>8.2} ms {bytes:>6} bytes{}  GET {uri}",
            started.elapsed().as_secs_f64() * 1000.0,
            if gzip { " (gzip)" } else { "       " }
        );
    }
    let removed = cache.invalidate_tags(&["camera".into()]).await?;
    println!(
        "invalidated tag `camera`: {removed} entr{}",
        if removed == 1 { "y" } else { "ies" }
    );
    let s = cache.stats().snapshot();
    println!(
        "hits {}  misses {}  bypasses {}  hit_rate {:.2}  compression_ratio {:.2}",
        s.hits, s.misses, s.bypasses, s.hit_rate, s.compression_ratio
    );

    if std::env::args().any(|a| a == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving on http://127.0.0.1:3000 (Ctrl-C to stop)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
    }
    Ok(())
}
