//! Requests no policy takes, relayed to the backend by the fast loop
//! itself. A scripted origin over real sockets answers with exact bytes
//! (framings, hop-by-hop fields, 1xx, bodies cut short, a second response
//! smuggled after the first); two proxies stand in front of it, one that
//! relays (the default) and one with `fast_hits: false`, whose general
//! path is the reference: every answer must be the same from both, and
//! no byte of one exchange may reach another.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{proxy, serve_with};
use uip_cache_server::slow::ClientLimits;

const DEADLINE: Duration = Duration::from_secs(15);

/// Bytes of `/huge`: far more than the sockets on the way hold.
const HUGE: usize = 32 << 20;

/// What the scripted origin saw: connections accepted, and each request
/// head with the number of the connection it came on.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Requests under `/hang` whose connection the proxy closed.
    given_up: AtomicUsize,
    /// Opened by a test for `/gated`'s body to go.
    gate: tokio::sync::Notify,
    /// Late bytes written after an answer (`/late-*`).
    late: AtomicUsize,
    /// Answers made by a test, by path: the bytes, and whether the
    /// connection closes after them.
    made: Mutex<std::collections::HashMap<String, (Vec<u8>, bool)>>,
    requests: Mutex<Vec<(usize, String)>>,
}

impl Seen {
    fn requests(&self) -> Vec<(usize, String)> {
        self.requests.lock().unwrap().clone()
    }
}

/// The answer of the scripted origin to a path, as bytes, and whether it
/// closes the connection after it.
fn script(path: &str) -> (Vec<u8>, bool) {
    let s = |b: &str| b.as_bytes().to_vec();
    match path {
        "/length" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: timeout=5\r\nSet-Cookie: s=1\r\nX-A: 2\r\n\r\nhello"),
            false,
        ),
        "/chunked" => (
            s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: t\r\n\r\n"),
            false,
        ),
        "/close" => (
            s("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"),
            true,
        ),
        "/smuggle" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"),
            false,
        ),
        "/te-and-length" => (
            s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
            false,
        ),
        "/interim" => (
            s("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-h\r\nX-H: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            false,
        ),
        "/no-content" => (s("HTTP/1.1 204 No Content\r\nX-B: 1\r\n\r\n"), false),
        "/not-modified" => (
            s("HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\nContent-Length: 40\r\n\r\n"),
            false,
        ),
        "/old" => (s("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"), false),
        "/short" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"),
            true,
        ),
        "/bad-chunks" => (
            s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n"),
            true,
        ),
        "/bad-length" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello"),
            false,
        ),
        "/not-http" => (s("SSH-2.0-OpenSSH\r\n\r\n"), true),
        "/idle-closed" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce"),
            true,
        ),
        "/many-fields" => {
            let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
            for i in 0..90 {
                head.push_str(&format!("X-F{i}: {i}\r\n"));
            }
            head.push_str("\r\nok");
            (head.into_bytes(), false)
        }
        "/huge" => {
            let mut all = format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n").into_bytes();
            all.resize(all.len() + HUGE, b'h');
            (all, false)
        }
        "/endless-interims" => {
            let mut all = "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n".repeat(300);
            all.push_str("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
            (all.into_bytes(), false)
        }
        "/low-status" => (s("HTTP/1.1 042 Odd\r\nA: b\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false),
        "/two-lengths" => (
            s("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"),
            false,
        ),
        "/te-trailing-comma" => (
            s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\nraw until close"),
            true,
        ),
        "/head-bad-length" => (s("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"), false),
        "/te-bad-length" => (
            s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: abc\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
            true,
        ),
        "/big-head" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                "v".repeat(100 * 1024)
            );
            (head.into_bytes(), false)
        }
        "/old-chunked" => (
            s("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
            true,
        ),
        _ => (s("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnone"), false),
    }
}

/// The scripted origin: answers each request head with [`script`]; a
/// path under `/hang` is never answered (its connection counted as given
/// up once the proxy closes it).
async fn origin(seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let id = seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut more = [0u8; 4096];
                        match stream.read(&mut more).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&more[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    seen.requests.lock().unwrap().push((id, head));
                    if path == "/stall-body" {
                        // Part of the body, then nothing until the proxy
                        // closes the connection.
                        let part = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab";
                        if stream.write_all(part).await.is_err() {
                            return;
                        }
                    }
                    if path.starts_with("/hang") || path == "/stall-body" {
                        let mut rest = [0u8; 64];
                        while let Ok(n) = stream.read(&mut rest).await {
                            if n == 0 {
                                break;
                            }
                        }
                        seen.given_up.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if path == "/gated" {
                        // The head, then the body once the test opens the gate.
                        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if stream.write_all(head).await.is_err() {
                            return;
                        }
                        seen.gate.notified().await;
                        let _ = stream.write_all(b"3\r\nabc\r\n0\r\n\r\n").await;
                        continue;
                    }
                    if let Some(late) = match path.as_str() {
                        // A whole answer, then, once the proxy has kept the
                        // connection, bytes it must never give anyone.
                        "/late-poison" => Some(&b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"[..]),
                        "/late-408" => Some(&b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..]),
                        _ => None,
                    } {
                        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 100_000).into_bytes();
                        answer.resize(answer.len() + 100_000, b'b');
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = stream.write_all(late).await;
                        seen.late.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let made = seen.made.lock().unwrap().get(&path).cloned();
                    let (bytes, close) = made.unwrap_or_else(|| script(&path));
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Waits until `done` says so, at most [`DEADLINE`]; `what` names it.
async fn wait(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

/// A proxy in front of `origin` caching only `/cached/*`, relaying or not
/// (`fast_hits`), with a response timeout of `timeout`.
async fn proxy_to(origin: SocketAddr, fast: bool, timeout: Duration) -> (SocketAddr, HttpCache) {
    proxy_with(origin, fast, timeout, "").await
}

/// [`proxy_to`] with more `server:` lines.
async fn proxy_with(
    origin: SocketAddr,
    fast: bool,
    timeout: Duration,
    server: &str,
) -> (SocketAddr, HttpCache) {
    let yaml = format!(
        "policies:\n  - name: c\n    pattern: \"/cached/*\"\n    ttl: 60\nserver:\n  fast_hits: {fast}\n{server}"
    );
    let config = CacheConfig::from_yaml_str(&yaml).unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let limits = ClientLimits::from_config(&config.server);
    let upstream = Upstream::new(
        format!("http://{origin}").parse().unwrap(),
        Duration::from_secs(1),
        timeout,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(
        listener,
        proxy(cache.clone(), upstream),
        limits,
        Duration::from_secs(1),
        std::future::pending::<()>(),
    ));
    (addr, cache)
}

/// A response as the client read it: interim statuses first, then the
/// final status, its fields (names lower case, in order) and its body
/// (chunks decoded).
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    interims: Vec<(u16, Vec<(String, String)>)>,
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The fields as a sorted list without `date` (from either side of a
    /// second); the order of distinct names is not the answer's meaning.
    fn comparable(&self) -> Answer {
        self.without(&["date"])
    }

    /// [`Answer::comparable`] without how the body was framed (chunks, or
    /// up to the close: both give the same body).
    fn unframed(&self) -> Answer {
        self.without(&["date", "transfer-encoding"])
    }

    /// The answer with its fields sorted and those named `dropped` left out.
    fn without(&self, dropped: &[&str]) -> Answer {
        let mut fields: Vec<(String, String)> = self
            .fields
            .iter()
            .filter(|(n, _)| !dropped.contains(&n.as_str()))
            .cloned()
            .collect();
        fields.sort();
        Answer {
            fields,
            ..self.clone()
        }
    }
}

/// A client's stream: plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A client connection reading answers off the socket.
struct Client {
    stream: Box<dyn Io>,
    pending: Vec<u8>,
}

impl Client {
    async fn to(addr: SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).await.unwrap())
    }

    fn over(stream: impl Io + 'static) -> Client {
        Client {
            stream: Box::new(stream),
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, extra: &str) {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: example.test\r\n{extra}\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
    }

    async fn more(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut buf))
            .await
            .expect("bytes or a close in time")
            .unwrap_or(0);
        self.pending.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// The next answer, or `None` when the connection closed before a
    /// whole one.
    async fn answer(&mut self, method: &str) -> Option<Answer> {
        let mut interims = Vec::new();
        loop {
            match parse(&self.pending, method) {
                Parsed::Interim(status, fields, used) => {
                    interims.push((status, fields));
                    self.pending.drain(..used);
                }
                Parsed::Whole(mut answer, used) => {
                    self.pending.drain(..used);
                    answer.interims = interims;
                    return Some(answer);
                }
                Parsed::Partial => {
                    if !self.more().await {
                        // Closed: a whole head without a length has its
                        // body up to the close.
                        return until_close(&self.pending, method).map(|mut a| {
                            a.interims = interims;
                            a
                        });
                    }
                }
            }
        }
    }

    async fn get(&mut self, method: &str, path: &str) -> Option<Answer> {
        self.send(method, path, "").await;
        self.answer(method).await
    }
}

/// The answer in `bytes` whose body ends where the connection closed (a
/// head with neither `Content-Length` nor `Transfer-Encoding`).
fn until_close(bytes: &[u8], method: &str) -> Option<Answer> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(head)) = resp.parse(bytes) else {
        return None;
    };
    let framed = resp.headers.iter().any(|f| {
        f.name.eq_ignore_ascii_case("content-length")
            || f.name.eq_ignore_ascii_case("transfer-encoding")
    });
    if framed || method == "HEAD" || resp.code? < 200 {
        return None;
    }
    Some(Answer {
        interims: Vec::new(),
        status: resp.code?,
        fields: resp
            .headers
            .iter()
            .map(|f| {
                (
                    f.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(f.value).into_owned(),
                )
            })
            .collect(),
        body: bytes[head..].to_vec(),
    })
}

enum Parsed {
    Interim(u16, Vec<(String, String)>, usize),
    Whole(Answer, usize),
    Partial,
}

fn parse(bytes: &[u8], method: &str) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut fields);
    let head = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => panic!("not a response: {e}"),
    };
    let status = resp.code.unwrap();
    let fields: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|f| {
            (
                f.name.to_ascii_lowercase(),
                String::from_utf8_lossy(f.value).into_owned(),
            )
        })
        .collect();
    if status < 200 {
        return Parsed::Interim(status, fields, head);
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut answer = Answer {
        interims: Vec::new(),
        status,
        fields: fields.clone(),
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 {
        return Parsed::Whole(answer, head);
    }
    if get("transfer-encoding").as_deref() == Some("chunked") {
        let mut at = head;
        loop {
            let Some(line) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
                return Parsed::Partial;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&bytes[at..at + line]).unwrap(), 16)
                    .unwrap();
            at += line + 2;
            if bytes.len() < at + size + 2 {
                return Parsed::Partial;
            }
            if size == 0 {
                assert_eq!(&bytes[at..at + 2], b"\r\n", "no trailer goes to the client");
                return Parsed::Whole(answer, at + 2);
            }
            answer.body.extend_from_slice(&bytes[at..at + size]);
            at += size + 2;
        }
    }
    // (`5, 5` is one length given twice.) No length: the body ends at
    // the close.
    let Some(length) = get("content-length").map(|v| {
        v.split(',')
            .next()
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    }) else {
        return Parsed::Partial;
    };
    if bytes.len() < head + length {
        return Parsed::Partial;
    }
    answer.body = bytes[head..head + length].to_vec();
    Parsed::Whole(answer, head + length)
}

/// The origin, a relaying proxy and the general path's.
struct Rig {
    seen: Arc<Seen>,
    fast: SocketAddr,
    fast_cache: HttpCache,
    general: SocketAddr,
}

async fn rig(timeout: Duration) -> Rig {
    let seen = Arc::new(Seen::default());
    let origin = origin(seen.clone()).await;
    let (fast, fast_cache) = proxy_to(origin, true, timeout).await;
    let (general, _) = proxy_to(origin, false, timeout).await;
    Rig {
        seen,
        fast,
        fast_cache,
        general,
    }
}

#[tokio::test]
async fn relayed_answers_are_the_general_paths_answers() {
    let rig = rig(Duration::from_secs(30)).await;
    for (method, path) in [
        ("GET", "/length"),
        ("HEAD", "/length"),
        ("GET", "/chunked"),
        ("HEAD", "/chunked"),
        ("GET", "/close"),
        ("GET", "/smuggle"),
        ("GET", "/te-and-length"),
        ("GET", "/interim"),
        ("GET", "/no-content"),
        ("GET", "/not-modified"),
        ("GET", "/old"),
        ("GET", "/missing?q=1"),
        ("GET", "/bad-length"),
        ("GET", "/not-http"),
        ("GET", "/many-fields"),
        ("GET", "/endless-interims"),
        ("GET", "/low-status"),
        ("HEAD", "/low-status"),
        ("GET", "/two-lengths"),
        ("HEAD", "/te-and-length"),
        ("GET", "/old-chunked"),
        ("HEAD", "/old-chunked"),
        ("GET", "/te-bad-length"),
        ("GET", "/te-trailing-comma"),
        ("HEAD", "/head-bad-length"),
        ("GET", "/big-head"),
    ] {
        let mut fast = Client::to(rig.fast).await;
        let mut general = Client::to(rig.general).await;
        let a = fast.get(method, path).await.expect("a relayed answer");
        let b = general
            .get(method, path)
            .await
            .unwrap_or_else(|| panic!("a general answer to {method} {path}"));
        assert_eq!(
            a.comparable(),
            b.comparable(),
            "{method} {path}: relayed, then general"
        );
        // The connection goes on: a second request on it is answered.
        let again = fast.get("GET", "/length").await.expect("the next answer");
        assert_eq!((again.status, again.body.as_slice()), (200, &b"hello"[..]));
    }
    let s = rig.fast_cache.stats().snapshot();
    assert_eq!(s.answered_at_hand, 0);
    // Every request was one bypass, counted once.
    assert_eq!(s.bypasses, 52, "{s:?}");
}

#[tokio::test]
async fn the_answers_fields_are_edited_as_the_general_path_edits_them() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    let a = fast.get("GET", "/length").await.unwrap();
    let names: Vec<&str> = a.fields.iter().map(|(n, _)| n.as_str()).collect();
    for gone in ["connection", "keep-alive", "x-drop"] {
        assert!(!names.contains(&gone), "{gone} in {names:?}");
    }
    assert_eq!(a.field("via"), Some("1.1 uip-cache"));
    assert_eq!(a.field("x-cache"), Some("BYPASS"));
    assert_eq!(
        a.field("cache-status"),
        Some("uip-cache; fwd=bypass; detail=no_policy")
    );
    let repeated: Vec<&str> = a
        .fields
        .iter()
        .filter(|(n, _)| n == "x-a")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(repeated, ["1", "2"]);
    // Chunks go on as chunks, without their extensions or trailers.
    let c = fast.get("GET", "/chunked").await.unwrap();
    assert_eq!(c.body, b"hello world");
    assert_eq!(c.field("transfer-encoding"), Some("chunked"));
    assert!(c.field("trailer").is_none() && c.field("x-t").is_none());
    // Two equal lengths: one goes on, for a HEAD too.
    for method in ["GET", "HEAD"] {
        let l = fast.get(method, "/two-lengths").await.unwrap();
        let lengths: Vec<&str> = l
            .fields
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(lengths, ["5"], "{method}");
    }
    // A coding and a length: the coding frames it, the length is gone.
    let t = fast.get("GET", "/te-and-length").await.unwrap();
    assert_eq!(t.body, b"ab");
    assert!(t.field("content-length").is_none());
    // 103 goes on with its hop-by-hop fields removed; the unsolicited 100
    // does not.
    let i = fast.get("GET", "/interim").await.unwrap();
    assert_eq!(i.interims.len(), 1, "{:?}", i.interims);
    let (status, fields) = &i.interims[0];
    assert_eq!(*status, 103);
    assert!(fields
        .iter()
        .any(|(n, v)| n == "link" && v.contains("a.css")));
    assert!(!fields.iter().any(|(n, _)| n == "x-h" || n == "connection"));
}

#[tokio::test]
async fn the_backend_gets_the_request_as_the_general_path_sends_it() {
    let rig = rig(Duration::from_secs(30)).await;
    let extra = "User-Agent: t\r\nAccept: */*\r\nConnection: keep-alive\r\nVia: 1.0 before\r\n";
    let mut fast = Client::to(rig.fast).await;
    fast.send("GET", "/length?x=1", extra).await;
    fast.answer("GET").await.unwrap();
    let mut general = Client::to(rig.general).await;
    general.send("GET", "/length?x=1", extra).await;
    general.answer("GET").await.unwrap();
    let requests = rig.seen.requests();
    assert_eq!(requests.len(), 2);
    let lines = |head: &str| {
        let mut lines: Vec<String> = head
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        lines[1..].sort();
        lines
    };
    let (fast_head, general_head) = (lines(&requests[0].1), lines(&requests[1].1));
    assert_eq!(fast_head, general_head);
    assert_eq!(fast_head[0], "GET /length?x=1 HTTP/1.1");
    for expected in [
        "host: example.test",
        "via: 1.0 before",
        "via: 1.1 uip-cache",
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: example.test",
    ] {
        assert!(
            fast_head.iter().any(|l| l == expected),
            "{expected} in {fast_head:?}"
        );
    }
    assert!(!fast_head.iter().any(|l| l.starts_with("connection")));
}

#[tokio::test]
async fn a_forged_forwarding_header_never_reaches_the_backend() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    for forged in [
        "X-Forwarded-For: 6.6.6.6\r\n",
        "x-forwarded-host: evil.test\r\n",
        "Forwarded: for=6.6.6.6\r\n",
        "X_Forwarded_For: 6.6.6.6\r\n",
    ] {
        fast.send("GET", "/length", forged).await;
        assert_eq!(fast.answer("GET").await.unwrap().status, 200);
    }
    for (_, head) in rig.seen.requests() {
        assert!(
            !head.contains("6.6.6.6") && !head.contains("evil.test"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn backend_connections_are_reused_only_after_a_whole_answer() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    for _ in 0..5 {
        assert_eq!(fast.get("GET", "/length").await.unwrap().body, b"hello");
    }
    assert_eq!(
        rig.seen.connections.load(Ordering::SeqCst),
        1,
        "one kept connection"
    );
    // A second response after the first one's length: the connection is
    // not used again, and no client ever reads those bytes.
    assert_eq!(fast.get("GET", "/smuggle").await.unwrap().body, b"ok");
    for _ in 0..3 {
        let a = fast.get("GET", "/length").await.unwrap();
        assert_eq!(a.body, b"hello");
    }
    let mut other = Client::to(rig.fast).await;
    assert_eq!(other.get("GET", "/length").await.unwrap().body, b"hello");
    assert_eq!(rig.seen.connections.load(Ordering::SeqCst), 2);
    // An answer that ends with its connection, or an HTTP/1.0 one: a new
    // connection after it.
    fast.get("GET", "/close").await.unwrap();
    fast.get("GET", "/length").await.unwrap();
    assert_eq!(rig.seen.connections.load(Ordering::SeqCst), 3);
    fast.get("GET", "/old").await.unwrap();
    fast.get("GET", "/length").await.unwrap();
    assert_eq!(rig.seen.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_body_cut_short_or_badly_chunked_closes_the_clients_connection() {
    let rig = rig(Duration::from_secs(30)).await;
    for path in ["/short", "/bad-chunks"] {
        let mut fast = Client::to(rig.fast).await;
        fast.send("GET", path, "").await;
        // The head and what came of the body, then the close: never a
        // whole answer.
        assert!(fast.answer("GET").await.is_none(), "{path}");
        let mut general = Client::to(rig.general).await;
        general.send("GET", path, "").await;
        assert!(general.answer("GET").await.is_none(), "{path} (general)");
    }
    // Neither connection went back to the pool.
    let before = rig.seen.connections.load(Ordering::SeqCst);
    let mut fast = Client::to(rig.fast).await;
    assert_eq!(fast.get("GET", "/length").await.unwrap().body, b"hello");
    assert_eq!(rig.seen.connections.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn no_backend_a_late_one_or_a_broken_one_gets_the_general_paths_error() {
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let (fast, _) = proxy_to(nowhere, true, Duration::from_secs(5)).await;
    let (general, _) = proxy_to(nowhere, false, Duration::from_secs(5)).await;
    let a = Client::to(fast).await.get("GET", "/x").await.unwrap();
    let b = Client::to(general).await.get("GET", "/x").await.unwrap();
    assert_eq!(a.comparable(), b.comparable());
    assert_eq!(a.status, 502);
    assert_eq!(
        a.body,
        b"502 Bad Gateway: the upstream refused the connection\n"
    );
    assert_eq!(a.field("x-cache"), Some("BYPASS"));
    let a = Client::to(fast).await.get("HEAD", "/x").await.unwrap();
    let b = Client::to(general).await.get("HEAD", "/x").await.unwrap();
    assert_eq!(a.comparable(), b.comparable());
    assert_eq!(a.field("content-length"), Some("53"));
    // A backend that does not answer within the timeout: 504, and the
    // client's connection stays open.
    let rig = rig(Duration::from_millis(300)).await;
    let mut fast = Client::to(rig.fast).await;
    let a = fast.get("GET", "/hang").await.unwrap();
    let b = Client::to(rig.general)
        .await
        .get("GET", "/hang")
        .await
        .unwrap();
    assert_eq!(a.comparable(), b.comparable());
    assert_eq!(a.status, 504);
    assert_eq!(fast.get("GET", "/length").await.unwrap().body, b"hello");
}

#[tokio::test]
async fn a_kept_connection_the_backend_closed_is_replaced_not_answered_502() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    // Answered, then closed by the backend without saying so: the proxy
    // keeps the connection, and meets the close on the next request.
    assert_eq!(fast.get("GET", "/idle-closed").await.unwrap().body, b"once");
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        assert_eq!(fast.get("GET", "/length").await.unwrap().status, 200);
    }
    assert_eq!(rig.seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pipelined_requests_are_relayed_in_order() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let all = [
        req("/length"),
        req("/chunked"),
        req("/missing"),
        req("/length"),
    ]
    .concat();
    fast.stream.write_all(all.as_bytes()).await.unwrap();
    let bodies: Vec<Vec<u8>> = [
        fast.answer("GET").await.unwrap(),
        fast.answer("GET").await.unwrap(),
        fast.answer("GET").await.unwrap(),
        fast.answer("GET").await.unwrap(),
    ]
    .into_iter()
    .map(|a| a.body)
    .collect();
    assert_eq!(
        bodies,
        [&b"hello"[..], b"hello world", b"none", b"hello"].map(<[u8]>::to_vec)
    );
}

#[tokio::test]
async fn a_client_that_leaves_while_its_request_waits_has_it_given_up_on_both_paths() {
    let rig = rig(Duration::from_secs(30)).await;
    for (n, addr) in [rig.fast, rig.general].into_iter().enumerate() {
        let mut leaving = Client::to(addr).await;
        leaving.send("GET", "/hang", "").await;
        let seen = &rig.seen;
        wait("the request at the backend", || seen.requests().len() > n).await;
        drop(leaving);
        wait("the backend's connection closed", || {
            seen.given_up.load(Ordering::SeqCst) > n
        })
        .await;
    }
    // A client that only sends its next request meanwhile is answered both.
    let mut fast = Client::to(rig.fast).await;
    fast.send("GET", "/length", "").await;
    fast.send("GET", "/chunked", "").await;
    assert_eq!(fast.answer("GET").await.unwrap().body, b"hello");
    assert_eq!(fast.answer("GET").await.unwrap().body, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_a_relayed_body_is_cut_and_others_are_served() {
    let seen = Arc::new(Seen::default());
    let up = origin(seen.clone()).await;
    let (addr, _) = proxy_with(
        up,
        true,
        Duration::from_secs(30),
        "  send_timeout: 1s\n  idle_timeout: 60s\n",
    )
    .await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /huge HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    // Others are answered while it holds its connection.
    let mut other = Client::to(addr).await;
    assert_eq!(other.get("GET", "/length").await.unwrap().body, b"hello");
    // Cut: it reads what the sockets held, then the end, well before the
    // whole body.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled connection was cut");
    assert!(got < HUGE, "cut before the whole body ({got} bytes)");
    assert_eq!(other.get("GET", "/length").await.unwrap().body, b"hello");
}

#[tokio::test]
async fn bytes_a_backend_sends_after_an_answer_never_reach_the_next_request() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    for (n, path) in ["/late-poison", "/late-408"].into_iter().enumerate() {
        let a = fast.get("GET", path).await.unwrap();
        let before = rig.seen.connections.load(Ordering::SeqCst);
        assert_eq!(a.body.len(), 100_000, "{path}");
        // The late bytes are on the kept connection (written on loopback).
        wait("the late bytes written", || {
            rig.seen.late.load(Ordering::SeqCst) > n
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = fast.get("GET", "/length").await.unwrap();
        assert_eq!(
            (next.status, next.body.as_slice()),
            (200, &b"hello"[..]),
            "{path}"
        );
        assert_eq!(
            rig.seen.connections.load(Ordering::SeqCst),
            before + 1,
            "{path}: a new connection after it"
        );
    }
}

#[tokio::test]
async fn a_chunked_head_reaches_the_client_before_its_body_does() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut fast = Client::to(rig.fast).await;
    fast.send("GET", "/gated", "").await;
    // The head comes while the backend holds the body back.
    while !fast.pending.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(fast.more().await, "the head before the body");
    }
    rig.seen.gate.notify_one();
    let a = fast.answer("GET").await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
}

#[tokio::test]
async fn a_client_that_half_closes_after_pipelined_requests_gets_them_all() {
    // (hyper answers the second or gives it up, depending on whether it
    // read the end while the second was still in its buffer: the relay
    // answers every request sent before the end.)
    let rig = rig(Duration::from_secs(30)).await;
    for _ in 0..3 {
        let mut c = Client::to(rig.fast).await;
        let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: example.test\r\n\r\n");
        c.stream
            .write_all([req("/length"), req("/chunked")].concat().as_bytes())
            .await
            .unwrap();
        c.stream.shutdown().await.unwrap();
        assert_eq!(c.answer("GET").await.expect("the first").body, b"hello");
        assert_eq!(
            c.answer("GET").await.expect("the second").body,
            b"hello world"
        );
    }
}

/// A proxy of the routes in `yaml`: its address, cache and route table.
async fn routed(
    yaml: &str,
) -> (
    SocketAddr,
    HttpCache,
    Arc<uip_cache_core::route::RouteTable<Upstream>>,
) {
    let config = CacheConfig::from_yaml_str(yaml).unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let routes = uip_cache_server::routes::Routes::from_config(&config, |url| {
        Upstream::new(url, Duration::from_secs(1), Duration::from_secs(5))
    })
    .unwrap();
    let table = routes.table();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(
        listener,
        proxy(cache.clone(), routes),
        ClientLimits::from_config(&config.server),
        Duration::from_secs(1),
        std::future::pending::<()>(),
    ));
    (addr, cache, table)
}

#[tokio::test]
async fn a_route_of_several_backends_is_relayed_past_one_that_is_down() {
    let seen = Arc::new(Seen::default());
    let up = origin(seen.clone()).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let mut answers = Vec::new();
    for fast in [true, false] {
        let yaml = format!(
            "policies: []\nserver:\n  fast_hits: {fast}\n  routes:\n    - {{ upstreams: [\"http://{dead}\", \"http://{up}\"], fail_timeout: 60s }}\n"
        );
        let (addr, cache, table) = routed(&yaml).await;
        let mut client = Client::to(addr).await;
        let mut got = Vec::new();
        // Whichever backend's turn it is, every answer is the live one's,
        // and the dead one is marked down once tried.
        for _ in 0..4 {
            got.push(client.get("GET", "/length").await.unwrap().comparable());
        }
        let set = table.routes()[0].upstreams();
        assert!(set.is_down(0, std::time::Instant::now()), "fast: {fast}");
        assert!(!set.is_down(1, std::time::Instant::now()), "fast: {fast}");
        answers.push(got);
        if fast {
            assert_eq!(cache.stats().snapshot().bypasses, 4);
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].iter().all(|a| a.body == b"hello"));
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_has_it_given_up_on_both_paths() {
    let rig = rig(Duration::from_secs(30)).await;
    for (n, addr) in [rig.fast, rig.general].into_iter().enumerate() {
        let mut leaving = Client::to(addr).await;
        leaving.send("GET", "/stall-body", "").await;
        // The head and the first bytes of the body, then the client goes.
        while !leaving.pending.ends_with(b"ab") {
            assert!(leaving.more().await, "the start of the body");
        }
        drop(leaving);
        wait("the backend's connection closed", || {
            rig.seen.given_up.load(Ordering::SeqCst) > n
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_relayed_and_their_scheme_goes_to_the_backend() {
    use crate::tls_support::{client_config, connect, Ca, TempDir};
    let seen = Arc::new(Seen::default());
    let up = origin(seen.clone()).await;
    let (ca, dir) = (Ca::new("relay CA"), TempDir::new("tls-relay"));
    let certificates = ca.certificates(&dir, &["a.test"]);
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: c\n    pattern: \"/cached/*\"\n    ttl: 60\n",
    )
    .unwrap();
    let cache = HttpCache::with_memory_store(&config).unwrap();
    let upstream = Upstream::new(
        format!("http://{up}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(uip_cache_server::server::serve_edge(
        None,
        Some((listener, certificates)),
        false,
        proxy(cache.clone(), upstream),
        ClientLimits::default(),
        Duration::from_secs(1),
        std::future::pending::<()>(),
    ));
    let tls = connect(
        addr,
        "a.test",
        client_config(ca.roots(), None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let mut client = Client::over(tls);
    // Several answers on one connection, each flushed whole through TLS.
    for (path, body) in [
        ("/length", &b"hello"[..]),
        ("/chunked", b"hello world"),
        ("/length", b"hello"),
    ] {
        let a = client.get("GET", path).await.expect("an answer");
        assert_eq!((a.status, a.body.as_slice()), (200, body), "{path}");
        assert_eq!(a.field("x-cache"), Some("BYPASS"));
    }
    assert_eq!(cache.stats().snapshot().bypasses, 3);
    for (_, head) in seen.requests() {
        assert!(head.contains("x-forwarded-proto: https\r\n"), "{head}");
    }
}

/// A backend that answers the first request of its one connection, then,
/// on the second, stops listening and closes the connection unanswered
/// (a request that brought it down).
async fn fragile() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut heads = 0;
        loop {
            let mut more = [0u8; 4096];
            match stream.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
            while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..i + 4);
                heads += 1;
                if heads == 1 {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                        .await;
                } else {
                    drop(listener);
                    return;
                }
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_request_a_backend_may_have_seen_never_goes_to_another_backend() {
    let seen = Arc::new(Seen::default());
    let other = origin(seen.clone()).await;
    for fast in [true, false] {
        let a = fragile().await;
        let yaml = format!(
            "policies: []\nserver:\n  fast_hits: {fast}\n  routes:\n    - {{ upstreams: [\"http://{a}\", \"http://{other}\"], fail_timeout: 60s }}\n"
        );
        let (addr, _, table) = routed(&yaml).await;
        // Turns alternate between the two: until the fragile one has
        // answered once, its connection kept.
        let mut client = Client::to(addr).await;
        let mut first = false;
        for _ in 0..2 {
            first |= client.get("GET", "/length").await.unwrap().body == b"first";
        }
        assert!(first, "fast: {fast}");
        let before = seen.requests().len();
        // Its turn again: written on the kept connection, which it closes
        // unanswered, and no new connection to it can be made.
        let mut answers = Vec::new();
        for _ in 0..2 {
            answers.push(client.get("GET", "/length").await.unwrap());
        }
        let failed: Vec<&Answer> = answers.iter().filter(|a| a.status == 502).collect();
        assert_eq!(failed.len(), 1, "fast: {fast}: {answers:?}");
        assert_eq!(
            failed[0].body, b"502 Bad Gateway: the upstream connection failed\n",
            "fast: {fast}"
        );
        // The other backend got only its own turn, not that request too.
        assert_eq!(seen.requests().len(), before + 1, "fast: {fast}");
        let set = table.routes()[0].upstreams();
        assert!(!set.is_down(0, std::time::Instant::now()), "fast: {fast}");
    }
}

/// One backend answer of odd but plausible shapes (framing fields in
/// every combination, hop-by-hop fields, 1xx before it, HTTP/1.0), and
/// whether the backend closes after it; the answer to a HEAD has no body
/// (what the relay and hyper do with one sent anyway differs: the relay
/// drops the connection after an answer whole, hyper at times before).
fn odd_answer(rng: &mut crate::fast_hits::Rng, head_only: bool) -> (Vec<u8>, bool) {
    let body: Vec<u8> = (0..rng.below(40)).map(|i| b'a' + (i % 26) as u8).collect();
    let version = rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]);
    let status = rng.pick(&[
        "200 OK",
        "200 OK",
        "201 Created",
        "204 No Content",
        "304 Not Modified",
        "404 Not Found",
        "500 Internal Server Error",
    ]);
    let mut head = String::new();
    if rng.below(5) == 0 {
        head.push_str("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
    }
    head.push_str(&format!("{version} {status}\r\n"));
    let len = body.len();
    let framing = rng.below(9);
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    match framing {
        0..=2 => head.push_str(&format!("Content-Length: {len}\r\n")),
        3 => head.push_str(&format!("Content-Length: {len}, {len}\r\n")),
        4 => head.push_str(&format!(
            "Content-Length: {len}\r\nContent-Length: {len}\r\n"
        )),
        5 => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            chunked = true;
        }
        6 => {
            head.push_str(&format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n"
            ));
            chunked = true;
        }
        7 => {
            head.push_str("Transfer-Encoding: gzip, chunked\r\n");
            chunked = true;
        }
        _ => close = true,
    }
    for _ in 0..rng.below(4) {
        head.push_str(rng.pick(&[
            "Connection: keep-alive\r\n",
            "Connection: close\r\n",
            "Connection: x-hop\r\nX-Hop: 1\r\n",
            "Keep-Alive: timeout=5\r\n",
            "Upgrade: h2c\r\n",
            "X-Twice: 1\r\nX-Other: o\r\nX-Twice: 2\r\n",
            "Cache-Control: max-age=60\r\n",
            "Set-Cookie: s=1\r\n",
            "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n",
        ]));
    }
    if head.contains("Connection: close") {
        close = true;
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    let bodiless = head_only || status.starts_with("204") || status.starts_with("304");
    if chunked && !bodiless {
        if !body.is_empty() {
            bytes.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else if !bodiless {
        bytes.extend_from_slice(&body);
    }
    (bytes, close)
}

#[tokio::test]
async fn odd_backend_answers_are_the_same_on_both_paths() {
    let rig = rig(Duration::from_secs(30)).await;
    let mut differ = Vec::new();
    let seeds = [
        0x05ee_d0f5_e1a7_u64,
        0x1234_5678_9abc,
        0xdead_beef_0001,
        0x0bad_cafe_7777,
    ];
    for (k, n) in (0..seeds.len() * 200).map(|i| (i / 200, i)) {
        let mut rng = crate::fast_hits::Rng(seeds[k] ^ (n as u64).wrapping_mul(0x9e37_79b9));
        let method = rng.pick(&["GET", "GET", "HEAD"]);
        let path = format!("/odd/{n}");
        let answer = odd_answer(&mut rng, method == "HEAD");
        rig.seen
            .made
            .lock()
            .unwrap()
            .insert(path.clone(), answer.clone());
        let mut fast = Client::to(rig.fast).await;
        let mut general = Client::to(rig.general).await;
        // (The general path sends a body an HTTP/1.0 backend ends with its
        // close up to the close too, where the relay sends it in chunks.)
        let a = fast.get(method, &path).await.map(|a| a.unframed());
        let b = general.get(method, &path).await.map(|a| a.unframed());
        if a != b {
            differ.push(format!(
                "{method} {path}: {:?}\n  relayed {a:?}\n  general {b:?}",
                String::from_utf8_lossy(&answer.0)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
