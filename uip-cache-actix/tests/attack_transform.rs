//! Transformations the origin forbade, through the actix middleware: no
//! `no-transform` body is compressed, and the gzip the cache made has its
//! own validator, with conditionals and `Vary` following the representation.

use std::convert::Infallible;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::{test, web, App, HttpResponse};
use bytes::Bytes;
use uip_cache_actix::Cache;
use uip_cache_core::CacheConfig;

const GZIP_ON: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    compression: {min_size: 256}\n";
const GZIP: (&str, &str) = ("accept-encoding", "gzip, br");

fn json(n: usize) -> String {
    let unit = r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}},"#;
    unit.chars().cycle().take(n).collect()
}

/// An app behind the cache answering `body` with `headers`.
async fn app(
    body: String,
    headers: &'static [(&'static str, &'static str)],
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    let cache = Cache::from_config(&CacheConfig::from_yaml_str(GZIP_ON).unwrap()).unwrap();
    test::init_service(App::new().wrap(cache).default_service(web::to(move || {
        let body = body.clone();
        async move {
            let mut b = HttpResponse::Ok();
            for (n, v) in headers {
                b.append_header((*n, *v));
            }
            b.streaming(futures_util::stream::once(async move {
                Ok::<_, Infallible>(Bytes::from(body))
            }))
        }
    })))
    .await
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).map(|v| v.to_str().unwrap())
    }
}

async fn send<S, B>(svc: &S, headers: &[(&str, &str)]) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let mut r = test::TestRequest::get()
        .uri("/items")
        .insert_header(("host", "origin.test"));
    for (n, v) in headers {
        r = r.insert_header((*n, *v));
    }
    let res = test::call_service(svc, r.to_request()).await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    Got {
        status,
        headers,
        body,
    }
}

/// Asks until the cache answers (the store runs once the body has passed).
async fn hit<S, B>(svc: &S, headers: &[(&str, &str)]) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    for _ in 0..400 {
        let got = send(svc, headers).await;
        if got.header("x-cache") == Some("HIT") {
            return got;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("never a hit");
}

#[actix_rt::test]
async fn a_no_transform_response_is_never_compressed() {
    let body = json(8192);
    let svc = app(
        body.clone(),
        &[
            ("content-type", "application/json"),
            ("cache-control", "max-age=60, no-transform"),
        ],
    )
    .await;
    let got = hit(&svc, &[GZIP]).await;
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.body, body.as_bytes());
}

#[actix_rt::test]
async fn the_cache_made_gzip_has_its_own_validator_and_conditionals_follow_it() {
    let body = json(8192);
    let svc = app(
        body.clone(),
        &[("content-type", "application/json"), ("etag", "\"v1\"")],
    )
    .await;
    let gz = hit(&svc, &[GZIP]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("etag"), Some("W/\"v1-gzip\""));
    let plain = send(&svc, &[]).await;
    assert_eq!(plain.header("etag"), Some("\"v1\""));
    assert_eq!(plain.body, body.as_bytes());
    let gz_304 = send(&svc, &[GZIP, ("if-none-match", "W/\"v1-gzip\"")]).await;
    assert_eq!(gz_304.status, 304);
    assert_eq!(gz_304.header("etag"), Some("W/\"v1-gzip\""));
    assert_eq!(gz_304.header("vary"), Some("accept-encoding"));
    let not_for_identity = send(&svc, &[("if-none-match", "W/\"v1-gzip\"")]).await;
    assert_eq!(not_for_identity.status, 200);
    assert_eq!(not_for_identity.body, body.as_bytes());
}
