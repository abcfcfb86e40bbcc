//! Invalidation an attacker cannot bend, end to end on loopback: a real
//! upstream, the server, a real client.
//!
//! - A write on one host never purges another host's entries, and a
//!   `Location` naming another host does not purge it (RFC 9111 section 4.4).
//! - A revalidation made with a client's credentials never removes the
//!   shared entry, whatever the origin's 304 says about that client.

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
use tokio::sync::Semaphore;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::serve;
use uip_cache_testkit::{client, wait_for_sets, wait_until, Got};

/// The upstream: writes answer 200 with a `Location` on victim.example; reads
/// answer a numbered body with a strong `ETag` and no freshness of their own
/// (they live on the policy TTL), or a 304 when `If-None-Match` names it, as
/// a framework does for a logged-in user (`Cache-Control: private`).
///
/// Reads of `/gate/...` say they arrived and wait for a permit of `release`.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>, Gate) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let gate = (arrived_tx, release.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    let (arrived, release) = gate.clone();
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        if req.method() == http::Method::GET
                            && req.uri().path().starts_with("/gate/")
                        {
                            let _ = arrived.send(());
                            release.acquire().await.unwrap().forget();
                        }
                        if req.method() == http::Method::POST {
                            resp.headers_mut()
                                .insert("location", "http://victim.example/x/7".parse().unwrap());
                        } else if req
                            .headers()
                            .get("if-none-match")
                            .is_some_and(|v| v == "\"v1\"")
                        {
                            *resp.status_mut() = http::StatusCode::NOT_MODIFIED;
                            resp.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                            if req.headers().contains_key("cookie") {
                                resp.headers_mut()
                                    .insert("cache-control", "private".parse().unwrap());
                                resp.headers_mut()
                                    .insert("set-cookie", "session=renewed".parse().unwrap());
                            }
                        } else {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            *resp.body_mut() = Full::new(Bytes::from(format!("v{n}")));
                            resp.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, reads, Gate { arrived, release })
}

/// Holds reads of `/gate/...` at the upstream until the test lets them go.
struct Gate {
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

/// The server in front of `upstream` with a catch-all `ttl: 60` policy.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, HttpCache) {
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n")
            .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{upstream}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        uip_cache_server::server::proxy(cache.clone(), upstream),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    (addr, cache)
}

/// One request from `host` on a fresh connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    client::send(addr, method, path, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_host_or_a_location_naming_one_purges_nothing_of_it() {
    let (up, _, _) = upstream().await;
    let (addr, cache) = proxy(up).await;
    let x_cache = |host: &'static str, path: &'static str| async move {
        send(addr, "GET", host, path, &[])
            .await
            .x_cache()
            .to_owned()
    };
    let mut sets = 0;
    for (host, path) in [
        ("victim.example", "/x"),
        ("victim.example", "/x/7"),
        ("attacker.example", "/x"),
    ] {
        assert_eq!(x_cache(host, path).await, "MISS", "{host}{path}");
        sets += 1;
        wait_for_sets(&cache, sets).await;
    }
    assert_eq!(x_cache("victim.example", "/x").await, "HIT");

    // POST /x on attacker.example (200, Location: http://victim.example/x/7):
    // the attacker's own /x goes, nothing of victim.example's.
    let status = send(addr, "POST", "attacker.example", "/x", &[])
        .await
        .status;
    assert_eq!(status, 200);
    assert_eq!(x_cache("victim.example", "/x").await, "HIT");
    assert_eq!(
        x_cache("victim.example", "/x/7").await,
        "HIT",
        "a Location naming another host purges nothing of it"
    );
    assert_eq!(x_cache("attacker.example", "/x").await, "MISS");

    // The same write on victim.example purges its target and its Location.
    let status = send(addr, "POST", "victim.example", "/x", &[]).await.status;
    assert_eq!(status, 200);
    assert_eq!(x_cache("victim.example", "/x").await, "MISS");
    assert_eq!(x_cache("victim.example", "/x/7").await, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_with_a_clients_cookie_leaves_the_shared_entry_alone() {
    let (up, reads, _) = upstream().await;
    let (addr, cache) = proxy(up).await;
    let got = send(addr, "GET", "site.example", "/y", &[]).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "MISS", &b"v0"[..])
    );
    wait_for_sets(&cache, 1).await;
    assert_eq!(
        send(addr, "GET", "site.example", "/y", &[]).await.x_cache(),
        "HIT"
    );

    // Cookie + no-cache: the cache revalidates, the origin answers this
    // client with a private 304 and a cookie of its own. The client gets
    // the body; the shared entry stays.
    let got = send(
        addr,
        "GET",
        "site.example",
        "/y",
        &[("cookie", "session=mallory"), ("cache-control", "no-cache")],
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (200, &b"v0"[..]));

    let got = send(addr, "GET", "site.example", "/y", &[]).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "HIT", &b"v0"[..]),
        "the shared entry outlives a client's revalidation"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 1, "one full fetch in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_host_does_not_fence_a_fetch_in_flight() {
    let (up, _, mut gate) = upstream().await;
    let (addr, cache) = proxy(up).await;

    // attacker.example writes /gate/a while victim.example's read of it is
    // at the upstream: the read is stored all the same.
    let read = tokio::spawn(send(addr, "GET", "victim.example", "/gate/a", &[]));
    gate.arrived.recv().await.unwrap();
    assert_eq!(
        send(addr, "POST", "attacker.example", "/gate/a", &[])
            .await
            .status,
        200
    );
    gate.release.add_permits(1);
    assert_eq!(read.await.unwrap().x_cache(), "MISS");
    wait_for_sets(&cache, 1).await;
    assert_eq!(
        send(addr, "GET", "victim.example", "/gate/a", &[])
            .await
            .x_cache(),
        "HIT"
    );

    // victim.example's own write keeps the read in flight out.
    let read = tokio::spawn(send(addr, "GET", "victim.example", "/gate/b", &[]));
    gate.arrived.recv().await.unwrap();
    assert_eq!(
        send(addr, "POST", "victim.example", "/gate/b", &[])
            .await
            .status,
        200
    );
    gate.release.add_permits(1);
    assert_eq!(read.await.unwrap().x_cache(), "MISS");
    let snap = wait_until(&cache, "the read is refused", |s| {
        s.uncacheable.contains_key("invalidated")
    })
    .await;
    assert_eq!(
        snap.uncacheable.get("invalidated"),
        Some(&1),
        "the read that crossed its own host's write is not stored"
    );
    assert_eq!(snap.sets, 1);
}
