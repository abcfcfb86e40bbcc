//! RedisStore against a throwaway local redis-server:
//!
//! 1. GET hit throughput with 64 concurrent tasks: the multiplexed store, the
//!    pooled store, and raw `redis` GETs of the same payload on one
//!    multiplexed connection (the floor), 5 rounds each, medians reported.
//! 2. Invalidating 100 000 entries under one tag: wall time, and the slowest
//!    single Redis command during it (from SLOWLOG).
//!
//! Run with `cargo bench -p uip-cache-redis --bench redis`.

// A bench binary: prints its figures; no public API.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uip_cache_core::store::{PutOptions, Storage};
use uip_cache_core::CacheConfig;
use uip_cache_redis::RedisStore;
use uip_cache_testkit::RedisServer;

const TASKS: usize = 64;
const GETS_PER_TASK: usize = 2_000;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn store_throughput(store: Arc<RedisStore>) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let s = store.clone();
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
    (TASKS * GETS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

async fn raw_throughput(conn: redis::aio::MultiplexedConnection) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut c = conn.clone();
            tokio::spawn(async move {
                for _ in 0..GETS_PER_TASK {
                    let v: Option<Vec<u8>> = redis::cmd("GET")
                        .arg("bench:hit")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    assert!(v.is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (TASKS * GETS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let multiplexed = Arc::new(
            RedisStore::from_config(&CacheConfig::from_yaml_str(&server.yaml("")).unwrap())
                .unwrap(),
        );
        let pooled = Arc::new(
            RedisStore::from_config(
                &CacheConfig::from_yaml_str(
                    &server.yaml("  connection: pool\n  max_connections: 16\n"),
                )
                .unwrap(),
            )
            .unwrap(),
        );
        let payload = Bytes::from(vec![b'x'; 2048]);
        multiplexed
            .put(
                "bench:hit",
                payload.clone(),
                PutOptions::new(Duration::from_secs(3600), "/bench"),
            )
            .await
            .unwrap();
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
        let raw = client.get_multiplexed_async_connection().await.unwrap();
        // Warm up every path once.
        store_throughput(multiplexed.clone()).await;
        store_throughput(pooled.clone()).await;
        raw_throughput(raw.clone()).await;

        let (mut m, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            r.push(raw_throughput(raw.clone()).await);
            m.push(store_throughput(multiplexed.clone()).await);
            p.push(store_throughput(pooled.clone()).await);
        }
        let (m, p, r) = (median(m), median(p), median(r));
        println!("GET 2 KB hit, {TASKS} tasks, median of {ROUNDS} rounds:");
        println!("  raw redis GET (multiplexed) {r:>10.0} ops/s  1.00x");
        println!(
            "  RedisStore multiplexed      {m:>10.0} ops/s  {:.2}x",
            m / r
        );
        println!(
            "  RedisStore pool (16)        {p:>10.0} ops/s  {:.2}x",
            p / r
        );

        // Invalidation of 100 000 tagged entries.
        let tags = vec!["bench-tag".to_string()];
        let started = Instant::now();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let s = multiplexed.clone();
                let tags = tags.clone();
                let v = Bytes::from(vec![b'y'; 256]);
                tokio::spawn(async move {
                    for i in (w..100_000).step_by(8) {
                        let path = format!("/bench/{i}");
                        s.put(
                            &format!("cache:b{i}"),
                            v.clone(),
                            PutOptions::new(Duration::from_secs(3600), &path).tags(&tags),
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        println!(
            "wrote 100000 tagged entries in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let mut c = raw.clone();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        let _: () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut c)
            .await
            .unwrap();
        let started = Instant::now();
        let removed = multiplexed.invalidate_tags(&tags).await.unwrap();
        let took = started.elapsed();
        let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        let slowest_us = slow
            .iter()
            .filter_map(|e| match e {
                redis::Value::Array(f) => match f.get(2) {
                    Some(redis::Value::Int(us)) => Some(*us),
                    _ => None,
                },
                _ => None,
            })
            .max();
        assert_eq!(removed, 100_000);
        println!(
            "invalidated {removed} tagged entries in {:.3} s",
            took.as_secs_f64()
        );
        match slowest_us {
            Some(us) => println!(
                "slowest single redis command during it: {:.2} ms ({} over 1 ms)",
                us as f64 / 1000.0,
                slow.len()
            ),
            None => println!("no single redis command during it took over 1 ms"),
        }
    });
}
