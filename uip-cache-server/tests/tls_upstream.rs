//! `https://` upstreams over real sockets: a backend with a test CA
//! (cached: a HIT the second time), one whose certificate does not verify
//! (502, never an unverified connection), one that requires a client
//! certificate (mTLS), and one that speaks HTTP/2 by ALPN.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{proxy, serve};
use uip_cache_server::tls::client::client_config;

use crate::tls_support::{tls_backend, Ca, TempDir};

/// A plain proxy in front of `https://localhost:<port of backend>`, with
/// the `upstream_tls:` lines given (paths in `dir`).
async fn proxy_to(backend: SocketAddr, upstream_tls: &str, dir: &TempDir) -> SocketAddr {
    let yaml = format!(
        "policies:\n  - name: all\n    pattern: \"/*\"\nserver:\n  upstream_tls:\n{upstream_tls}"
    );
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let tls = client_config(&config.server.upstream_tls, dir.path()).unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::with_tls(
        format!("https://localhost:{}", backend.port())
            .parse()
            .unwrap(),
        Duration::from_secs(2),
        Duration::from_secs(10),
        tls,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = proxy(cache, upstream);
    tokio::spawn(async move {
        serve(
            listener,
            service,
            Duration::from_secs(1),
            std::future::pending(),
        )
        .await
    });
    addr
}

/// A GET through the proxy: (status line, lower-cased head, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_with_a_test_ca_is_cached() {
    let (ca, dir) = (Ca::new("backend CA"), TempDir::new("up-ca"));
    let (cert, key) = ca.leaf(&["localhost"]);
    let (backend, seen) = tls_backend(&cert, &key, &[b"http/1.1"], None).await;
    dir.write("ca.pem", &ca.pem());
    let addr = proxy_to(backend, "    ca: ca.pem\n", &dir).await;
    let (status, head, body) = get(addr, "/over-tls").await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(head.contains("x-cache: miss"), "{head}");
    assert!(
        body.contains("HTTP/1.1") && body.contains("path=/over-tls"),
        "{body}"
    );
    // The backend sees the client's Host, as over plain HTTP.
    assert!(body.contains("host=site.test"), "{body}");
    let (_, head, _) = get(addr, "/over-tls").await;
    assert!(head.contains("x-cache: hit"), "{head}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_is_a_502_and_nothing_reaches_the_backend() {
    let (trusted, other) = (Ca::new("trusted CA"), Ca::new("someone else's CA"));
    let dir = TempDir::new("up-verify");
    dir.write("ca.pem", &trusted.pem());
    // Signed by a CA the proxy does not trust.
    let (cert, key) = other.leaf(&["localhost"]);
    let (backend, seen) = tls_backend(&cert, &key, &[b"http/1.1"], None).await;
    let addr = proxy_to(backend, "    ca: ca.pem\n", &dir).await;
    let (status, _, body) = get(addr, "/x").await;
    assert!(status.contains("502"), "{status}");
    assert!(body.contains("could not be verified"), "{body}");
    // Trusted CA, wrong name.
    let (cert, key) = trusted.leaf(&["elsewhere.test"]);
    let (backend2, seen2) = tls_backend(&cert, &key, &[b"http/1.1"], None).await;
    let addr2 = proxy_to(backend2, "    ca: ca.pem\n", &dir).await;
    assert!(get(addr2, "/x").await.0.contains("502"));
    // With the default (public) roots, a test CA is not trusted either.
    let addr3 = proxy_to(backend, "    {}\n", &dir).await;
    assert!(get(addr3, "/x").await.0.contains("502"));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    assert_eq!(seen2.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_upstream_gets_the_client_certificate() {
    let (ca, dir) = (Ca::new("mtls CA"), TempDir::new("up-mtls"));
    let (cert, key) = ca.leaf(&["localhost"]);
    let (backend, seen) = tls_backend(&cert, &key, &[b"http/1.1"], Some(&ca)).await;
    dir.write("ca.pem", &ca.pem());
    let (client_cert, client_key) = ca.leaf(&["proxy.test"]);
    dir.write("client.pem", &client_cert);
    dir.write("client.key", &client_key);
    // Without a client certificate the backend refuses the handshake.
    let without = proxy_to(backend, "    ca: ca.pem\n", &dir).await;
    assert!(get(without, "/m").await.0.contains("502"));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    let with = proxy_to(
        backend,
        "    ca: ca.pem\n    client_cert: client.pem\n    client_key: client.key\n",
        &dir,
    )
    .await;
    let (status, _, body) = get(with, "/m").await;
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_offering_h2_by_alpn_is_spoken_to_in_http2() {
    let (ca, dir) = (Ca::new("h2 CA"), TempDir::new("up-h2"));
    let (cert, key) = ca.leaf(&["localhost"]);
    let (backend, seen) = tls_backend(&cert, &key, &[b"h2", b"http/1.1"], None).await;
    dir.write("ca.pem", &ca.pem());
    let addr = proxy_to(backend, "    ca: ca.pem\n", &dir).await;
    let (status, head, body) = get(addr, "/two").await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.starts_with("HTTP/2.0"), "{body}");
    assert!(head.contains("x-cache: miss"), "{head}");
    let (_, head, _) = get(addr, "/two").await;
    assert!(head.contains("x-cache: hit"), "{head}");
    // Two more paths: one connection carries them (pooled).
    assert!(get(addr, "/three").await.0.contains("200"));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_client_key_that_is_not_the_certificates_is_a_config_error() {
    let (ca, dir) = (Ca::new("pair CA"), TempDir::new("up-pair"));
    dir.write("c.pem", &ca.leaf(&["a.test"]).0);
    dir.write("c.key", &ca.leaf(&["b.test"]).1);
    let config = CacheConfig::from_yaml_str(
        "server:\n  upstream_tls:\n    client_cert: c.pem\n    client_key: c.key\n",
    )
    .unwrap();
    let err = client_config(&config.server.upstream_tls, dir.path()).unwrap_err();
    assert!(err.to_string().contains("c.key"), "{err}");
    let config =
        CacheConfig::from_yaml_str("server:\n  upstream_tls:\n    ca: missing.pem\n").unwrap();
    let err = client_config(&config.server.upstream_tls, dir.path()).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
