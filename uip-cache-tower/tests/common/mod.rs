//! A counting origin and helpers shared by the tower tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use uip_cache_core::CacheConfig;
use uip_cache_tower::{CacheLayer, CacheService};

/// A body sent in several chunks, without a length: what a streaming origin sends.
pub struct Chunked(pub VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

pub use uip_cache_testkit::Reply;

/// The origin's error type when a reply says `fail`.
#[derive(Debug)]
pub struct OriginDown;

type Handler = dyn Fn(&Request<Full<Bytes>>, usize) -> Reply + Send + Sync;

/// An origin that counts its calls and records the requests it saw.
#[derive(Clone)]
pub struct Origin {
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<HeaderMap>>>,
    handler: Arc<Handler>,
}

impl Origin {
    pub fn new(
        handler: impl Fn(&Request<Full<Bytes>>, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Origin {
            calls: Arc::default(),
            seen: Arc::default(),
            handler: Arc::new(handler),
        }
    }
    pub fn always(reply: Reply) -> Self {
        Self::new(move |_, _| reply.clone())
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn last_request_headers(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// Any request body (the cache hands on a `RequestBody`); handlers see the
/// request's head.
impl<B> Service<Request<B>> for Origin {
    type Response = Response<Chunked>;
    type Error = OriginDown;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Chunked>, OriginDown>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OriginDown>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, _) = req.into_parts();
        let req = Request::from_parts(parts, Full::new(Bytes::new()));
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req.headers().clone());
        let reply = (self.handler)(&req, n);
        Box::pin(async move {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            if reply.fail {
                return Err(OriginDown);
            }
            let mut resp = Response::new(Chunked(reply.chunks.into_iter().collect()));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (n, v) in reply.headers {
                resp.headers_mut().append(n, v.parse().unwrap());
            }
            Ok(resp)
        })
    }
}

pub fn config(yaml: &str) -> CacheConfig {
    CacheConfig::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

pub fn cached(yaml: &str, origin: &Origin) -> CacheService<Origin> {
    tower::Layer::layer(
        &CacheLayer::from_config(&config(yaml)).unwrap(),
        origin.clone(),
    )
}

/// A finished response: status, headers, whole body.
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).map(|v| v.to_str().unwrap())
    }
}

pub fn get(uri: &str) -> Request<Full<Bytes>> {
    req("GET", uri, &[])
}

pub fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "origin.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

pub async fn send<S>(svc: &mut S, r: Request<Full<Bytes>>) -> Result<Got, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<uip_cache_tower::CacheBody<Chunked>>>,
{
    let resp = svc.ready().await?.call(r).await?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|e: Infallible| match e {})
        .to_bytes();
    Ok(Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn ok<S>(svc: &mut S, r: Request<Full<Bytes>>) -> Got
where
    S: Service<Request<Full<Bytes>>, Response = Response<uip_cache_tower::CacheBody<Chunked>>>,
    S::Error: std::fmt::Debug,
{
    send(svc, r).await.expect("the request succeeds")
}

/// Waits (bounded) until the cache has written `n` entries: stores run in a
/// task of their own once the body has streamed.
pub async fn sets_reach(cache: &uip_cache_core::HttpCache, n: u64) {
    for _ in 0..400 {
        if cache.stats().snapshot().sets >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "the cache wrote {} entries, expected {n}",
        cache.stats().snapshot().sets
    );
}
