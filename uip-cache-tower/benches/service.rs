//! The full request path through `CacheService` with the memory store and a
//! 2 KB body: a hit, a miss (a new key each time), and the same request
//! through the bare origin service as the baseline.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use uip_cache_core::CacheConfig;
use uip_cache_tower::CacheLayer;

fn origin<B: Send + 'static>(
) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    let body = Bytes::from(
        r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"type":"Property","value":"on"}},"#
            .repeat(24)
            .into_bytes()[..2048]
            .to_vec(),
    );
    tower::service_fn(move |_req: Request<B>| {
        let body = body.clone();
        async move {
            let mut r = Response::new(Full::new(body));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(r)
        }
    })
}

fn request(uri: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(uri)
        .header("host", "broker.local")
        .header("accept", "application/ld+json")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: entities\n    pattern: \"/ngsi-ld/v1/entities*\"\n    ttl: 600\n  - name: query\n    pattern: /ngsi-ld/v1/entityOperations/query\n    ttl: 600\n    methods: [POST]\n    vary_by: [body]\n",
    )
    .unwrap();
    let layer = CacheLayer::from_config(&config).unwrap();
    let query_body = Bytes::from(
        r#"{"type":"Query","entities":[{"type":"Camera"}],"q":"status==\"on\""}"#
            .repeat(40)
            .into_bytes()[..2048]
            .to_vec(),
    );
    let query = move || {
        Request::post("/ngsi-ld/v1/entityOperations/query")
            .header("host", "broker.local")
            .header("content-type", "application/json")
            .body(Full::new(query_body.clone()))
            .unwrap()
    };
    let cached = layer.layer(origin());
    let bare = origin::<Full<Bytes>>();

    rt.block_on(async {
        for req in [request("/ngsi-ld/v1/entities?type=Camera"), query()] {
            let r = cached.clone().oneshot(req).await.unwrap();
            r.into_body().collect().await.unwrap();
            tokio::task::yield_now().await;
        }
    });

    let mut g = c.benchmark_group("tower_2k");
    g.bench_function("bare_service", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = bare
                    .clone()
                    .oneshot(request("/ngsi-ld/v1/entities?type=Camera"))
                    .await
                    .unwrap();
                r.into_body().collect().await.unwrap().to_bytes()
            })
        })
    });
    g.bench_function("hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = cached
                    .clone()
                    .oneshot(request("/ngsi-ld/v1/entities?type=Camera"))
                    .await
                    .unwrap();
                assert_eq!(r.headers()["x-cache"], "HIT");
                r.into_body().collect().await.unwrap().to_bytes()
            })
        })
    });
    g.bench_function("post_query_hit_2k_body", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = cached.clone().oneshot(query()).await.unwrap();
                assert_eq!(r.headers()["x-cache"], "HIT");
                r.into_body().collect().await.unwrap().to_bytes()
            })
        })
    });
    let n = AtomicU64::new(0);
    g.bench_function("miss_and_store", |b| {
        b.iter(|| {
            let uri = format!(
                "/ngsi-ld/v1/entities?type=Camera&page={}",
                n.fetch_add(1, Ordering::Relaxed)
            );
            rt.block_on(async {
                let r = cached.clone().oneshot(request(&uri)).await.unwrap();
                let body = r.into_body().collect().await.unwrap().to_bytes();
                // Let the spawned write run inside the measured time.
                tokio::task::yield_now().await;
                body
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
