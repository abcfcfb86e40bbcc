//! TLS termination over real sockets, with certificates made at test time:
//! protocol versions, SNI, ALPN sharing the cache with plain clients,
//! certificate reloads, the handshake timeout, and `redirect_http`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{proxy, serve_edge, serve_redirecting};
use uip_cache_server::slow::ClientLimits;
use uip_cache_server::tls::{CertificateFiles, Certificates};

use crate::tls_support::{
    client_config, connect, get_over, plain_backend, presented_names, Ca, TempDir,
};

/// A proxy with a plain and a TLS listener sharing one cache.
struct Site {
    plain: SocketAddr,
    tls: SocketAddr,
    certificates: Certificates,
    calls: Arc<AtomicUsize>,
}

async fn site(certificates: Certificates, redirect: bool, limits: Option<ClientLimits>) -> Site {
    let (up, calls) = plain_backend().await;
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n")
            .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    let proxy = proxy(cache, upstream);
    let limits = limits.unwrap_or_default();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    // Both listeners as `uip-cache serve` runs them: one service, one
    // in-flight bound.
    let tls_listener = Some((tls, certificates.clone()));
    tokio::spawn(async move {
        serve_edge(
            Some(plain),
            tls_listener,
            redirect,
            proxy,
            limits,
            Duration::from_secs(1),
            std::future::pending(),
        )
        .await
    });
    Site {
        plain: plain_addr,
        tls: tls_addr,
        certificates,
        calls,
    }
}

/// Two certificates from one CA: `a.test` (and `*.a.test`) first, then
/// `b.test`.
fn two_certificates(dir: &TempDir, ca: &Ca) -> Vec<CertificateFiles> {
    let (a_cert, a_key) = ca.leaf(&["a.test", "*.a.test"]);
    let (b_cert, b_key) = ca.leaf(&["b.test"]);
    vec![
        CertificateFiles::new(dir.write("a.pem", &a_cert), dir.write("a.key", &a_key)),
        CertificateFiles::new(dir.write("b.pem", &b_cert), dir.write("b.key", &b_key)),
    ]
}

/// A plain HTTP/1.1 GET: the whole answer as text.
async fn plain_get(addr: SocketAddr, host: &str, target: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_and_tls12_handshakes_both_serve_requests() {
    let (ca, dir) = (Ca::new("versions CA"), TempDir::new("tls-versions"));
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        false,
        None,
    )
    .await;
    for (version, want) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let config = client_config(ca.roots(), Some(version), &[b"http/1.1"]);
        let tls = connect(site.tls, "a.test", config).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        let (status, _, body, _) = get_over(tls, "a.test", "/v").await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"path=/v");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let (ca, dir) = (Ca::new("sni CA"), TempDir::new("tls-sni"));
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        false,
        None,
    )
    .await;
    let config = client_config(ca.roots(), None, &[]);
    for (sni, want) in [
        ("b.test", "b.test"),
        ("a.test", "a.test"),
        ("B.TEST", "b.test"),
        ("www.a.test", "a.test"),
    ] {
        let tls = connect(site.tls, sni, config.clone()).await.unwrap();
        assert!(presented_names(&tls).contains(&want.to_owned()), "{sni}");
    }
    // A name no certificate has: the first one (which the client then
    // refuses, as it should).
    let accept_any = client_config(ca.roots(), None, &[]);
    let err = connect(site.tls, "c.test", accept_any).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert_eq!(site.certificates.names()[0][0], "a.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_shares_entries_with_http1_over_tls_and_not_with_plain_http() {
    let (ca, dir) = (Ca::new("alpn CA"), TempDir::new("tls-alpn"));
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        false,
        None,
    )
    .await;
    let h1 = client_config(ca.roots(), None, &[b"http/1.1"]);
    let h2 = client_config(ca.roots(), None, &[b"h2", b"http/1.1"]);

    let tls = connect(site.tls, "a.test", h1).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (_, x, _, v) = get_over(tls, "a.test", "/shared").await;
    assert_eq!((x.as_str(), v), ("MISS", http::Version::HTTP_11));

    let tls = connect(site.tls, "a.test", h2).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (_, x, body, v) = get_over(tls, "a.test", "/shared").await;
    assert_eq!((x.as_str(), v), ("HIT", http::Version::HTTP_2));
    assert_eq!(&body[..], b"path=/shared");
    assert_eq!(site.calls.load(Ordering::SeqCst), 1);

    // The plain listener keys `http`: not the TLS clients' entry.
    let plain = plain_get(site.plain, "a.test", "/shared").await;
    assert!(
        plain.to_ascii_lowercase().contains("x-cache: miss"),
        "{plain}"
    );
    assert_eq!(site.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_connections_and_a_broken_file_keeps_the_old_certificate() {
    let (ca, dir) = (Ca::new("reload CA"), TempDir::new("tls-reload"));
    let files = two_certificates(&dir, &ca);
    let site = site(Certificates::load(files.clone()).unwrap(), false, None).await;
    let config = client_config(ca.roots(), None, &[]);
    let before = connect(site.tls, "a.test", config.clone()).await.unwrap();
    assert!(presented_names(&before).contains(&"a.test".to_owned()));

    // a.pem now serves a new name.
    let (cert, key) = ca.leaf(&["a.test", "new.a-site.test"]);
    std::fs::write(&files[0].cert, cert).unwrap();
    std::fs::write(&files[0].key, key).unwrap();
    assert_eq!(site.certificates.reload().unwrap(), 2);
    let after = connect(site.tls, "new.a-site.test", config.clone())
        .await
        .unwrap();
    assert!(presented_names(&after).contains(&"new.a-site.test".to_owned()));
    // The connection made before goes on.
    let (status, _, _, _) = get_over(before, "a.test", "/still").await;
    assert_eq!(status, 200);

    // A broken certificate file: an error naming it, and no change.
    std::fs::write(&files[1].cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let err = site.certificates.reload().unwrap_err();
    assert_eq!(err.file(), files[1].cert.as_path());
    assert!(err.to_string().contains("b.pem"), "{err}");
    let b = connect(site.tls, "b.test", config.clone()).await.unwrap();
    assert!(presented_names(&b).contains(&"b.test".to_owned()));
    // A key that is not the certificate's: refused too.
    std::fs::write(&files[1].cert, ca.leaf(&["b.test"]).0).unwrap();
    let err = site.certificates.reload().unwrap_err();
    assert_eq!(err.file(), files[1].key.as_path());
    let b = connect(site.tls, "b.test", config).await.unwrap();
    assert!(presented_names(&b).contains(&"b.test".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_picked_up_by_the_watcher() {
    let (ca, dir) = (Ca::new("watch CA"), TempDir::new("tls-watch"));
    let files = two_certificates(&dir, &ca);
    let certificates = Certificates::load(files.clone()).unwrap();
    let site = site(certificates.clone(), false, None).await;
    tokio::spawn(certificates.watch_files(Duration::from_millis(50), std::future::pending()));
    let (cert, key) = ca.leaf(&["b.test", "watched.test"]);
    std::fs::write(&files[1].key, key).unwrap();
    std::fs::write(&files[1].cert, cert).unwrap();
    let config = client_config(ca.roots(), None, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(tls) = connect(site.tls, "watched.test", config.clone()).await {
            assert!(presented_names(&tls).contains(&"watched.test".to_owned()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_a_client_hello_is_cut_at_the_handshake_timeout() {
    let (ca, dir) = (Ca::new("timeout CA"), TempDir::new("tls-timeout"));
    let mut limits = ClientLimits::default();
    limits.handshake_timeout = Duration::from_millis(300);
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        false,
        Some(limits),
    )
    .await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(site.tls).await.unwrap();
    // Half a ClientHello, then nothing.
    let mut half = TcpStream::connect(site.tls).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, &[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    for s in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the connection is closed: {closed:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Others are still served.
    let tls = connect(site.tls, "a.test", client_config(ca.roots(), None, &[]))
        .await
        .unwrap();
    assert_eq!(get_over(tls, "a.test", "/after").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_client_hellos_are_refused_without_harm() {
    let (ca, dir) = (Ca::new("hostile CA"), TempDir::new("tls-hostile"));
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        false,
        None,
    )
    .await;
    // Garbage, a plain HTTP request, and a record claiming 16 MB.
    let hellos: [&[u8]; 3] = [
        b"\x16\x03\x01\xff\xff\x01\xff\xff\xff",
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"\x16\x03\x03\x40\x00\x01\x00\x3f\xfc\x03\x03",
    ];
    for hello in hellos {
        let mut s = TcpStream::connect(site.tls).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, hello)
            .await
            .unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "closed in time");
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    }
    // A client offering only an unknown ALPN protocol is refused.
    let odd = client_config(ca.roots(), None, &[b"spdy/3"]);
    assert!(connect(site.tls, "a.test", odd).await.is_err());
    let tls = connect(site.tls, "a.test", client_config(ca.roots(), None, &[]))
        .await
        .unwrap();
    assert_eq!(get_over(tls, "a.test", "/fine").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_http_sends_plain_clients_to_the_tls_port_with_path_and_query() {
    let (ca, dir) = (Ca::new("redirect CA"), TempDir::new("tls-redirect"));
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        true,
        None,
    )
    .await;
    let answer = plain_get(
        site.plain,
        &format!("a.test:{}", site.plain.port()),
        "/p/q?x=1&y",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let want = format!("location: https://a.test:{}/p/q?x=1&y\r\n", site.tls.port());
    assert!(answer.to_ascii_lowercase().contains(&want), "{answer}");
    assert_eq!(site.calls.load(Ordering::SeqCst), 0);
    // HTTPS is served.
    let tls = connect(site.tls, "a.test", client_config(ca.roots(), None, &[]))
        .await
        .unwrap();
    assert_eq!(get_over(tls, "a.test", "/p/q?x=1&y").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_http_refuses_hosts_that_are_not_a_plain_name_and_port() {
    let (ca, dir) = (
        Ca::new("redirect hosts CA"),
        TempDir::new("tls-redirect-hosts"),
    );
    let site = site(
        Certificates::load(two_certificates(&dir, &ca)).unwrap(),
        true,
        None,
    )
    .await;
    // The TLS listener's port, never the plain one's; the Host's own port
    // goes; path and query stay.
    for (host, want) in [
        ("a.test".to_owned(), "a.test"),
        (format!("A.test:{}", site.plain.port()), "A.test"),
        ("192.0.2.1:8080".to_owned(), "192.0.2.1"),
        ("[2001:db8::1]:80".to_owned(), "[2001:db8::1]"),
    ] {
        let answer = plain_get(site.plain, &host, "/p?q=1").await;
        assert!(answer.starts_with("HTTP/1.1 308"), "{host}: {answer}");
        let want = format!("location: https://{want}:{}/p?q=1\r\n", site.tls.port());
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&want.to_ascii_lowercase()),
            "{answer}"
        );
    }
    // Hosts that would make another URL, or junk, of the Location: a 400
    // and no Location at all.
    for host in [
        "evil.test@a.test",
        "a.test;x=1",
        "a.test,evil.test",
        "a.test'x",
        "a.test(x)",
        "a%2etest",
        "a.test:99999",
        "a.test:80x",
        "a test",
        "a.test/evil",
        "[::1",
        "",
    ] {
        let answer = plain_get(site.plain, host, "/p").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host:?}: {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("location:"),
            "{host:?}: {answer}"
        );
    }
    assert_eq!(site.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_port_443_names_no_port() {
    let (up, calls) = plain_backend().await;
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n")
            .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    tokio::spawn(serve_redirecting(
        plain,
        proxy(cache, upstream),
        443,
        ClientLimits::default(),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let answer = plain_get(addr, &format!("a.test:{}", addr.port()), "/x/y?z=%20").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://a.test/x/y?z=%20\r\n"),
        "{answer}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
