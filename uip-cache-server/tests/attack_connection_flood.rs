//! One client address opening connections and holding them, over real
//! sockets, plain and TLS: past `server.max_connections_per_client` its
//! new connections are closed at once (TLS ones before any handshake),
//! counted and logged, while another address is still served; connections
//! still in their TLS handshake count; closing some lets new ones in
//! again. Each wait is bounded by a generous deadline, never timed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uip_cache_core::admin::prometheus_text;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{admin, proxy, serve_edge, Proxy};
use uip_cache_server::slow::ClientLimits;

use crate::tls_support::{client_config, get_over, plain_backend, Ca, TempDir};

/// How long a test waits for what should happen within about a second.
const DEADLINE: Duration = Duration::from_secs(15);

const ONE: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// A proxy with a plain and a TLS listener, as `uip-cache serve` runs
/// them, with `server.max_connections_per_client: max`.
struct Edge {
    plain: SocketAddr,
    tls: SocketAddr,
    proxy: Proxy,
    ca: Ca,
    _dir: TempDir,
}

async fn edge(max: usize) -> Edge {
    edge_with(&format!("  max_connections_per_client: {max}\n")).await
}

/// [`edge`] with these `server:` lines.
async fn edge_with(server: &str) -> Edge {
    let (up, _) = plain_backend().await;
    let yaml =
        format!("policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\nserver:\n{server}");
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    let proxy = proxy(cache, upstream);
    let (ca, dir) = (Ca::new("flood CA"), TempDir::new("conn-flood"));
    let certificates = ca.certificates(&dir, &["a.test"]);
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    let served = proxy.clone();
    tokio::spawn(async move {
        serve_edge(
            Some(plain),
            Some((tls, certificates)),
            false,
            served,
            ClientLimits::from_config(&config.server),
            Duration::from_secs(1),
            std::future::pending(),
        )
        .await
    });
    Edge {
        plain: plain_addr,
        tls: tls_addr,
        proxy,
        ca,
        _dir: dir,
    }
}

/// A TCP connection to `to` from the loopback address `from`. A
/// connection the server resets at once may fail already here.
async fn tcp_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(to).await
}

/// A plain keep-alive connection that was served, held open until dropped.
struct Held {
    _sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Drops the socket: the client closes.
        self.conn.abort();
    }
}

/// A keep-alive connection from `from` that got a 200 for a GET, or
/// `None` when the server closed it without an answer.
async fn served(from: [u8; 4], to: SocketAddr) -> Option<Held> {
    let io = TokioIo::new(tcp_from(from, to).await.ok()?);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/flood")
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = match sender.send_request(req).await {
        Ok(resp) if resp.status() == 200 => resp.into_body().collect().await.is_ok(),
        _ => false,
    };
    let held = Held {
        _sender: sender,
        conn,
    };
    answer.then_some(held)
}

/// A TLS handshake from `from`, then a GET: its status, or `None` when the
/// server closed the connection before the handshake ended.
async fn tls_served(edge: &Edge, from: [u8; 4]) -> Option<u16> {
    let tcp = tcp_from(from, edge.tls).await.ok()?;
    let config = client_config(edge.ca.roots(), None, &[b"http/1.1"]);
    let name = ServerName::try_from("a.test".to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    Some(get_over(tls, "a.test", "/flood-tls").await.0)
}

/// Waits until a new connection from `from` is served again.
async fn served_again(from: [u8; 4], to: SocketAddr) -> Held {
    let start = Instant::now();
    loop {
        if let Some(held) = served(from, to).await {
            return held;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "closed connections were not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refused_per_client(proxy: &Proxy) -> u64 {
    let snapshot = proxy.cache().stats().snapshot();
    snapshot.connections_refused["per_client_limit"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_connection_limit_is_refused_and_others_are_served() {
    let edge = edge(4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(served(ONE, edge.plain).await.expect("under the limit"));
    }
    // The fifth, plain or TLS (the limit covers both listeners), is closed
    // unanswered; no handshake is spent on the TLS one.
    assert!(served(ONE, edge.plain).await.is_none(), "past the limit");
    assert_eq!(
        tls_served(&edge, ONE).await,
        None,
        "past the limit over TLS"
    );
    assert_eq!(refused_per_client(&edge.proxy), 2);
    // Another address is not concerned, on either listener.
    let other = served(OTHER, edge.plain).await;
    assert!(other.is_some(), "another client is served");
    assert_eq!(tls_served(&edge, OTHER).await, Some(200));
    // Closing two lets exactly two new ones in: nothing leaked, nothing
    // counted twice.
    held.truncate(2);
    held.push(served_again(ONE, edge.plain).await);
    held.push(served_again(ONE, edge.plain).await);
    let before = refused_per_client(&edge.proxy);
    assert!(served(ONE, edge.plain).await.is_none(), "four held again");
    assert_eq!(refused_per_client(&edge.proxy), before + 1);
    let text = prometheus_text(&admin(&edge.proxy)).await;
    let line = format!(
        "uip_cache_connections_refused_total{{reason=\"per_client_limit\"}} {}",
        before + 1
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains("uip_cache_connections_refused_total{reason=\"listener_limit\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_their_tls_handshake_count_against_their_client() {
    let edge = edge(3).await;
    // Three connections that never send their ClientHello: each holds its
    // place for the handshake's 10 s.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tcp_from(ONE, edge.tls).await.unwrap());
    }
    assert_eq!(tls_served(&edge, ONE).await, None);
    assert!(served(ONE, edge.plain).await.is_none());
    assert_eq!(tls_served(&edge, OTHER).await, Some(200));
    // One gives up: its place is given back.
    drop(silent.pop());
    let start = Instant::now();
    while tls_served(&edge, ONE).await != Some(200) {
        assert!(
            start.elapsed() < DEADLINE,
            "a closed handshake was not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_per_client_limit_off() {
    let edge = edge(0).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(served(ONE, edge.plain).await.expect("no per-client limit"));
    }
    assert_eq!(refused_per_client(&edge.proxy), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_limited_as_one_client() {
    let edge = edge_with("  max_connections_per_client: 2\n  trusted_proxies: [127.0.0.1]\n").await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(served(ONE, edge.plain).await.expect("a trusted proxy"));
    }
    // Anyone else still is.
    let _other = [
        served(OTHER, edge.plain).await.unwrap(),
        served(OTHER, edge.plain).await.unwrap(),
    ];
    assert!(served(OTHER, edge.plain).await.is_none());
}
