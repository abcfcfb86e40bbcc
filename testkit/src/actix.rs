//! The actix side: [`Origin`] as an actix-web app behind the middleware, and
//! requests through it in process.
//!
//! ```no_run
//! # async fn doc() {
//! use actix_web::test;
//! use uip_cache_testkit::{actix, Origin, Reply};
//!
//! let config = uip_cache_core::CacheConfig::from_yaml_str(
//!     "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n",
//! )
//! .unwrap();
//! let middleware = uip_cache_actix::Cache::from_config(&config).unwrap();
//! let origin = Origin::always(Reply::ok("[1,2,3]"));
//! let app = test::init_service(actix::app(middleware, origin)).await;
//! assert_eq!(actix::get(&app, "/items").await.x_cache(), "MISS");
//! # }
//! ```

use std::convert::Infallible;

use actix_web::body::{MessageBody, SizedStream};
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, web, App, HttpRequest, HttpResponse};
use bytes::Bytes;

use crate::{Got, Origin, Seen};

/// The header an origin reply made with [`crate::Reply::error`] carries
/// from the handler to the wrapper that turns it into an `Err`.
const FAIL: &str = "x-test-fail";

/// An app with `middleware` in front of `origin`. A reply made with
/// [`crate::Reply::error`] becomes an `Err` of the service under the cache,
/// as a failing handler or middleware gives.
pub fn app(
    middleware: uip_cache_actix::Cache,
    origin: Origin,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap_fn(|req, srv| {
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                if res.headers().contains_key(FAIL) {
                    return Err(actix_web::error::ErrorInternalServerError(
                        "the origin failed",
                    ));
                }
                Ok(res)
            }
        })
        .wrap(middleware)
        .default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let reply = origin.answer(Seen {
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                headers: header_pairs(req.headers()),
                body,
            });
            async move {
                reply.wait_delay().await;
                let mut b = HttpResponse::build(StatusCode::from_u16(reply.status).unwrap());
                for (n, v) in reply.headers.iter() {
                    b.append_header((*n, v.as_str()));
                }
                if reply.fail {
                    b.append_header((FAIL, "1"));
                }
                let known = reply.known_length();
                let stream =
                    futures_util::stream::iter(reply.chunks.into_iter().map(Ok::<_, Infallible>));
                match known {
                    Some(len) => b.body(SizedStream::new(len, stream)),
                    None => b.streaming(stream),
                }
            }
        }))
}

/// Sends a request through `app` in process and reads the whole response:
/// `host: origin.test` unless `headers` name a host. An error is rendered as
/// actix's dispatcher renders it.
pub async fn send<S, B>(app: &S, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send_body(app, method, uri, headers, Bytes::new()).await
}

/// [`send`] with a body (a payload only when it is not empty).
pub async fn send_body<S, B>(
    app: &S,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut r = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(uri);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        r = r.insert_header(("host", "origin.test"));
    }
    if !body.is_empty() {
        r = r.set_payload(body);
    }
    for (n, v) in headers {
        r = r.append_header((*n, *v));
    }
    match test::try_call_service(app, r.to_request()).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let headers = header_pairs(res.headers());
            Got {
                status,
                headers,
                body: test::read_body(res).await,
            }
        }
        Err(e) => {
            let res = e.error_response();
            let status = res.status().as_u16();
            let headers = header_pairs(res.headers());
            let body = actix_web::body::to_bytes(res.into_body())
                .await
                .unwrap_or_default();
            Got {
                status,
                headers,
                body,
            }
        }
    }
}

/// A GET of `uri` through `app`.
pub async fn get<S, B>(app: &S, uri: &str) -> Got
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send(app, "GET", uri, &[]).await
}

/// The header fields of `h` as text pairs.
pub fn header_pairs(h: &actix_web::http::header::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
