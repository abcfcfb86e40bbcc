//! Several backends (`server.routes`) over real sockets: `uip-cache serve`
//! run as a user runs it, and the same server in process where a mock
//! clock moves `fail_timeout` on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_core::clock::MockClock;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::routes::Routes;
use uip_cache_server::server::{proxy, serve, Proxy};
use uip_cache_testkit::{client, Got};

// ===== backends =====

/// A backend that answers `<name> <METHOD> <path> <body>`, fresh for a
/// minute (`/swr...`: for a second, then revalidated in the background), and
/// counts the connections it accepted and the requests it answered.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener)
    }

    fn serve(name: &'static str, listener: TcpListener) -> Self {
        let backend = Backend {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            connections: Arc::default(),
        };
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                b.connections.fetch_add(1, Ordering::SeqCst);
                let requests = b.requests.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let requests = requests.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let line = format!(
                                "{name} {} {} {}",
                                parts.method,
                                parts.uri.path(),
                                String::from_utf8_lossy(&body)
                            );
                            requests.lock().unwrap().push(line.clone());
                            let mut resp = Response::new(Full::new(Bytes::from(line)));
                            let cc = if parts.uri.path().starts_with("/swr") {
                                "max-age=1, stale-while-revalidate=60"
                            } else {
                                "max-age=60"
                            };
                            resp.headers_mut()
                                .insert("cache-control", cc.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        backend
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests it answered: `<name> <METHOD> <path> <body>` each.
    fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A loopback port that refuses connections (nothing listens on it).
fn refusing_port() -> u16 {
    uip_cache_testkit::free_port()
}

async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    client::get(addr, path, &[("host", host)]).await
}

/// One raw HTTP/1.1 exchange: the status and the body.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

// ===== `uip-cache serve` =====

/// `uip-cache serve` with `config` (YAML), on a free port; killed on drop.
struct Serve {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Serve {
    async fn start(name: &str, config: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("uip-cache-routes-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cache.yaml");
        std::fs::write(&file, config).unwrap();
        let port = uip_cache_testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
            .args([
                "serve",
                "--config",
                file.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Killed and waited for on drop, should it never listen.
        let serve = Serve { child, addr, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("uip-cache serve did not listen on {addr}");
    }

    /// Stops the server and returns what it logged.
    fn stop(mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

const CACHE_ALL: &str = "policies:\n  - name: all\n    pattern: \"/*\"\nadmin:\n  enabled: false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_prefix_reach_their_backend_and_unmatched_requests_none() {
    let (broker, sparql) = (
        Backend::start("broker").await,
        Backend::start("sparql").await,
    );
    let config = format!(
        "{CACHE_ALL}server:\n  routes:\n    - {{ host: \"api.example.org\", path_prefix: \"/ngsi-ld/\", upstream: \"{}\" }}\n    - {{ path_prefix: \"/sparql\", upstream: \"{}\" }}\n    - {{ host: \"*.tenants.example\", upstream: \"{}\" }}\n",
        broker.url(),
        sparql.url(),
        broker.url()
    );
    let serve = Serve::start("by-host-and-prefix", &config).await;
    let addr = serve.addr;

    let got = get(
        addr,
        "API.example.org:8080",
        "/ngsi-ld/v1/entities?type=Camera",
    )
    .await;
    assert_eq!(
        (got.status, got.text()),
        (200, "broker GET /ngsi-ld/v1/entities ".into())
    );
    let got = get(addr, "anyone.example", "/sparql?query=ASK%7B%7D").await;
    assert_eq!(
        (got.status, got.text()),
        (200, "sparql GET /sparql ".into())
    );
    let got = get(addr, "a.b.tenants.example", "/t").await;
    assert_eq!((got.status, got.text()), (200, "broker GET /t ".into()));

    // Neither answered nor cached: the proxy's own 404 and 400.
    for (host, path, status) in [
        ("other.example", "/ngsi-ld/v1/entities", 404),
        ("api.example.org", "/sparqlx", 404),
        ("tenants.example", "/t", 404),
        ("api.example.org", "/", 404),
        ("api.example.org", "/sparql/../ngsi-ld/v1/entities", 400),
        ("api.example.org", "/ngsi-ld/..%2Fadmin", 400),
        ("api.example.org", "/ngsi-ld/..;/admin", 400),
    ] {
        let got = get(addr, host, path).await;
        assert_eq!(got.status, status, "{host} {path}: {}", got.text());
        assert_eq!(got.header("cache-control"), Some("no-store"));
        assert_eq!(got.x_cache(), "", "{host} {path}: not through the cache");
    }
    let again = get(addr, "other.example", "/ngsi-ld/v1/entities").await;
    assert_eq!(again.status, 404, "an unmatched request is never stored");

    // The host in an absolute-form target is the one routed (and keyed),
    // not the Host header.
    let (status, body) = raw(
        addr,
        "GET http://api.example.org/ngsi-ld/abs HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "broker GET /ngsi-ld/abs "));
    let (status, _) = raw(
        addr,
        "GET http://other.example/ngsi-ld/abs HTTP/1.1\r\nHost: api.example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    // HTTP/2: `:authority` wins over a Host field, for the route as for the key.
    assert_eq!(
        h2_get(addr, "http://api.example.org/ngsi-ld/h2", "other.example").await,
        (200, "broker GET /ngsi-ld/h2 ".into())
    );
    assert_eq!(
        h2_get(addr, "http://other.example/ngsi-ld/h2", "api.example.org")
            .await
            .0,
        404
    );

    assert_eq!(
        broker.seen(),
        [
            "broker GET /ngsi-ld/v1/entities ",
            "broker GET /t ",
            "broker GET /ngsi-ld/abs ",
            "broker GET /ngsi-ld/h2 ",
        ]
    );
    assert_eq!(sparql.seen(), ["sparql GET /sparql "]);
    drop(serve);
}

/// A GET over HTTP/2 with prior knowledge, `uri` as `:scheme` +
/// `:authority` + `:path`, with a `host` field besides.
async fn h2_get(addr: SocketAddr, uri: &str, host: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = Request::get(uri).header("host", host).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_path_on_two_hosts_is_two_entries_from_two_backends() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = format!(
        "{CACHE_ALL}server:\n  routes:\n    - {{ host: a.example, upstream: \"{}\" }}\n    - {{ host: b.example, upstream: \"{}\" }}\n",
        a.url(),
        b.url()
    );
    let serve = Serve::start("two-hosts", &config).await;
    for round in ["MISS", "HIT"] {
        let got = get(serve.addr, "a.example", "/same").await;
        assert_eq!((got.x_cache(), got.text()), (round, "a GET /same ".into()));
        let got = get(serve.addr, "b.example", "/same").await;
        assert_eq!((got.x_cache(), got.text()), (round, "b GET /same ".into()));
    }
    assert_eq!((a.count(), b.count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_refuses_connections_is_skipped_and_requests_still_succeed() {
    let good = Backend::start("good").await;
    let dead = format!("http://127.0.0.1:{}", refusing_port());
    // A route of a dead backend alone, to read the count of failures left
    // out of the log at the end (see below).
    let other = format!("http://127.0.0.1:{}", refusing_port());
    let config = format!(
        "{CACHE_ALL}logging:\n  level: warn\nserver:\n  routes:\n    - {{ path_prefix: /f, upstreams: [\"{dead}\", \"{}\"], fail_timeout: 60s }}\n    - {{ path_prefix: /g, upstream: \"{other}\" }}\n",
        good.url()
    );
    let serve = Serve::start("failover", &config).await;
    for i in 0..8 {
        let got = get(serve.addr, "cache.test", &format!("/f/{i}")).await;
        assert_eq!(
            (got.status, got.text()),
            (200, format!("good GET /f/{i} ")),
            "request {i}"
        );
    }
    assert_eq!(good.count(), 8);
    // Failed upstream requests are logged at most once a second, with the
    // count of those left out since the last line: a failure past that
    // second says how many there were after the first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let got = get(serve.addr, "cache.test", "/g/1").await;
    assert_eq!(got.status, 502);
    let log = uip_cache_testkit::without_escapes(&serve.stop());
    // Round robin would send every other request to the dead backend
    // first; it was tried once, then skipped.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("upstream marked down") && l.contains(&dead))
            .count(),
        1,
        "one failed connection, then skipped:\n{log}"
    );
    let failed: Vec<_> = log
        .lines()
        .filter(|l| l.contains("upstream request failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    assert!(
        failed.iter().all(|l| l.contains("left_out=0")),
        "no failure left out:\n{log}"
    );
}

#[test]
fn check_config_prints_the_routes_in_the_order_they_are_tried() {
    let dir = std::env::temp_dir().join(format!("uip-cache-routes-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("routes.yaml");
    std::fs::write(
        &file,
        "policies: []\nserver:\n  upstream: \"http://rest:80\"\n  routes:\n    - { host: \"api.example.org\", path_prefix: \"/ngsi-ld/\", upstream: \"https://broker.internal:8443\" }\n    - { path_prefix: \"/sparql\", upstreams: [\"http://fuseki-1:3030\", \"http://fuseki-2:3030\"], fail_timeout: 30s }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "  routes, the first that matches:\n    server.routes[0]  host api.example.org, path /ngsi-ld/ -> https://broker.internal:8443\n    server.routes[1]  path /sparql -> http://fuseki-1:3030, http://fuseki-2:3030 (round robin, fail_timeout 30s)\n    server.upstream  every request -> http://rest:80\n"
        ),
        "{stdout}"
    );

    std::fs::write(
        &file,
        "server:\n  routes:\n    - { path_prefix: \"sparql\", upstreams: [\"http://a:1\"], upstream: \"http://b:1\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("routes.yaml:3: server.routes[0].upstreams: give `upstream`"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("routes.yaml:3: server.routes[0].path_prefix: `sparql` must start with `/`"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ===== in process, with a mock clock =====

/// The proxy of `yaml` served on loopback with `clock`: its address and
/// its cache.
async fn serve_in_process(yaml: &str, clock: &MockClock) -> (SocketAddr, Proxy) {
    let config = CacheConfig::from_yaml_str(yaml).unwrap();
    let cache = HttpCache::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let routes = Routes::from_config(&config, |url| {
        Upstream::new(url, Duration::from_secs(1), Duration::from_secs(5))
    })
    .unwrap()
    .clock(clock.clone().into());
    let proxy = proxy(cache, routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        proxy.clone(),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    (addr, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_gets_no_connection_until_fail_timeout_has_passed() {
    let good = Backend::start("good").await;
    let port = refusing_port();
    let clock = MockClock::new();
    let (addr, proxy) = serve_in_process(
        &format!(
            "policies: []\nserver:\n  routes:\n    - {{ upstreams: [\"http://127.0.0.1:{port}\", \"{}\"], fail_timeout: 10s }}\n",
            good.url()
        ),
        &clock,
    )
    .await;
    let table = proxy.get_ref().table();
    let set = table.routes()[0].upstreams();
    // The first request tries the refusing backend first, then the other.
    let got = get(addr, "cache.test", "/1").await;
    assert_eq!(got.text(), "good GET /1 ");
    assert!(set.is_down(0, clock.instant()));

    // It listens now, but is skipped until fail_timeout has passed.
    let revived = Backend::serve(
        "revived",
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
    );
    for i in 2..6 {
        assert_eq!(
            get(addr, "cache.test", &format!("/{i}")).await.text(),
            format!("good GET /{i} ")
        );
    }
    assert_eq!(revived.connections.load(Ordering::SeqCst), 0);
    clock.advance(Duration::from_secs(9));
    assert_eq!(get(addr, "cache.test", "/6").await.status, 200);
    assert_eq!(revived.connections.load(Ordering::SeqCst), 0);

    clock.advance(Duration::from_secs(1));
    let answers: Vec<String> = futures_util::future::join_all(
        (7..11).map(|i| async move { get(addr, "cache.test", &format!("/{i}")).await.text() }),
    )
    .await;
    assert_eq!(
        answers.iter().filter(|a| a.starts_with("revived")).count(),
        2,
        "round robin again: {answers:?}"
    );
    assert!(!set.is_down(0, clock.instant()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_body_goes_on_to_the_next_backend_and_a_streamed_one_is_not_sent_twice() {
    let good = Backend::start("good").await;
    let clock = MockClock::new();
    let yaml = format!(
        "policies:\n  - name: sparql\n    pattern: /sparql\n    methods: [GET, POST]\n    vary_by: [body]\nserver:\n  routes:\n    - {{ upstreams: [\"http://127.0.0.1:{}\", \"{}\"] }}\n",
        refusing_port(),
        good.url()
    );
    let (addr, _) = serve_in_process(&yaml, &clock).await;
    // The refusing backend comes first in turn: the body the cache read
    // to key on is sent to the other.
    let query = Bytes::from_static(b"SELECT * WHERE { ?s ?p ?o }");
    let got = client::send_body(addr, "POST", "/sparql", &[("host", "q.example")], query).await;
    assert_eq!(
        (got.status, got.text()),
        (200, "good POST /sparql SELECT * WHERE { ?s ?p ?o }".into())
    );

    // A body streamed through (no policy keys it) cannot be sent twice:
    // 502, and the backend is skipped from then on.
    let (addr, _) = serve_in_process(&yaml, &clock).await;
    let got = client::send_body(
        addr,
        "POST",
        "/upload",
        &[("host", "q.example")],
        Bytes::from_static(b"data"),
    )
    .await;
    assert_eq!(got.status, 502, "{}", got.text());
    let got = client::send_body(
        addr,
        "POST",
        "/upload",
        &[("host", "q.example")],
        Bytes::from_static(b"data"),
    )
    .await;
    assert_eq!(
        (got.status, got.text()),
        (200, "good POST /upload data".into())
    );
    assert_eq!(good.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refreshes_and_warm_requests_follow_the_routes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let clock = MockClock::new();
    let yaml = format!(
        "policies:\n  - name: all\n    pattern: \"/*\"\nadmin:\n  secret: s\nwarming:\n  urls: [{{url: \"http://a.example/w\"}}, {{url: \"http://b.example/w\"}}, {{url: \"http://c.example/w\"}}]\nserver:\n  routes:\n    - {{ host: a.example, upstream: \"{}\" }}\n    - {{ host: b.example, upstream: \"{}\" }}\n",
        a.url(),
        b.url()
    );
    let (addr, proxy) = serve_in_process(&yaml, &clock).await;
    let cache = proxy.cache().clone();

    // Stale after a second, revalidated in the background: the refresh
    // goes to the backend of the request's host.
    assert_eq!(get(addr, "b.example", "/swr").await.x_cache(), "MISS");
    uip_cache_testkit::wait_for_sets(&cache, 1).await;
    clock.advance(Duration::from_secs(2));
    let stale = get(addr, "b.example", "/swr").await;
    assert_eq!(
        (stale.x_cache(), stale.text()),
        ("STALE", "b GET /swr ".into())
    );
    uip_cache_testkit::wait_for_sets(&cache, 2).await;
    assert_eq!(b.seen(), ["b GET /swr ", "b GET /swr "]);
    assert_eq!(a.count(), 0);

    // Warm requests are routed by the host they are made for; one no
    // route takes reaches nobody.
    let admin = uip_cache_server::server::admin(&proxy);
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin_listener.local_addr().unwrap();
    tokio::spawn(uip_cache_server::server::serve_admin(
        admin_listener,
        admin,
        std::future::pending(),
    ));
    let report = client::send_body(
        admin_addr,
        "POST",
        "/cache/warm",
        &[("x-webhook-secret", "s")],
        Bytes::new(),
    )
    .await;
    let report: serde_json::Value = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(
        (report["total"].as_u64(), report["success"].as_u64()),
        (Some(3), Some(2)),
        "{report}"
    );
    assert_eq!(a.seen(), ["a GET /w "]);
    assert_eq!(b.count(), 3);
    let hit = get(addr, "a.example", "/w").await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "a GET /w ".into()));
    let hit = get(addr, "b.example", "/w").await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "b GET /w ".into()));
}

/// A warm request takes one snapshot, as a client's does: its route and
/// its policy come from the same config. Here the proxy's snapshot is
/// replaced and the cache's own settings are not (the moment inside a
/// reload between the two swaps): the warm request is sent by the new
/// table and stored with the new policy's tags, never routed by one config
/// and cached by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_request_is_routed_and_cached_by_one_snapshot() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let clock = MockClock::new();
    let yaml = |tag: &str, to: &str| {
        format!(
            "policies:\n  - name: w\n    pattern: \"/w*\"\n    ttl: 60\n    tags: [{tag}]\nadmin:\n  secret: s\nwarming:\n  urls: [{{url: \"http://a.example/w\"}}]\nserver:\n  routes:\n    - {{ host: a.example, upstream: \"{to}\" }}\n"
        )
    };
    // Before: entries tagged `before`, and a.example goes to `a`.
    let (addr, proxy) = serve_in_process(&yaml("before", &a.url()), &clock).await;
    // After: entries tagged `after`, and a.example goes to `b`.
    let after = CacheConfig::from_yaml_str(&yaml("after", &b.url())).unwrap();
    let after = Routes::from_config(&after, |url| {
        Upstream::new(url, Duration::from_secs(1), Duration::from_secs(5))
    })
    .unwrap();
    proxy.get_ref().replace_with(&after);

    let admin = uip_cache_server::server::admin(&proxy);
    let report = admin.warmer().expect("a warmer").run().await;
    assert_eq!(report.success, 1, "{report:?}");
    assert_eq!(a.count(), 0);
    assert_eq!(b.seen(), ["b GET /w "]);
    let hit = get(addr, "a.example", "/w").await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "b GET /w ".into()));
    // Stored by the policy of the config whose table sent it.
    let cache = proxy.cache();
    assert_eq!(cache.invalidate_tags(&["before".into()]).await.unwrap(), 0);
    assert_eq!(cache.invalidate_tags(&["after".into()]).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_https_upstream_is_answered_and_cached_on_both_listeners() {
    use crate::tls_support::{client_config, connect, get_over, tls_backend, Ca, TempDir};
    let (ca, dir) = (Ca::new("routes CA"), TempDir::new("routes-https"));
    // The backend's certificate from the test CA, which server.upstream_tls
    // trusts; the TLS listener's certificate from the same CA.
    let (cert, key) = ca.leaf(&["localhost"]);
    let (secure, seen) = tls_backend(&cert, &key, &[b"http/1.1"], None).await;
    let ca_file = dir.write("ca.pem", &ca.pem());
    let (edge_cert, edge_key) = ca.leaf(&["edge.test"]);
    let edge_cert = dir.write("edge.pem", &edge_cert);
    let edge_key = dir.write("edge.key", &edge_key);
    let plain = Backend::start("plain").await;
    let tls_port = uip_cache_testkit::free_port();
    let config = format!(
        "{CACHE_ALL}server:\n  upstream_tls: {{ ca: \"{}\" }}\n  tls:\n    listen: 127.0.0.1:{tls_port}\n    certificates:\n      - {{ cert: \"{}\", key: \"{}\" }}\n  routes:\n    - {{ path_prefix: \"/secure\", upstream: \"https://localhost:{}\" }}\n    - {{ upstream: \"{}\" }}\n",
        ca_file.display(),
        edge_cert.display(),
        edge_key.display(),
        secure.port(),
        plain.url()
    );
    let serve = Serve::start("https-upstream", &config).await;

    // The plain listener: the https:// route, verified with the test CA,
    // then its entry; the other route still plain HTTP.
    let got = get(serve.addr, "api.example", "/secure/a").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.x_cache(), "MISS");
    assert!(got.text().contains("path=/secure/a"), "{}", got.text());
    let got = get(serve.addr, "api.example", "/secure/a").await;
    assert_eq!((got.status, got.x_cache()), (200, "HIT"));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    let got = get(serve.addr, "api.example", "/other").await;
    assert_eq!((got.status, got.text()), (200, "plain GET /other ".into()));

    // The TLS listener routes alike (its entries keyed under https).
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let client = client_config(ca.roots(), None, &[b"http/1.1"]);
    let mut answers = Vec::new();
    for path in ["/secure/b", "/secure/b", "/other"] {
        let mut stream = None;
        for _ in 0..200 {
            if let Ok(s) = connect(tls_addr, "edge.test", client.clone()).await {
                stream = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let stream = stream.expect("the TLS listener accepts");
        let (status, x_cache, body, _) = get_over(stream, "edge.test", path).await;
        answers.push((status, x_cache, String::from_utf8_lossy(&body).into_owned()));
    }
    assert_eq!((answers[0].0, answers[0].1.as_str()), (200, "MISS"));
    assert!(answers[0].2.contains("path=/secure/b"), "{}", answers[0].2);
    assert_eq!((answers[1].0, answers[1].1.as_str()), (200, "HIT"));
    assert_eq!(answers[1].2, answers[0].2);
    assert_eq!(
        (answers[2].0, answers[2].2.as_str()),
        (200, "plain GET /other ")
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
    assert_eq!(plain.seen(), ["plain GET /other ", "plain GET /other "]);
    drop(serve);
}
