//! Poisoning through request headers the key does not hold, against the
//! actix middleware: the app builds its links from `ConnectionInfo`, which
//! reads `Forwarded` and `X-Forwarded-*` before `Host` and the target's
//! scheme before the listener's, while the key holds `Host`. An attacker
//! must not get its links served to the next client.

use std::net::SocketAddr;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, HttpRequest, HttpResponse};
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const ALL: &str = "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n";

/// The app: links from `ConnectionInfo` and `X-Forwarded-Prefix`, behind
/// the cache, behind an outer middleware that reads `ConnectionInfo` first
/// (as a logger does), so that a copy it made must not survive either.
async fn app(
    extra: &str,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    let config = CacheConfig::from_yaml_str(&format!("{ALL}{extra}")).unwrap();
    let cache = Cache::from_config(&config).unwrap();
    test::init_service(
        App::new()
            .wrap(cache)
            .wrap_fn(|req, srv| {
                let _read_early = req.connection_info().host().to_owned();
                srv.call(req)
            })
            .default_service(web::to(|req: HttpRequest| async move {
                let info = req.connection_info();
                let prefix = req
                    .headers()
                    .get("x-forwarded-prefix")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                HttpResponse::Ok().body(format!(
                    "link: {}://{}{prefix}{} ip={}",
                    info.scheme(),
                    info.host(),
                    req.path(),
                    info.realip_remote_addr().unwrap_or("")
                ))
            })),
    )
    .await
}

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn get<S, B>(
    app: &S,
    target: &str,
    from: Option<SocketAddr>,
    headers: &[(&str, &str)],
) -> (String, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::get().uri(target);
    if !target.starts_with("http") {
        req = req.insert_header(("host", "victim.example"));
    }
    if let Some(p) = from {
        req = req.peer_addr(p);
    }
    for (n, v) in headers {
        req = req.append_header((*n, *v));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let x_cache = resp
        .headers()
        .get("x-cache")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = test::read_body(resp).await;
    (x_cache, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn forwarding_headers_from_a_client_cannot_poison_the_app_behind_the_cache() {
    let app = app("").await;
    let attacks: [&[(&str, &str)]; 5] = [
        &[("forwarded", "for=6.6.6.6;host=evil.example;proto=https")],
        &[("x-forwarded-host", "evil.example")],
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
        &[("x-forwarded-prefix", "/evil")],
        &[("forwarded", "for=x"), ("forwarded", "host=evil.example")],
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let path = format!("/page/{i}");
        let client = Some(peer("203.0.113.9:4000"));
        let (x_cache, body) = get(&app, &path, client, attack).await;
        assert_eq!(x_cache, "MISS");
        assert_eq!(
            body,
            format!("link: http://victim.example{path} ip=203.0.113.9"),
            "{attack:?}"
        );
        // A client whose peer is not known is not trusted either.
        let (x_cache, body) = get(&app, &path, None, &[]).await;
        assert_eq!(x_cache, "HIT", "{attack:?}");
        assert!(
            !body.contains("evil") && !body.contains("https"),
            "{attack:?}: {body}"
        );
    }
}

#[actix_web::test]
async fn an_absolute_form_target_sets_neither_scheme_nor_host() {
    let app = app("").await;
    // The target names the victim, Host the attacker's site: the key holds
    // the target's authority, so the app must see it too.
    let req = test::TestRequest::get()
        .uri("http://victim.example/abs")
        .insert_header(("host", "evil.example"))
        .peer_addr(peer("203.0.113.9:4000"))
        .to_request();
    let resp = test::call_service(&app, req).await;
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(!body.contains("evil"), "{body}");
    let (x_cache, body) = get(&app, "/abs", None, &[]).await;
    assert_eq!(x_cache, "HIT");
    assert!(!body.contains("evil"), "{body}");
    // The target's scheme is the client's word: a plain listener is http.
    let (x_cache, body) = get(&app, "https://victim.example/scheme", None, &[]).await;
    assert_eq!(x_cache, "MISS");
    assert!(
        body.starts_with("link: http://victim.example/scheme"),
        "{body}"
    );
    let (x_cache, _) = get(&app, "/scheme", None, &[]).await;
    assert_eq!(x_cache, "HIT", "keyed as the http request it was");
}

#[actix_web::test]
async fn a_trusted_proxy_is_believed_and_its_host_keyed() {
    let app = app("server:\n  trusted_proxies: [10.0.0.0/8]\n").await;
    let proxy = Some(peer("10.1.2.3:4000"));
    let a = [
        ("x-forwarded-host", "a.example"),
        ("x-forwarded-proto", "https"),
    ];
    let b = [("forwarded", "for=198.51.100.1;host=b.example;proto=https")];
    let (x_cache, body) = get(&app, "/shop", proxy, &a).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: https://a.example/shop ip=10.1.2.3")
    );
    let (x_cache, body) = get(&app, "/shop", proxy, &b).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: https://b.example/shop ip=198.51.100.1")
    );
    let (x_cache, body) = get(&app, "/shop", proxy, &a).await;
    assert_eq!(x_cache, "HIT");
    assert!(body.starts_with("link: https://a.example/shop"), "{body}");
    // The same headers from outside the trusted network: removed, and the
    // request is keyed on its Host.
    let (x_cache, body) = get(&app, "/shop", Some(peer("203.0.113.9:1")), &a).await;
    assert_eq!(x_cache, "MISS");
    assert!(
        body.starts_with("link: http://victim.example/shop"),
        "{body}"
    );
}
