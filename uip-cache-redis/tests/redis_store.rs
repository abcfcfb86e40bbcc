//! RedisStore against real redis-server processes: the conformance suite in
//! all three connection modes, failures (kill, restart, SIGSTOP), corrupt
//! bytes, and tag invalidation across cluster slots.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::conformance::{self, Sharing};
use uip_cache_core::store::{HealthStatus, PutOptions, Storage, StoreStatus};
use uip_cache_core::{CacheConfig, HttpCache, Plan, RequestView};
use uip_cache_redis::RedisStore;
use uip_cache_testkit::{RedisCluster, RedisServer};

fn store(yaml: &str) -> RedisStore {
    RedisStore::from_config(&CacheConfig::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multiplexed_passes_the_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    conformance::run_all(Arc::new(store(&server.yaml(""))), Sharing::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_passes_the_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    conformance::run_all(
        Arc::new(store(
            &server.yaml("  connection: pool\n  max_connections: 8\n"),
        )),
        Sharing::Shared,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_passes_the_conformance_suite_and_spreads_keys() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let s = Arc::new(store(&cluster.yaml()));
    conformance::run_all(s.clone(), Sharing::Shared).await;
    assert!(
        cluster.dbsizes().iter().all(|&n| n > 0),
        "entries on every master: {:?}",
        cluster.dbsizes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_and_pattern_invalidation_across_cluster_slots() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let s = store(&cluster.yaml());
    let tags = vec!["camera".to_string()];
    for i in 0..300 {
        let path = format!("/cams/{i}");
        s.put(
            &format!("cache:{i:04}"),
            Bytes::from_static(b"v"),
            PutOptions::new(Duration::from_secs(60), &path).tags(&tags),
        )
        .await
        .unwrap();
    }
    for i in 0..50 {
        let path = format!("/other/{i}");
        s.put(
            &format!("cache:o{i}"),
            Bytes::from_static(b"v"),
            PutOptions::new(Duration::from_secs(60), &path),
        )
        .await
        .unwrap();
    }
    assert_eq!(s.keys_count().await.unwrap(), 350);
    assert_eq!(s.invalidate_tags(&tags).await.unwrap(), 300);
    assert_eq!(s.get("cache:0123").await.unwrap(), None);
    let p = uip_cache_core::UrlPattern::glob("/other/*").unwrap();
    assert_eq!(s.invalidate_pattern(&p).await.unwrap(), 50);
    assert_eq!(s.keys_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_redis_is_a_miss_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let s = store(&server.yaml(""));
    let opts = PutOptions::new(Duration::from_secs(60), "/k");
    s.put("k", Bytes::from_static(b"v"), opts).await.unwrap();
    server.kill();
    assert!(
        s.get("k").await.is_err(),
        "a dead server is an error the cache turns into a miss"
    );
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Down);
    server.restart();
    // The circuit may be open for a few seconds; the store recovers by itself.
    let mut recovered = false;
    for _ in 0..100 {
        if s.put("k", Bytes::from_static(b"again"), opts).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store reconnects when redis returns");
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"again"[..]));
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_the_timeout_then_the_circuit_skips_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = store(&server.yaml("").replace("timeout: 1s", "timeout: 100ms"));
    let opts = PutOptions::new(Duration::from_secs(60), "/k");
    s.put("k", Bytes::from_static(b"v"), opts).await.unwrap();
    server.pause();
    let mut kinds = Vec::new();
    for _ in 0..7 {
        let e = s.get("k").await.unwrap_err();
        kinds.push((e.is_timeout(), e.is_unavailable()));
    }
    // Five timeouts open the circuit; then calls fail at once.
    assert_eq!(&kinds[..5], &[(true, false); 5]);
    assert_eq!(&kinds[5..], &[(false, true); 2]);
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Down);
    server.resume();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bytes_under_a_key_are_a_counted_miss_and_deleted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let yaml = server.yaml("policies:\n  - name: p\n    pattern: /items\n    ttl: 60\n");
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let cache =
        HttpCache::new(&config, Arc::new(RedisStore::from_config(&config).unwrap())).unwrap();
    let headers = [("host", "h")];
    let view = RequestView::new("GET", "/items", &headers).authority(Some("h"));
    let Plan::Cache(plan) = cache.plan(&view) else {
        panic!("cached path")
    };
    for garbage in ["x", "\u{1f}\u{8b}garbage that is long enough"] {
        server.cli(&["set", plan.key.as_str(), garbage]);
        assert!(cache.lookup(&plan, &view).await.is_none());
        assert_eq!(
            server.cli(&["exists", plan.key.as_str()]).trim(),
            "0",
            "deleted"
        );
    }
    assert_eq!(cache.stats().snapshot().corrupt_entries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_health_figures() {
    let Some(server) = RedisServer::start_with(&["--maxmemory", "64mb"]) else {
        return;
    };
    let s = store(&server.yaml(""));
    let m = s.memory().await.unwrap();
    assert!(m.used_memory_bytes > 0);
    assert_eq!(m.max_memory_bytes, Some(64 << 20));
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Connected);
}

/// How many times redis-server ran `command` (from INFO commandstats).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.cli(&["info", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_copies_are_checked_against_redis_on_every_hit() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    // Two instances sharing Redis: `a` writes, `b` reads through its copies.
    let a = store(&server.yaml(""));
    let b = store(&server.yaml(""));
    let tags = vec!["t".to_string()];
    let opts = PutOptions::new(Duration::from_secs(60), "/big").tags(&tags);
    let first = Bytes::from(vec![b'1'; 64 * 1024]);
    a.put("big", first.clone(), opts).await.unwrap();

    assert_eq!(b.get("big").await.unwrap(), Some(first.clone()));
    let (gets, ranges) = (calls(&server, "get"), calls(&server, "getrange"));
    assert_eq!(b.get("big").await.unwrap(), Some(first.clone()));
    assert_eq!(
        (calls(&server, "get"), calls(&server, "getrange")),
        (gets, ranges + 1),
        "a hit on a copy reads the 16-byte header, not the entry"
    );

    // Another instance's write, of the same length, is seen at once.
    let second = Bytes::from(vec![b'2'; 64 * 1024]);
    a.put("big", second.clone(), opts).await.unwrap();
    assert_eq!(b.get("big").await.unwrap(), Some(second.clone()));

    // A soft purge keeps the generation but not the version.
    let rewrite = |e: &Bytes| Some((Bytes::from(vec![b'3'; e.len()]), Duration::from_secs(30)));
    assert_eq!(
        a.soft_invalidate_tags(&tags, &rewrite).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        b.get("big").await.unwrap(),
        Some(Bytes::from(vec![b'3'; 64 * 1024]))
    );

    // Gone from Redis is gone: deleted elsewhere, or Redis down.
    a.delete("big").await.unwrap();
    assert_eq!(b.get("big").await.unwrap(), None);
    a.put("big", second.clone(), opts).await.unwrap();
    assert_eq!(b.get("big").await.unwrap(), Some(second.clone()));
    server.kill();
    assert!(
        b.get("big").await.is_err(),
        "a copy is never served without Redis confirming it"
    );

    // Small entries are always read whole; `local_copies: 0` turns copies off.
    server.restart();
    let off = store(&server.yaml("  local_copies: 0\n"));
    let mut back = false;
    for _ in 0..100 {
        if off.put("big", first.clone(), opts).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "redis restarted");
    off.put("small", Bytes::from_static(b"s"), opts)
        .await
        .unwrap();
    let ranges = calls(&server, "getrange");
    for _ in 0..3 {
        assert_eq!(off.get("big").await.unwrap(), Some(first.clone()));
        assert_eq!(off.get("small").await.unwrap().as_deref(), Some(&b"s"[..]));
    }
    assert_eq!(calls(&server, "getrange"), ranges);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_get_their_own_replies() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = Arc::new(store(&server.yaml("")));
    let opts = PutOptions::new(Duration::from_secs(60), "/k");
    // Small and large (read through local copies after the first read)
    // entries, missing keys and a key of the wrong type, read at once: the
    // reads share pipelines, and each must get its own reply.
    for i in 0..200u32 {
        let len = if i % 3 == 0 {
            20_000 + i as usize
        } else {
            10 + i as usize
        };
        s.put(
            &format!("k{i}"),
            Bytes::from(vec![(i % 251) as u8; len]),
            opts,
        )
        .await
        .unwrap();
    }
    server.cli(&["hset", "wrong-type", "f", "v"]);
    for _round in 0..3 {
        let reads = (0..260u32).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = match i {
                    200..=229 => format!("missing{i}"),
                    230.. => "wrong-type".to_string(),
                    _ => format!("k{i}"),
                };
                (i, s.get(&key).await)
            })
        });
        for r in futures_util::future::join_all(reads).await {
            let (i, got) = r.unwrap();
            match i {
                200..=229 => assert_eq!(got.unwrap(), None),
                230.. => assert!(got.is_err(), "a wrong-type key fails alone"),
                _ => {
                    let v = got.unwrap().unwrap_or_else(|| panic!("k{i} is there"));
                    let len = if i % 3 == 0 {
                        20_000 + i as usize
                    } else {
                        10 + i as usize
                    };
                    assert_eq!(v.len(), len, "k{i}");
                    assert!(v.iter().all(|&b| b == (i % 251) as u8), "k{i}'s own bytes");
                }
            }
        }
    }
}
