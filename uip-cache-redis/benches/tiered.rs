//! The tiered store against a throwaway local redis-server:
//!
//! 1. GET hit latency and throughput of a 2 KB entry: L1 hit vs Redis hit
//!    (the Redis store), one task (latency, median and p99 of 20 000 gets)
//!    and 64 tasks (throughput, 5 rounds, median).
//! 2. Invalidation propagation: instance A purges a tag; the time until the
//!    last of instances B and C no longer serves its L1 copy (200 purges,
//!    median and p99, polled every 50 us).
//!
//! Run with `cargo bench -p uip-cache-redis --bench tiered`.

// A bench binary: prints its figures; no public API.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uip_cache_core::store::{PutOptions, Storage, Store};
use uip_cache_core::{CacheConfig, StoredResponse};
use uip_cache_redis::{RedisStore, TieredStore};
use uip_cache_testkit::RedisServer;

const TASKS: usize = 64;
const GETS_PER_TASK: usize = 2_000;
const ROUNDS: usize = 5;

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn entry() -> Bytes {
    let mut e = StoredResponse::new(200, Bytes::from(vec![b'x'; 2048]));
    e.freshness_lifetime = Duration::from_secs(600);
    e.tags = vec!["camera".into(), "path:/bench".into()];
    e.encode().unwrap()
}

async fn put(s: &dyn Store, key: &str) {
    let tags = vec!["camera".to_owned(), "path:/bench".to_owned()];
    let options = PutOptions::new(Duration::from_secs(600), "/bench").tags(&tags);
    s.put(key, entry(), options).await.unwrap();
}

async fn latency(s: &dyn Store) -> (f64, f64) {
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        assert!(s.get("bench:hit").await.unwrap().is_some());
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (percentile(samples.clone(), 0.5), percentile(samples, 0.99))
}

async fn throughput(s: Arc<dyn Store>) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..GETS_PER_TASK {
                        assert!(s.get("bench:hit").await.unwrap().is_some());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        rounds.push((TASKS * GETS_PER_TASK) as f64 / started.elapsed().as_secs_f64());
    }
    percentile(rounds, 0.5)
}

async fn until_subscribed(s: &TieredStore) {
    let _ = s.get("warm-up").await;
    while !s.is_subscribed() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    let Some(server) = RedisServer::start() else {
        eprintln!("redis-server is not installed: nothing to measure");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let yaml = server.yaml("");
    let config = |kind: &str| {
        CacheConfig::from_yaml_str(&yaml.replace("type: redis\n", &format!("type: {kind}\n")))
            .unwrap()
    };
    rt.block_on(async {
        let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(&config("redis")).unwrap());
        let tiered_store = TieredStore::from_config(&config("tiered")).unwrap();
        until_subscribed(&tiered_store).await;
        let tiered: Arc<dyn Store> = Arc::new(tiered_store);
        put(&*redis, "bench:hit").await;
        let _ = tiered.get("bench:hit").await; // fills L1
        let (r50, r99) = latency(&*redis).await;
        let (l50, l99) = latency(&*tiered).await;
        let rt_redis = throughput(redis.clone()).await;
        let rt_l1 = throughput(tiered.clone()).await;
        println!("GET hit, 2 KB entry, one task:  Redis p50 {r50:.1} us p99 {r99:.1} us | L1 p50 {l50:.2} us p99 {l99:.2} us");
        println!("GET hit, 2 KB entry, {TASKS} tasks: Redis {rt_redis:.0}/s | L1 {rt_l1:.0}/s ({:.1}x)", rt_l1 / rt_redis);

        let a = TieredStore::from_config(&config("tiered")).unwrap();
        let b = TieredStore::from_config(&config("tiered")).unwrap();
        let c = TieredStore::from_config(&config("tiered")).unwrap();
        for s in [&a, &b, &c] {
            until_subscribed(s).await;
        }
        let mut samples = Vec::new();
        for i in 0..200 {
            let key = format!("bench:prop:{i}");
            put(&a, &key).await;
            for s in [&b, &c] {
                assert!(s.get(&key).await.unwrap().is_some());
            }
            let started = Instant::now();
            a.invalidate_tags(&["camera".to_owned()]).await.unwrap();
            for s in [&b, &c] {
                while s.get(&key).await.unwrap().is_some() {
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
            }
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "invalidation on A until B and C drop their L1 copy: median {:.3} ms, p99 {:.3} ms (200 purges)",
            percentile(samples.clone(), 0.5),
            percentile(samples, 0.99)
        );
    });
}
