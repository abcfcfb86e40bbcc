//! Cache-poisoned denial of service through the library adapters: the
//! Tower layer and the actix-web middleware, each in front of an origin
//! that honours method overrides, answers GET bodies and fails ranges and
//! preconditions with cacheable errors. The attacker's request comes first;
//! the clean request after it must get the real answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use uip_cache_core::{CacheConfig, HttpCache};

const POLICY: &str = "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    compression: {enabled: true, min_size: 16}\n";

/// What the origin answers: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// A framework's habits (see `uip-cache-server/tests/attack_cpdos.rs`).
fn origin(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let method = h("x-http-method-override").unwrap_or(method);
    let cc = |v: &str| vec![("cache-control", v.to_owned())];
    if method != "GET" && method != "HEAD" {
        return (405, vec![], "not allowed".into());
    }
    if h("range").is_some() {
        return (416, cc("max-age=3600"), "unsatisfiable".into());
    }
    if h("if-match").is_some() {
        return (412, cc("max-age=3600"), "failed".into());
    }
    let user = h("x-user").unwrap_or("nobody");
    match path {
        "/search" => (
            200,
            vec![],
            format!("results for [{}]", String::from_utf8_lossy(body)),
        ),
        "/me" => (
            200,
            cc(r#"max-age=60, x="a\"b", private"#),
            format!("hello {user}"),
        ),
        _ => (200, vec![], format!("the real {path}, padded for gzip")),
    }
}

/// A request: method, path, headers, body.
struct Req<'a>(&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

/// What the client got: status, X-Cache, Cache-Status, body.
#[derive(Debug)]
struct Got(u16, String, String, String);

/// The attacks, each followed by clean requests, against `send`.
async fn attacks<F, Fut>(send: F, calls: Arc<AtomicUsize>)
where
    F: Fn(Req<'_>) -> Fut,
    Fut: std::future::Future<Output = Got>,
{
    // A method override: bypasses; the 405 is nobody else's answer.
    let attack = send(Req(
        "GET",
        "/a",
        &[("x-http-method-override", "DELETE")],
        "",
    ))
    .await;
    assert_eq!((attack.0, attack.1.as_str()), (405, "BYPASS"), "{attack:?}");
    assert!(attack.2.contains("detail=method_override"), "{attack:?}");
    let clean = send(Req("GET", "/a", &[], "")).await;
    assert_eq!((clean.0, clean.1.as_str()), (200, "MISS"), "{clean:?}");
    let again = send(Req("GET", "/a", &[], "")).await;
    assert_eq!((again.0, again.1.as_str()), (200, "HIT"), "{again:?}");

    // Range and If-Match answers are that request's alone.
    for (path, header) in [
        ("/b", ("range", "bytes=9999-")),
        ("/c", ("if-match", "\"x\"")),
    ] {
        let attack = send(Req("GET", path, &[header], "")).await;
        assert!(attack.0 == 416 || attack.0 == 412, "{attack:?}");
        assert!(
            attack.2.contains("detail=range_or_precondition"),
            "{attack:?}"
        );
        let clean = send(Req("GET", path, &[], "")).await;
        assert_eq!(
            (clean.0, clean.1.as_str()),
            (200, "MISS"),
            "{path}: {clean:?}"
        );
    }

    // A GET body the key does not hold: bypasses, each body its answer.
    let before = calls.load(Ordering::SeqCst);
    let alice = send(Req("GET", "/search", &[], "alice")).await;
    assert_eq!(alice.1, "BYPASS", "{alice:?}");
    assert!(alice.2.contains("detail=request_body"), "{alice:?}");
    let bob = send(Req("GET", "/search", &[], "bob")).await;
    assert_eq!(bob.3, "results for [bob]", "{bob:?}");
    assert_eq!(calls.load(Ordering::SeqCst), before + 2);

    // A request Cache-Control that cannot be read: bypasses.
    let odd = send(Req("GET", "/a", &[("cache-control", "max-age=\"0")], "")).await;
    assert_eq!(odd.1, "BYPASS", "{odd:?}");
    assert!(odd.2.contains("fwd=request"), "{odd:?}");

    // `private` after a quoted-pair is found.
    let alice = send(Req("GET", "/me", &[("x-user", "alice")], "")).await;
    assert_eq!(alice.3, "hello alice");
    let bob = send(Req("GET", "/me", &[("x-user", "bob")], "")).await;
    assert_eq!(bob.3, "hello bob", "{bob:?}");
}

fn cache() -> HttpCache {
    let config = CacheConfig::from_yaml_str(POLICY).unwrap();
    HttpCache::with_memory_store(&config).unwrap()
}

#[tokio::test]
async fn tower_layer() {
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin_svc = tower::service_fn(
        move |req: http::Request<uip_cache_tower::RequestBody<Full<Bytes>>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect();
                let (status, hs, text) =
                    origin(parts.method.as_str(), parts.uri.path(), &headers, &body);
                let mut resp = http::Response::new(Full::new(Bytes::from(text)));
                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                for (n, v) in hs {
                    resp.headers_mut().insert(n, v.parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        },
    );
    let svc = tower::Layer::layer(&uip_cache_tower::CacheLayer::new(cache()), origin_svc);
    let send = move |Req(method, path, headers, body): Req<'_>| {
        // No Content-Length: the body alone says it is there, as over HTTP/2.
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "shop.test");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let svc = svc.clone();
        async move {
            let resp = svc.oneshot(req).await.unwrap();
            let h = |n: &str| {
                resp.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let (status, x, cs) = (resp.status().as_u16(), h("x-cache"), h("cache-status"));
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Got(status, x, cs, String::from_utf8_lossy(&body).into_owned())
        }
    };
    attacks(send, calls).await;
}

#[actix_rt::test]
async fn actix_middleware() {
    use actix_web::{test, web, App, HttpRequest, HttpResponse};

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = test::init_service(
        App::new()
            .wrap(uip_cache_actix::Cache::new(cache()))
            .default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                counted.fetch_add(1, Ordering::SeqCst);
                let headers: Vec<(String, String)> = req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect();
                let (status, hs, text) = origin(req.method().as_str(), req.path(), &headers, &body);
                let mut b =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                for (n, v) in hs {
                    b.insert_header((n, v));
                }
                async move { b.body(text) }
            })),
    )
    .await;
    let app = &app;
    let send = move |Req(method, path, headers, body): Req<'_>| {
        let mut r = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path)
            .insert_header(("host", "shop.test"));
        if !body.is_empty() {
            r = r.set_payload(body.to_owned());
        }
        for (n, v) in headers {
            r = r.insert_header((*n, *v));
        }
        let req = r.to_request();
        async move {
            let resp = test::call_service(app, req).await;
            let h = |n: &str| {
                resp.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let (status, x, cs) = (resp.status().as_u16(), h("x-cache"), h("cache-status"));
            let body = test::read_body(resp).await;
            Got(status, x, cs, String::from_utf8_lossy(&body).into_owned())
        }
    };
    attacks(send, calls).await;
}
