//! `serve` end to end on loopback: a real upstream, the proxy, a real client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::serve;
use uip_cache_testkit::{client, Got};

type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// An upstream answering `/slow` after 2 s and everything else at once,
/// cacheable for a minute, recording the request headers it saw.
async fn upstream() -> (SocketAddr, Seen, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, c) = (seen.clone(), calls.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (s, c) = (s.clone(), c.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    s.lock().unwrap().push(req.headers().clone());
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let body = match req.uri().path().strip_prefix("/big/") {
                            Some(seed) => Bytes::from(big_body(seed)),
                            None => Bytes::from(format!("v{n}")),
                        };
                        let mut resp = Response::new(Full::new(body));
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
    (addr, seen, calls)
}

/// 300 000 bytes that differ at every position between seeds.
fn big_body(seed: &str) -> Vec<u8> {
    let s: u32 = seed.bytes().map(u32::from).sum();
    (0..400_000u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(s * 7) % 251) as u8)
        .collect()
}

async fn proxy(upstream: SocketAddr, timeout: Duration) -> SocketAddr {
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n").unwrap();
    proxy_with(
        HttpCache::with_memory_store(&config).unwrap(),
        upstream,
        timeout,
    )
    .await
}

/// `uip-cache serve`'s service with `cache` in front of `upstream`, on a
/// loopback port of its own.
pub(crate) async fn proxy_with(
    cache: HttpCache,
    upstream: SocketAddr,
    timeout: Duration,
) -> SocketAddr {
    let upstream = Upstream::new(
        format!("http://{upstream}").parse().unwrap(),
        Duration::from_secs(1),
        timeout,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        uip_cache_server::server::proxy(cache, upstream),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

/// `uip-cache serve`'s service caching every path (`/*`, memory store) in
/// front of `upstream`, on a loopback port of its own.
pub(crate) async fn proxy_all(upstream: SocketAddr) -> SocketAddr {
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n").unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    proxy_with(cache, upstream, Duration::from_secs(5)).await
}

/// A GET from `cache.test` on a fresh connection.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    send(addr, "GET", path, headers, Bytes::new()).await
}

/// A request from `cache.test` on a fresh connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    let mut all = vec![("host", "cache.test")];
    all.extend_from_slice(headers);
    client::send_body(addr, method, path, &all, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_and_sets_forwarding_headers() {
    let (up, seen, calls) = upstream().await;
    let addr = proxy(up, Duration::from_secs(5)).await;
    let got = get(addr, "/a", &[("x-forwarded-for", "10.9.9.9")]).await;
    assert_eq!((got.status, &got.body[..]), (200, &b"v0"[..]));
    assert_eq!(got.x_cache(), "MISS");
    assert!(got.header("via").unwrap().contains("uip-cache"));
    let got = get(addr, "/a", &[]).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"v0"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let first = seen.lock().unwrap()[0].clone();
    // The client's own X-Forwarded-For is not believed (no trusted proxies).
    assert_eq!(first["x-forwarded-for"], "127.0.0.1");
    assert_eq!(first.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(first["x-forwarded-proto"], "http");
    assert_eq!(first["x-forwarded-host"], "cache.test");
    assert_eq!(first["host"], "cache.test");
    assert!(first["via"].to_str().unwrap().contains("uip-cache"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_502_and_a_slow_one_504() {
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = proxy(dead, Duration::from_secs(5)).await;
    let got = get(addr, "/x", &[]).await;
    assert_eq!(got.status, 502, "{:?}", got.body);
    assert_eq!(got.header("cache-control"), Some("no-store"));
    let (up, _, _) = upstream().await;
    let addr = proxy(up, Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/slow", &[]).await.status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_mounted_and_warms_through_the_proxy() {
    let (up, _, calls) = upstream().await;
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: all\n    pattern: \"/*\"\n    tags: [all]\nadmin:\n  secret: s\nwarming:\n  host: cache.test\n  urls: [{url: /w1}, {url: /w2}]\n",
    )
    .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let proxy = uip_cache_server::server::proxy(cache, upstream);
    let admin = uip_cache_server::server::admin(&proxy);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        proxy,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin_listener.local_addr().unwrap();
    tokio::spawn(uip_cache_server::server::serve_admin(
        admin_listener,
        admin,
        std::future::pending(),
    ));

    let secret = [("x-webhook-secret", "s")];
    let got = send(admin_addr, "POST", "/cache/warm", &secret, Bytes::new()).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let report: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(report["success"], 2, "{report}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(get(addr, "/w1", &[]).await.x_cache(), "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the warmed entry answered");

    let got = send(
        admin_addr,
        "POST",
        "/cache/invalidate/url",
        &[],
        Bytes::from(r#"{"url":"/w1"}"#),
    )
    .await;
    assert_eq!(got.status, 401);
    let got = send(
        admin_addr,
        "POST",
        "/cache/invalidate/url",
        &secret,
        Bytes::from(r#"{"url":"/w1"}"#),
    )
    .await;
    assert_eq!(
        (got.status, &got.body[..]),
        (200, &br#"{"deleted":1,"url":"/w1"}"#[..])
    );
    assert_eq!(get(addr, "/w1", &[]).await.x_cache(), "MISS");

    let got = get(admin_addr, "/health", &[]).await;
    assert_eq!(got.status, 200);
    let health: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(health["status"], "healthy");
    let got = get(admin_addr, "/metrics", &[]).await;
    assert_eq!(got.status, 200);
    assert!(got
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let families =
        uip_cache_testkit::exposition::parse(std::str::from_utf8(&got.body).unwrap()).unwrap();
    let hits = families["uip_cache_requests_total"].samples
        ["uip_cache_requests_total{policy=\"all\",outcome=\"hit\"}"];
    assert_eq!(hits, 1.0);
    let big = send(
        admin_addr,
        "POST",
        "/cache/invalidate/tag",
        &secret,
        Bytes::from(vec![b' '; 70_000]),
    )
    .await;
    assert_eq!(big.status, 413, "{:?}", big.body);
    assert_eq!(get(admin_addr, "/nope", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_a_cold_url_reach_the_upstream_once() {
    use tower::ServiceExt;
    let (up, _, calls) = upstream().await;
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: all\n    pattern: \"/*\"\ndefaults:\n  lock_timeout: 30s\n",
    )
    .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let proxy = uip_cache_server::server::proxy(cache, upstream);
    // `/slow` takes 2 s at the upstream: every request arrives while the
    // first is in flight.
    let all = futures_util::future::join_all((0..1000).map(|_| {
        let req = Request::get("/slow")
            .header("host", "cache.test")
            .body(uip_cache_server::proxy::RequestBody::Empty)
            .unwrap();
        let proxy = proxy.clone();
        async move {
            let resp = proxy.oneshot(req).await.unwrap();
            let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (x, body)
        }
    }))
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one upstream request");
    assert!(all.iter().all(|(_, b)| &b[..] == b"v0"));
    assert_eq!(all.iter().filter(|(x, _)| x == "MISS").count(), 1);
    assert_eq!(all.iter().filter(|(x, _)| x == "HIT").count(), 999);
}

/// Sends `requests` (raw HTTP/1.1) on one connection whose receive buffer
/// is small, reading slowly, and splits what comes back into responses:
/// (head, body) each.
async fn pipelined_slow_read(addr: SocketAddr, requests: &[&str]) -> Vec<(String, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    for r in requests {
        stream.write_all(r.as_bytes()).await.unwrap();
    }
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    while out.len() < requests.len() {
        // Parse whatever complete responses are there.
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(raw[..end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let is_head = requests[out.len()].starts_with("HEAD");
            let body_len = if is_head { 0 } else { len };
            if raw.len() >= end + 4 + body_len {
                let body = raw[end + 4..end + 4 + body_len].to_vec();
                raw.drain(..end + 4 + body_len);
                out.push((head, body));
                continue;
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        raw.extend_from_slice(&buf[..n]);
        if raw.len() % 50_000 < 1000 {
            // A slow reader: let the server's socket fill up now and then.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(raw.is_empty(), "nothing after the last response");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_hits_go_out_intact_from_sealed_memory_to_slow_and_pipelining_clients() {
    let (up, _, calls) = upstream().await;
    let addr = proxy(up, Duration::from_secs(5)).await;
    let (a, b) = (big_body("a"), big_body("b"));
    let got = get(addr, "/big/a", &[]).await;
    assert_eq!((got.x_cache(), got.body.len()), ("MISS", a.len()));
    assert!(got.body[..] == a[..]);
    get(addr, "/big/b", &[]).await;
    // Sealed memory (400 KB), copied from its mapping into the socket.
    let got = get(addr, "/big/a", &[]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert!(
        got.body[..] == a[..],
        "the hit is byte for byte the origin's body"
    );
    // Hits of two entries interleaved on one slow connection, with a HEAD
    // between them: every response is whole, in order, and its own.
    let req = |m: &str, p: &str| format!("{m} {p} HTTP/1.1\r\nhost: cache.test\r\n\r\n");
    let (ga, gb, ha) = (
        req("GET", "/big/a"),
        req("GET", "/big/b"),
        req("HEAD", "/big/a"),
    );
    let responses = pipelined_slow_read(addr, &[&ga, &gb, &ha, &gb, &ga]).await;
    let expect: [&[u8]; 5] = [&a, &b, &[], &b, &a];
    for (i, ((head, body), want)) in responses.iter().zip(expect).enumerate() {
        assert!(head.contains("x-cache: HIT"), "response {i}: {head}");
        assert!(
            head.contains("content-length: 400000"),
            "response {i}: {head}"
        );
        assert!(body[..] == want[..], "response {i} has the wrong body");
    }
    // Many clients at once, two entries: nobody gets the other's bytes.
    let all = futures_util::future::join_all((0..40).map(|i| {
        let path = if i % 2 == 0 { "/big/a" } else { "/big/b" };
        async move { (path, get(addr, path, &[]).await.body) }
    }))
    .await;
    for (path, body) in all {
        let want = if path == "/big/a" { &a } else { &b };
        assert!(body[..] == want[..], "{path} came back wrong");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "every other request was a hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_get_the_same_cache_as_http1_clients() {
    let (up, _, calls) = upstream().await;
    let addr = proxy(up, Duration::from_secs(5)).await;
    assert_eq!(get(addr, "/h2", &[]).await.x_cache(), "MISS");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // Two streams on one connection, the large one from sealed memory.
    for (path, want) in [("/h2", b"v0".to_vec()), ("/big/h2", big_body("h2"))] {
        for round in 0..2 {
            let req = Request::get(format!("http://cache.test{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let x = resp.headers()["x-cache"].to_str().unwrap().to_owned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(body[..] == want[..], "{path} round {round}");
            let expect = if path == "/big/h2" && round == 0 {
                "MISS"
            } else {
                "HIT"
            };
            assert_eq!(x, expect, "{path} round {round}");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An upstream on a raw socket: for each connection, reads one request
/// head, counts it, writes `reply(n)` for the n-th request (nothing when
/// `None`) and closes the connection.
pub(crate) async fn raw_upstream<R: AsRef<[u8]> + Send + 'static>(
    reply: impl Fn(usize) -> Option<R> + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, reply) = (calls.clone(), Arc::new(reply));
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (c, reply) = (c.clone(), reply.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if let Some(r) = reply(c.fetch_add(1, Ordering::SeqCst)) {
                    let _ = stream.write_all(r.as_ref()).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, calls)
}

/// An upstream on a raw socket that sends `103 Early Hints` (with a
/// header of its own) and `102 Processing` before each final 200,
/// cacheable for a minute; counts the requests.
async fn interim_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(|_| {
        Some(
            "HTTP/1.1 103 Early Hints\r\n\
             link: </styles.css>; rel=preload; as=style\r\n\
             x-my-header: interim\r\n\r\n\
             HTTP/1.1 102 Processing\r\n\r\n\
             HTTP/1.1 200 OK\r\n\
             cache-control: max-age=60\r\n\
             content-type: text/plain\r\n\
             content-length: 5\r\n\
             connection: close\r\n\r\n\
             final",
        )
    })
    .await
}

/// Interim (1xx) responses are never stored (RFC 9111 section 3): the
/// final response is, and it and every hit from it carry none of the
/// interim responses' headers. (They are passed on to the client of the
/// miss: see `interim.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_never_stored_and_the_final_one_is() {
    let (up, calls) = interim_upstream().await;
    let addr = proxy(up, Duration::from_secs(5)).await;
    let miss = get(addr, "/early", &[]).await;
    assert_eq!(
        (miss.status, &miss.body[..]),
        (200, &b"final"[..]),
        "{miss:?}"
    );
    assert_eq!(miss.x_cache(), "MISS");
    let hit = get(addr, "/early", &[]).await;
    assert_eq!((hit.status, &hit.body[..]), (200, &b"final"[..]), "{hit:?}");
    assert_eq!(hit.x_cache(), "HIT");
    for got in [&miss, &hit] {
        assert!(got.header("x-my-header").is_none(), "{got:?}");
        assert!(got.header("link").is_none(), "{got:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An upstream on a raw socket that answers its first request with a 200
/// fresh for a minute, and closes every later connection once it has read
/// the request, without an answer; counts the requests.
async fn answers_once_then_hangs_up() -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(|n| {
        (n == 0).then_some(
            "HTTP/1.1 200 OK\r\n\
             cache-control: max-age=60\r\n\
             content-length: 5\r\n\
             connection: close\r\n\r\n\
             first",
        )
    })
    .await
}

/// An upstream that closes the connection without answering is an origin
/// the cache could not reach: with `defaults.stale_if_unreachable`, the
/// stale entry answers (RFC 9111 section 4.2.4), within the window only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_hangs_up_is_covered_by_the_stale_entry_within_stale_if_unreachable() {
    use uip_cache_core::test_util::MockClock;
    let (up, calls) = answers_once_then_hangs_up().await;
    let config = CacheConfig::from_yaml_str(
        "defaults:\n  stale_if_unreachable: 120s\npolicies:\n  - name: all\n    pattern: \"/*\"\n",
    )
    .unwrap();
    let clock = MockClock::new();
    let cache = HttpCache::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let addr = proxy_with(cache, up, Duration::from_secs(5)).await;

    let miss = get(addr, "/s", &[]).await;
    assert_eq!((miss.status, &miss.body[..]), (200, &b"first"[..]));
    clock.advance(Duration::from_secs(61));
    let stale = get(addr, "/s", &[]).await;
    assert_eq!(
        (stale.status, stale.x_cache(), &stale.body[..]),
        (200, "STALE", &b"first"[..]),
        "{stale:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the origin was asked");
    clock.advance(Duration::from_secs(120));
    let gone = get(addr, "/s", &[]).await;
    assert_eq!(gone.status, 502, "past the window: {gone:?}");
}

/// A keep-alive upstream answering every request with an uncacheable
/// 200; counts the connections it accepted.
async fn counting_connections() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                    resp.headers_mut()
                        .insert("cache-control", "no-store".parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, connections)
}

/// A backend closes a keep-alive connection idle for its own timeout (5 s
/// for Node.js and Apache); a request written on it just then failed with
/// a 502. A connection idle for longer than the proxy keeps one
/// (`UPSTREAM_IDLE_TIMEOUT`, under those 5 s) is not reused: the next
/// request opens another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_idle_past_the_limit_is_not_reused() {
    use uip_cache_server::proxy::UPSTREAM_IDLE_TIMEOUT;
    assert!(UPSTREAM_IDLE_TIMEOUT < Duration::from_secs(5));
    let (up, connections) = counting_connections().await;
    let addr = proxy_all(up).await;
    assert_eq!(get(addr, "/a", &[]).await.status, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    // Idle past the limit (and short of a Node.js backend's 5 s).
    tokio::time::sleep(UPSTREAM_IDLE_TIMEOUT + Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/a", &[]).await.status, 200);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the idle connection was not reused"
    );
}

/// Requests the cache passes on, one after the other, share one upstream
/// connection: each goes back to the pool once its response was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_requests_in_a_row_reuse_one_upstream_connection() {
    let (up, connections) = counting_connections().await;
    let addr = proxy_all(up).await;
    for path in ["/a", "/b", "/a", "/c", "/d"] {
        let got = get(addr, path, &[]).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]), "{got:?}");
    }
    let head = send(addr, "HEAD", "/e", &[], Bytes::new()).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(get(addr, "/f", &[]).await.status, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// An upstream on a raw socket for the tests of connections that must not
/// be reused: for each connection it counts, reads one request head, says
/// so on `heads`, answers with `answer(n)` for the n-th connection (a
/// response head, then `body_len` bytes of body written as the proxy takes
/// them), or nothing, and says on `closed` when the proxy closed the
/// connection (end of file, or a write refused). Later requests on a
/// connection are answered with a short 200.
async fn watched_upstream(
    answer: fn(usize) -> Option<(String, usize)>,
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<usize>,
    tokio::sync::mpsc::UnboundedReceiver<usize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let c = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (heads_tx, closed_tx) = (heads_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut first = true;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let _ = heads_tx.send(n);
                        let reply = if first { answer(n) } else { None };
                        let written = match (first, reply) {
                            (true, Some((head, body_len))) => {
                                let body = vec![b'x'; 64 * 1024];
                                let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
                                let mut left = body_len;
                                while ok && left > 0 {
                                    let k = left.min(body.len());
                                    ok = stream.write_all(&body[..k]).await.is_ok();
                                    left -= k;
                                }
                                ok
                            }
                            (true, None) => true,
                            (false, _) => stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\nok")
                                .await
                                .is_ok(),
                        };
                        first = false;
                        if !written {
                            let _ = closed_tx.send(n);
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            let _ = closed_tx.send(n);
                            return;
                        }
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
        }
    });
    (addr, connections, heads, closed)
}

/// A client that leaves before the backend answers cancels its request:
/// the upstream connection it was on is closed, never handed to the next
/// request, which gets a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_closes_its_upstream_connection() {
    use tokio::io::AsyncWriteExt;
    // The first connection never answers; later ones answer at once.
    let (up, connections, mut heads, mut closed) = watched_upstream(|n| {
        (n > 0).then(|| {
            let head = "HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\n";
            (format!("{head}ok"), 0)
        })
    })
    .await;
    let addr = proxy_all(up).await;
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /wait HTTP/1.1\r\nhost: cache.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        heads.recv().await,
        Some(0),
        "the request reached the backend"
    );
    drop(client);
    assert_eq!(
        closed.recv().await,
        Some(0),
        "the cancelled request's connection is closed"
    );
    let got = get(addr, "/next", &[]).await;
    assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]), "{got:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// A client that leaves in the middle of a large response leaves it part
/// read: the upstream connection is closed rather than reused (the rest
/// of that body would be read as the next client's response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_left_part_read_closes_its_upstream_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 64 MB: more than the socket buffers between the backend and the
    // client hold, so the proxy is still reading it when the client goes.
    const LEN: usize = 64 << 20;
    let (up, connections, mut heads, mut closed) = watched_upstream(|_| {
        let head =
            format!("HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: {LEN}\r\n\r\n");
        Some((head, LEN))
    })
    .await;
    let addr = proxy_all(up).await;
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /large HTTP/1.1\r\nhost: cache.test\r\n\r\n")
        .await
        .unwrap();
    let mut some = vec![0u8; 64 * 1024];
    let mut read = 0;
    while read < some.len() {
        let k = client.read(&mut some[read..]).await.unwrap();
        assert!(k > 0, "the response starts");
        read += k;
    }
    assert!(some.starts_with(b"HTTP/1.1 200"));
    assert_eq!(heads.recv().await, Some(0));
    drop(client);
    assert_eq!(
        closed.recv().await,
        Some(0),
        "the part-read connection is closed"
    );
    let got = get(addr, "/next", &[]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body.len(), LEN);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
