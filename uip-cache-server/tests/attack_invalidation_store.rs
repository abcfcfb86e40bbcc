//! Invalidation that a slow store or an eviction policy could bend, through
//! `uip-cache serve` and its admin API over real sockets, with Redis: a
//! purge is not cut by the 100 ms store timeout nor skipped by an open
//! circuit, one cut by `store.purge_timeout` answers 503 with what it did
//! and a retry finishes it, the purge after an unsafe request outlives a
//! stalled Redis, and a Redis that may evict indexes makes health
//! degraded (200, the store not used) while the shipped compose.yaml runs
//! one that does not.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_core::CacheConfig;
use uip_cache_server::proxy::Upstream;
use uip_cache_testkit::{client, RedisServer};

/// An origin answering `v<n>` (cacheable for a minute) to reads and 200 to
/// writes, counting what it answered.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let calls = calls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::from(format!("v{n}"))));
                        resp.headers_mut()
                            .insert("cache-control", "max-age=60".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The proxy and its admin API for a config with Redis on `redis_port`,
/// the 100 ms default store timeout and `store` lines added.
async fn serve(redis_port: u16, store: &str) -> (SocketAddr, SocketAddr) {
    let yaml = format!(
        "store:\n  type: redis\n{store}redis:\n  host: 127.0.0.1\n  port: {redis_port}\n\
         policies:\n  - name: all\n    pattern: \"/*\"\n    tags: [\"t\"]\n"
    );
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let cache = uip_cache_tower::CacheLayer::from_config(&config)
        .unwrap()
        .cache()
        .clone();
    let upstream = Upstream::new(
        format!("http://{}", origin().await).parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let proxy = uip_cache_server::server::proxy(cache, upstream);
    let admin = uip_cache_server::server::admin(&proxy);
    let (p, a) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let addrs = (p.local_addr().unwrap(), a.local_addr().unwrap());
    tokio::spawn(uip_cache_server::server::serve(
        p,
        proxy,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    tokio::spawn(uip_cache_server::server::serve_admin(
        a,
        admin,
        std::future::pending(),
    ));
    addrs
}

/// One request from `cache.test` with a JSON body: status, `X-Cache`, body.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let headers = [("host", "cache.test"), ("content-type", "application/json")];
    let got = client::send_body(addr, method, path, &headers, Bytes::from(body.to_owned())).await;
    (got.status, got.x_cache().to_owned(), got.text())
}

/// Caches `/p/0` .. `/p/<n-1>` (tagged `t`).
async fn fill(proxy: SocketAddr, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let gets = chunk
            .iter()
            .map(|i| async move { send(proxy, "GET", &format!("/p/{i}"), "").await });
        futures_util::future::join_all(gets).await;
    }
    let (_, x, _) = send(proxy, "GET", "/p/0", "").await;
    assert_eq!(x, "HIT");
}

/// Waits until Redis holds all `n` entries of tag `t`: stores are written
/// behind the answers, and one still on its way when a test pauses Redis
/// times out and is rightly dropped (a cache may lose an entry), which
/// would make the count a purge reports depend on timing.
async fn stored(server: &RedisServer, n: usize) {
    wait_for(server, n, 20, |have| have == n).await;
}

/// Waits until Redis holds at least `n` entries of tag `t`.
async fn at_least(server: &RedisServer, n: usize) {
    wait_for(server, n, 1, |have| have >= n).await;
}

/// Polls the size of tag `t` every `every_ms` until `done` says so, for at
/// most 10 s.
async fn wait_for(server: &RedisServer, n: usize, every_ms: u64, done: impl Fn(usize) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let have: usize = server
            .cli(&["ZCARD", "cache:idx:tag:t"])
            .trim()
            .parse()
            .unwrap_or(0);
        if done(have) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{have} of {n} stored"
        );
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
}

/// The keys of entries in Redis (`cache:` and a SHA-256 in hex; leases
/// and indexes have longer or other names).
fn entry_keys(server: &RedisServer) -> Vec<String> {
    server
        .cli(&["KEYS", "cache:*"])
        .lines()
        .filter_map(|k| k.strip_prefix("cache:"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

fn pause(server: &RedisServer, ms: u64) {
    assert_eq!(
        server
            .cli(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
            .trim(),
        "OK"
    );
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_purge_outlives_a_stalled_redis_and_an_open_circuit() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (proxy, admin) = serve(server.port, "").await;
    fill(proxy, 600).await;
    stored(&server, 600).await;
    pause(&server, 800);
    // Requests meanwhile time out at 100 ms and open the circuit: they are
    // answered by the origin.
    let gets = (1..6).map(|i| async move { send(proxy, "GET", &format!("/p/{i}"), "").await });
    for (status, _, _) in futures_util::future::join_all(gets).await {
        assert_eq!(status, 200);
    }
    let (status, _, body) = send(admin, "POST", "/cache/invalidate/tag", r#"{"tag":"t"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["deleted"], 600, "{body}");
    assert_eq!(server.cli(&["EXISTS", "cache:idx:tag:t"]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_cut_by_a_stalled_redis_leave_no_entry_a_purge_cannot_find() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (proxy, admin) = serve(server.port, "").await;
    // Misses whose stores are on their way when Redis stalls: they time
    // out at 100 ms on our side, and Redis runs what it received once the
    // stall is over. Whatever entry lands must land with its tag.
    let fill = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for chunk in (0..400).collect::<Vec<_>>().chunks(40) {
            let gets = chunk
                .iter()
                .map(|i| async move { send(proxy, "GET", &format!("/p/{i}"), "").await.0 });
            statuses.extend(futures_util::future::join_all(gets).await);
        }
        statuses
    });
    // Redis stalls once the first entries are in (stalling after a fixed
    // 15 ms sometimes came before any store on a slower machine: the test
    // then had nothing to check).
    at_least(&server, 1).await;
    pause(&server, 700);
    assert!(fill.await.unwrap().iter().all(|s| *s == 200));
    assert_eq!(server.cli(&["PING"]).trim(), "PONG", "the stall is over");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries = entry_keys(&server);
    assert!(!entries.is_empty(), "some stores landed");
    let (status, _, body) = send(admin, "POST", "/cache/invalidate/tag", r#"{"tag":"t"}"#).await;
    assert_eq!(status, 200, "{body}");
    let left = entry_keys(&server);
    assert_eq!(
        left,
        Vec::<String>::new(),
        "every stored entry was found by the purge ({} were stored, {body})",
        entries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_cut_by_its_deadline_answers_503_with_what_it_did_and_a_retry_finishes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (proxy, admin) = serve(server.port, "  purge_timeout: 1s\n").await;
    fill(proxy, 600).await;
    stored(&server, 600).await;
    // Redis stalls longer than two purges may run (each has 1 s for its
    // shared record, then 1 s for its pages).
    pause(&server, 5000);
    let (status, _, body) = send(admin, "POST", "/cache/invalidate/tag", r#"{"tag":"t"}"#).await;
    assert_eq!(status, 503, "webhook senders retry on it: {body}");
    let b = json(&body);
    assert_eq!(b["complete"], false, "{body}");
    assert_eq!(b["deleted"], 0, "{body}");
    assert_eq!(b["tags"][0], "t", "{body}");
    assert!(b["error"].as_str().unwrap().contains("again"), "{body}");
    // A webhook with URL patterns says the same.
    let (status, _, body) = send(
        admin,
        "POST",
        "/cache/invalidate/url",
        r#"{"pattern":"/p/*"}"#,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["complete"], false, "{body}");
    assert_eq!(server.cli(&["PING"]).trim(), "PONG", "the stall is over");
    // The retry finds every entry: nothing the cut purge touched was lost.
    let (status, _, body) = send(admin, "POST", "/cache/invalidate/tag", r#"{"tag":"t"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["deleted"], 600, "{body}");
    assert_eq!(
        entry_keys(&server),
        Vec::<String>::new(),
        "no entry outlives the purge"
    );
    let (_, x, _) = send(proxy, "GET", "/p/599", "").await;
    assert_eq!(x, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_purge_after_an_unsafe_request_outlives_a_stalled_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (proxy, _) = serve(server.port, "").await;
    let (_, _, old) = send(proxy, "GET", "/doc", "").await;
    let (_, x, body) = send(proxy, "GET", "/doc", "").await;
    assert_eq!((x.as_str(), body.as_str()), ("HIT", old.as_str()));
    pause(&server, 500);
    let (status, _, _) = send(proxy, "POST", "/doc", "{}").await;
    assert_eq!(
        status, 200,
        "the write is answered without waiting for Redis"
    );
    // Once Redis answers again, the old answer is gone for good.
    assert_eq!(server.cli(&["PING"]).trim(), "PONG", "the stall is over");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, x, body) = send(proxy, "GET", "/doc", "").await;
        if body != old && x != "HIT" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old answer is still served: {x} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, _, body) = send(proxy, "GET", "/doc", "").await;
    assert_ne!(body, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_may_evict_indexes_is_degraded_and_not_used() {
    let Some(server) =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
    else {
        return;
    };
    let (proxy, admin) = serve(server.port, "").await;
    let (status, _, body) = send(admin, "GET", "/health", "").await;
    // Degraded, not unhealthy: a readiness probe on /health keeps an
    // instance upgraded next to an allkeys-* Redis in rotation.
    assert_eq!(status, 200, "{body}");
    let b = json(&body);
    assert_eq!(b["status"], "degraded", "{body}");
    assert_eq!(b["components"]["store"]["status"], "degraded", "{body}");
    let detail = b["components"]["store"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("allkeys-lru") && detail.contains("volatile-lru"),
        "{detail}"
    );
    // Requests still work, from the origin, and nothing is stored.
    for _ in 0..2 {
        let (status, x, _) = send(proxy, "GET", "/a", "").await;
        assert_eq!((status, x.as_str()), (200, "MISS"));
    }
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

/// The redis-server arguments of compose.yaml's `redis` service.
fn compose_redis_args() -> Vec<String> {
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose.yaml")).unwrap();
    let command = compose
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("command: [\"redis-server\""))
        .expect("the redis service's command");
    command
        .trim_end_matches(']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipped_compose_redis_keeps_purges_working() {
    let args = compose_redis_args();
    assert!(args.iter().any(|a| a == "--maxmemory-policy"), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(server) = RedisServer::start_with(&args) else {
        return;
    };
    let (proxy, admin) = serve(server.port, "").await;
    let (status, _, body) = send(admin, "GET", "/health", "").await;
    assert_eq!(
        (status, json(&body)["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    send(proxy, "GET", "/a", "").await;
    let (_, x, _) = send(proxy, "GET", "/a", "").await;
    assert_eq!(x, "HIT");
    for index in ["cache:idx:tag:t", "cache:idx:{paths}"] {
        assert_eq!(
            server.cli(&["PTTL", index]).trim(),
            "-1",
            "{index} cannot be evicted"
        );
    }
}
