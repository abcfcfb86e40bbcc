//! An actix-web server with uip-cache on a shared Redis: the cache is built
//! once, outside `HttpServer::new`, and cloned into every worker, so all
//! workers (and every other instance on the same Redis) share entries.
//!
//! ```text
//! redis-server --port 6379 &
//! cargo run --example actix_redis            # REDIS_HOST / REDIS_PORT to point elsewhere
//! cargo run --example actix_redis -- --serve # keep serving on 127.0.0.1:8080
//! ```
//!
//! Without a Redis the cache fails open: every request is a MISS served by
//! the origin, and nothing fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const CONFIG: &str = r#"
store:
  type: redis
  timeout: 100ms
redis:
  host: "${REDIS_HOST:-127.0.0.1}"
  port: ${REDIS_PORT:-6379}
key:
  prefix: "example:"
policies:
  - name: entities
    pattern: "/ngsi-ld/v1/entities*"
    ttl: 30
    tags: [entities]
"#;

async fn entities() -> HttpResponse {
    // A slow context broker.
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    HttpResponse::Ok()
        .content_type("application/ld+json")
        .body(r#"[{"id":"urn:ngsi-ld:Camera:001","type":"Camera"}]"#)
}

/// One HTTP/1.1 GET over a plain socket: status line and X-Cache.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: broker.local\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.lines().next().unwrap_or_default().to_owned();
    let x_cache = text
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("-")
        .to_owned();
    Ok(format!("{status}  X-Cache: {x_cache}"))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig::from_yaml_str(CONFIG)?;
    let cache = Cache::from_config(&config)?;
    // Start clean so the first request shows a MISS.
    cache
        .cache()
        .invalidate_tags(&["entities".into()])
        .await
        .ok();

    let serve = std::env::args().any(|a| a == "--serve");
    let worker_cache = cache.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(worker_cache.clone())
            .route("/ngsi-ld/v1/entities", web::get().to(entities))
    })
    .workers(2)
    .bind(if serve {
        "127.0.0.1:8080"
    } else {
        "127.0.0.1:0"
    })?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let running = actix_rt::spawn(server);

    let health = cache.cache().store().health().await;
    println!("store: {:?}", health.map(|h| h.status));
    for _ in 0..3 {
        let started = Instant::now();
        let line = web::block(move || get(addr, "/ngsi-ld/v1/entities?type=Camera")).await??;
        println!(
            "{line}  {:>7.2} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        // The entry is written once the body has streamed.
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let s = cache.cache().stats().snapshot();
    println!(
        "hits {}  misses {}  store_errors {}",
        s.hits, s.misses, s.store_errors
    );

    if serve {
        println!("serving on http://{addr} (Ctrl-C to stop)");
        running.await??;
    } else {
        handle.stop(true).await;
    }
    Ok(())
}
