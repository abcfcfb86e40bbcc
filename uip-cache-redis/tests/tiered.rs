//! The tiered store (L1 + Redis + invalidation channel) against real
//! redis-server processes: the store conformance suite, three instances on
//! one server and on a 3-node cluster, L1 hits while Redis is frozen, and
//! a killed subscription.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::conformance::{self, Sharing};
use uip_cache_core::store::{PutOptions, Storage, StoreStatus};
use uip_cache_core::{CacheConfig, StoredResponse};
use uip_cache_redis::TieredStore;
use uip_cache_testkit::{RedisCluster, RedisServer};

fn tiered(yaml: &str) -> TieredStore {
    let yaml = yaml
        .replace("type: redis_cluster", "type: tiered")
        .replace("type: redis\n", "type: tiered\n");
    TieredStore::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}")))
        .unwrap()
}

/// A stored entry, as the cache writes them: tags inside.
fn entry(body: &str, tags: &[&str]) -> Bytes {
    let mut e = StoredResponse::new(200, Bytes::from(body.to_owned()));
    e.freshness_lifetime = Duration::from_secs(60);
    e.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    e.encode().unwrap()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn subscribed(s: &TieredStore) {
    let _ = s.get("warm-up").await;
    until("subscribed", async || s.is_subscribed()).await;
}

/// Two instances on `server`, both subscribed to invalidations.
async fn two_subscribed(server: &RedisServer) -> (TieredStore, TieredStore) {
    let yaml = server.yaml("");
    let (a, b) = (tiered(&yaml), tiered(&yaml));
    subscribed(&a).await;
    subscribed(&b).await;
    (a, b)
}

async fn body(s: &TieredStore, key: &str) -> Option<Bytes> {
    s.get(key)
        .await
        .unwrap()
        .map(|b| StoredResponse::decode(&b).unwrap().body)
}

async fn three_instances(yaml: &str, freeze: Option<&RedisServer>) {
    let (a, b, c) = (tiered(yaml), tiered(yaml), tiered(yaml));
    for s in [&a, &b, &c] {
        subscribed(s).await;
    }
    let tags = vec!["camera".to_owned(), "path:/cams".to_owned()];
    for (key, text) in [("k1", "one"), ("k2", "two")] {
        let options = PutOptions::new(Duration::from_secs(60), "/cams").tags(&tags);
        a.put(key, entry(text, &["camera", "path:/cams"]), options)
            .await
            .unwrap();
    }
    // B and C read through L2 and fill their L1.
    for s in [&b, &c] {
        assert_eq!(body(s, "k1").await.as_deref(), Some(&b"one"[..]));
        assert_eq!(body(s, "k2").await.as_deref(), Some(&b"two"[..]));
    }
    if let Some(server) = freeze {
        // An L1 hit needs no network: Redis frozen, B still answers.
        server.pause();
        let got = tokio::time::timeout(Duration::from_millis(50), body(&b, "k1")).await;
        server.resume();
        assert_eq!(
            got.expect("an L1 hit, no round trip").as_deref(),
            Some(&b"one"[..])
        );
    }
    // A tag purge on A: B and C drop their L1 copies.
    assert_eq!(a.invalidate_tags(&["camera".to_owned()]).await.unwrap(), 2);
    for s in [&b, &c] {
        until("the purge reached every instance", async || {
            s.get("k1").await.unwrap().is_none()
        })
        .await;
        assert!(s.get("k2").await.unwrap().is_none());
    }
    // A pattern purge and a single delete reach them too.
    let tags = vec!["other".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/other").tags(&tags);
    a.put("k3", entry("three", &["other"]), options)
        .await
        .unwrap();
    for s in [&b, &c] {
        assert!(body(s, "k3").await.is_some());
    }
    assert!(a.delete("k3").await.unwrap());
    for s in [&b, &c] {
        until("the delete reached every instance", async || {
            s.get("k3").await.unwrap().is_none()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiered_passes_the_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = tiered(&server.yaml(""));
    subscribed(&s).await;
    conformance::run_all(Arc::new(s), Sharing::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidation_on_one_instance_reaches_the_others() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    three_instances(&server.yaml(""), Some(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidation_reaches_every_instance_on_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    three_instances(&cluster.yaml(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_subscription_l1_is_not_used_and_it_comes_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_subscribed(&server).await;
    let tags = vec!["t".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    a.put("k", entry("v", &["t"]), options).await.unwrap();
    assert!(body(&b, "k").await.is_some(), "B holds it in L1");
    // Cut every subscriber's connection: B stops using L1 at once.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    until("B noticed", async || !b.is_subscribed()).await;
    let health = b.health().await.unwrap();
    // Degraded while the channel is down (unless B already got it back).
    assert!(
        health.status == uip_cache_core::store::HealthStatus::Degraded || b.is_subscribed(),
        "{health:?}"
    );
    // A purge B cannot hear about: B must not serve its L1 copy.
    assert_eq!(a.invalidate_tags(&tags).await.unwrap(), 1);
    assert!(
        b.get("k").await.unwrap().is_none(),
        "served from L2, not a stale L1"
    );
    // B resubscribes by itself and uses L1 again.
    until("B resubscribed", async || b.is_subscribed()).await;
    assert_eq!(
        b.health().await.unwrap().status,
        uip_cache_core::store::HealthStatus::Connected
    );
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    a.put("k", entry("v2", &["t"]), options).await.unwrap();
    assert_eq!(body(&b, "k").await.as_deref(), Some(&b"v2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exact_url_purge_drops_only_that_path_from_the_other_l1s() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_subscribed(&server).await;
    for (key, path) in [("ka", "/a"), ("kb", "/b")] {
        let tags = vec![format!("path:{path}")];
        let options = PutOptions::new(Duration::from_secs(60), path).tags(&tags);
        a.put(key, entry(key, &[&tags[0]]), options).await.unwrap();
        assert!(body(&b, key).await.is_some());
    }
    // What an unsafe request to /a does: an exact URL purge.
    let exact = uip_cache_core::UrlPattern::exact("/a");
    assert_eq!(a.invalidate_pattern(&exact).await.unwrap(), 1);
    until("B dropped /a", async || {
        b.get("ka").await.unwrap().is_none()
    })
    .await;
    // /b is still in B's L1: served with Redis frozen.
    server.pause();
    let got = tokio::time::timeout(Duration::from_millis(50), body(&b, "kb")).await;
    server.resume();
    assert_eq!(got.expect("still an L1 hit").as_deref(), Some(&b"kb"[..]));
}

/// How many GETs the server has run.
fn gets(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_that_miss_l1_share_one_redis_read() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_subscribed(&server).await;
    // Written by B: in Redis, not in A's L1.
    let tags = vec!["t".to_owned(), "path:/t".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    b.put("hot", entry("hot", &["t", "path:/t"]), options)
        .await
        .unwrap();
    assert!(a.get_now("hot").is_none());
    let before = gets(&server);
    // All 32 miss L1 before the first read has an answer.
    let got = futures_util::future::join_all((0..32).map(|_| body(&a, "hot"))).await;
    assert_eq!(gets(&server) - before, 1, "one GET for 32 reads");
    assert!(got.iter().all(|g| g.as_deref() == Some(&b"hot"[..])));
    // Filled L1 once: the next read is a hit, no GET.
    assert!(a.get_now("hot").is_some());
    assert!(body(&a, "hot").await.is_some());
    assert_eq!(gets(&server) - before, 1);
}
