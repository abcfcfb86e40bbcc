//! One behaviour suite for every adapter and store: each case below is
//! written once and runs four times, through the Tower layer and the actix
//! middleware, each with the memory store and with a real Redis. A fix in one
//! adapter that the other lacks shows up here as a failing case.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::{CacheConfig, HttpCache, Store};
use uip_cache_testkit::{FailingStore, RedisServer, Reply};

// ===== the origin =====

/// What the origin saw of a request.
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    headers: Vec<(String, String)>,
    /// The request body the origin received.
    body: Bytes,
}

impl Seen {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

// ===== the harness =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tower,
    Actix,
}

/// How requests reach the cache: called in process, or over a real
/// loopback connection to a real server (hyper for Tower, actix-web's
/// `HttpServer`), which drives bodies as production does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    InProcess,
    Socket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Adapter {
    kind: Kind,
    transport: Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Memory,
    Redis,
}

struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Got {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
    fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
    fn headers_named(&self, n: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type SendFn =
    Box<dyn Fn(String, String, Vec<(String, String)>, Bytes) -> Pin<Box<dyn Future<Output = Got>>>>;

/// Sends a GET and keeps its response without ever reading the body (a
/// stalled client); dropping the returned value lets it go.
type HoldFn = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Box<dyn std::any::Any>>>>>;

struct Harness {
    adapter: Adapter,
    send: SendFn,
    hold: HoldFn,
    calls: Arc<AtomicUsize>,
    cache: HttpCache,
    redis: Option<RedisServer>,
    _server: Option<ServerGuard>,
}

/// Stops a loopback server when the harness is dropped.
enum ServerGuard {
    Task(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        match self {
            ServerGuard::Task(t) => t.abort(),
            ServerGuard::Actix(h) => {
                let h = h.clone();
                actix_rt::spawn(async move { h.stop(false).await });
            }
        }
    }
}

impl Harness {
    /// A cache with `policies` (YAML) in front of `handler`; `None` when the
    /// Redis variant cannot run here (no redis-server, outside CI).
    async fn new(
        adapter: Adapter,
        backend: Backend,
        policies: &str,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Option<Self> {
        Self::with_store(adapter, backend, policies, handler, None).await
    }

    async fn with_store(
        adapter: Adapter,
        backend: Backend,
        policies: &str,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        store: Option<Arc<dyn Store>>,
    ) -> Option<Self> {
        let (yaml, redis) = match backend {
            Backend::Memory => (format!("store:\n  timeout: 1s\n{policies}"), None),
            Backend::Redis => {
                let server = RedisServer::start()?;
                (server.yaml(policies), Some(server))
            }
        };
        let config = CacheConfig::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
        let cache = match store {
            Some(store) => HttpCache::new(&config, store).unwrap(),
            None => uip_cache_tower::CacheLayer::from_config(&config)
                .unwrap()
                .cache()
                .clone(),
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let ((send, hold), server) = match (adapter.kind, adapter.transport) {
            (Kind::Tower, Transport::InProcess) => (
                tower_in_process(cache.clone(), calls.clone(), handler),
                None,
            ),
            (Kind::Tower, Transport::Socket) => {
                let (port, guard) = tower_server(cache.clone(), calls.clone(), handler).await;
                (socket_send(port), Some(guard))
            }
            (Kind::Actix, Transport::InProcess) => {
                let (fns, guard) = actix_in_process(cache.clone(), calls.clone(), handler).await;
                (fns, Some(guard))
            }
            (Kind::Actix, Transport::Socket) => {
                let (port, guard) = actix_server(cache.clone(), calls.clone(), handler);
                (socket_send(port), Some(guard))
            }
        };
        Some(Harness {
            adapter,
            send,
            hold,
            calls,
            cache,
            redis,
            _server: server,
        })
    }

    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got {
        self.send_body(method, uri, headers, Bytes::new()).await
    }

    async fn send_body(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Got {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        (self.send)(method.into(), uri.into(), headers, body).await
    }

    async fn get(&self, uri: &str) -> Got {
        self.send("GET", uri, &[]).await
    }

    /// A GET whose client never reads the response body.
    async fn hold(&self, uri: &str) -> Box<dyn std::any::Any> {
        (self.hold)(uri.into()).await
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the cache has written `n` entries: writes run in
    /// a task of their own once a body has streamed.
    async fn sets_reach(&self, n: u64) {
        for _ in 0..400 {
            if self.cache.stats().snapshot().sets >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "{:?}: {} entries written, expected {n}; {:?}",
            self.adapter,
            self.cache.stats().snapshot().sets,
            self.cache.stats().snapshot()
        );
    }
}

/// A body of known chunks: with an exact size when the reply announces its
/// length (so a server writes `Content-Length`), without one when chunked.
struct ReplyBody {
    chunks: std::collections::VecDeque<Bytes>,
    known: Option<u64>,
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(
            self.chunks
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.known.is_some() && self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.known {
            Some(_) => {
                http_body::SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
            }
            None => http_body::SizeHint::default(),
        }
    }
}

fn seen_of(method: &str, uri: &http::Uri, headers: &http::HeaderMap, body: Bytes) -> Seen {
    Seen {
        body,
        method: method.to_owned(),
        uri: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect(),
    }
}

/// The Tower origin: a service answering as `handler` says (failing with an
/// error when the reply says so).
fn tower_origin(
    calls: Arc<AtomicUsize>,
    handler: Handler,
) -> impl tower::Service<
    http::Request<uip_cache_tower::RequestBody<http_body_util::Full<Bytes>>>,
    Response = http::Response<ReplyBody>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(
        move |req: http::Request<uip_cache_tower::RequestBody<http_body_util::Full<Bytes>>>| {
            let calls = calls.clone();
            let handler = handler.clone();
            async move {
                use http_body_util::BodyExt;
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let r = handler(
                    &seen_of(parts.method.as_str(), &parts.uri, &parts.headers, body),
                    calls.fetch_add(1, Ordering::SeqCst),
                );
                if !r.delay.is_zero() {
                    tokio::time::sleep(r.delay).await;
                }
                if r.fail {
                    return Err(std::io::Error::other("the origin failed"));
                }
                let known = r.known_length();
                let mut resp = http::Response::new(ReplyBody {
                    chunks: r.chunks.into(),
                    known,
                });
                *resp.status_mut() = http::StatusCode::from_u16(r.status).unwrap();
                for (n, v) in r.headers {
                    resp.headers_mut().append(n, v.parse().unwrap());
                }
                Ok(resp)
            }
        },
    )
}

fn tower_in_process(
    cache: HttpCache,
    calls: Arc<AtomicUsize>,
    handler: Handler,
) -> (SendFn, HoldFn) {
    use http_body_util::Full;
    use tower::ServiceExt;

    let svc = tower::Layer::layer(
        &uip_cache_tower::CacheLayer::new(cache),
        tower_origin(calls, handler),
    );
    let held = svc.clone();
    let hold: HoldFn = Box::new(move |uri| {
        let svc = held.clone();
        Box::pin(async move {
            let req = http::Request::get(uri)
                .header("host", "origin.test")
                .body(Full::new(Bytes::new()))
                .unwrap();
            Box::new(svc.oneshot(req).await.unwrap()) as Box<dyn std::any::Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        let svc = svc.clone();
        Box::pin(async move {
            let mut b = http::Request::builder()
                .method(method.as_str())
                .uri(uri)
                .header("host", "origin.test");
            for (n, v) in headers {
                b = b.header(n, v);
            }
            got_from(svc.oneshot(b.body(Full::new(body)).unwrap()).await.unwrap()).await
        })
    });
    (send, hold)
}

/// What a client got: status, headers and the whole body.
async fn got_from<B>(resp: http::Response<B>) -> Got
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn header_pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// The Tower layer served by hyper on a free loopback port.
async fn tower_server(
    cache: HttpCache,
    calls: Arc<AtomicUsize>,
    handler: Handler,
) -> (u16, ServerGuard) {
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    let svc = tower::Layer::layer(
        &uip_cache_tower::CacheLayer::new(cache),
        tower_origin(calls, handler),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let hyper_svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let svc = svc.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let req = http::Request::from_parts(
                                parts,
                                Full::new(body.unwrap_or_default()),
                            );
                            svc.oneshot(req).await
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });
    (port, ServerGuard::Task(task))
}

fn actix_app(
    cache: HttpCache,
    calls: Arc<AtomicUsize>,
    handler: Handler,
    refresh_port: Option<u16>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::dev::Service;
    use actix_web::{web, App, HttpRequest, HttpResponse};

    let mut middleware = uip_cache_actix::Cache::new(cache);
    if let Some(port) = refresh_port {
        middleware = middleware
            .refresh_through(&format!("http://127.0.0.1:{port}"))
            .unwrap();
    }
    App::new()
        // A reply that fails becomes an `Err` of the service under the cache.
        .wrap_fn(|req, srv| {
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                if res.headers().contains_key("x-test-fail") {
                    return Err(actix_web::error::ErrorInternalServerError(
                        "the origin failed",
                    ));
                }
                Ok(res)
            }
        })
        .wrap(middleware)
        .default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let r = handler(
                &Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                    body,
                },
                calls.fetch_add(1, Ordering::SeqCst),
            );
            async move {
                if !r.delay.is_zero() {
                    tokio::time::sleep(r.delay).await;
                }
                let mut b =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(r.status).unwrap());
                for (n, v) in r.headers.iter() {
                    b.append_header((*n, v.as_str()));
                }
                if r.fail {
                    b.append_header(("x-test-fail", "1"));
                }
                let known = r.known_length();
                let stream =
                    futures_util::stream::iter(r.chunks.into_iter().map(Ok::<_, Infallible>));
                match known {
                    Some(len) => b.body(actix_web::body::SizedStream::new(len, stream)),
                    None => b.streaming(stream),
                }
            }
        }))
}

/// The actix app in process; its stale-while-revalidate refreshes go to a
/// real server of the same app (same cache, origin and call count).
async fn actix_in_process(
    cache: HttpCache,
    calls: Arc<AtomicUsize>,
    handler: Handler,
) -> ((SendFn, HoldFn), ServerGuard) {
    use actix_web::test;

    let (port, guard) = actix_server(cache.clone(), calls.clone(), handler.clone());
    let app = Rc::new(test::init_service(actix_app(cache, calls, handler, Some(port))).await);
    let held = app.clone();
    let hold: HoldFn = Box::new(move |uri| {
        let app = held.clone();
        Box::pin(async move {
            let req = test::TestRequest::get()
                .uri(&uri)
                .insert_header(("host", "origin.test"))
                .to_request();
            let res = test::call_service(&*app, req).await;
            Box::new(res) as Box<dyn std::any::Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        let app = app.clone();
        Box::pin(async move {
            let mut r = test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&uri)
                .insert_header(("host", "origin.test"))
                .set_payload(body);
            for (n, v) in headers {
                r = r.insert_header((n, v));
            }
            // An error is rendered as actix's dispatcher renders it.
            let (status, headers, body) = match test::try_call_service(&*app, r.to_request()).await
            {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let headers = header_pairs_actix(res.headers());
                    (status, headers, test::read_body(res).await)
                }
                Err(e) => {
                    let res = e.error_response();
                    let status = res.status().as_u16();
                    let headers = header_pairs_actix(res.headers());
                    let body = actix_web::body::to_bytes(res.into_body())
                        .await
                        .unwrap_or_default();
                    (status, headers, body)
                }
            };
            Got {
                status,
                headers,
                body,
            }
        })
    });
    ((send, hold), guard)
}

fn header_pairs_actix(h: &actix_web::http::header::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// The actix middleware in a real `HttpServer` (one worker) on a free port,
/// refreshing stale entries through itself.
fn actix_server(cache: HttpCache, calls: Arc<AtomicUsize>, handler: Handler) -> (u16, ServerGuard) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_app(cache.clone(), calls.clone(), handler.clone(), Some(port))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (port, ServerGuard::Actix(handle))
}

/// A real HTTP/1.1 client: one connection per request.
fn socket_send(port: u16) -> (SendFn, HoldFn) {
    use http_body_util::Full;
    use tokio::io::AsyncWriteExt;

    let hold: HoldFn = Box::new(move |uri| {
        Box::pin(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let req = format!("GET {uri} HTTP/1.1\r\nhost: origin.test\r\n\r\n");
            stream.write_all(req.as_bytes()).await.unwrap();
            // Never read: the server's writes fill the socket buffers and stall.
            Box::new(stream) as Box<dyn std::any::Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut b = http::Request::builder()
                .method(method.as_str())
                .uri(uri)
                .header("host", "origin.test");
            for (n, v) in headers {
                b = b.header(n, v);
            }
            got_from(
                sender
                    .send_request(b.body(Full::new(body)).unwrap())
                    .await
                    .unwrap(),
            )
            .await
        })
    });
    (send, hold)
}

/// Runs a case for every adapter, transport and store.
macro_rules! for_every_adapter_and_store {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::{Adapter, Backend, Kind, Transport};
            const TOWER: Adapter = Adapter { kind: Kind::Tower, transport: Transport::InProcess };
            const TOWER_SOCKET: Adapter = Adapter { kind: Kind::Tower, transport: Transport::Socket };
            const ACTIX: Adapter = Adapter { kind: Kind::Actix, transport: Transport::InProcess };
            const ACTIX_SOCKET: Adapter = Adapter { kind: Kind::Actix, transport: Transport::Socket };
            #[actix_rt::test]
            async fn tower_memory() { super::$case(TOWER, Backend::Memory).await }
            #[actix_rt::test]
            async fn tower_redis() { super::$case(TOWER, Backend::Redis).await }
            #[actix_rt::test]
            async fn actix_memory() { super::$case(ACTIX, Backend::Memory).await }
            #[actix_rt::test]
            async fn actix_redis() { super::$case(ACTIX, Backend::Redis).await }
            #[actix_rt::test]
            async fn tower_socket_memory() { super::$case(TOWER_SOCKET, Backend::Memory).await }
            #[actix_rt::test]
            async fn tower_socket_redis() { super::$case(TOWER_SOCKET, Backend::Redis).await }
            #[actix_rt::test]
            async fn actix_socket_memory() { super::$case(ACTIX_SOCKET, Backend::Memory).await }
            #[actix_rt::test]
            async fn actix_socket_redis() { super::$case(ACTIX_SOCKET, Backend::Redis).await }
        }
    )*};
}

for_every_adapter_and_store!(
    hit_and_miss,
    framings,
    vary,
    conditional_304,
    head_after_revalidation,
    cookie_on_304,
    coalescing,
    slow_leader_client,
    stale,
    size_limit,
    unsafe_method_invalidation,
    targeted_invalidation,
    set_cookie,
    cookie_request,
    authorization,
    fail_open,
    tags,
    surrogate_keys,
    ngsi_ld_webhook,
    stale_if_error_on_failure,
    post_queries,
    cache_status,
    hit_for_miss,
    post_queries_vary_and_stale,
    soft_purge,
);

const ITEMS: &str =
    "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    tags: [items]\n";

// ===== the cases =====

async fn hit_and_miss(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| Reply::ok("[1,2,3]").header("age", "10")).await
    else {
        return;
    };
    let first = h.get("/items?a=1").await;
    assert_eq!(
        (first.status, first.x_cache(), &first.body[..]),
        (200, "MISS", &b"[1,2,3]"[..])
    );
    let hit = h.get("/items?a=1").await;
    assert_eq!((hit.x_cache(), &hit.body[..]), ("HIT", &b"[1,2,3]"[..]));
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((10..15).contains(&age), "{a:?}/{b:?}: age {age}");
    let head = h.send("HEAD", "/items?a=1", &[]).await;
    assert_eq!((head.x_cache(), head.body.len()), ("HIT", 0));
    assert_eq!(h.get("/elsewhere").await.x_cache(), "BYPASS");
    assert_eq!(h.calls(), 2);
}

async fn vary(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        Reply::ok(&format!(
            "hello {}",
            s.header("accept-language").unwrap_or("-")
        ))
        .header("vary", "Accept-Language")
    })
    .await
    else {
        return;
    };
    for lang in ["en", "fr"] {
        assert_eq!(
            h.send("GET", "/items", &[("accept-language", lang)])
                .await
                .x_cache(),
            "MISS"
        );
    }
    for lang in ["en", "fr"] {
        let got = h.send("GET", "/items", &[("accept-language", lang)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", Bytes::from(format!("hello {lang}")))
        );
    }
    assert_eq!(h.calls(), 2);
}

async fn conditional_304(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| {
        if n == 0 {
            Reply::ok("body")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            assert_eq!(
                s.header("if-none-match"),
                Some("\"v1\""),
                "revalidation sends the validator"
            );
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let revalidated = h.get("/items").await;
    assert_eq!(
        (revalidated.x_cache(), &revalidated.body[..]),
        ("EXPIRED", &b"body"[..])
    );
    let not_modified = h
        .send("GET", "/items", &[("if-none-match", "\"v1\"")])
        .await;
    assert_eq!((not_modified.status, not_modified.x_cache()), (304, "HIT"));
    assert_eq!(h.calls(), 2);
}

async fn coalescing(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| {
        Reply::ok("cold").delay(Duration::from_millis(150))
    })
    .await
    else {
        return;
    };
    let all = futures_util::future::join_all((0..100).map(|_| h.get("/items?cold=1"))).await;
    assert!(all.iter().all(|g| &g.body[..] == b"cold"));
    assert_eq!(
        all.iter().filter(|g| g.x_cache() == "HIT").count(),
        99,
        "{a:?}/{b:?}"
    );
    assert_eq!(h.calls(), 1);
}

async fn stale(a: Adapter, b: Backend) {
    // Stale on arrival, inside both windows.
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n {
        0 => Reply::ok("v0")
            .header("cache-control", "max-age=60, stale-while-revalidate=600")
            .header("age", "100"),
        1 => Reply::ok("v1")
            .header("cache-control", "max-age=60, stale-if-error=600")
            .header("age", "100"),
        _ => Reply::ok("down").status(503),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    // The first fetch lets go of the key only after its store (and the
    // invalidation check after it) is done; a stale hit while it still holds
    // the key is served without starting a second refresh.
    h.sets_reach(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = h.get("/items").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"v0"[..]));
    // Refreshed in the background (actix: through the app's own address).
    h.sets_reach(2).await;
    // v1 is stale, within stale-if-error: the 503 is covered.
    let got = h.get("/items").await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"v1"[..])
    );
    assert_eq!(h.calls(), 3);
}

async fn stale_if_error_on_failure(a: Adapter, b: Backend) {
    // The origin service fails outright (an `Err`, not a 5xx response).
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n {
        0 => Reply::ok("v0")
            .header("cache-control", "max-age=60, stale-if-error=600")
            .header("age", "100"),
        _ => Reply::error(),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    h.sets_reach(1).await;
    let got = h.get("/items").await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"v0"[..]),
        "{a:?}/{b:?}"
    );
    let status = got.header("cache-status").unwrap();
    assert!(
        status.starts_with("uip-cache; fwd=stale; ttl=-")
            && status.ends_with("; detail=origin-unreachable"),
        "{a:?}/{b:?}: {status}"
    );
    assert_eq!(h.calls(), 2);
}

/// POST queries keyed on their body, at most 1 KB of it.
const QUERIES: &str = "policies:\n  - name: sparql\n    pattern: \"/sparql\"\n    ttl: 60\n    methods: [GET, HEAD, POST]\n    vary_by: [body, \"header:content-type\"]\n    max_body: 1KB\n    tags: [sparql]\n";

async fn post_queries(a: Adapter, b: Backend) {
    // The origin echoes the method and the body it received.
    let Some(h) = Harness::new(a, b, QUERIES, |s, n| {
        Reply::ok(&format!(
            "{} {} #{n}",
            s.method,
            String::from_utf8_lossy(&s.body)
        ))
    })
    .await
    else {
        return;
    };
    let ct = [("content-type", "application/sparql-query")];
    let q1 = Bytes::from_static(b"SELECT * WHERE { ?s ?p ?o } LIMIT 10");
    let q2 = Bytes::from_static(b"SELECT * WHERE { ?s ?p ?o } LIMIT 11");
    let post = |q: &Bytes| h.send_body("POST", "/sparql", &ct, q.clone());

    let got = post(&q1).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 10 #0"[..]),
        "{a:?}/{b:?}"
    );
    h.sets_reach(1).await;
    let got = post(&q1).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("HIT", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 10 #0"[..])
    );
    assert_eq!(h.calls(), 1, "the same query twice is one origin call");
    // One byte differs: another entry.
    let got = post(&q2).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 11 #1"[..])
    );
    h.sets_reach(2).await;
    assert_eq!(post(&q2).await.x_cache(), "HIT");
    assert_eq!(post(&q1).await.x_cache(), "HIT");
    // A GET to the same URL is not answered by a POST entry.
    let got = h.get("/sparql").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"GET  #2"[..]));
    h.sets_reach(3).await;
    // Over the limit: passed through intact, not cached, counted.
    let big = Bytes::from(
        (0..2000u32)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<_>>(),
    );
    for n in [3, 4] {
        let got = post(&big).await;
        let want = format!("POST {} #{n}", String::from_utf8_lossy(&big));
        assert_eq!(
            (got.x_cache(), &got.body[..]),
            ("BYPASS", want.as_bytes()),
            "{a:?}/{b:?}"
        );
    }
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("body_too_large"),
        Some(&2)
    );
    // A cached POST query is not a write: the entries are still there.
    assert_eq!(post(&q1).await.x_cache(), "HIT");
    // Invalidation by tag and by URL removes POST entries too.
    assert_eq!(
        h.cache.invalidate_tags(&["sparql".into()]).await.unwrap(),
        3
    );
    assert_eq!(post(&q1).await.x_cache(), "MISS");
    h.sets_reach(4).await;
    let exact = uip_cache_core::UrlPattern::exact("/sparql");
    assert_eq!(h.cache.invalidate_pattern(&exact).await.unwrap(), 1);
    assert_eq!(post(&q1).await.x_cache(), "MISS");
    assert_eq!(h.calls(), 7);
}

async fn size_limit(a: Adapter, b: Backend) {
    let chunk = Bytes::from((0..1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let policies = format!("{ITEMS}    max_size: 1KB\n");
    let Some(h) = Harness::new(a, b, &policies, move |_, _| Reply {
        chunks: vec![chunk.clone(); 10],
        ..Reply::ok("")
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        let got = h.get("/items").await;
        assert_eq!((got.x_cache(), got.body.len()), ("MISS", 10 * 1024));
        assert!(got
            .body
            .chunks(1024)
            .all(|c| c.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8)));
    }
    assert_eq!(h.calls(), 2);
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("too_large"),
        Some(&2)
    );
}

async fn unsafe_method_invalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "/items/7"),
        _ => Reply::ok("list"),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    h.get("/items/7").await;
    assert_eq!(h.get("/items").await.x_cache(), "HIT");
    assert_eq!(h.send("POST", "/items", &[]).await.x_cache(), "BYPASS");
    assert_eq!(h.get("/items").await.x_cache(), "MISS");
    assert_eq!(h.get("/items/7").await.x_cache(), "MISS");
}

async fn set_cookie(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| {
        Reply::ok("x").header("set-cookie", "session=1")
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(h.get("/items").await.x_cache(), "MISS");
    }
    assert_eq!(h.calls(), 2);
}

async fn authorization(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        let r = Reply::ok("secret");
        if s.header("x-public").is_some() {
            r.header("cache-control", "public, max-age=60")
        } else {
            r
        }
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(
            h.send("GET", "/items", &[("authorization", "Bearer t")])
                .await
                .x_cache(),
            "MISS"
        );
    }
    h.send(
        "GET",
        "/items/p",
        &[("authorization", "a"), ("x-public", "1")],
    )
    .await;
    assert_eq!(
        h.send(
            "GET",
            "/items/p",
            &[("authorization", "b"), ("x-public", "1")]
        )
        .await
        .x_cache(),
        "HIT"
    );
}

async fn fail_open(a: Adapter, b: Backend) {
    // Memory: a store that fails every call. Redis: the real server killed.
    let store: Option<Arc<dyn Store>> =
        (b == Backend::Memory).then(|| Arc::new(FailingStore::erroring()) as Arc<dyn Store>);
    let Some(mut h) =
        Harness::with_store(a, b, ITEMS, |_, _| Reply::ok("from origin"), store).await
    else {
        return;
    };
    if let Some(server) = h.redis.as_mut() {
        server.kill();
    }
    for _ in 0..3 {
        let got = h.get("/items").await;
        assert_eq!(
            (got.status, got.x_cache(), &got.body[..]),
            (200, "MISS", &b"from origin"[..])
        );
    }
    assert_eq!(h.send("POST", "/items", &[]).await.status, 200);
    assert_eq!(h.calls(), 4);
    assert!(h.cache.stats().snapshot().store_errors >= 3);
}

async fn tags(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| Reply::ok(&format!("v{n}"))).await else {
        return;
    };
    h.get("/items/1").await;
    h.get("/items/2").await;
    h.sets_reach(2).await;
    assert_eq!(h.cache.invalidate_tags(&["items".into()]).await.unwrap(), 2);
    let got = h.get("/items/1").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"v2"[..]));
}

async fn framings(a: Adapter, b: Backend) {
    // Content-Length, chunked, and empty bodies each way: a real server stops
    // polling at the announced length and never polls an empty body, and
    // every one must still be stored.
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| Reply::ok("")).await else {
        return;
    };
    drop(h);
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n % 4 {
        0 => Reply::ok("announced length"),
        1 => Reply::ok("sent chunked").chunked(),
        2 => Reply::ok(""),
        _ => Reply::ok("").chunked(),
    })
    .await
    else {
        return;
    };
    let cases = [
        ("/items/length", "announced length"),
        ("/items/chunked", "sent chunked"),
        ("/items/empty", ""),
        ("/items/empty-chunked", ""),
    ];
    for (i, (uri, body)) in cases.iter().enumerate() {
        let miss = h.get(uri).await;
        assert_eq!(
            (miss.x_cache(), &miss.body[..]),
            ("MISS", body.as_bytes()),
            "{a:?} {uri}"
        );
        h.sets_reach(i as u64 + 1).await;
        let hit = h.get(uri).await;
        assert_eq!(
            (hit.x_cache(), &hit.body[..]),
            ("HIT", body.as_bytes()),
            "{a:?}/{b:?} {uri}"
        );
        if a.transport == Transport::Socket {
            assert_eq!(
                hit.header("content-length"),
                Some(body.len().to_string().as_str()),
                "{a:?} {uri}"
            );
        }
    }
    assert_eq!(h.calls(), 4);
}

async fn cookie_on_304(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        if n == 0 {
            Reply::ok("shared body")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
                .header("set-cookie", "session=alice")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let revalidated = h.get("/items").await;
    assert_eq!(revalidated.x_cache(), "EXPIRED", "{a:?}/{b:?}");
    assert_eq!(revalidated.headers_named("set-cookie"), ["session=alice"]);
    // Another client gets the shared entry, never alice's cookie.
    let other = h.get("/items").await;
    assert_eq!(
        (other.x_cache(), &other.body[..]),
        ("HIT", &b"shared body"[..])
    );
    assert!(
        other.headers_named("set-cookie").is_empty(),
        "{:?}",
        other.headers
    );
    assert_eq!(h.calls(), 2);
}

async fn cookie_request(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        Reply::ok(&format!("for {}", s.header("cookie").unwrap_or("nobody")))
    })
    .await
    else {
        return;
    };
    // A policy TTL alone does not share a response to a request with cookies.
    for _ in 0..2 {
        let got = h
            .send("GET", "/items", &[("cookie", "session=alice")])
            .await;
        assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?}");
    }
    assert_eq!(h.get("/items").await.body, "for nobody");
    drop(h);
    // Keyed on the cookie, each cookie gets its own entry.
    let keyed = format!("{ITEMS}    vary_by: [\"header:cookie\"]\n");
    let Some(h) = Harness::new(a, b, &keyed, |s, _| {
        Reply::ok(&format!("for {}", s.header("cookie").unwrap_or("nobody")))
    })
    .await
    else {
        return;
    };
    for who in ["alice", "bob"] {
        let c = format!("session={who}");
        h.send("GET", "/items", &[("cookie", &c)]).await;
        let got = h.send("GET", "/items", &[("cookie", &c)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", Bytes::from(format!("for session={who}")))
        );
    }
    assert_eq!(h.calls(), 2);
}

async fn slow_leader_client(a: Adapter, b: Backend) {
    // 16 MB, larger than loopback socket buffers: a client that never reads
    // stalls the server's writes to it.
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let policies = format!("{ITEMS}    max_size: 64MB\n");
    let Some(h) = Harness::new(a, b, &policies, move |_, _| {
        Reply {
            chunks: vec![chunk.clone(); 64],
            ..Reply::ok("")
        }
        .delay(Duration::from_millis(50))
    })
    .await
    else {
        return;
    };
    let _stalled = h.hold("/items/big").await;
    for _ in 0..400 {
        if h.calls() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.calls(), 1, "the leader reached the origin");
    let follower = tokio::time::timeout(Duration::from_secs(20), h.get("/items/big"))
        .await
        .expect("a follower is not held up by the leader's stalled client");
    assert_eq!(
        (follower.x_cache(), follower.body.len()),
        ("HIT", 16 << 20),
        "{a:?}/{b:?}"
    );
    assert_eq!(h.calls(), 1);
}

async fn targeted_invalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| match s.method.as_str() {
        "GET" => Reply::ok(&format!("v{n}")).delay(Duration::from_millis(300)),
        _ => Reply::ok("written"),
    })
    .await
    else {
        return;
    };
    let write_during = |uri: &'static str| {
        let h = &h;
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(h.send("PUT", uri, &[]).await.status, 200);
        }
    };
    // Writes to other URLs while a fetch is in flight leave it alone.
    let (got, ()) = tokio::join!(h.get("/items/a"), write_during("/items/b"));
    assert_eq!(got.x_cache(), "MISS");
    let (got, ()) = tokio::join!(h.get("/items/c"), write_during("/elsewhere"));
    assert_eq!(got.x_cache(), "MISS");
    h.sets_reach(2).await;
    assert_eq!(h.get("/items/a").await.x_cache(), "HIT", "{a:?}/{b:?}");
    assert_eq!(h.get("/items/c").await.x_cache(), "HIT", "{a:?}/{b:?}");
    // A write to the URL being fetched keeps the old response out.
    let (got, ()) = tokio::join!(h.get("/items/d"), write_during("/items/d"));
    assert_eq!(got.x_cache(), "MISS");
    let again = h.get("/items/d").await;
    assert_eq!(
        again.x_cache(),
        "MISS",
        "{a:?}/{b:?}: fetched across its own write"
    );
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("invalidated"),
        Some(&1)
    );
}

async fn head_after_revalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        if n == 0 {
            Reply::ok("twelve bytes")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let head = h.send("HEAD", "/items", &[]).await;
    assert_eq!(
        (head.status, head.x_cache(), head.body.len()),
        (200, "EXPIRED", 0),
        "{a:?}/{b:?}"
    );
    if a.transport == Transport::Socket {
        assert_eq!(head.header("content-length"), Some("12"), "{a:?}/{b:?}");
    }
    assert_eq!(h.calls(), 2);
}

async fn surrogate_keys(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        Reply::ok(&format!("v{n}")).header("surrogate-key", "item-7 list")
    })
    .await
    else {
        return;
    };
    let got = h.get("/items/7").await;
    assert!(got.header("surrogate-key").is_none(), "{:?}", got.headers);
    h.sets_reach(1).await;
    let hit = h.get("/items/7").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.header("surrogate-key").is_none(), "{:?}", hit.headers);
    // The origin's tag purges it, with no policy change.
    assert_eq!(
        h.cache.invalidate_tags(&["item-7".into()]).await.unwrap(),
        1
    );
    assert_eq!(h.get("/items/7").await.x_cache(), "MISS", "{a:?}/{b:?}");
}

/// The seed's scenario: an NGSI-LD broker behind the cache, a webhook for
/// an entity update; exactly that entity and its type's listings go.
const NGSI_LD: &str = r#"policies:
  - name: entity
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    tags: [camera]
  - name: entities
    pattern: "/ngsi-ld/v1/entities*"
    ttl: 60
invalidation:
  strategies:
    - type: webhook
      secret: hook
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
"#;

async fn ngsi_ld_webhook(a: Adapter, b: Backend) {
    use uip_cache_core::admin::{Admin, AdminBody, AdminRequest};

    // An NGSI-LD-like origin: entities by id, listings by type, each answer
    // naming the call that made it.
    let Some(h) = Harness::new(a, b, NGSI_LD, |s, n| {
        Reply::ok(&format!("{} #{n}", s.uri)).header("content-type", "application/ld+json")
    })
    .await
    else {
        return;
    };
    let urls = [
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002",
        "/ngsi-ld/v1/entities?type=Camera&limit=100",
        "/ngsi-ld/v1/entities?type=Sensor&limit=100",
    ];
    for u in urls {
        assert_eq!(h.get(u).await.x_cache(), "MISS", "{a:?}/{b:?}: {u}");
    }
    h.sets_reach(4).await;
    for u in urls {
        assert_eq!(h.get(u).await.x_cache(), "HIT", "{a:?}/{b:?}: {u}");
    }
    let admin = Admin::new(h.cache.clone());
    let headers = [
        ("x-webhook-secret", "hook"),
        ("content-type", "application/json"),
    ];
    let webhook = |body: &'static str| {
        AdminRequest::new("POST", "/cache/invalidate", &headers)
            .body(AdminBody::Complete(Bytes::from_static(body.as_bytes())))
    };
    let resp = admin
        .handle(webhook(
            r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#,
        ))
        .await;
    assert_eq!(resp.status, 200);
    let body = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(body.starts_with(r#"{"deleted":2,"#), "{a:?}/{b:?}: {body}");
    let after: Vec<String> = {
        let mut v = Vec::new();
        for u in urls {
            v.push(h.get(u).await.x_cache().to_owned());
        }
        v
    };
    assert_eq!(after, ["MISS", "HIT", "MISS", "HIT"], "{a:?}/{b:?}");
    assert_eq!(h.calls(), 6);
    // An event nobody configured: 200, nothing deleted.
    let resp = admin
        .handle(webhook(r#"{"event":"entity_delete","entity_id":"x"}"#))
        .await;
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8_lossy(&resp.body).contains(r#""matched":false"#));
    assert_eq!(h.cache.stats().snapshot().unknown_events, 1);
}

async fn cache_status(a: Adapter, b: Backend) {
    // RFC 9211: what the cache did, beside X-Cache.
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| match (s.uri.as_str(), n) {
        // Behind another cache, which says what it did.
        ("/items/cdn", _) => Reply::ok("cdn")
            .header("cache-control", "max-age=100")
            .header("cache-status", "origin-cache; hit; ttl=40"),
        ("/items/sie", _) if s.header("x-fail").is_some() => Reply::ok("down").status(503),
        ("/items/sie", _) => Reply::ok("sie")
            .header("cache-control", "max-age=1, stale-if-error=600")
            .header("age", "5"),
        (_, 0) => Reply::ok("v0").header("cache-control", "max-age=100"),
        _ => Reply::ok("private").header("set-cookie", "s=1"),
    })
    .await
    else {
        return;
    };
    let got = h.get("/items/1").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=uri-miss; stored"),
        "{a:?}/{b:?}"
    );
    h.sets_reach(1).await;
    let got = h.get("/items/1").await;
    let status = got.header("cache-status").unwrap().to_owned();
    let ttl: i64 = status
        .strip_prefix("uip-cache; hit; ttl=")
        .unwrap_or_else(|| panic!("{status}"))
        .parse()
        .unwrap();
    assert!((95..=100).contains(&ttl), "{status}");
    let got = h.get("/items/2").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=uri-miss; detail=set_cookie")
    );
    let got = h.get("/elsewhere").await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=bypass; detail=no_policy")
    );
    let got = h
        .send("GET", "/items/3", &[("cache-control", "no-store")])
        .await;
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; fwd=request; detail=request_no_store")
    );
    // The upstream cache's member stays, ours comes after it; a hit is
    // ours alone (the upstream's member described another request).
    let got = h.get("/items/cdn").await;
    assert_eq!(
        got.header("cache-status"),
        Some("origin-cache; hit; ttl=40, uip-cache; fwd=uri-miss; stored"),
        "{a:?}/{b:?}"
    );
    h.sets_reach(2).await;
    let got = h.get("/items/cdn").await;
    assert!(
        got.header("cache-status")
            .unwrap()
            .starts_with("uip-cache; hit; ttl="),
        "{:?}",
        got.header("cache-status")
    );
    // Stale served because the origin failed: forwarded, and what came back.
    h.get("/items/sie").await;
    h.sets_reach(3).await;
    let got = h.send("GET", "/items/sie", &[("x-fail", "1")]).await;
    assert_eq!((got.status, got.x_cache()), (200, "STALE"), "{a:?}/{b:?}");
    let status = got.header("cache-status").unwrap().to_owned();
    assert!(
        status.starts_with("uip-cache; fwd=stale; fwd-status=503; ttl=-"),
        "{status}"
    );
    // only-if-cached with nothing stored: the cache's own 504 says why.
    let got = h
        .send("GET", "/items/none", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(got.status, 504);
    assert_eq!(
        got.header("cache-status"),
        Some("uip-cache; detail=only-if-cached")
    );
}

async fn hit_for_miss(a: Adapter, b: Backend) {
    // A key whose response cannot be stored: later requests go straight to
    // the origin instead of queueing behind one fetch.
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| {
        Reply::ok("mine")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(50))
    })
    .await
    else {
        return;
    };
    assert_eq!(h.get("/items/u").await.x_cache(), "MISS");
    let before = h.cache.stats().snapshot().coalesced;
    let all = futures_util::future::join_all((0..10).map(|_| h.get("/items/u"))).await;
    assert!(all
        .iter()
        .all(|g| g.x_cache() == "MISS" && &g.body[..] == b"mine"));
    let snap = h.cache.stats().snapshot();
    assert_eq!(snap.coalesced, before, "{a:?}/{b:?}: nobody queued");
    assert_eq!(snap.hit_for_miss, 10);
    assert_eq!(h.calls(), 11);
}

async fn post_queries_vary_and_stale(a: Adapter, b: Backend) {
    // A POST answer that varies (Vary: Accept) is keyed with its body too,
    // and one served stale is never refreshed with a GET.
    let Some(h) = Harness::new(a, b, QUERIES, |s, n| {
        Reply::ok(&format!(
            "{} {} #{n}",
            s.method,
            String::from_utf8_lossy(&s.body)
        ))
        .header("vary", "Accept")
        .header("cache-control", "max-age=60, stale-while-revalidate=600")
        .header("age", "100")
    })
    .await
    else {
        return;
    };
    let headers = [
        ("content-type", "application/sparql-query"),
        ("accept", "text/csv"),
    ];
    let q = Bytes::from_static(b"ASK { ?s ?p ?o }");
    let post = || h.send_body("POST", "/sparql", &headers, q.clone());
    assert_eq!(post().await.x_cache(), "MISS", "{a:?}/{b:?}");
    h.sets_reach(1).await;
    let got = post().await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("STALE", &b"POST ASK { ?s ?p ?o } #0"[..]),
        "{a:?}/{b:?}"
    );
    // Whatever refreshed it (the Tower layer sends the POST on; actix does
    // not refresh POSTs), the entry holds a POST answer.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let got = post().await;
        assert!(
            got.body.starts_with(b"POST ASK"),
            "{a:?}/{b:?}: {:?}",
            got.body
        );
    }
    // Another body is another entry, even with the same Accept.
    let other = h
        .send_body(
            "POST",
            "/sparql",
            &headers,
            Bytes::from_static(b"ASK { ?s ?p 1 }"),
        )
        .await;
    assert_eq!(other.x_cache(), "MISS");
}

async fn soft_purge(a: Adapter, b: Backend) {
    // A soft purge marks the entry stale: the next request gets the old
    // answer at once while one refresh runs; by tag and by URL pattern, in
    // memory and in Redis.
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
    })
    .await
    else {
        return;
    };
    assert_eq!(h.get("/items/s").await.x_cache(), "MISS");
    h.sets_reach(1).await;
    let (n, soft) = h
        .cache
        .soft_invalidate_tags(&["items".into()])
        .await
        .unwrap();
    assert_eq!((n, soft), (1, true), "{a:?}/{b:?}");
    let got = h.get("/items/s").await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("STALE", &b"v0"[..]),
        "{a:?}/{b:?}"
    );
    // The refresh stores v1; the entry is fresh again.
    h.sets_reach(2).await;
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"v1"[..]));
    // By URL pattern: the same.
    let pattern = uip_cache_core::UrlPattern::glob("/items/*").unwrap();
    let (n, soft) = h.cache.soft_invalidate_pattern(&pattern).await.unwrap();
    assert_eq!((n, soft), (1, true), "{a:?}/{b:?}");
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"v1"[..]));
    h.sets_reach(3).await;
    assert_eq!(h.get("/items/s").await.x_cache(), "HIT");
    // A soft-purged entry is still indexed: a hard purge removes it.
    h.cache
        .soft_invalidate_tags(&["items".into()])
        .await
        .unwrap();
    assert_eq!(h.cache.invalidate_tags(&["items".into()]).await.unwrap(), 1);
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"v3"[..]));
    assert_eq!(h.calls(), 4);
}
