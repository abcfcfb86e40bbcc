use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_LOCATION, IF_MODIFIED_SINCE, IF_NONE_MATCH, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower_service::Service;
use uip_cache_core::lock::{Lock, LockGuard, WaitOutcome};
use uip_cache_core::rules::{self, OriginResponse, Usability};
use uip_cache_core::{
    CachePlan, CachedResponse, HttpCache, Lead, NoCacheReason, Plan, StoredResponse, XCache,
};

use crate::body::{CacheBody, OnDone};
use crate::headers::{authority, extend, header_list, view, HeaderMapRef};

const X_CACHE: &str = "x-cache";

/// The service [`CacheLayer`](crate::CacheLayer) wraps around an origin.
///
/// It answers fresh hits from the store without calling the origin, sends
/// one request per key to the origin on a miss while concurrent requests for
/// that key wait, streams the origin's body to the client while recording it,
/// and never turns a store failure into an error.
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: HttpCache,
}

impl<S> CacheService<S> {
    /// Wraps `inner` with `cache`.
    pub fn new(inner: S, cache: HttpCache) -> Self {
        CacheService { inner, cache }
    }

    /// The shared cache handle (for admin routes, warming, invalidation).
    pub fn cache(&self) -> &HttpCache {
        &self.cache
    }
}

impl<S: fmt::Debug> fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish()
    }
}

/// The future of [`CacheService`]. Boxed: the request path awaits the store,
/// the coalescing lock and the origin in a sequence that a hand-written state
/// machine would make much harder to read, and one allocation is small next
/// to a store round trip.
pub struct ResponseFuture<B, E> {
    inner: BoxedResponse<B, E>,
}

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Call the instance that was polled ready; keep a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            inner: Box::pin(handle(self.cache.clone(), inner, req)),
        }
    }
}

// ===== the request path =====

async fn handle<S, ReqBody, ResBody>(
    cache: HttpCache,
    inner: S,
    req: Request<ReqBody>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    let (parts, body) = req.into_parts();
    let plan = {
        let hs = HeaderMapRef(&parts.headers);
        cache.plan(&view(&parts.method, &parts.uri, &hs))
    };
    let mut plan = match plan {
        Plan::Bypass(reason) => return bypass(cache, inner, parts, body, reason).await,
        Plan::Cache(plan) => plan,
    };

    let mut stale = None;
    let mut guard = None;
    // Rounds of waiting for a leader that stored something (another variant,
    // say); bounded so a request never waits forever.
    let mut rounds = 0;
    loop {
        let now = SystemTime::now();
        let hs = HeaderMapRef(&parts.headers);
        let v = view(&parts.method, &parts.uri, &hs);
        if let Some(entry) = cache.lookup(&plan, &v).await {
            let usability = rules::usability(&entry, &plan.request_cc, now);
            let outcome = match usability {
                Usability::Fresh => Some(XCache::Hit),
                Usability::StaleAccepted | Usability::StaleWhileRevalidate => Some(XCache::Stale),
                _ => None,
            };
            if let Some(r) = outcome.and_then(|x| cache.respond(&entry, &v, x, now)) {
                cache.count(if usability == Usability::Fresh {
                    XCache::Hit
                } else {
                    XCache::Stale
                });
                if usability == Usability::StaleWhileRevalidate {
                    // Refresh once in the background, with this request.
                    if let Lock::Leader(g) = cache.lock(&plan) {
                        let req = Request::from_parts(parts, body);
                        spawn_refresh(cache.clone(), inner, req, plan, entry, g);
                    }
                }
                return Ok(from_cached(r));
            }
            stale = Some(entry);
        }
        if plan.request_cc.only_if_cached {
            cache.stats().uncacheable(NoCacheReason::NoFreshness);
            let mut resp = Response::new(CacheBody::full(Bytes::new()));
            *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            resp.headers_mut()
                .insert(X_CACHE, HeaderValue::from_static("MISS"));
            return Ok(resp);
        }
        match cache.lock(&plan) {
            Lock::Leader(mut g) => {
                // Other instances sharing the store may be fetching it too.
                if let Lead::Found(entry) = cache.lead(&mut plan, &v, &mut g).await {
                    let now = SystemTime::now();
                    if let Some(r) = cache.respond(&entry, &v, XCache::Hit, now) {
                        g.stored();
                        cache.count(XCache::Hit);
                        return Ok(from_cached(r));
                    }
                }
                guard = Some(g);
                break;
            }
            Lock::Follower(w) => {
                cache.stats().coalesced();
                // Look again once the leader has stored; past the timeout, or
                // if it stored nothing, go to the origin alone.
                rounds += 1;
                if w.wait(cache.lock_timeout()).await != WaitOutcome::Stored || rounds > 3 {
                    break;
                }
            }
        }
    }
    fetch(cache, inner, parts, body, plan, stale, guard).await
}

/// The request data the cache needs after the request went to the origin.
struct RequestCopy {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

async fn fetch<S, ReqBody, ResBody>(
    cache: HttpCache,
    mut inner: S,
    mut parts: http::request::Parts,
    body: ReqBody,
    plan: CachePlan,
    stale: Option<StoredResponse>,
    guard: Option<LockGuard>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    let outcome = if stale.is_some() {
        XCache::Expired
    } else {
        XCache::Miss
    };
    let copy = RequestCopy {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
    };
    // Ask for a full response we can store; the client's own conditionals are
    // answered from the entry. A stale entry's validators make it a revalidation.
    parts.headers.remove(IF_NONE_MATCH);
    parts.headers.remove(IF_MODIFIED_SINCE);
    if let Some(e) = &stale {
        if let Some(v) = e
            .etag
            .as_ref()
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            parts.headers.insert(IF_NONE_MATCH, v);
        }
        if let Some(v) = e
            .last_modified
            .as_ref()
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            parts.headers.insert(IF_MODIFIED_SINCE, v);
        }
    }
    let request_time = SystemTime::now();
    let result = inner.call(Request::from_parts(parts, body)).await;
    let response_time = SystemTime::now();
    let hs = HeaderMapRef(&copy.headers);
    let v = view(&copy.method, &copy.uri, &hs);

    let serve_stale = |stale: &Option<StoredResponse>| {
        let e = stale
            .as_ref()
            .filter(|e| rules::serves_on_error(e, response_time))?;
        let r = cache.respond(e, &v, XCache::Stale, response_time)?;
        cache.count(XCache::Stale);
        Some(from_cached(r))
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => return serve_stale(&stale).ok_or(e),
    };
    let status = resp.status().as_u16();
    if status >= 500 {
        if let Some(r) = serve_stale(&stale) {
            return Ok(r);
        }
    }
    if let (304, Some(mut entry)) = (status, stale.clone()) {
        let list = header_list(resp.headers());
        let ohs = HeaderMapRef(resp.headers());
        let origin = OriginResponse::new(304, &ohs, &list, request_time, response_time);
        rules::freshen(&mut entry, cache.policy(&plan), &v, &origin);
        cache.stats().revalidation();
        if cache.put_entry(&plan, &v, entry.clone()).await {
            if let Some(g) = &guard {
                g.stored();
            }
        }
        drop(guard);
        if let Some(r) = cache.respond(&entry, &v, XCache::Expired, response_time) {
            cache.count(XCache::Expired);
            return Ok(from_cached(r));
        }
        return Ok(passthrough(resp, XCache::Expired));
    }
    cache.count(outcome);
    if copy.method == Method::HEAD {
        // A HEAD response has no body to store for GETs.
        return Ok(passthrough(resp, outcome));
    }
    let list = header_list(resp.headers());
    let ohs = HeaderMapRef(resp.headers());
    let admitted = cache.admit(
        &plan,
        &v,
        &OriginResponse::new(status, &ohs, &list, request_time, response_time),
    );
    let Ok(entry) = admitted else {
        return Ok(passthrough(resp, outcome));
    };
    let max = cache.max_size(&plan);
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        cache.stats().uncacheable(NoCacheReason::TooLarge);
        return Ok(passthrough(resp, outcome));
    }
    let on_done: OnDone = Box::new(move |body| {
        let Ok(body) = body.map_err(|reason| cache.stats().uncacheable(reason)) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let hs = HeaderMapRef(&copy.headers);
            let v = view(&copy.method, &copy.uri, &hs);
            if cache.store_entry(&plan, &v, entry, body).await {
                if let Some(g) = &guard {
                    g.stored();
                }
            }
            // Waiters wake once the entry is there.
            drop(guard);
        });
    });
    let (rparts, rbody) = resp.into_parts();
    let mut resp = Response::from_parts(rparts, CacheBody::recording(rbody, max, on_done));
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(outcome.as_str()));
    Ok(resp)
}

fn spawn_refresh<S, ReqBody, ResBody>(
    cache: HttpCache,
    inner: S,
    req: Request<ReqBody>,
    plan: CachePlan,
    entry: StoredResponse,
    guard: LockGuard,
) where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    tokio::spawn(async move {
        let (parts, body) = req.into_parts();
        if let Ok(resp) = fetch(cache, inner, parts, body, plan, Some(entry), Some(guard)).await {
            // Reading the body to its end stores it.
            let mut body = std::pin::pin!(resp.into_body());
            while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                if frame.is_err() {
                    break;
                }
            }
        }
    });
}

async fn bypass<S, ReqBody, ResBody>(
    cache: HttpCache,
    mut inner: S,
    parts: http::request::Parts,
    body: ReqBody,
    reason: NoCacheReason,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    cache.stats().bypass(reason);
    let target = rules::is_unsafe(parts.method.as_str()).then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            authority(&parts.uri, &parts.headers).map(str::to_owned),
        )
    });
    let resp = inner.call(Request::from_parts(parts, body)).await?;
    if let Some((method, uri, host)) = target {
        let locations: Vec<String> = [LOCATION, CONTENT_LOCATION]
            .iter()
            .filter_map(|h| resp.headers().get(h)?.to_str().ok())
            .filter_map(|l| same_host_path(l, host.as_deref()))
            .collect();
        let refs: Vec<&str> = locations.iter().map(String::as_str).collect();
        let empty = HeaderMap::new();
        let hs = HeaderMapRef(&empty);
        cache
            .invalidate_after_unsafe(&view(&method, &uri, &hs), resp.status().as_u16(), &refs)
            .await;
    }
    Ok(passthrough(resp, XCache::Bypass))
}

/// The path (and query) of a `Location` on the same host; other hosts' URLs are
/// not ours to invalidate (RFC 9111 section 4.4).
fn same_host_path(location: &str, host: Option<&str>) -> Option<String> {
    if location.starts_with('/') {
        return Some(location.to_owned());
    }
    let uri: Uri = location.parse().ok()?;
    let same = uri.authority().map(|a| a.as_str()) == host;
    same.then(|| {
        uri.path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned())
    })
}

fn from_cached<B>(r: CachedResponse) -> Response<CacheBody<B>> {
    let mut resp = Response::new(CacheBody::full(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    extend(resp.headers_mut(), r.headers);
    resp
}

fn passthrough<B>(resp: Response<B>, outcome: XCache) -> Response<CacheBody<B>> {
    let mut resp = resp.map(CacheBody::passthrough);
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(outcome.as_str()));
    resp
}
