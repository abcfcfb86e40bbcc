//! `server.fast_hits` with a store that keeps its entries out of the
//! process (Redis): the fast loop asks the store with a future, answers a
//! hit from the request head, and lends anything else to hyper, which
//! takes that lookup for its own when it found nothing. A memory store
//! that keeps nothing at hand stands for Redis where reads are counted or
//! delayed; one test runs a real `redis-server`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uip_cache_core::store::{Coordination, MemoryStore, Storage, StoreFuture};
use uip_cache_core::HttpCache;
use uip_cache_testkit::RedisServer;

use crate::fast_hits::{config, exchange, get, origin, proxy_for, read_response};

/// A memory store with nothing at hand, as Redis: every read is a future.
/// It counts them, and delays each by `delay_ms`.
#[derive(Debug)]
struct Remote {
    inner: MemoryStore,
    reads: AtomicUsize,
    delay_ms: AtomicU64,
}

impl Storage for Remote {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        Box::pin(async move {
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.inner.get(key).await
        })
    }
    uip_cache_testkit::storage_put_to!(inner);
    uip_cache_testkit::storage_removals_to!(inner);
}

uip_cache_testkit::store_status_of!(Remote, inner);

impl Coordination for Remote {}

/// A proxy in front of a fresh origin with a [`Remote`] store, fast hits
/// on or off.
struct Served {
    addr: std::net::SocketAddr,
    cache: HttpCache,
    store: Arc<Remote>,
}

async fn served(origin: std::net::SocketAddr, fast: bool) -> Served {
    let config = config(&format!("  fast_hits: {fast}\n"));
    let store = Arc::new(Remote {
        inner: MemoryStore::new(1 << 24),
        reads: AtomicUsize::new(0),
        delay_ms: AtomicU64::new(0),
    });
    let cache = HttpCache::builder(&config)
        .store(store.clone())
        .build()
        .unwrap();
    let addr = proxy_for(origin, &config, cache.clone(), None).await;
    Served { addr, cache, store }
}

impl Served {
    fn reads(&self) -> usize {
        self.store.reads.load(Ordering::SeqCst)
    }

    fn at_hand(&self) -> u64 {
        self.cache.stats().snapshot().answered_at_hand
    }
}

#[tokio::test]
async fn hits_of_a_store_without_entries_at_hand_are_answered_from_the_head() {
    let origin = origin(Arc::default()).await;
    let fast = served(origin, true).await;
    let general = served(origin, false).await;
    // Stored first: a miss on both, read once by each (hyper's path takes
    // the fast loop's lookup for its own).
    for s in [&fast, &general] {
        let r = exchange(s.addr, &get("/doc", "")).await;
        assert_eq!(r.field("x-cache"), Some("MISS"));
    }
    assert_eq!((fast.reads(), general.reads()), (1, 1));
    // Stored behind the answer: wait until both hold it.
    wait_stored(&fast, 1).await;
    wait_stored(&general, 1).await;
    for request in [
        get("/doc", ""),
        get("/doc", "if-none-match: \"v1\"\r\n"),
        get("/doc", "cache-control: max-stale=5\r\n"),
        "HEAD /doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".to_owned(),
    ] {
        let (fast_reads, at_hand) = (fast.reads(), fast.at_hand());
        let a = exchange(fast.addr, &request).await;
        let b = exchange(general.addr, &request).await;
        if let Err(e) = a.same_as(&b) {
            panic!("{request:?}: the two paths answer differently:\n{e}");
        }
        assert_eq!(a.field("x-cache"), Some("HIT"), "{request:?}");
        assert_eq!(fast.at_hand() - at_hand, 1, "from the head: {request:?}");
        assert_eq!(fast.reads() - fast_reads, 1, "read once: {request:?}");
    }
    assert_eq!(general.at_hand(), 0);
}

#[tokio::test]
async fn a_response_that_varies_is_looked_up_under_its_variant() {
    let origin = origin(Arc::default()).await;
    let fast = served(origin, true).await;
    let en = "accept-language: en\r\n";
    let r = exchange(fast.addr, &get("/lang", en)).await;
    assert_eq!(r.body, b"lang:en");
    wait_stored(&fast, 1).await;
    let (reads, at_hand) = (fast.reads(), fast.at_hand());
    let r = exchange(fast.addr, &get("/lang", en)).await;
    assert_eq!(
        (r.field("x-cache"), &r.body[..]),
        (Some("HIT"), &b"lang:en"[..])
    );
    assert_eq!(fast.at_hand() - at_hand, 1);
    assert_eq!(
        fast.reads() - reads,
        2,
        "the key's marker, then the variant"
    );
    // Another language: no variant stored, the general path fetches it.
    let r = exchange(fast.addr, &get("/lang", "accept-language: de\r\n")).await;
    assert_eq!(
        (r.field("x-cache"), &r.body[..]),
        (Some("MISS"), &b"lang:de"[..])
    );
    assert_eq!(fast.at_hand() - at_hand, 1);
}

/// Waits until `s` has stored `n` responses.
async fn wait_stored(s: &Served, n: u64) {
    uip_cache_testkit::wait_until(&s.cache, "stored", |stats| stats.sets >= n).await;
}

#[tokio::test]
async fn requests_in_one_write_are_answered_in_order_while_lookups_wait() {
    let origin = origin(Arc::default()).await;
    let fast = served(origin, true).await;
    exchange(fast.addr, &get("/doc", "")).await;
    wait_stored(&fast, 1).await;
    // Each read waits 30 ms: the requests behind one wait with it.
    fast.store.delay_ms.store(30, Ordering::SeqCst);
    let at_hand = fast.at_hand();
    let mut stream = TcpStream::connect(fast.addr).await.unwrap();
    let requests = [
        get("/doc", ""),
        get("/nostore", ""),
        "HEAD /doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".to_owned(),
        get("/missing", ""),
        get("/doc", ""),
    ];
    stream
        .write_all(requests.concat().as_bytes())
        .await
        .unwrap();
    let mut pending = Vec::new();
    let mut got = Vec::new();
    for method in ["GET", "GET", "HEAD", "GET", "GET"] {
        got.push(read_response(&mut stream, &mut pending, method).await);
    }
    let seen: Vec<_> = got
        .iter()
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, "document body".to_owned()),
            (200, "fresh from origin".to_owned()),
            (200, String::new()),
            (404, "none".to_owned()),
            (200, "document body".to_owned()),
        ]
    );
    assert_eq!(got[2].field("content-length"), Some("13"));
    assert_eq!(fast.at_hand() - at_hand, 3, "the three hits");
    assert!(pending.is_empty());
}

#[tokio::test]
async fn a_store_slower_than_its_timeout_is_a_miss_on_the_fast_path_too() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin = origin(calls.clone()).await;
    let fast = served(origin, true).await;
    exchange(fast.addr, &get("/doc", "")).await;
    wait_stored(&fast, 1).await;
    // Past the store's 100 ms timeout: the lookup gives up (the general
    // path takes that for its own), and the origin answers.
    fast.store.delay_ms.store(400, Ordering::SeqCst);
    let at_hand = fast.at_hand();
    let r = exchange(fast.addr, &get("/doc", "")).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"document body"[..]));
    assert_ne!(r.field("x-cache"), Some("HIT"));
    assert_eq!(fast.at_hand(), at_hand);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn redis_hits_are_answered_from_the_request_head() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let origin = origin(Arc::default()).await;
    let config = config("  fast_hits: true\n");
    let yaml = format!(
        "store:\n  type: redis\nredis:\n  host: 127.0.0.1\n  port: {}\n\
         policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n",
        redis.port
    );
    let redis_config = uip_cache_core::CacheConfig::from_yaml_str(&yaml).unwrap();
    let cache = uip_cache_tower::CacheLayer::from_config(&redis_config)
        .unwrap()
        .cache()
        .clone();
    let addr = proxy_for(origin, &config, cache.clone(), None).await;
    let r = exchange(addr, &get("/doc", "")).await;
    assert_eq!(r.field("x-cache"), Some("MISS"));
    uip_cache_testkit::wait_until(&cache, "stored", |stats| stats.sets >= 1).await;
    for _ in 0..3 {
        let r = exchange(addr, &get("/doc", "")).await;
        assert_eq!(
            (r.field("x-cache"), &r.body[..]),
            (Some("HIT"), &b"document body"[..])
        );
    }
    let stats = cache.stats().snapshot();
    assert_eq!((stats.answered_at_hand, stats.hits), (3, 3));
}

#[tokio::test]
async fn a_connection_whose_lookups_keep_missing_goes_to_hyper_for_good() {
    let origin = origin(Arc::default()).await;
    let fast = served(origin, true).await;
    exchange(fast.addr, &get("/doc", "")).await;
    wait_stored(&fast, 1).await;
    // Lookups that find nothing cost more than hits save: past eight
    // lookups, more than one miss in eight hands the connection over.
    for (misses, at_hand) in [(1, 11), (2, 6)] {
        let before = fast.cache.stats().snapshot();
        let mut requests: Vec<String> = (0..misses)
            .map(|i| get(&format!("/new-{misses}-{i}"), ""))
            .collect();
        requests.insert(1, get("/doc", ""));
        while requests.len() < 12 {
            requests.push(get("/doc", ""));
        }
        let mut stream = TcpStream::connect(fast.addr).await.unwrap();
        stream
            .write_all(requests.concat().as_bytes())
            .await
            .unwrap();
        let mut pending = Vec::new();
        for request in &requests {
            let r = read_response(&mut stream, &mut pending, "GET").await;
            let hit = request.contains("/doc ");
            assert_eq!(r.field("x-cache") == Some("HIT"), hit, "{request:?}");
        }
        let after = fast.cache.stats().snapshot();
        assert_eq!(
            after.answered_at_hand - before.answered_at_hand,
            at_hand,
            "{misses} misses"
        );
        assert_eq!(after.hits - before.hits, 12 - misses);
    }
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_waited_on_as_often_as_without_fast_hits() {
    // A store that hangs (Redis unreachable, before its breaker opens):
    // each read waits out `store.timeout`. The fast path must not make a
    // request wait on it more often than the general path alone does.
    let origin = origin(Arc::default()).await;
    let fast = served(origin, true).await;
    let general = served(origin, false).await;
    let mut waits = Vec::new();
    for s in [&fast, &general] {
        s.store.delay_ms.store(60_000, Ordering::SeqCst);
        let (reads, errors) = (s.reads(), s.cache.stats().snapshot().store_errors);
        let r = exchange(s.addr, &get("/doc", "")).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"document body"[..]));
        waits.push((
            s.reads() - reads,
            s.cache.stats().snapshot().store_errors - errors,
        ));
    }
    assert_eq!(
        waits[0], waits[1],
        "(reads timed out, store errors) per request: fast path vs general path"
    );
}
