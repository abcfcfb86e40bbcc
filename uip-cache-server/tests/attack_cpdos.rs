//! Cache-poisoned denial of service and header parsing that loses
//! `private`, tried as an attacker would: `uip-cache serve` (the binary)
//! with a catch-all policy (`ttl: 60`, gzip on) in front of an origin that
//! behaves like common frameworks, over real sockets. Each attack sends its
//! request first; the clean request after it must get the real answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_testkit::{client, Got, ServeProcess};

const ETAG: &str = "\"v1\"";
const FILE: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// The origin: a framework's habits.
///
/// - honours `X-HTTP-Method-Override`, `X-HTTP-Method` and
///   `X-Method-Override`; a DELETE of a resource is not allowed (405);
///   under `/global/` every response, errors included, gets
///   `Cache-Control: public, max-age=3600` (a header middleware);
/// - a `Range` it cannot satisfy gets a 416, an `If-Match` that does not
///   match or an `If-Unmodified-Since` in the past a 412, each with
///   `max-age=3600`;
/// - `/search` answers the body of a GET;
/// - `/me*` answer per user (`X-User`), marked private in ways that are
///   easy to misread;
/// - `/later` is 404 (with `max-age=3600`) until `created` is set.
async fn origin(created: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let created = created.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let created = created.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        Ok::<_, Infallible>(answer(&parts, &body, &created))
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

fn answer(req: &http::request::Parts, body: &Bytes, created: &AtomicBool) -> Response<Full<Bytes>> {
    let h = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let path = req.uri.path();
    let method = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ]
    .iter()
    .find_map(|n| h(n))
    .unwrap_or(req.method.as_str())
    .to_ascii_uppercase();
    let mut r = Response::builder().header("etag", ETAG);
    if path.starts_with("/global/") {
        r = r.header("cache-control", "public, max-age=3600");
    }
    let reply = |r: http::response::Builder, status: u16, text: String| {
        r.status(status).body(Full::new(Bytes::from(text))).unwrap()
    };
    // Padding, so that gzip has something to do.
    let pad = " ".repeat(64);
    if method != "GET" && method != "HEAD" {
        return reply(
            r.header("allow", "GET, HEAD"),
            405,
            "405 Method Not Allowed".into(),
        );
    }
    if let Some(range) = h("range") {
        let start: usize = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap_or(usize::MAX);
        if start >= FILE.len() {
            let r = r
                .header("cache-control", "max-age=3600")
                .header("content-range", format!("bytes */{}", FILE.len()));
            return reply(r, 416, "416 Range Not Satisfiable".into());
        }
    }
    if h("if-match").is_some_and(|m| m != ETAG) || h("if-unmodified-since").is_some() {
        return reply(
            r.header("cache-control", "max-age=3600"),
            412,
            "412 Precondition Failed".into(),
        );
    }
    let user = h("x-user").unwrap_or("nobody");
    match path {
        "/search" => reply(
            r,
            200,
            format!("results for [{}]{pad}", String::from_utf8_lossy(body)),
        ),
        "/me" => reply(
            r.header("cache-control", r#"max-age=60, x="a\"b", private"#),
            200,
            format!("hello {user}{pad}"),
        ),
        "/me-open" => reply(
            r.header("cache-control", r#"max-age=60, x="a, private"#),
            200,
            format!("hello {user}{pad}"),
        ),
        "/me-semicolon" => reply(
            r.header("cache-control", "max-age=60; private"),
            200,
            format!("hello {user}{pad}"),
        ),
        "/me-cdn" => reply(
            r.header("cdn-cache-control", "max-age=60, &&, private")
                .header("cache-control", "max-age=60"),
            200,
            format!("hello {user}{pad}"),
        ),
        "/me-cookie2" => reply(
            r.header("set-cookie2", format!("session={user}; Version=1")),
            200,
            format!("hello {user}{pad}"),
        ),
        "/later" if !created.load(Ordering::SeqCst) => reply(
            r.header("cache-control", "max-age=3600"),
            404,
            "404 Not Found".into(),
        ),
        _ => reply(r, 200, format!("{FILE}{pad}")),
    }
}

/// `uip-cache serve` in front of the origin; killed on drop.
struct Edge {
    process: ServeProcess,
    dir: std::path::PathBuf,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn edge(name: &str, created: Arc<AtomicBool>) -> Edge {
    let up = origin(created).await;
    let dir = std::env::temp_dir().join(format!("uip-cache-cpdos-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cache.yaml");
    std::fs::write(
        &config,
        "defaults:\n  negative_ttl: 1s\nadmin:\n  enabled: false\npolicies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    compression: {enabled: true, min_size: 16}\n",
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
    command.args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{up}"),
    ]);
    // Returns once the process listens, on a port it was given by the system.
    let process = tokio::task::spawn_blocking(move || ServeProcess::start(command))
        .await
        .unwrap();
    Edge { process, dir }
}

impl Edge {
    async fn send(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Got {
        let mut all = vec![("host", "shop.test")];
        all.extend_from_slice(headers);
        let addr = self.process.addr;
        client::send_body(addr, "GET", path, &all, Bytes::from(body.to_owned())).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        self.send(path, headers, "").await
    }

    /// A clean GET twice: the real 200, and then from the cache.
    async fn assert_clean(&self, path: &str) {
        let got = self.get(path, &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        assert!(got.text().starts_with(FILE), "{path}: {}", got.text());
        assert_ne!(
            got.x_cache(),
            "HIT",
            "{path}: the attack's answer was stored"
        );
        let again = self.get(path, &[]).await;
        assert_eq!((again.status, again.x_cache()), (200, "HIT"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_never_makes_an_error_everyones_answer() {
    let edge = edge("override", Arc::default()).await;
    for (i, header) in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ]
    .iter()
    .enumerate()
    {
        // A plain 405, and one a header middleware made public for an hour.
        for base in ["/product", "/global/product"] {
            let path = format!("{base}/{i}");
            let attack = edge.get(&path, &[(header, "DELETE")]).await;
            assert_eq!(attack.status, 405, "{header}");
            assert_eq!(attack.x_cache(), "BYPASS", "{header}");
            assert!(
                attack.cache_status().contains("fwd=method")
                    && attack.cache_status().contains("detail=method_override"),
                "{}",
                attack.cache_status()
            );
            edge.assert_clean(&path).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_lives_at_most_negative_ttl_and_never_on_the_policy_ttl() {
    let created = Arc::new(AtomicBool::new(false));
    let edge = edge("negative", created.clone()).await;
    // The origin's 404 says max-age=3600: kept for negative_ttl (1s) only.
    let first = edge.get("/later", &[]).await;
    assert_eq!(first.status, 404);
    created.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = edge.get("/later", &[]).await;
        if got.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 404 is still served: {}",
            got.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_preconditions_are_never_the_plain_keys() {
    let edge = edge("precondition", Arc::default()).await;
    let cases: [(&str, (&str, &str), u16); 2] = [
        ("/doc", ("if-match", "\"nope\""), 412),
        (
            "/page",
            ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            412,
        ),
    ];
    for (path, header, status) in cases {
        let attack = edge.get(path, &[header]).await;
        assert_eq!(attack.status, status, "{header:?}");
        assert!(
            attack
                .cache_status()
                .contains("detail=range_or_precondition"),
            "{}",
            attack.cache_status()
        );
        edge.assert_clean(path).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_never_makes_a_416_everyones_answer() {
    let edge = edge("range", Arc::default()).await;
    // The cache asks the origin for the whole (which would have failed the
    // Range with a cacheable 416) and answers the 416 itself, to this
    // request alone.
    let attack = edge.get("/file", &[("range", "bytes=999999-")]).await;
    assert_eq!(attack.status, 416, "{attack:?}");
    assert_eq!(attack.header("content-range"), Some("bytes */100"));
    // Every other client gets the whole, which the range's miss stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = edge.get("/file", &[]).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert!(got.text().starts_with(FILE), "{}", got.text());
        if got.x_cache() == "HIT" {
            break;
        }
        assert!(Instant::now() < deadline, "the whole is not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let part = edge.get("/file", &[("range", "bytes=0-9")]).await;
    assert_eq!((part.status, part.text()), (206, FILE[..10].to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_body_never_chooses_another_clients_answer() {
    let edge = edge("body", Arc::default()).await;
    let alice = edge.send("/search", &[], "alice").await;
    assert!(
        alice.text().starts_with("results for [alice]"),
        "{}",
        alice.text()
    );
    assert_eq!(alice.x_cache(), "BYPASS");
    assert!(
        alice.cache_status().contains("detail=request_body"),
        "{}",
        alice.cache_status()
    );
    let bob = edge.send("/search", &[], "bob").await;
    assert!(
        bob.text().starts_with("results for [bob]"),
        "{}",
        bob.text()
    );
    let plain = edge.get("/search", &[]).await;
    assert!(
        plain.text().starts_with("results for []"),
        "{}",
        plain.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_is_never_lost_in_a_hard_to_read_cache_control() {
    let edge = edge("private", Arc::default()).await;
    for path in ["/me", "/me-open", "/me-semicolon", "/me-cdn", "/me-cookie2"] {
        let alice = edge.get(path, &[("x-user", "alice")]).await;
        assert!(
            alice.text().starts_with("hello alice"),
            "{path}: {}",
            alice.text()
        );
        let bob = edge.get(path, &[("x-user", "bob")]).await;
        assert!(
            bob.text().starts_with("hello bob"),
            "{path}: bob got {} ({})",
            bob.text(),
            bob.cache_status()
        );
        assert!(
            !bob.headers_named("set-cookie2")
                .iter()
                .any(|v| v.contains("alice")),
            "{path}"
        );
    }
}
