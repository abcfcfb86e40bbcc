//! 1xx interim responses end to end: a raw origin sends them, a raw
//! client reads what `serve` writes on its socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uip_cache_core::{CacheConfig, HttpCache};
use uip_cache_server::interim::MAX_INTERIMS;
use uip_cache_server::proxy::Upstream;

/// Bounds every read of a test, so a missing response fails instead of
/// hanging.
const WAIT: Duration = Duration::from_secs(10);

const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";

/// The origin's answer to `path`, written in pieces: `release` lets the
/// final response of `/held` go.
async fn answer(stream: &mut TcpStream, path: &str, release: &Notify) -> std::io::Result<()> {
    let ok = |cache: &str, body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: {cache}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    match path {
        "/held" => {
            stream.write_all(HINTS.as_bytes()).await?;
            release.notified().await;
            stream.write_all(ok("max-age=60", "held").as_bytes()).await
        }
        "/many" => {
            let mut all = String::new();
            for i in 0..40 {
                all.push_str(&format!(
                    "HTTP/1.1 103 Early Hints\r\nLink: </{i}.js>; rel=preload\r\n\r\n"
                ));
            }
            all.push_str(&ok("no-store", "many"));
            stream.write_all(all.as_bytes()).await
        }
        "/injected" => {
            // A bare CR would end the field for a lenient client.
            let evil = "HTTP/1.1 103 Early Hints\r\nLink: </a.js>\rSet-Cookie: stolen=1\r\n\r\n";
            let all = format!("{HINTS}{evil}{}", ok("no-store", "x"));
            stream.write_all(all.as_bytes()).await
        }
        "/continue" => {
            let all = format!(
                "HTTP/1.1 100 Continue\r\n\r\n{HINTS}{}",
                ok("no-store", "c")
            );
            stream.write_all(all.as_bytes()).await
        }
        _ => {
            let all = format!("{HINTS}{}", ok("max-age=60", path));
            stream.write_all(all.as_bytes()).await
        }
    }
}

/// A raw HTTP/1.1 origin (keep-alive, GETs only); counts its requests.
async fn origin(release: Arc<Notify>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (calls, release) = (counted.clone(), release.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = read_head(&mut stream, &mut buf).await else {
                        return;
                    };
                    calls.fetch_add(1, Ordering::SeqCst);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    if answer(&mut stream, &path, &release).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, calls)
}

/// Reads one message head from `stream` (what is past it stays in
/// `buf`); `None` at the end of the stream.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn proxy(origin: SocketAddr) -> SocketAddr {
    crate::proxy::proxy_all(origin).await
}

/// What a client read for one request: the interim heads, then the final
/// head and body.
#[derive(Debug)]
struct Exchange {
    interims: Vec<String>,
    head: String,
    body: Vec<u8>,
}

impl Exchange {
    fn status(&self) -> u16 {
        status(&self.head)
    }
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A raw client connection to the proxy (plain, or TLS).
struct Client<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).await.unwrap())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn request(&mut self, path: &str, extra: &str) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: cache.test\r\n{extra}\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
    }

    async fn head(&mut self) -> String {
        tokio::time::timeout(WAIT, read_head(&mut self.stream, &mut self.buf))
            .await
            .expect("a response head in time")
            .expect("a response head before the end of the stream")
    }

    /// Reads more into the buffer: false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the response in time")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn body_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "the body ended early");
        }
        self.buf.drain(..n).collect()
    }

    /// One line of a chunked body, without its CRLF.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            assert!(self.fill().await, "the body ended early");
        }
    }

    /// Reads interim heads up to the final response, and its body.
    async fn exchange(&mut self) -> Exchange {
        let mut interims = Vec::new();
        let head = loop {
            let head = self.head().await;
            if (100..200).contains(&status(&head)) {
                interims.push(head);
            } else {
                break head;
            }
        };
        let field = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let body = if let Some(length) = field("content-length") {
            self.body_bytes(length.parse().unwrap()).await
        } else if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .expect("a chunk size");
                body.extend(self.body_bytes(size).await);
                self.line().await;
                if size == 0 {
                    break body;
                }
            }
        } else {
            // Until the connection closes (HTTP/1.0).
            while self.fill().await {}
            std::mem::take(&mut self.buf)
        };
        Exchange {
            interims,
            head,
            body,
        }
    }
}

fn x_cache(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_and_never_come_from_the_cache() {
    let (origin, calls) = origin(Arc::default()).await;
    let addr = proxy(origin).await;
    let mut c = Client::connect(addr).await;
    c.request("/page", "").await;
    let first = c.exchange().await;
    assert_eq!(first.interims.len(), 1, "{first:?}");
    let hints = &first.interims[0];
    assert!(hints.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{hints}");
    assert!(
        hints.contains("\r\nlink: </style.css>; rel=preload; as=style\r\n"),
        "{hints}"
    );
    assert!(hints.contains("\r\nvia: 1.1 uip-cache\r\n"), "{hints}");
    assert_eq!((first.status(), &first.body[..]), (200, &b"/page"[..]));
    assert_eq!(x_cache(&first.head), "MISS");
    // Stored without anything of the 103.
    assert!(!first.head.to_ascii_lowercase().contains("link:"));

    // The same URL again, on the same connection: a hit, no interim.
    c.request("/page", "").await;
    let second = c.exchange().await;
    assert_eq!((second.status(), &second.body[..]), (200, &b"/page"[..]));
    assert_eq!(x_cache(&second.head), "HIT");
    assert!(second.interims.is_empty(), "{second:?}");
    assert!(!second.head.to_ascii_lowercase().contains("link:"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Another URL on that connection has its own.
    c.request("/other", "").await;
    let third = c.exchange().await;
    assert_eq!((third.interims.len(), third.status()), (1, 200));
    assert_eq!(x_cache(&third.head), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_is_sent_at_once_while_the_final_response_is_awaited() {
    let release = Arc::new(Notify::new());
    let (origin, _) = origin(release.clone()).await;
    let addr = proxy(origin).await;
    let mut c = Client::connect(addr).await;
    c.request("/held", "").await;
    // The origin holds its 200 until the client has read the 103.
    let hints = c.head().await;
    assert_eq!(status(&hints), 103, "{hints}");
    release.notify_one();
    let rest = c.exchange().await;
    assert!(rest.interims.is_empty());
    assert_eq!((rest.status(), &rest.body[..]), (200, &b"held"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interims_past_the_bound_are_dropped() {
    let (origin, _) = origin(Arc::default()).await;
    let addr = proxy(origin).await;
    let mut c = Client::connect(addr).await;
    c.request("/many", "").await;
    let got = c.exchange().await;
    assert_eq!(got.interims.len(), MAX_INTERIMS);
    assert!(got.interims[0].contains("\r\nlink: </0.js>; rel=preload\r\n"));
    assert_eq!((got.status(), &got.body[..]), (200, &b"many"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_smuggling_a_field_is_not_passed_on() {
    let (origin, _) = origin(Arc::default()).await;
    let addr = proxy(origin).await;
    let mut c = Client::connect(addr).await;
    c.request("/injected", "").await;
    let got = c.exchange().await;
    // The valid 103 before it passed; the bare CR is a malformed response
    // for the upstream client: the client gets a 502, never the field.
    assert_eq!(got.interims.len(), 1, "{got:?}");
    assert!(got.interims[0].contains("</style.css>"));
    assert_eq!(got.status(), 502);
    let all = format!("{}{}", got.interims.concat(), got.head).to_ascii_lowercase();
    assert!(
        !all.contains("stolen") && !all.contains("\r\nset-cookie"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_passes_only_when_asked_and_nothing_goes_to_http_1_0() {
    let (origin, _) = origin(Arc::default()).await;
    let addr = proxy(origin).await;
    let mut c = Client::connect(addr).await;
    c.request("/continue", "").await;
    let got = c.exchange().await;
    let statuses: Vec<u16> = got.interims.iter().map(|h| status(h)).collect();
    assert_eq!(statuses, [103]);
    c.request("/continue", "Expect: 100-continue\r\n").await;
    let got = c.exchange().await;
    let statuses: Vec<u16> = got.interims.iter().map(|h| status(h)).collect();
    assert_eq!(statuses, [100, 103]);

    let mut c = Client::connect(addr).await;
    let req = "GET /old HTTP/1.0\r\nHost: cache.test\r\n\r\n";
    c.stream.write_all(req.as_bytes()).await.unwrap();
    let got = c.exchange().await;
    assert!(got.interims.is_empty(), "{got:?}");
    assert_eq!((got.status(), &got.body[..]), (200, &b"/old"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_an_http_1_1_client_over_tls() {
    use crate::tls_support::{client_config, connect, Ca, TempDir};

    let (origin, _) = origin(Arc::default()).await;
    let (ca, dir) = (Ca::new("interim CA"), TempDir::new("tls-interim"));
    let certificates = ca.certificates(&dir, &["a.test"]);
    let config =
        CacheConfig::from_yaml_str("policies:\n  - name: all\n    pattern: \"/*\"\n").unwrap();
    let upstream = Upstream::new(
        format!("http://{origin}").parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_secs(5),
    );
    let service =
        uip_cache_server::server::proxy(HttpCache::with_memory_store(&config).unwrap(), upstream);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        uip_cache_server::server::serve_tls(
            listener,
            service,
            &certificates,
            Default::default(),
            Duration::from_secs(1),
            std::future::pending(),
        )
        .await
    });
    let tls = connect(
        addr,
        "a.test",
        client_config(ca.roots(), None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let mut c = Client::over(tls);
    c.request("/secure", "").await;
    let got = c.exchange().await;
    assert_eq!(got.interims.len(), 1, "{got:?}");
    assert!(got.interims[0].starts_with("HTTP/1.1 103 Early Hints\r\n"));
    assert_eq!((got.status(), &got.body[..]), (200, &b"/secure"[..]));
    c.request("/secure", "").await;
    let hit = c.exchange().await;
    assert_eq!(x_cache(&hit.head), "HIT");
    assert!(hit.interims.is_empty(), "{hit:?}");
}
