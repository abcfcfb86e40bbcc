//! Benchmarks of the core building blocks: key generation, policy matching with
//! 100 policies, entry encode/decode, gzip, and memory-store operations.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use uip_cache_core::compress::{gunzip, gzip_if_worth_it, Compressed};
use uip_cache_core::store::{MemoryStore, PutOptions, Storage};
use uip_cache_core::{CacheConfig, KeySpec, PolicySet, RequestView, StoredResponse, UrlPattern};

fn json_body(len: usize) -> Bytes {
    let item = r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"type":"Property","value":"on"}},"#;
    let mut s = String::from("[");
    while s.len() + item.len() < len {
        s.push_str(item);
    }
    s.push(']');
    Bytes::from(s)
}

fn keys(c: &mut Criterion) {
    let headers = [("accept", "application/ld+json"), ("user-agent", "bench")];
    let req = RequestView::new("GET", "/ngsi-ld/v1/entities", &headers)
        .query(Some("type=Camera&limit=100&offset=0"))
        .scheme(Some("http"))
        .authority(Some("broker.local:8080"));
    let all = KeySpec::default();
    let vary = KeySpec::new(&Default::default(), &["type".into(), "limit".into()]);
    let mut g = c.benchmark_group("key");
    g.bench_function("all_params", |b| {
        b.iter(|| black_box(all.key(black_box(&req), &[])))
    });
    g.bench_function("vary_by_subset", |b| {
        b.iter(|| black_box(vary.key(black_box(&req), &[])))
    });
    g.finish();
}

fn hundred_policies() -> PolicySet {
    let mut yaml = String::from("policies:\n");
    for i in 0..25 {
        yaml.push_str(&format!(
            "  - name: glob{i}\n    pattern: \"/api{i}/items?type=T{i}*\"\n    ttl: 60\n"
        ));
        yaml.push_str(&format!(
            "  - name: tpl{i}\n    pattern: \"/svc{i}/entities/{{id}}\"\n    ttl: 60\n"
        ));
        yaml.push_str(&format!(
            "  - name: exact{i}\n    pattern: \"/exact{i}/health\"\n    ttl: 60\n"
        ));
        yaml.push_str(&format!(
            "  - name: re{i}\n    pattern: \"^/re{i}/v[0-9]+/.*\"\n    ttl: 60\n"
        ));
    }
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let set = PolicySet::compile(&config).unwrap();
    assert_eq!(set.len(), 100);
    set
}

fn policies(c: &mut Criterion) {
    let set = hundred_policies();
    let mut g = c.benchmark_group("policy_find_100");
    g.bench_function("first", |b| {
        b.iter(|| black_box(set.find(black_box("/api0/items"), Some("type=T0x"))))
    });
    g.bench_function("last_template", |b| {
        b.iter(|| black_box(set.find(black_box("/svc24/entities/urn:x:1"), None)))
    });
    g.bench_function("last_regex", |b| {
        b.iter(|| black_box(set.find(black_box("/re24/v2/things"), Some("a=1"))))
    });
    g.bench_function("no_match", |b| {
        b.iter(|| black_box(set.find(black_box("/nothing/here"), None)))
    });
    g.finish();
}

fn sample_entry(body: Bytes) -> StoredResponse {
    let mut e = StoredResponse::new(200, body);
    e.headers = vec![
        (
            "content-type".into(),
            Bytes::from_static(b"application/ld+json"),
        ),
        ("etag".into(), Bytes::from_static(b"\"abc123\"")),
        ("cache-control".into(), Bytes::from_static(b"max-age=60")),
        (
            "date".into(),
            Bytes::from_static(b"Tue, 24 Nov 2026 10:00:00 GMT"),
        ),
    ];
    e.freshness_lifetime = Duration::from_secs(60);
    e.etag = Some(Bytes::from_static(b"\"abc123\""));
    e.tags = vec![
        "camera".into(),
        "policy:camera_entities".into(),
        "path:/ngsi-ld/v1/entities".into(),
    ];
    e
}

fn entries(c: &mut Criterion) {
    let mut g = c.benchmark_group("entry");
    for size in [2 * 1024, 64 * 1024] {
        let e = sample_entry(json_body(size));
        let bytes = e.encode().unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode", size), &e, |b, e| {
            b.iter(|| black_box(e.encode().unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("decode", size), &bytes, |b, bytes| {
            b.iter(|| black_box(StoredResponse::decode(bytes).unwrap()))
        });
    }
    g.finish();
}

fn gzip(c: &mut Criterion) {
    let mut g = c.benchmark_group("gzip");
    for size in [2 * 1024, 64 * 1024] {
        let body = json_body(size);
        let Compressed::Gzip(z) = gzip_if_worth_it(&body, 0, 6) else {
            panic!("JSON compresses")
        };
        g.throughput(Throughput::Bytes(size as u64));
        for level in [1, 6] {
            g.bench_with_input(
                BenchmarkId::new(format!("compress_l{level}"), size),
                &body,
                |b, body| b.iter(|| black_box(gzip_if_worth_it(body, 0, level))),
            );
        }
        g.bench_with_input(BenchmarkId::new("decompress", size), &z, |b, z| {
            b.iter(|| black_box(gunzip(z, 1 << 30).unwrap()))
        });
    }
    g.finish();
}

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new(512 << 20));
    let value = sample_entry(json_body(2048)).encode().unwrap();
    let tags = vec!["camera".to_string()];
    rt.block_on(async {
        for i in 0..100_000 {
            let path = format!("/e/{i}");
            store
                .put(
                    &format!("cache:{i}"),
                    value.clone(),
                    PutOptions::new(Duration::from_secs(600), &path).tags(&tags),
                )
                .await
                .unwrap();
        }
    });
    let mut g = c.benchmark_group("memory_store");
    g.bench_function("get_hit_2k", |b| {
        b.iter(|| {
            rt.block_on(async { black_box(store.get(black_box("cache:4242")).await.unwrap()) })
        })
    });
    g.bench_function("get_and_decode_2k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let bytes = store.get(black_box("cache:4242")).await.unwrap().unwrap();
                black_box(StoredResponse::decode(&bytes).unwrap())
            })
        })
    });
    g.bench_function("put_2k", |b| {
        b.iter(|| {
            rt.block_on(async {
                store
                    .put(
                        "cache:bench-put",
                        value.clone(),
                        PutOptions::new(Duration::from_secs(600), "/p").tags(&tags),
                    )
                    .await
                    .unwrap()
            })
        })
    });
    // A miss stored: a new key every time, joining a tag that 100 000
    // entries carry already (as a policy's tag does) and a path of its own;
    // once the store is full each write also evicts (and unindexes) one.
    let big_tags = vec!["camera".to_string(), "policy:cams".to_string()];
    let mut next = 0u64;
    g.bench_function("put_unique_2k_big_tag", |b| {
        b.iter(|| {
            next += 1;
            let key = format!("cache:new:{next}");
            let path = format!("/new/{next}");
            rt.block_on(async {
                store
                    .put(
                        &key,
                        value.clone(),
                        PutOptions::new(Duration::from_secs(600), &path).tags(&big_tags),
                    )
                    .await
                    .unwrap()
            })
        })
    });
    // Invalidating 10 entries under a prefix, beside 100 000 others: cost follows
    // the 10, not the 100 000.
    let ten_tags = vec!["ten".to_string()];
    let ten = UrlPattern::glob("/ten/*").unwrap();
    g.bench_function("invalidate_pattern_10_of_100k", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..10 {
                    let path = format!("/ten/{i}");
                    store
                        .put(
                            &format!("ten:{i}"),
                            value.clone(),
                            PutOptions::new(Duration::from_secs(600), &path).tags(&ten_tags),
                        )
                        .await
                        .unwrap();
                }
                assert_eq!(store.invalidate_pattern(&ten).await.unwrap(), 10);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, keys, policies, entries, gzip, memory_store);
criterion_main!(benches);
