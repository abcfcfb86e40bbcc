//! Poisoning through request headers the key does not hold, against the
//! Tower layer on an axum app whose links come from the host and scheme
//! axum-extra's `Host` and `Scheme` extractors would give: `Forwarded`,
//! then `X-Forwarded-Host` / `-Proto`, then `Host`, then the target. The
//! key holds `Host`; an attacker must not get its links served to the next
//! client.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Uri};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use uip_cache_core::CacheConfig;
use uip_cache_tower::CacheLayer;

/// `Forwarded`'s first element's `name=`, as axum-extra reads it.
fn forwarded<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let first = headers.get("forwarded")?.to_str().ok()?.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// A header as a CGI-like app reads it: `X_Forwarded_Host` is
/// `X-Forwarded-Host`.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let (_, v) = headers
        .iter()
        .find(|(k, _)| k.as_str().replace('_', "-") == name)?;
    v.to_str().ok()
}

/// An app building absolute links as axum-extra's extractors read them.
async fn links(uri: Uri, headers: HeaderMap) -> String {
    let host = forwarded(&headers, "host")
        .or_else(|| header(&headers, "x-forwarded-host"))
        .or_else(|| header(&headers, "host"))
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let scheme = forwarded(&headers, "proto")
        .or_else(|| header(&headers, "x-forwarded-proto"))
        .or_else(|| uri.scheme_str())
        .unwrap_or("http");
    let prefix = header(&headers, "x-forwarded-prefix").unwrap_or("");
    let original = header(&headers, "x-original-url").unwrap_or("");
    format!("link: {scheme}://{host}{prefix}{} {original}", uri.path())
}

fn app(extra: &str) -> Router {
    let config = CacheConfig::from_yaml_str(&format!(
        "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n{extra}"
    ))
    .unwrap();
    Router::new()
        .fallback(links)
        .layer(CacheLayer::from_config(&config).unwrap())
}

async fn get(
    app: &Router,
    target: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> (String, String) {
    let mut b = Request::get(target);
    if !target.starts_with("http") {
        b = b.header("host", "victim.example");
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    if let Some(p) = peer {
        b = b.extension(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let x_cache = resp.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (x_cache, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn forwarding_headers_from_a_client_cannot_poison_the_app_behind_the_layer() {
    let app = app("");
    let attacks: [&[(&str, &str)]; 7] = [
        &[("x_forwarded_host", "evil.example")],
        &[("X_Forwarded_Prefix", "/evil")],
        &[("forwarded", "host=evil.example;proto=https")],
        &[("x-forwarded-host", "evil.example")],
        &[("x-forwarded-proto", "https")],
        &[("x-forwarded-prefix", "/evil")],
        &[("x-original-url", "/evil")],
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let path = format!("/page/{i}");
        let (x_cache, body) = get(&app, &path, Some("203.0.113.9:4000"), attack).await;
        assert_eq!(x_cache, "MISS");
        assert_eq!(
            body,
            format!("link: http://victim.example{path} "),
            "{attack:?}"
        );
        // A peer not known (no ConnectInfo) is not trusted either.
        let (x_cache, body) = get(&app, &path, None, &[]).await;
        assert_eq!(x_cache, "HIT", "{attack:?}");
        assert!(!body.contains("evil"), "{attack:?}: {body}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_sets_neither_scheme_nor_host() {
    let app = app("");
    let req = Request::get("https://victim.example/abs")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "link: http://victim.example/abs "
    );
    let (x_cache, body) = get(&app, "/abs", None, &[]).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("HIT", "link: http://victim.example/abs ")
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_believed_and_its_host_keyed() {
    let app = app("server:\n  trusted_proxies: [\"::1\", 10.0.0.0/8]\n");
    let proxy = Some("[::ffff:10.1.2.3]:4000");
    let a = [
        ("x-forwarded-host", "a.example"),
        ("x-forwarded-proto", "https"),
    ];
    let b = [("forwarded", "for=198.51.100.1;host=b.example;proto=https")];
    let (x_cache, body) = get(&app, "/shop", proxy, &a).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: https://a.example/shop ")
    );
    let (x_cache, body) = get(&app, "/shop", proxy, &b).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: https://b.example/shop ")
    );
    let (x_cache, body) = get(&app, "/shop", Some("[::1]:1"), &a).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("HIT", "link: https://a.example/shop ")
    );
    // A prefix from the trusted proxy changes the links: another entry.
    let p = [
        ("x-forwarded-host", "a.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/p"),
    ];
    let (x_cache, body) = get(&app, "/shop", proxy, &p).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: https://a.example/p/shop ")
    );
    // The same headers from outside: removed, keyed on Host.
    let (x_cache, body) = get(&app, "/shop", Some("203.0.113.9:1"), &a).await;
    assert_eq!(
        (x_cache.as_str(), body.as_str()),
        ("MISS", "link: http://victim.example/shop ")
    );
}
