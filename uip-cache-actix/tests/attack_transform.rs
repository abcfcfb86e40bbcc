//! Transformations the origin forbade, through the actix middleware: no
//! `no-transform` body is compressed, and the gzip the cache made has its
//! own validator, with conditionals and `Vary` following the representation.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;
use uip_cache_testkit::actix::send;
use uip_cache_testkit::{actix, wait_for_sets, Got, Origin, Reply};

const GZIP_ON: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    compression: {min_size: 256}\n";
const GZIP: (&str, &str) = ("accept-encoding", "gzip, br");

fn json(n: usize) -> String {
    let unit = r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}},"#;
    unit.chars().cycle().take(n).collect()
}

/// An app behind the cache streaming `body` with `headers`.
async fn app(
    body: String,
    headers: &'static [(&'static str, &'static str)],
) -> (
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    Cache,
) {
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(GZIP_ON).unwrap()).unwrap();
    let mut reply = Reply::ok(&body);
    for (n, v) in headers {
        reply = reply.header(n, *v);
    }
    let origin = Origin::always(reply).chunked();
    let svc = test::init_service(actix::app(cache.clone(), origin)).await;
    (svc, cache)
}

/// A miss, then, once its entry is stored (after the body has passed), the
/// cache's answer.
async fn hit<S, B>(svc: &S, cache: &Cache, headers: &[(&str, &str)]) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    send(svc, "GET", "/items", headers).await;
    wait_for_sets(cache.cache(), 1).await;
    let got = send(svc, "GET", "/items", headers).await;
    assert_eq!(got.x_cache(), "HIT", "{got:?}");
    got
}

#[actix_rt::test]
async fn a_no_transform_response_is_never_compressed() {
    let body = json(8192);
    let (svc, cache) = app(
        body.clone(),
        &[
            ("content-type", "application/json"),
            ("cache-control", "max-age=60, no-transform"),
        ],
    )
    .await;
    let got = hit(&svc, &cache, &[GZIP]).await;
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.body, body.as_bytes());
}

#[actix_rt::test]
async fn the_cache_made_gzip_has_its_own_validator_and_conditionals_follow_it() {
    let body = json(8192);
    let (svc, cache) = app(
        body.clone(),
        &[("content-type", "application/json"), ("etag", "\"v1\"")],
    )
    .await;
    let gz = hit(&svc, &cache, &[GZIP]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("etag"), Some("W/\"v1-gzip\""));
    let plain = send(&svc, "GET", "/items", &[]).await;
    assert_eq!(plain.header("etag"), Some("\"v1\""));
    assert_eq!(plain.body, body.as_bytes());
    let gz_304 = send(
        &svc,
        "GET",
        "/items",
        &[GZIP, ("if-none-match", "W/\"v1-gzip\"")],
    )
    .await;
    assert_eq!(gz_304.status, 304);
    assert_eq!(gz_304.header("etag"), Some("W/\"v1-gzip\""));
    assert_eq!(gz_304.header("vary"), Some("accept-encoding"));
    let not_for_identity = send(&svc, "GET", "/items", &[("if-none-match", "W/\"v1-gzip\"")]).await;
    assert_eq!(not_for_identity.status, 200);
    assert_eq!(not_for_identity.body, body.as_bytes());
}
