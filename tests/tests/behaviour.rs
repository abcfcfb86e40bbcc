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
    headers: Vec<(String, String)>,
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
enum Adapter {
    Tower,
    Actix,
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
}

type SendFn =
    Box<dyn Fn(String, String, Vec<(String, String)>) -> Pin<Box<dyn Future<Output = Got>>>>;

struct Harness {
    adapter: Adapter,
    send: SendFn,
    calls: Arc<AtomicUsize>,
    cache: HttpCache,
    redis: Option<RedisServer>,
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
        let send = match adapter {
            Adapter::Tower => tower_send(cache.clone(), calls.clone(), handler),
            Adapter::Actix => actix_send(cache.clone(), calls.clone(), handler).await,
        };
        Some(Harness {
            adapter,
            send,
            calls,
            cache,
            redis,
        })
    }

    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        (self.send)(method.into(), uri.into(), headers).await
    }

    async fn get(&self, uri: &str) -> Got {
        self.send("GET", uri, &[]).await
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
            "{:?}: {} entries written, expected {n}",
            self.adapter,
            self.cache.stats().snapshot().sets
        );
    }
}

fn tower_send(cache: HttpCache, calls: Arc<AtomicUsize>, handler: Handler) -> SendFn {
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::ServiceExt;

    let origin = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let seen = Seen {
            method: req.method().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect(),
        };
        let r = handler(&seen, calls.fetch_add(1, Ordering::SeqCst));
        async move {
            if !r.delay.is_zero() {
                tokio::time::sleep(r.delay).await;
            }
            let frames = r
                .chunks
                .into_iter()
                .map(|c| Ok::<_, Infallible>(http_body::Frame::data(c)));
            let mut resp = http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
            *resp.status_mut() = http::StatusCode::from_u16(r.status).unwrap();
            for (n, v) in r.headers {
                resp.headers_mut().append(n, v.parse().unwrap());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let svc = tower::Layer::layer(&uip_cache_tower::CacheLayer::new(cache), origin);
    Box::new(move |method, uri, headers| {
        let svc = svc.clone();
        Box::pin(async move {
            let mut b = http::Request::builder()
                .method(method.as_str())
                .uri(uri)
                .header("host", "origin.test");
            for (n, v) in headers {
                b = b.header(n, v);
            }
            let resp = svc
                .oneshot(b.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap();
            let (parts, body) = resp.into_parts();
            Got {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect(),
                body: body.collect().await.unwrap().to_bytes(),
            }
        })
    })
}

async fn actix_send(cache: HttpCache, calls: Arc<AtomicUsize>, handler: Handler) -> SendFn {
    use actix_web::{test, web, App, HttpRequest, HttpResponse};

    let app = test::init_service(
        App::new()
            .wrap(uip_cache_actix::Cache::new(cache))
            .default_service(web::to(move |req: HttpRequest| {
                let seen = Seen {
                    method: req.method().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                };
                let r = handler(&seen, calls.fetch_add(1, Ordering::SeqCst));
                async move {
                    if !r.delay.is_zero() {
                        tokio::time::sleep(r.delay).await;
                    }
                    let mut b = HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(r.status).unwrap(),
                    );
                    for (n, v) in r.headers {
                        b.append_header((n, v));
                    }
                    b.streaming(futures_util::stream::iter(
                        r.chunks.into_iter().map(Ok::<_, Infallible>),
                    ))
                }
            })),
    )
    .await;
    let app = Rc::new(app);
    Box::new(move |method, uri, headers| {
        let app = app.clone();
        Box::pin(async move {
            let mut r = test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&uri)
                .insert_header(("host", "origin.test"));
            for (n, v) in headers {
                r = r.insert_header((n, v));
            }
            let res = test::call_service(&*app, r.to_request()).await;
            let status = res.status().as_u16();
            let headers = res
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            Got {
                status,
                headers,
                body: test::read_body(res).await,
            }
        })
    })
}

/// Runs a case for every adapter and store.
macro_rules! for_every_adapter_and_store {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::{Adapter, Backend};
            #[actix_rt::test]
            async fn tower_memory() { super::$case(Adapter::Tower, Backend::Memory).await }
            #[actix_rt::test]
            async fn tower_redis() { super::$case(Adapter::Tower, Backend::Redis).await }
            #[actix_rt::test]
            async fn actix_memory() { super::$case(Adapter::Actix, Backend::Memory).await }
            #[actix_rt::test]
            async fn actix_redis() { super::$case(Adapter::Actix, Backend::Redis).await }
        }
    )*};
}

for_every_adapter_and_store!(
    hit_and_miss,
    vary,
    conditional_304,
    coalescing,
    stale,
    size_limit,
    unsafe_method_invalidation,
    set_cookie,
    authorization,
    fail_open,
    tags,
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
    let got = h.get("/items").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"v0"[..]));
    if a == Adapter::Tower {
        // Tower refreshes in the background; actix cannot (documented).
        h.sets_reach(2).await;
        // v1 is stale, within stale-if-error: the 503 is covered.
        let got = h.get("/items").await;
        assert_eq!(
            (got.status, got.x_cache(), &got.body[..]),
            (200, "STALE", &b"v1"[..])
        );
        assert_eq!(h.calls(), 3);
    } else {
        assert_eq!(h.calls(), 1);
    }
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
