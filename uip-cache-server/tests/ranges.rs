//! Ranges through the server over real sockets: a range of a large hit
//! goes out from the same sealed memory as the whole (`sendfile`), several
//! ranges as a `multipart/byteranges` body, and a range request that
//! misses is answered while the whole is stored.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_testkit::{client, Got};

/// The `Range` header of every request the upstream saw.
type Ranges = Arc<Mutex<Vec<Option<String>>>>;

/// 400 000 bytes that differ at every position between seeds.
fn body(seed: &str) -> Vec<u8> {
    let s: u32 = seed.bytes().map(u32::from).sum();
    (0..400_000u32)
        .map(|i| (i.wrapping_mul(17).wrapping_add(s * 13) % 253) as u8)
        .collect()
}

/// An upstream serving `body(path)` for a minute, with a strong validator,
/// recording the `Range` of each request.
async fn upstream() -> (SocketAddr, Ranges) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Ranges = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let range = req
                        .headers()
                        .get("range")
                        .map(|v| v.to_str().unwrap().to_owned());
                    s.lock().unwrap().push(range);
                    let mut resp = Response::new(Full::new(Bytes::from(body(req.uri().path()))));
                    let h = resp.headers_mut();
                    h.insert("cache-control", "max-age=60".parse().unwrap());
                    h.insert("etag", "\"e\"".parse().unwrap());
                    h.insert("content-type", "application/octet-stream".parse().unwrap());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn proxy(upstream: SocketAddr) -> SocketAddr {
    crate::proxy::proxy_all(upstream).await
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut all = vec![("host", "cache.test")];
    all.extend_from_slice(headers);
    client::send(addr, method, path, &all).await
}

/// Sends GETs of `path` until one is a hit (the entry is written after the
/// miss's response): the whole, from the cache.
async fn until_hit(addr: SocketAddr, path: &str) -> Got {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = send(addr, "GET", path, &[]).await;
        if got.x_cache() == "HIT" {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{path} is not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_a_large_hit_in_sealed_memory_are_its_bytes() {
    let (up, _) = upstream().await;
    let addr = proxy(up).await;
    let whole = body("/r/a");
    send(addr, "GET", "/r/a", &[]).await;
    assert!(until_hit(addr, "/r/a").await.body[..] == whole[..]);

    let got = send(addr, "GET", "/r/a", &[("range", "bytes=100000-299999")]).await;
    assert_eq!((got.status, got.x_cache()), (206, "HIT"));
    assert_eq!(
        got.header("content-range"),
        Some("bytes 100000-299999/400000")
    );
    assert_eq!(got.header("content-length"), Some("200000"));
    assert!(
        got.body[..] == whole[100_000..300_000],
        "the part is the whole's bytes"
    );

    // Two ranges: a multipart body of slices of the same memory.
    let got = send(addr, "GET", "/r/a", &[("range", "bytes=0-149999, 250000-")]).await;
    assert_eq!(got.status, 206);
    let ct = got.header("content-type").unwrap().to_owned();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let mut want = Vec::new();
    for (i, (range, part)) in [
        ("bytes 0-149999/400000", &whole[..150_000]),
        ("bytes 250000-399999/400000", &whole[250_000..]),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            want.extend_from_slice(b"\r\n");
        }
        want.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: {range}\r\n\r\n"
            )
            .as_bytes(),
        );
        want.extend_from_slice(part);
    }
    want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert!(got.body[..] == want[..], "the multipart body");
    assert_eq!(
        got.header("content-length"),
        Some(want.len().to_string().as_str())
    );

    // HEAD: the part's head.
    let head = send(addr, "HEAD", "/r/a", &[("range", "bytes=-10")]).await;
    assert_eq!(head.status, 206);
    assert_eq!(
        head.header("content-range"),
        Some("bytes 399990-399999/400000")
    );
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_misses_is_cut_from_the_whole_which_is_stored() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    let whole = body("/r/b");
    let got = send(
        addr,
        "GET",
        "/r/b",
        &[("range", "bytes=399000-"), ("if-range", "\"e\"")],
    )
    .await;
    assert_eq!((got.status, got.x_cache()), (206, "MISS"));
    assert_eq!(
        got.header("content-range"),
        Some("bytes 399000-399999/400000")
    );
    assert!(got.body[..] == whole[399_000..]);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [None],
        "the upstream is asked for the whole"
    );
    let hit = until_hit(addr, "/r/b").await;
    assert!(hit.body[..] == whole[..], "the whole was stored");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
