//! `server.fast_hits`: HTTP/1.1 hits answered from the parsed request
//! head. Two proxies in front of one origin over real sockets, one with
//! it (the default) and one without; every request goes to both as the
//! same bytes, and the answers must be the same (status, fields, body;
//! `date` and `age` may differ by a second). Core's count of the answers
//! taken from the request head shows which path each proxy used.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{proxy, serve_with};
use uip_cache_server::slow::ClientLimits;

const DEADLINE: Duration = Duration::from_secs(15);

/// Bytes of `/big`: above the size sent from sealed memory.
const BIG: usize = 100 * 1024;

/// The origin: `/doc` (validators, a field given twice around another),
/// `/lang` (varies on `Accept-Language`), `/big`, `/nostore`; it counts
/// the requests it gets.
pub(crate) async fn origin(calls: Arc<AtomicUsize>) -> SocketAddr {
    serve(move |req: Request<Incoming>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        async move {
            let r = Response::builder()
                .header("cache-control", "max-age=60")
                .header("content-type", "text/plain");
            let r = match path.as_str() {
                "/doc" => r
                    .header("etag", "\"v1\"")
                    .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
                    .header("x-multi", "a")
                    .header("x-other", "o")
                    .header("x-multi", "b")
                    .body(Full::new(Bytes::from_static(b"document body"))),
                "/lang" => r
                    .header("vary", "accept-language")
                    .body(Full::new(Bytes::from(format!("lang:{lang}")))),
                "/big" => r.body(Full::new(Bytes::from(vec![b'z'; BIG]))),
                "/nostore" => Response::builder()
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from_static(b"fresh from origin"))),
                _ => Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"none"))),
            };
            r.unwrap()
        }
    })
    .await
}

/// An origin on a port of its own that answers every request with
/// `answer`, over HTTP/1.1.
async fn serve<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let answer = answer(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A proxy in front of `origin` with the `server:` lines given; its
/// address and cache. It stops when `stop` is dropped or sent.
async fn proxy_with(
    origin: SocketAddr,
    server: &str,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (SocketAddr, HttpCache) {
    let config = config(server);
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let addr = proxy_for(origin, &config, cache.clone(), stop).await;
    (addr, cache)
}

/// The config of [`proxy_with`]: every path cached for a minute, and the
/// `server:` lines given.
pub(crate) fn config(server: &str) -> CacheConfig {
    let yaml =
        format!("policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\nserver:\n{server}");
    CacheConfig::from_yaml_str(&yaml).unwrap()
}

/// A proxy serving `cache` (built for `config`) in front of `origin`; it
/// stops when `stop` is dropped or sent.
pub(crate) async fn proxy_for(
    origin: SocketAddr,
    config: &CacheConfig,
    cache: HttpCache,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> SocketAddr {
    let limits = ClientLimits::from_config(&config.server);
    let upstream = Upstream::new(
        format!("http://{origin}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = async move {
        match stop {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::spawn(serve_with(
        listener,
        proxy(cache, upstream),
        limits,
        Duration::from_secs(1),
        shutdown,
    ));
    addr
}

/// A response as read off the socket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Raw {
    pub(crate) status: u16,
    /// Fields in the order sent, names lower case.
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What must be the same from both paths: all but `date` and `age`
    /// (which may fall on either side of a second), and `age` within one.
    pub(crate) fn same_as(&self, other: &Raw) -> Result<(), String> {
        let strip = |r: &Raw| Raw {
            fields: r
                .fields
                .iter()
                .filter(|(n, _)| n != "date" && n != "age")
                .cloned()
                .collect(),
            ..r.clone()
        };
        if strip(self) != strip(other) {
            return Err(format!("{self:#?}\n!=\n{other:#?}"));
        }
        let age = |r: &Raw| r.field("age").map(|a| a.parse::<i64>().unwrap());
        match (age(self), age(other)) {
            (Some(a), Some(b)) if (a - b).abs() <= 1 => Ok(()),
            (None, None) => Ok(()),
            (a, b) => Err(format!("age {a:?} against {b:?}")),
        }
    }
}

/// Reads one response to a request of `method` from `stream`, whose
/// bytes past it stay in `pending`.
pub(crate) async fn read_response(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    method: &str,
) -> Raw {
    loop {
        if let Some((raw, used)) = parse_answer(pending, method).unwrap() {
            assert!(
                !raw.fields.iter().any(|(n, _)| n == "transfer-encoding"),
                "this origin's answers all have a length"
            );
            pending.drain(..used);
            return raw;
        }
        read_more(stream, pending).await;
    }
}

/// The whole answer to a request of `method` at the start of `bytes`, and
/// how many bytes it takes; `None` while it is not all there.
fn parse_answer(bytes: &[u8], method: &str) -> Result<Option<(Raw, usize)>, httparse::Error> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(head) = resp.parse(bytes)? else {
        return Ok(None);
    };
    let status = resp.code.unwrap();
    let fields: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|f| {
            // A value that is not UTF-8 as its bytes (after a NUL, which no
            // field value holds): two such values compare as their bytes.
            let value = String::from_utf8(f.value.to_vec())
                .unwrap_or_else(|e| format!("\0{:?}", e.as_bytes()));
            (f.name.to_ascii_lowercase(), value)
        })
        .collect();
    let length = fields
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
    let length = if method == "HEAD" || status == 304 || status == 204 {
        0
    } else {
        length
    };
    if bytes.len() < head + length {
        return Ok(None);
    }
    let raw = Raw {
        status,
        fields,
        body: bytes[head..head + length].to_vec(),
    };
    Ok(Some((raw, head + length)))
}

async fn read_more(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 16 * 1024];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(n > 0, "closed before the whole answer");
    pending.extend_from_slice(&buf[..n]);
}

/// Sends `request` (a whole head) on a new connection; its answer.
pub(crate) async fn exchange(addr: SocketAddr, request: &str) -> Raw {
    let method = request.split(' ').next().unwrap().to_ascii_uppercase();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream, &mut Vec::new(), &method).await
}

pub(crate) fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: cache.test\r\n{extra}\r\n")
}

struct Pair {
    fast: SocketAddr,
    general: SocketAddr,
    fast_cache: HttpCache,
    general_cache: HttpCache,
}

async fn pair() -> Pair {
    let origin = origin(Arc::default()).await;
    let (fast, fast_cache) = proxy_with(origin, "  fast_hits: true\n", None).await;
    let (general, general_cache) = proxy_with(origin, "  fast_hits: false\n", None).await;
    Pair {
        fast,
        general,
        fast_cache,
        general_cache,
    }
}

impl Pair {
    /// Sends `request` to both; asserts the answers are the same and
    /// returns the fast proxy's.
    async fn both(&self, request: &str) -> Raw {
        let fast = exchange(self.fast, request).await;
        let general = exchange(self.general, request).await;
        if let Err(e) = fast.same_as(&general) {
            panic!("{request:?}: the two paths answer differently:\n{e}");
        }
        fast
    }

    fn at_hand(&self) -> (u64, u64) {
        (
            self.fast_cache.stats().snapshot().answered_at_hand,
            self.general_cache.stats().snapshot().answered_at_hand,
        )
    }
}

#[tokio::test]
async fn hits_from_the_request_head_are_the_general_paths_answers() {
    let p = pair().await;
    // Stored first: misses, through the general path on both.
    for path in ["/doc", "/big", "/doc?x=1"] {
        let r = p.both(&get(path, "")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.field("x-cache"), Some("MISS"));
    }
    for lang in ["fr", "de"] {
        p.both(&get("/lang", &format!("accept-language: {lang}\r\n")))
            .await;
    }
    assert_eq!(p.at_hand(), (0, 0));

    // Plain hits, each taken from its head on the fast proxy only.
    let hits: &[(String, u16, &[u8])] = &[
        (get("/doc", ""), 200, b"document body"),
        (
            "HEAD /doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".into(),
            200,
            b"",
        ),
        (get("/doc", "if-none-match: \"v1\"\r\n"), 304, b""),
        (
            get(
                "/doc",
                "if-modified-since: Tue, 01 Jan 2030 00:00:00 GMT\r\n",
            ),
            304,
            b"",
        ),
        (get("/lang", "accept-language: fr\r\n"), 200, b"lang:fr"),
        (get("/lang", "accept-language: de\r\n"), 200, b"lang:de"),
        (
            get("/doc?x=1", "connection: keep-alive\r\n"),
            200,
            b"document body",
        ),
    ];
    for (i, (request, status, body)) in hits.iter().enumerate() {
        let r = p.both(request).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (*status, *body),
            "{request:?}"
        );
        assert_eq!(r.field("x-cache"), Some("HIT"), "{request:?}");
        assert_eq!(p.at_hand(), (i as u64 + 1, 0), "{request:?}");
    }
    // A field the origin gave twice around another comes out grouped,
    // as hyper writes a header map.
    let r = p.both(&get("/doc", "")).await;
    let names: Vec<&str> = r.fields.iter().map(|(n, _)| n.as_str()).collect();
    let first = names.iter().position(|n| *n == "x-multi").unwrap();
    assert_eq!(&names[first..first + 2], ["x-multi", "x-multi"]);
    assert_eq!(r.field("content-length"), Some("13"));
    // A body sent from sealed memory.
    let r = p.both(&get("/big", "")).await;
    assert_eq!(r.body, vec![b'z'; BIG]);
    let taken = p.at_hand().0;
    assert_eq!(taken, hits.len() as u64 + 2);

    // Requests the general path must take, answered the same on both.
    let general = [
        get("/doc", "range: bytes=0-3\r\n"),
        get("/doc", "cache-control: no-cache\r\n"),
        get("/doc", "connection: close\r\n"),
        get(
            "/doc",
            "connection: accept-language\r\naccept-language: fr\r\n",
        ),
        get("/doc", "x-forwarded-host: evil.test\r\n"),
        get("/doc", "cookie: a=1\r\ncookie: b=2\r\n"),
        get("/doc", "content-length: 0\r\n"),
        get("/nostore", ""),
        get("/lang", "accept-language: it\r\n"),
        "get /doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".into(),
        "GET http://cache.test/doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".into(),
        "GET /doc HTTP/1.0\r\nhost: cache.test\r\n\r\n".into(),
        "GET /doc HTTP/1.1\r\nhost: cache.test\r\nhost: other.test\r\n\r\n".into(),
        "GET /doc HTTP/1.1\r\n\r\n".into(),
    ];
    for request in &general {
        p.both(request).await;
        assert_eq!(p.at_hand(), (taken, 0), "{request:?} took the fast path");
    }
}

#[tokio::test]
async fn a_request_not_answered_at_hand_is_lent_to_hyper_and_the_connection_comes_back() {
    let p = pair().await;
    p.both(&get("/doc", "")).await;
    let before = p.fast_cache.stats().snapshot();
    // In one write: a hit, a request passed through, a miss whose large
    // body streams (both answered by hyper, the connection lent to it for
    // each), a range (the general path's too), and a hit taken from its
    // head again once the connection is back.
    let mut stream = TcpStream::connect(p.fast).await.unwrap();
    let requests = [
        get("/doc", ""),
        get("/nostore", ""),
        get("/big", ""),
        get("/doc", "range: bytes=0-7\r\n"),
        get("/doc", ""),
    ]
    .concat();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(read_response(&mut stream, &mut pending, "GET").await);
    }
    assert_eq!(answers[0].body, b"document body");
    assert_eq!(answers[1].body, b"fresh from origin");
    assert_eq!(answers[2].body, vec![b'z'; BIG]);
    assert_eq!(
        (answers[3].status, &answers[3].body[..]),
        (206, &b"document"[..])
    );
    assert_eq!(answers[4].body, b"document body");
    assert!(answers.iter().all(|a| a.field("connection").is_none()));
    let after = p.fast_cache.stats().snapshot();
    // Each request counted once, by the path that answered it: the first
    // and last hits from their heads, the range by the general path.
    assert_eq!(after.answered_at_hand - before.answered_at_hand, 2);
    assert_eq!(after.hits - before.hits, 3);
    assert_eq!(after.misses - before.misses, 2);
    // The connection stays usable, and on the fast path.
    stream.write_all(get("/doc", "").as_bytes()).await.unwrap();
    let last = read_response(&mut stream, &mut pending, "GET").await;
    assert_eq!(last.body, b"document body");
    let end = p.fast_cache.stats().snapshot();
    assert_eq!(end.answered_at_hand - after.answered_at_hand, 1);
}

#[tokio::test]
async fn a_request_that_closes_its_connection_ends_the_fast_path_for_it() {
    let p = pair().await;
    p.both(&get("/doc", "")).await;
    let before = p.fast_cache.stats().snapshot().answered_at_hand;
    let mut stream = TcpStream::connect(p.fast).await.unwrap();
    let requests = [get("/doc", ""), get("/doc", "connection: close\r\n")].concat();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let first = read_response(&mut stream, &mut pending, "GET").await;
    let second = read_response(&mut stream, &mut pending, "GET").await;
    assert_eq!(
        (&first.body[..], &second.body[..]),
        (&b"document body"[..], &b"document body"[..])
    );
    // hyper answered the second and closes, as it would have alone.
    assert_eq!(second.field("connection"), Some("close"));
    assert_eq!(p.fast_cache.stats().snapshot().answered_at_hand - before, 1);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn hits_in_one_write_are_answered_in_order_on_the_fast_path() {
    let p = pair().await;
    p.both(&get("/doc", "")).await;
    p.both(&get("/big", "")).await;
    let mut stream = TcpStream::connect(p.fast).await.unwrap();
    let requests = [
        get("/doc", ""),
        get("/big", ""),
        "HEAD /doc HTTP/1.1\r\nhost: cache.test\r\n\r\n".into(),
        get("/doc", ""),
    ]
    .concat();
    // Cut at every few bytes: heads arrive in pieces too.
    for piece in requests.as_bytes().chunks(7) {
        stream.write_all(piece).await.unwrap();
    }
    let mut pending = Vec::new();
    for (method, body) in [
        ("GET", &b"document body"[..]),
        ("GET", &vec![b'z'; BIG][..]),
        ("HEAD", b""),
        ("GET", b"document body"),
    ] {
        let r = read_response(&mut stream, &mut pending, method).await;
        assert_eq!(r.body, body);
    }
    assert_eq!(p.at_hand().0, 4);
}

#[tokio::test]
async fn a_stopping_server_closes_idle_fast_connections_and_finishes_answers() {
    let origin = origin(Arc::default()).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (addr, _cache) = proxy_with(origin, "  fast_hits: true\n", Some(rx)).await;
    exchange(addr, &get("/doc", "")).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(get("/doc", "").as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let r = read_response(&mut idle, &mut pending, "GET").await;
    assert_eq!(r.body, b"document body");
    tx.send(()).unwrap();
    // The idle connection is closed, not kept for the grace period.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, idle.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing but the close");
}

/// The whole answers at the start of `bytes` to requests of `methods`.
fn parse_answers(mut bytes: &[u8], methods: &[&str]) -> Vec<Raw> {
    let mut out = Vec::new();
    for method in methods {
        let Ok(Some((raw, used))) = parse_answer(bytes, method) else {
            break;
        };
        out.push(raw);
        bytes = &bytes[used..];
    }
    out
}

/// Sends `bytes` on a new connection and reads the answers to requests
/// of `methods` until they are all there or the connection closes.
async fn send_raw(addr: SocketAddr, bytes: &[u8], methods: &[&str]) -> Vec<Raw> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    loop {
        let answers = parse_answers(&got, methods);
        if answers.len() == methods.len() {
            return answers;
        }
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return answers,
        }
    }
}

/// A small deterministic generator (xorshift).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    pub(crate) fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// One request head of odd but plausible shapes; its method.
fn odd_request(rng: &mut Rng) -> (String, &'static str) {
    const METHODS: [&str; 4] = ["GET", "GET", "HEAD", "get"];
    const TARGETS: [&str; 10] = [
        "/doc",
        "/doc",
        "/lang",
        "/doc?x=1",
        "//doc",
        "/doc#frag",
        "/./doc",
        "http://cache.test/doc",
        "/%64oc",
        "/doc?",
    ];
    const VERSIONS: [&str; 3] = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"];
    const FIELDS: [&str; 30] = [
        "host: cache.test",
        "Host: cache.test",
        "HOST: other.test",
        "host: cache.test:80",
        "connection: keep-alive",
        "Connection: Keep-Alive",
        "connection: close",
        "connection: accept-language",
        "connection: keep-alive, accept-language",
        "accept-language: fr",
        "Accept-Language: de",
        "accept-language: it",
        "accept-language:fr",
        "accept-language: fr ",
        "if-none-match: \"v1\"",
        "cache-control: no-cache",
        "cache-control: max-age=0",
        "pragma: no-cache",
        "x-forwarded-host: evil.test",
        "X_Forwarded_Host: evil.test",
        "forwarded: host=evil.test",
        "x-forwarded-proto: https",
        "cookie: a=1",
        "authorization: Basic eDp5",
        "content-length: 0",
        "range: bytes=0-2",
        "x-http-method-override: POST",
        "accept-encoding: gzip",
        "keep-alive: timeout=5",
        "te: trailers",
    ];
    let method = rng.pick(&METHODS);
    let eol = rng.pick(&["\r\n", "\r\n", "\r\n", "\n"]);
    let mut head = format!(
        "{method} {} {}{eol}",
        rng.pick(&TARGETS),
        rng.pick(&VERSIONS)
    );
    for _ in 0..rng.below(5) {
        head.push_str(rng.pick(&FIELDS));
        head.push_str(eol);
    }
    if rng.below(4) != 0 {
        head.push_str("host: cache.test");
        head.push_str(eol);
    }
    head.push_str(eol);
    let method = if method == "HEAD" { "HEAD" } else { "GET" };
    (head, method)
}

/// Differential: many odd heads, alone and two in one write, get the same
/// answers from a proxy with `fast_hits` and one without.
#[tokio::test]
async fn odd_request_heads_get_the_same_answers_on_both_paths() {
    let p = pair().await;
    for path in ["/doc", "/doc?x=1"] {
        p.both(&get(path, "")).await;
    }
    for lang in ["fr", "de"] {
        p.both(&get("/lang", &format!("accept-language: {lang}\r\n")))
            .await;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let n = 1 + rng.below(2);
        let mut bytes = String::new();
        let mut methods = Vec::new();
        for _ in 0..n {
            let (head, method) = odd_request(&mut rng);
            bytes.push_str(&head);
            methods.push(method);
        }
        let fast = send_raw(p.fast, bytes.as_bytes(), &methods).await;
        let general = send_raw(p.general, bytes.as_bytes(), &methods).await;
        assert_eq!(
            fast.len(),
            general.len(),
            "round {round}: {bytes:?}: {fast:#?}\n!=\n{general:#?}"
        );
        // `cache-status` holds the ttl left, which may fall on either
        // side of a second as `age` does.
        let timeless = |r: &Raw| Raw {
            fields: r
                .fields
                .iter()
                .filter(|(n, _)| n != "cache-status")
                .cloned()
                .collect(),
            ..r.clone()
        };
        for (f, g) in fast.iter().zip(&general) {
            if let Err(e) = timeless(f).same_as(&timeless(g)) {
                panic!("round {round}: {bytes:?}: the two paths answer differently:\n{e}");
            }
        }
    }
    assert!(p.at_hand().0 > 0, "some took the fast path");
}

/// Over TLS, a connection the server closes once idle (here: as it stops)
/// ends with the TLS close as hyper's does (`close_notify`), whichever
/// path answered its requests; a client sees a clean end, not a
/// truncation.
#[tokio::test]
async fn an_idle_tls_connection_closes_cleanly_after_fast_hits() {
    use crate::tls_support::{client_config, connect, Ca, TempDir};

    let origin = origin(Arc::default()).await;
    let (ca, dir) = (Ca::new("fast CA"), TempDir::new("tls-fast-hits"));
    let certificates = ca.certificates(&dir, &["a.test"]);
    for fast in [false, true] {
        let yaml = format!(
            "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\nserver:\n  fast_hits: {fast}\n"
        );
        let config = CacheConfig::from_yaml_str(&yaml).unwrap();
        let cache = HttpCache::with_memory_store(&config).unwrap();
        let upstream = Upstream::new(
            format!("http://{origin}").parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        let service = proxy(cache.clone(), upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let certificates = certificates.clone();
        tokio::spawn(async move {
            uip_cache_server::server::serve_tls(
                listener,
                service,
                &certificates,
                Default::default(),
                Duration::from_secs(1),
                async move {
                    let _ = rx.await;
                },
            )
            .await
        });
        // The first connection stores `/doc` (its miss goes to hyper, and
        // so do its later requests); the second asks for two hits.
        let mut tls = None;
        for n in [1usize, 2] {
            let mut c = connect(
                addr,
                "a.test",
                client_config(ca.roots(), None, &[b"http/1.1"]),
            )
            .await
            .unwrap();
            let methods = vec!["GET"; n];
            let mut got = Vec::new();
            c.write_all(get("/doc", "").repeat(n).as_bytes())
                .await
                .unwrap();
            while parse_answers(&got, &methods).len() < n {
                let mut buf = [0u8; 4096];
                let read = tokio::time::timeout(DEADLINE, c.read(&mut buf))
                    .await
                    .expect("answers in time")
                    .unwrap();
                assert!(read > 0);
                got.extend_from_slice(&buf[..read]);
            }
            tls = Some(c);
        }
        let mut tls = tls.unwrap();
        assert_eq!(
            cache.stats().snapshot().answered_at_hand,
            if fast { 2 } else { 0 },
            "fast_hits: {fast}"
        );
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let end = tokio::time::timeout(DEADLINE, tls.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(end, Ok(0)),
            "fast_hits: {fast}: the connection ended with {end:?}, not a TLS close"
        );
    }
}

/// An origin whose `/hang` never answers; it counts the answers it was
/// made to give up (their futures dropped when the proxy went away).
async fn hanging_origin(given_up: Arc<AtomicUsize>) -> SocketAddr {
    struct GiveUp(Arc<AtomicUsize>);
    impl Drop for GiveUp {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    serve(move |_: Request<Incoming>| {
        let guard = GiveUp(given_up.clone());
        async move {
            std::future::pending::<()>().await;
            drop(guard);
            Response::new(Full::new(Bytes::new()))
        }
    })
    .await
}

#[tokio::test]
async fn a_client_that_closes_while_its_miss_waits_has_it_given_up_on_both_paths() {
    for server in ["  fast_hits: false\n", "  fast_hits: true\n"] {
        let given_up = Arc::new(AtomicUsize::new(0));
        let origin = hanging_origin(given_up.clone()).await;
        let (addr, _cache) = proxy_with(origin, server, None).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(get("/hang", "").as_bytes()).await.unwrap();
        // The proxy has begun the request: it reached the origin.
        let begun = async {
            while Arc::strong_count(&given_up) < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(DEADLINE, begun)
            .await
            .expect("the request reached the origin");
        drop(stream);
        let gave_up = async {
            while given_up.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        assert!(
            tokio::time::timeout(DEADLINE, gave_up).await.is_ok(),
            "{server:?}: the request outlived its client"
        );
    }
}

/// Sizes of the HTTP/1.0 origin's answer: about what the sockets between
/// the proxy and a client that does not read yet hold (its receive buffer
/// made small), and hyper's buffer with them.
const OLD_BIG: [usize; 3] = [96 * 1024, 400 * 1024, 800 * 1024];

/// An HTTP/1.0 origin: each answer's body ends when it closes.
async fn old_origin(size: usize) -> SocketAddr {
    let (addr, _) = crate::proxy::raw_upstream(move |_| {
        let mut answer = b"HTTP/1.0 200 OK\r\ncache-control: no-store\r\n\r\n".to_vec();
        answer.resize(answer.len() + size, b'o');
        Some(answer)
    })
    .await;
    addr
}

/// hyper ends an answer whose length is its connection's close by
/// closing, on either path; a request pipelined behind it is not answered
/// into that body.
#[tokio::test]
async fn an_answer_that_ends_with_its_connection_closes_it_on_both_paths() {
    for (size, server) in OLD_BIG.into_iter().flat_map(|size| {
        [
            (size, "  fast_hits: false\n"),
            (size, "  fast_hits: true\n"),
        ]
    }) {
        let origin = old_origin(size).await;
        let (addr, _cache) = proxy_with(origin, server, None).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let requests = [get("/old", ""), get("/old", "")].concat();
        stream.write_all(requests.as_bytes()).await.unwrap();
        // Read nothing for a while: the proxy's writes wait on this client.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut all = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut all)).await;
        assert!(
            read.is_ok(),
            "{server:?} {size}: the connection was not closed"
        );
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        assert!(all.starts_with(b"HTTP/1.0 200"), "{server:?}");
        assert_eq!(all.len() - end, size, "{server:?}: the body's length");
    }
}

/// An origin whose `/gate` answers once `open` is notified, and anything
/// else at once; it counts the requests it gets.
async fn gated_origin(open: Arc<tokio::sync::Notify>, calls: Arc<AtomicUsize>) -> SocketAddr {
    serve(move |req: Request<Incoming>| {
        let (open, calls) = (open.clone(), calls.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            if path == "/gate" {
                open.notified().await;
            }
            let r = Response::builder()
                .header("cache-control", "no-store")
                .body(Full::new(Bytes::from(format!("answer {path}"))));
            r.unwrap()
        }
    })
    .await
}

/// A request the client sends while the one before is lent to hyper and
/// waits on the origin is answered after it, in order.
#[tokio::test]
async fn a_request_sent_while_one_is_lent_is_answered_after_it() {
    let (open, calls) = (Arc::new(tokio::sync::Notify::new()), Arc::default());
    let origin = gated_origin(open.clone(), Arc::clone(&calls)).await;
    let (addr, _cache) = proxy_with(origin, "  fast_hits: true\n", None).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(get("/gate", "").as_bytes()).await.unwrap();
    let reached = async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, reached)
        .await
        .expect("the first request reached the origin");
    stream.write_all(get("/next", "").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    open.notify_one();
    let mut pending = Vec::new();
    let first = read_response(&mut stream, &mut pending, "GET").await;
    let second = read_response(&mut stream, &mut pending, "GET").await;
    assert_eq!(
        (&first.body[..], &second.body[..]),
        (&b"answer /gate"[..], &b"answer /next"[..])
    );
    stream.write_all(get("/last", "").as_bytes()).await.unwrap();
    let third = read_response(&mut stream, &mut pending, "GET").await;
    assert_eq!(third.body, b"answer /last");
    assert!(pending.is_empty());
}

#[tokio::test]
async fn a_connection_whose_requests_are_not_hits_goes_to_hyper_for_good() {
    let p = pair().await;
    p.both(&get("/doc", "")).await;
    // Lent four times in a row, the connection still answers hits from
    // their heads; lent a fifth time, it is hyper's for good.
    for (passes, at_hand) in [(4, 1), (5, 0)] {
        let before = p.fast_cache.stats().snapshot();
        let mut stream = TcpStream::connect(p.fast).await.unwrap();
        let mut requests = vec![get("/nostore", ""); passes];
        requests.push(get("/doc", ""));
        stream
            .write_all(requests.concat().as_bytes())
            .await
            .unwrap();
        let mut pending = Vec::new();
        for _ in 0..passes {
            let r = read_response(&mut stream, &mut pending, "GET").await;
            assert_eq!(r.body, b"fresh from origin");
        }
        let hit = read_response(&mut stream, &mut pending, "GET").await;
        assert_eq!(hit.field("x-cache"), Some("HIT"));
        let after = p.fast_cache.stats().snapshot();
        assert_eq!(
            after.answered_at_hand - before.answered_at_hand,
            at_hand,
            "after {passes}"
        );
        assert_eq!(after.hits - before.hits, 1);
    }
}
