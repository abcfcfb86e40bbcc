//! Poisoning through request headers the key does not hold: a client sends
//! `Forwarded`, `X-Forwarded-*`, `X-Original-URL` and the like, an origin
//! that builds its links from them answers, and the next client must not get
//! the attacker's links. Over loopback: a client, `serve` with a catch-all
//! policy (`ttl: 60`), and an origin that writes every forwarding header it
//! sees into its body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_core::forwarding::FORWARDING_HEADERS;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::serve;

type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// An origin like a framework that builds absolute links from what proxies
/// tell it: the body names the host, scheme, prefix and port it would link
/// to, and every forwarding header it was sent. No Cache-Control: the
/// policy's TTL stores it.
async fn origin() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    s.lock().unwrap().push(req.headers().clone());
                    let h = req.headers();
                    // Like CGI, WSGI and Rack: `X_Forwarded_Host` reads as
                    // `X-Forwarded-Host`; the first line of a name wins.
                    let same = |a: &str, b: &str| a.replace('_', "-").eq_ignore_ascii_case(b);
                    let get = |n: &str| {
                        h.iter()
                            .find(|(k, _)| same(k.as_str(), n))
                            .and_then(|(_, v)| v.to_str().ok())
                            .unwrap_or("")
                    };
                    let host = [get("x-forwarded-host"), get("host")]
                        .into_iter()
                        .find(|v| !v.is_empty())
                        .unwrap_or("");
                    let mut body = format!(
                        "link: {}://{host}:{}{}{}\n",
                        get("x-forwarded-proto"),
                        get("x-forwarded-port"),
                        get("x-forwarded-prefix"),
                        req.uri().path(),
                    );
                    for name in FORWARDING_HEADERS {
                        for (_, v) in h.iter().filter(|(k, _)| same(k.as_str(), name)) {
                            body.push_str(&format!("{name}: {}\n", v.to_str().unwrap_or("?")));
                        }
                    }
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// `serve` with a catch-all `ttl: 60` policy and `extra` config, in front
/// of `upstream`.
async fn proxy(upstream: SocketAddr, extra: &str) -> SocketAddr {
    let config = CacheConfig::from_yaml_str(&format!(
        "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n{extra}"
    ))
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
        uip_cache_server::server::proxy(cache, upstream),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::get(path).header("host", "cache.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let x_cache = resp.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (x_cache, String::from_utf8(body.to_vec()).unwrap())
}

/// One forged header each; every value is marked `evil` or `6666`. The
/// underscore spellings are the same header to a CGI-like origin.
const ATTACKS: [(&str, &str); 18] = [
    ("x_forwarded_host", "evil.example"),
    ("X_Forwarded_Prefix", "/evil"),
    ("x-forwarded_port", "6666"),
    ("x_original_url", "/evil"),
    ("forwarded", "host=evil.example;proto=https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-prefix", "/evil"),
    ("x-forwarded-port", "6666"),
    ("x-forwarded-proto", "evil"),
    ("x-forwarded-for", "6.6.6.6, evil"),
    ("x-forwarded-server", "evil.example"),
    ("x-forwarded-scheme", "evil"),
    ("x-real-ip", "evil"),
    ("x-host", "evil.example"),
    ("x-original-host", "evil.example"),
    ("x-original-url", "/evil"),
    ("x-rewrite-url", "/evil"),
    ("x-forwarded-uri", "/evil"),
];

fn poisoned(body: &str) -> bool {
    body.contains("evil") || body.contains("6666")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarding_headers_reach_neither_the_origin_nor_the_next_client() {
    let (up, seen) = origin().await;
    let addr = proxy(up, "").await;
    for (i, (name, value)) in ATTACKS.iter().enumerate() {
        let path = format!("/page/{i}");
        let (x_cache, attacked) = get(addr, &path, &[(name, value)]).await;
        assert_eq!(x_cache, "MISS", "{name}");
        assert!(
            !poisoned(&attacked),
            "{name}: the origin saw it:\n{attacked}"
        );
        let (x_cache, clean) = get(addr, &path, &[]).await;
        assert_eq!(x_cache, "HIT", "{name}");
        assert!(!poisoned(&clean), "{name}: poisoned:\n{clean}");
    }
    // The origin heard only the proxy's word.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), ATTACKS.len());
    for h in seen.iter() {
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "cache.test");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=127.0.0.1;host=\"cache.test\";proto=http"
        );
        let ours = [
            "forwarded",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-for",
        ];
        for (name, _) in ATTACKS.iter().filter(|(n, _)| !ours.contains(n)) {
            assert!(h.get(*name).is_none(), "{name} reached the origin");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_forged_headers_at_once_and_a_peer_outside_the_trusted_networks() {
    let (up, seen) = origin().await;
    // Loopback is not in the trusted networks: not believed.
    let addr = proxy(
        up,
        "server:\n  trusted_proxies: [10.0.0.0/8, \"fd00::/8\"]\n",
    )
    .await;
    let (_, attacked) = get(addr, "/all", &ATTACKS).await;
    assert!(!poisoned(&attacked), "{attacked}");
    let (x_cache, clean) = get(addr, "/all", &[]).await;
    assert_eq!(x_cache, "HIT");
    assert!(!poisoned(&clean), "{clean}");
    assert_eq!(seen.lock().unwrap()[0]["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_believed_and_what_it_says_is_keyed() {
    let (up, seen) = origin().await;
    let addr = proxy(up, "server:\n  trusted_proxies: [127.0.0.1/32]\n").await;
    let a = [
        ("x-forwarded-host", "a.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let b = [
        ("x-forwarded-host", "b.example"),
        ("x-forwarded-proto", "https"),
    ];
    let (x_cache, body) = get(addr, "/shop", &a).await;
    assert_eq!(x_cache, "MISS");
    assert!(body.starts_with("link: https://a.example:/shop"), "{body}");
    // Another forwarded host is another entry, never a's.
    let (x_cache, body) = get(addr, "/shop", &b).await;
    assert_eq!(x_cache, "MISS", "{body}");
    assert!(body.starts_with("link: https://b.example:/shop"), "{body}");
    let (x_cache, body) = get(addr, "/shop", &a).await;
    assert_eq!(x_cache, "HIT");
    assert!(
        body.contains("a.example") && !body.contains("b.example"),
        "{body}"
    );
    // Nothing forwarded: the proxy's own host and scheme, a third entry.
    let (x_cache, body) = get(addr, "/shop", &[]).await;
    assert_eq!(x_cache, "MISS");
    assert!(body.starts_with("link: http://cache.test:/shop"), "{body}");
    {
        let seen = seen.lock().unwrap();
        // Appended to as nginx's $proxy_add_x_forwarded_for does.
        assert_eq!(seen[0]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(seen[0]["x-forwarded-host"], "a.example");
        assert_eq!(seen[0]["x-forwarded-proto"], "https");
        assert_eq!(seen.len(), 3);
    }
    // Forwarded's host= is believed and keyed too.
    let f = [("forwarded", "for=203.0.113.7;host=c.example;proto=https")];
    let (x_cache, body) = get(addr, "/shop", &f).await;
    assert_eq!(x_cache, "MISS");
    // The X-Forwarded-* the proxy adds name what it keyed on.
    assert!(body.starts_with("link: https://c.example:/shop"), "{body}");
    assert!(
        body.contains("forwarded: for=203.0.113.7;host=c.example;proto=https, for=127.0.0.1"),
        "{body}"
    );
    assert_eq!(get(addr, "/shop", &f).await.0, "HIT");
    // A prefix or port from the trusted proxy changes the links: keyed.
    let p = [
        ("x-forwarded-host", "a.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/p"),
    ];
    let (x_cache, body) = get(addr, "/shop", &p).await;
    assert_eq!(x_cache, "MISS");
    assert!(
        body.starts_with("link: https://a.example:/p/shop"),
        "{body}"
    );
    let (x_cache, body) = get(addr, "/shop", &a).await;
    assert_eq!(x_cache, "HIT");
    assert!(!body.contains("/p/shop"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_that_contradicts_itself_is_not_believed_on_the_host() {
    let (up, seen) = origin().await;
    let addr = proxy(up, "server:\n  trusted_proxies: [127.0.0.1/32]\n").await;
    // Two X-Forwarded-Host lines (one a client added before the trusted
    // proxy appended its own), or Forwarded and X-Forwarded-Host naming
    // different hosts: the origin might read either, so neither is keyed
    // and neither reaches it.
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-host", "a.example"),
        ],
        &[
            ("forwarded", "host=a.example"),
            ("x-forwarded-host", "evil.example"),
        ],
        &[
            ("x-forwarded-host", "a.example"),
            ("x_forwarded_host", "evil.example"),
        ],
    ];
    for (i, headers) in cases.iter().enumerate() {
        let path = format!("/two/{i}");
        let (_, attacked) = get(addr, &path, headers).await;
        assert!(
            !poisoned(&attacked),
            "case {i}: the origin saw it:\n{attacked}"
        );
        let (x_cache, clean) = get(addr, &path, &[("x-forwarded-host", "a.example")]).await;
        assert!(
            !poisoned(&clean),
            "case {i} ({x_cache}): poisoned:\n{clean}"
        );
    }
    for h in seen.lock().unwrap().iter() {
        let hosts: Vec<_> = h
            .iter()
            .filter(|(k, _)| k.as_str().replace('_', "-") == "x-forwarded-host")
            .collect();
        assert!(hosts.len() <= 1, "{hosts:?}");
    }
}

#[test]
fn check_config_names_a_bad_trusted_proxy_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("uip-cache-trusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxies.yaml");
    let run = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_uip-cache"))
            .args(["check-config", file.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("proxies.yaml:4"), "{err}");
    assert!(err.contains("server.trusted_proxies[1]"), "{err}");
    let (code, err) = run("server:\n  trusted_proxies: [10.0.0.0/8, \"::1/128\", 127.0.0.1]\n");
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
