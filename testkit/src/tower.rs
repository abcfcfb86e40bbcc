//! The Tower side: [`Origin`] as a Tower service, the layer in front of it,
//! and requests through it.
//!
//! ```no_run
//! # async fn doc() {
//! use uip_cache_testkit::tower::{cached, get, ok};
//! use uip_cache_testkit::{Origin, Reply};
//!
//! let origin = Origin::always(Reply::ok("[1,2,3]"));
//! let mut svc = cached("policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n", &origin);
//! assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
//! # }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tower::{Service, ServiceExt};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use uip_cache_core::CacheConfig;
use uip_cache_tower::{CacheLayer, CacheService};

use crate::{Got, Origin, OriginDown, Reply, Seen};

/// A config from YAML; panics with the error.
pub fn config(yaml: &str) -> CacheConfig {
    CacheConfig::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// The layer of `yaml` (its store included) in front of `origin`.
pub fn cached(yaml: &str, origin: &Origin) -> CacheService<Origin> {
    ::tower::Layer::layer(
        &CacheLayer::from_config(&config(yaml)).unwrap(),
        origin.clone(),
    )
}

/// A request with `headers`, `host: origin.test` unless they name a host.
pub fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    with_body(method, uri, headers, Bytes::new())
}

/// A GET of `uri`.
pub fn get(uri: &str) -> Request<Full<Bytes>> {
    req("GET", uri, &[])
}

/// A request with `headers` and `body` (no `Content-Length`: the body alone
/// says it is there, as over HTTP/2), `host: origin.test` unless the headers
/// name a host.
pub fn with_body(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        b = b.header("host", "origin.test");
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(body)).unwrap()
}

/// Sends `r` through `svc` and reads the whole response; the service's
/// error if it failed.
pub async fn send<S, B>(svc: &mut S, r: Request<Full<Bytes>>) -> Result<Got, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: Body,
    B::Error: Debug,
{
    let resp = svc.ready().await?.call(r).await?;
    Ok(Got::read(resp).await.expect("the body streams"))
}

/// Sends `r` through `svc`; panics if the service failed.
pub async fn ok<S, B>(svc: &mut S, r: Request<Full<Bytes>>) -> Got
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    send(svc, r).await.expect("the request succeeds")
}

/// A body of known chunks: with an exact size when the reply announces its
/// length (so a server writes `Content-Length`), without one when chunked.
#[derive(Debug)]
pub struct ReplyBody {
    chunks: VecDeque<Bytes>,
    known: Option<u64>,
}

impl ReplyBody {
    /// The body `reply` sends.
    pub fn of(reply: &Reply) -> Self {
        ReplyBody {
            chunks: reply.chunks.iter().cloned().collect(),
            known: reply.known_length(),
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.known.is_some() && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.known {
            Some(_) => SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum()),
            None => SizeHint::default(),
        }
    }
}

/// What the origin saw of an `http` request.
pub fn seen_of(parts: &http::request::Parts, body: Bytes) -> Seen {
    Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers: crate::got::header_pairs(&parts.headers),
        body,
    }
}

/// The origin as a Tower service of any request body: it reads the body,
/// answers after the reply's delay, and fails with [`OriginDown`] when the
/// reply says so.
impl<B> Service<Request<B>> for Origin
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Debug,
{
    type Response = Response<ReplyBody>;
    type Error = OriginDown;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ReplyBody>, OriginDown>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OriginDown>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let origin = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let reply = origin.answer(seen_of(&parts, body));
            reply.wait_delay().await;
            if reply.fail {
                return Err(OriginDown);
            }
            let mut resp = Response::new(ReplyBody::of(&reply));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (n, v) in reply.headers {
                resp.headers_mut().append(n, v.parse().unwrap());
            }
            Ok(resp)
        })
    }
}
