//! Invalidating 10 000 tagged entries through the admin route
//! (`POST /cache/invalidate/tag` on the axum router), with the memory store
//! and with a real Redis (skipped when `redis-server` is not installed).
//! The entries are written before each measured call, outside the timing.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use tower::ServiceExt;
use uip_cache_core::store::PutOptions;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_tower::admin::{self, Admin};
use uip_cache_tower::CacheLayer;

const ENTRIES: usize = 10_000;
const POLICIES: &str =
    "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\nadmin:\n  secret: bench\n";

async fn fill(cache: &HttpCache) {
    let tags = vec!["camera".to_owned()];
    let value = Bytes::from(vec![b'x'; 256]);
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(500) {
        let puts = chunk.iter().map(|i| {
            let key = format!("bench:{i}");
            let path = format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:{i}");
            let (tags, value) = (tags.clone(), value.clone());
            async move {
                let opts = PutOptions::new(Duration::from_secs(60), &path).tags(&tags);
                cache.store().put(&key, value, opts).await.unwrap();
            }
        });
        futures_util::future::join_all(puts).await;
    }
}

fn bench_store(c: &mut Criterion, name: &str, config: &CacheConfig) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cache = CacheLayer::from_config(config).unwrap().cache().clone();
    let router = admin::router(Admin::new(cache.clone()));
    let mut g = c.benchmark_group("admin");
    g.sample_size(10);
    g.bench_function(format!("invalidate_tag_10k_{name}"), |b| {
        b.iter_batched(
            || rt.block_on(fill(&cache)),
            |()| {
                rt.block_on(async {
                    let req = Request::post("/cache/invalidate/tag")
                        .header("x-webhook-secret", "bench")
                        .body(Body::from(r#"{"tag":"camera"}"#))
                        .unwrap();
                    let resp = router.clone().oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                })
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn invalidate(c: &mut Criterion) {
    let memory = CacheConfig::from_yaml_str(&format!(
        "store:\n  type: memory\n  max_bytes: 512MB\n{POLICIES}"
    ))
    .unwrap();
    bench_store(c, "memory", &memory);
    match uip_cache_testkit::RedisServer::start() {
        Some(redis) => {
            let config = CacheConfig::from_yaml_str(&redis.yaml(POLICIES)).unwrap();
            bench_store(c, "redis", &config);
        }
        None => eprintln!("redis-server is not installed: the Redis variant is skipped"),
    }
}

criterion_group!(benches, invalidate);
criterion_main!(benches);
