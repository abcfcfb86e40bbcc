//! The hit path through the actix middleware with the memory store and a
//! 2 KB body, next to the same app without the middleware (compare with
//! `cargo bench -p uip-cache-tower --bench service`); and the hit path of a
//! POST query with a 2 KB request body (buffer, hash, lookup).

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use actix_web::{test, web, App, HttpResponse};
use criterion::{criterion_group, criterion_main, Criterion};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

fn body() -> String {
    r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"type":"Property","value":"on"}},"#
        .repeat(24)[..2048]
        .to_owned()
}

fn request() -> actix_http::Request {
    test::TestRequest::get()
        .uri("/ngsi-ld/v1/entities?type=Camera")
        .insert_header(("host", "broker.local"))
        .insert_header(("accept", "application/ld+json"))
        .to_request()
}

fn bench(c: &mut Criterion) {
    let rt = actix_rt::System::new();
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: entities\n    pattern: \"/ngsi-ld/v1/entities*\"\n    ttl: 600\n  - name: query\n    pattern: /ngsi-ld/v1/entityOperations/query\n    ttl: 600\n    methods: [POST]\n    vary_by: [body]\n",
    )
    .unwrap();
    let b = body();
    let bare = rt.block_on(test::init_service(App::new().route(
        "/ngsi-ld/v1/entities",
        web::get().to({
            let b = b.clone();
            move || {
                let b = b.clone();
                async move { HttpResponse::Ok().content_type("application/json").body(b) }
            }
        }),
    )));
    let post_body = b.clone();
    let cached = rt.block_on(test::init_service(
        App::new()
            .wrap(Cache::from_config(&config).unwrap())
            .route(
                "/ngsi-ld/v1/entities",
                web::get().to({
                    let b = b.clone();
                    move || {
                        let b = b.clone();
                        async move { HttpResponse::Ok().content_type("application/json").body(b) }
                    }
                }),
            )
            .route(
                "/ngsi-ld/v1/entityOperations/query",
                web::post().to(move || {
                    let b = b.clone();
                    async move { HttpResponse::Ok().content_type("application/json").body(b) }
                }),
            ),
    ));
    let query = move || {
        test::TestRequest::post()
            .uri("/ngsi-ld/v1/entityOperations/query")
            .insert_header(("host", "broker.local"))
            .insert_header(("content-type", "application/json"))
            .set_payload(post_body.clone())
            .to_request()
    };
    rt.block_on(async {
        for req in [request(), query()] {
            let res = test::call_service(&cached, req).await;
            test::read_body(res).await;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    });

    let mut g = c.benchmark_group("actix_2k");
    g.bench_function("bare_app", |bn| {
        bn.iter(|| {
            rt.block_on(async { test::read_body(test::call_service(&bare, request()).await).await })
        })
    });
    g.bench_function("hit", |bn| {
        bn.iter(|| {
            rt.block_on(async {
                let res = test::call_service(&cached, request()).await;
                assert_eq!(res.headers().get("x-cache").unwrap(), "HIT");
                test::read_body(res).await
            })
        })
    });
    g.bench_function("post_query_hit_2k_body", |bn| {
        bn.iter(|| {
            rt.block_on(async {
                let res = test::call_service(&cached, query()).await;
                assert_eq!(res.headers().get("x-cache").unwrap(), "HIT");
                test::read_body(res).await
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
