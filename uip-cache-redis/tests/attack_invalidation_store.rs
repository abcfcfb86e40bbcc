//! Invalidation that an attacker or a slow store could bend, against real
//! redis-server processes: purges are not cut by the request path's store
//! timeout nor skipped by an open circuit, a purge cut by its own deadline
//! says what it did and running it again finishes the work, the tiered
//! backplane message goes out whatever happens to the L2 purge, the shared
//! invalidation log stays small and its reads never open the circuit, an
//! eviction policy that can evict indexes is refused, and a pub/sub
//! connection that died silently stops L1.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use uip_cache_core::invalidate::Invalidation;
use uip_cache_core::store::{Coordination, HealthStatus, PutOptions, Storage, Store, StoreStatus};
use uip_cache_core::{CacheConfig, StoredResponse, UrlPattern};
use uip_cache_redis::{RedisStore, TieredStore};
use uip_cache_testkit::{FreezableProxy, RedisCluster, RedisServer};

/// A config from testkit's, with the request path's default 100 ms store
/// timeout and `extra` lines in the `store` section.
fn config(yaml: &str, store: &str) -> CacheConfig {
    let yaml = yaml.replace("  timeout: 1s\n", &format!("  timeout: 100ms\n{store}"));
    CacheConfig::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn redis(yaml: &str, store: &str) -> RedisStore {
    RedisStore::from_config(&config(yaml, store)).unwrap()
}

/// A store with testkit's 1 s timeout: for tests of what Redis holds,
/// whose writes must all land (250 at once on a loaded machine can take
/// longer than the request path's 100 ms, and a write that times out is
/// an error there, not what the test is about).
fn patient(yaml: &str) -> RedisStore {
    RedisStore::from_config(&CacheConfig::from_yaml_str(yaml).unwrap()).unwrap()
}

fn tiered(yaml: &str, store: &str) -> TieredStore {
    let yaml = yaml
        .replace("type: redis_cluster", "type: tiered")
        .replace("type: redis\n", "type: tiered\n");
    TieredStore::from_config(&config(&yaml, store)).unwrap()
}

fn entry(body: &str, tags: &[&str]) -> Bytes {
    let mut e = StoredResponse::new(200, Bytes::from(body.to_owned()));
    e.freshness_lifetime = Duration::from_secs(60);
    e.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    e.encode().unwrap()
}

async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `n` entries tagged `t` under `/p/<i>`.
async fn fill(store: &dyn Store, n: usize) {
    let tags = vec!["t".to_owned()];
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        join_all(chunk.iter().map(|i| {
            let (key, path) = (format!("cache:e{i}"), format!("/p/{i}"));
            let tags = &tags;
            async move {
                let options = PutOptions::new(Duration::from_secs(60), &path).tags(tags);
                store.put(&key, entry("v", &["t"]), options).await.unwrap();
            }
        }))
        .await;
    }
}

fn circuit_open(store: &RedisStore) -> bool {
    format!("{store:?}").contains("circuit_open: true")
}

fn pause(nodes: &[&RedisServer], ms: u64) {
    for n in nodes {
        assert_eq!(
            n.cli(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]).trim(),
            "OK"
        );
    }
}

/// Waits until every node answers again (a paused server answers when the
/// pause ends).
fn resumed(nodes: &[&RedisServer]) {
    for n in nodes {
        assert_eq!(n.cli(&["PING"]).trim(), "PONG");
    }
}

async fn purge_outlives_the_store_timeout_and_the_open_circuit(yaml: &str, nodes: &[&RedisServer]) {
    let store = redis(yaml, "");
    fill(&store, 1500).await;
    pause(nodes, 800);
    // Requests time out at 100 ms meanwhile, and open the circuit.
    let keys: Vec<String> = (0..5).map(|i| format!("cache:e{i}")).collect();
    let gets = join_all(keys.iter().map(|k| store.get(k))).await;
    assert!(gets.iter().all(Result::is_err));
    assert!(circuit_open(&store), "five timeouts open the circuit");
    // The purge is not a request: it waits for Redis, circuit or not.
    let removed = store.invalidate_tags(&["t".to_owned()]).await;
    assert_eq!(
        removed.unwrap(),
        1500,
        "every entry went, none was left behind"
    );
    resumed(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_is_not_cut_by_the_store_timeout_nor_skipped_by_an_open_circuit() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    purge_outlives_the_store_timeout_and_the_open_circuit(&server.yaml(""), &[&server]).await;
    assert_eq!(server.cli(&["EXISTS", "cache:e7"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_on_a_cluster_is_not_cut_by_the_store_timeout_nor_skipped_by_an_open_circuit() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let nodes: Vec<&RedisServer> = cluster.nodes.iter().collect();
    purge_outlives_the_store_timeout_and_the_open_circuit(&cluster.yaml(), &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_cut_by_its_deadline_says_so_and_running_it_again_finishes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis(&server.yaml(""), "  purge_timeout: 1s\n");
    fill(&store, 1500).await;
    // Redis stalls longer than the purge may run.
    pause(&[&server], 2500);
    let err = store
        .invalidate_tags(&["t".to_owned()])
        .await
        .expect_err("cut by its deadline");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.partial(), Some(0), "{err}");
    resumed(&[&server]);
    // Nothing was lost from the tag's index meanwhile: all of it goes now.
    assert_eq!(
        store.invalidate_tags(&["t".to_owned()]).await.unwrap(),
        1500
    );
    assert_eq!(server.cli(&["EXISTS", "cache:e7"]).trim(), "0");

    // The same for a pattern purge.
    fill(&store, 1500).await;
    pause(&[&server], 2500);
    let pattern = UrlPattern::glob("/p/*").unwrap();
    let err = store.invalidate_pattern(&pattern).await.expect_err("cut");
    assert!(err.partial().is_some(), "{err}");
    resumed(&[&server]);
    let rest = store.invalidate_pattern(&pattern).await.unwrap();
    assert_eq!(err.partial().unwrap() + rest, 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_backplane_message_goes_out_when_the_purge_is_cut_short() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Pings far apart: B must drop its copy because of the message, not
    // because its channel went quiet.
    let extra = "  l1:\n    ping_interval: 60s\n";
    let (a, b) = (
        tiered(&server.yaml(""), extra),
        tiered(&server.yaml(""), extra),
    );
    for s in [&a, &b] {
        let _ = s.get("warm-up").await;
        until("subscribed", Duration::from_secs(5), async || {
            s.is_subscribed()
        })
        .await;
    }
    let tags = vec!["t".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    a.put("k", entry("v", &["t"]), options).await.unwrap();
    assert!(b.get("k").await.unwrap().is_some());
    assert!(b.get_now("k").is_some(), "B holds it in L1");
    // Redis stalls; A's caller gives up on the purge half-way (a webhook
    // sender hanging up, a timeout above).
    pause(&[&server], 600);
    let cut = tokio::time::timeout(Duration::from_millis(100), a.invalidate_tags(&tags)).await;
    assert!(cut.is_err(), "the purge was still waiting for Redis");
    // The message went out all the same: B drops its copy once Redis is back.
    until(
        "B dropped its L1 copy",
        Duration::from_secs(5),
        async || b.get_now("k").is_none(),
    )
    .await;
    assert!(b.is_subscribed(), "B dropped it because of the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_urls_and_a_flood_of_invalidations_neither_open_the_circuit_nor_bloat_the_log() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis(&server.yaml(""), "");
    let long = "q".repeat(64 * 1024);
    let url = |i: usize| format!("/items/{i}?q={long}");
    let line = |i: usize| Invalidation::Pattern(UrlPattern::exact(&url(i))).to_line();
    // A flood of unsafe requests with 64 KB URLs, all at once.
    let records = join_all((0..1100).map(|i| {
        let (store, line) = (&store, line(i));
        async move { store.record_invalidation(&line).await }
    }))
    .await;
    assert!(records.iter().all(Result::is_ok));
    assert!(!circuit_open(&store));
    let epoch = store.epoch().await.unwrap();
    assert_eq!(epoch, 1100);
    // Every read is small: whole, or "unknown" (None) when too much
    // happened since, never a 64 MB answer.
    for since in [0, epoch / 2, epoch - 300, epoch - 3] {
        for _ in 0..3 {
            match store.invalidations_since(since).await.unwrap() {
                None => {}
                Some(lines) => {
                    assert_eq!(lines.len() as u64, epoch - since);
                    assert!(lines.iter().all(|l| l.len() <= 512), "bounded lines");
                }
            }
        }
    }
    let used: u64 = server
        .cli(&["MEMORY", "USAGE", "cache:idx:{inv}:log"])
        .trim()
        .parse()
        .unwrap();
    assert!(used < 2 << 20, "the log holds {used} bytes");
    // A bounded line still fences its URL: once the flood's second is
    // over, a fresh record is kept and concerns what it named.
    until(
        "a fresh record is kept",
        Duration::from_secs(5),
        async || {
            store.record_invalidation(&line(7)).await.unwrap();
            let epoch = store.epoch().await.unwrap();
            match store.invalidations_since(epoch - 1).await.unwrap() {
                Some(lines) => {
                    let inv = Invalidation::from_line(&lines[0]);
                    assert!(inv.is_none_or(|i| i.concerns(
                        "/items/7",
                        Some(&format!("q={long}")),
                        &[]
                    )));
                    true
                }
                None => false,
            }
        },
    )
    .await;
    // Reads of the log that time out are "unknown", not an outage: the
    // circuit stays closed and requests still use Redis.
    pause(&[&server], 1500);
    for _ in 0..3 {
        assert!(store.epoch().await.is_err());
        assert!(store.invalidations_since(0).await.is_err());
    }
    assert!(!circuit_open(&store), "log reads never open the circuit");
    resumed(&[&server]);
    assert!(store.get("cache:nothing").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_an_allkeys_eviction_policy_the_store_refuses_and_says_why() {
    let Some(server) =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
    else {
        return;
    };
    let store = redis(&server.yaml(""), "");
    let options = PutOptions::new(Duration::from_secs(60), "/a");
    assert!(store
        .put("cache:a", entry("v", &[]), options)
        .await
        .is_err());
    assert!(store.get("cache:a").await.is_err());
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0", "nothing written");
    let health = store.health().await.unwrap();
    // Degraded, not down: a readiness probe keeps the instance in rotation.
    assert_eq!(health.status, HealthStatus::Degraded);
    let detail = health.detail.unwrap();
    assert!(
        detail.contains("allkeys-lru") && detail.contains("volatile-lru"),
        "{detail}"
    );
    assert!(!circuit_open(&store), "a refusal is not an outage");
    // Fixed in Redis: the store comes back by itself.
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    assert_eq!(
        store.health().await.unwrap().status,
        HealthStatus::Connected
    );
    store
        .put("cache:a", entry("v", &[]), options)
        .await
        .unwrap();
    assert!(store.get("cache:a").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_cluster_node_with_an_allkeys_policy_is_refused() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let store = redis(&cluster.yaml(), "");
    assert_eq!(
        store.health().await.unwrap().status,
        HealthStatus::Connected
    );
    let node = &cluster.nodes[1];
    node.cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
    node.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    let health = store.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert!(health.detail.unwrap().contains("allkeys-lfu"));
    let options = PutOptions::new(Duration::from_secs(60), "/a");
    assert!(store
        .put("cache:a", entry("v", &[]), options)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_indexes_carry_no_ttl_so_volatile_policies_evict_entries_only() {
    let Some(server) =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"])
    else {
        return;
    };
    let yaml = server.yaml("");
    let store = redis(&yaml, "");
    let tags = vec!["t".to_owned(), "old".to_owned()];
    let options = PutOptions::new(Duration::from_millis(300), "/a").tags(&tags);
    store
        .put("cache:a", entry("v", &["t", "old"]), options)
        .await
        .unwrap();
    assert!(
        server
            .cli(&["PTTL", "cache:a"])
            .trim()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    for index in [
        "cache:idx:tag:t",
        "cache:idx:{paths}",
        "cache:idx:{paths}:tags",
    ] {
        assert_eq!(
            server.cli(&["PTTL", index]).trim(),
            "-1",
            "{index} has no TTL"
        );
    }
    // Sets of tags whose entries all expired do not stay for ever.
    until("the entry expired", Duration::from_secs(5), async || {
        server.cli(&["EXISTS", "cache:a"]).trim() == "0"
    })
    .await;
    let other = redis(&yaml, "");
    let tags = vec!["new".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/b").tags(&tags);
    other
        .put("cache:b", entry("v", &["new"]), options)
        .await
        .unwrap();
    until(
        "the expired tag sets are gone",
        Duration::from_secs(5),
        async || {
            server.cli(&["EXISTS", "cache:idx:tag:old"]).trim() == "0"
                && server.cli(&["EXISTS", "cache:idx:tag:t"]).trim() == "0"
        },
    )
    .await;
    assert_eq!(server.cli(&["EXISTS", "cache:idx:tag:new"]).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silently_dead_channel_stops_l1_within_a_few_pings() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // B reaches Redis through a flow that can go silent.
    let flow = FreezableProxy::start(server.port);
    let extra = "  l1:\n    ping_interval: 200ms\n";
    let a = tiered(&server.yaml(""), extra);
    let b = tiered(
        &server.yaml("").replace(
            &format!("port: {}", server.port),
            &format!("port: {}", flow.port),
        ),
        extra,
    );
    for s in [&a, &b] {
        let _ = s.get("warm-up").await;
        until("subscribed", Duration::from_secs(5), async || {
            s.is_subscribed()
        })
        .await;
    }
    let tags = vec!["t".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    a.put("k", entry("v1", &["t"]), options).await.unwrap();
    assert!(b.get("k").await.unwrap().is_some());
    assert!(b.get_now("k").is_some(), "B holds it in L1");
    // The flow goes silent: no data, no error, no close.
    flow.freeze();
    until("B stopped using L1", Duration::from_secs(3), async || {
        !b.is_subscribed()
    })
    .await;
    assert!(b.get_now("k").is_none(), "no L1 answer without the channel");
    // A purge B cannot hear about.
    assert_eq!(a.invalidate_tags(&tags).await.unwrap(), 1);
    flow.thaw();
    until("B resubscribed", Duration::from_secs(15), async || {
        let _ = b.get("warm-up").await;
        b.is_subscribed()
    })
    .await;
    assert!(b.get_now("k").is_none(), "L1 starts empty");
    until("B reads Redis again", Duration::from_secs(10), async || {
        matches!(b.get("k").await, Ok(None))
    })
    .await;
}

/// `n` entries from `from` on, each with a tag of its own (as a `target:`
/// tag gives every URL), living `ttl`.
async fn fill_unique(store: &dyn Store, from: usize, n: usize, ttl: Duration) {
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(250) {
        join_all(chunk.iter().map(|i| {
            let (key, path) = (format!("cache:u{i}"), format!("/x/{i}"));
            async move {
                let tags = vec![format!("target:/x/{i}")];
                let options = PutOptions::new(ttl, &path).tags(&tags);
                store
                    .put(&key, entry("v", &[tags[0].as_str()]), options)
                    .await
                    .unwrap();
            }
        }))
        .await;
    }
}

/// Unique URLs (`/x?r=<random>`) each write a tag set that carries no TTL:
/// writes prune expired tags in proportion, so the index keys of expired
/// entries do not pile up (no unbounded, non-evictable growth).
async fn unique_tags_are_pruned_as_fast_as_they_are_written(
    store: &dyn Store,
    dbsize: impl Fn() -> u64,
    tags_card: impl Fn() -> Option<u64>,
) {
    const OLD: usize = 2_000;
    const NEW: usize = 500;
    fill_unique(store, 0, OLD, Duration::from_secs(1)).await;
    assert!(dbsize() >= 2 * OLD as u64, "entries and their tag sets");
    until(
        "the first entries expired",
        Duration::from_secs(10),
        async || {
            // Only index keys are left: the tag sets and the three path indexes.
            dbsize() <= OLD as u64 + 3
        },
    )
    .await;
    fill_unique(store, OLD, NEW, Duration::from_secs(60)).await;
    // Live: NEW entries, their NEW tag sets and the three path indexes.
    let live = 2 * NEW as u64 + 3;
    until(
        "the expired tags are pruned",
        Duration::from_secs(10),
        async || dbsize() <= live + 20 && tags_card().is_none_or(|c| c <= NEW as u64 + 20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_tags_do_not_pile_up_in_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = patient(&server.yaml(""));
    unique_tags_are_pruned_as_fast_as_they_are_written(
        &store,
        || server.cli(&["DBSIZE"]).trim().parse().unwrap(),
        || {
            server
                .cli(&["ZCARD", "cache:idx:{paths}:tags"])
                .trim()
                .parse()
                .ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_tags_do_not_pile_up_in_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let store = patient(&cluster.yaml());
    unique_tags_are_pruned_as_fast_as_they_are_written(
        &store,
        || cluster.dbsizes().iter().sum(),
        || None,
    )
    .await;
}
