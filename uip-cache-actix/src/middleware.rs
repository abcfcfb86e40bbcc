use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{
    forward_ready, ConnectionInfo, Service, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_LOCATION, HOST, LOCATION,
};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpResponse};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use uip_cache_core::{field_name, FieldName};
use uip_cache_core::{
    After, Begin, CacheConfig, CachedResponse, ConfigError, Connection, FetchTicket, Forward,
    HeaderSource, HttpCache, NoCacheReason, Plan, RequestView, Start, Store,
};

use crate::body::CacheBody;
use uip_cache_core::refresh::{REFRESHED_HEADER, REFRESH_HEADER};
use uip_cache_core::warm::HttpFetcher;

/// uip-cache for actix-web: `App::new().wrap(Cache::from_config(&config)?)`.
///
/// Build it once, outside `HttpServer::new`, and clone it into each worker's
/// `App`: every worker then shares one store, one set of statistics and one
/// coalescing table.
///
/// Entries within stale-while-revalidate are refreshed in the background
/// over HTTP through the app's own address (`warming.base_url`, or
/// [`Cache::refresh_through`]): an actix request cannot be answered and also
/// sent on to the app (`HttpRequest::match_info_mut` takes the only
/// reference to the request with `Rc::get_mut(..).unwrap()`), so the refresh
/// is a new request, sent with `Cache-Control: no-store` so that this
/// middleware passes it straight to the app. Without an address the stale
/// entry is served without a refresh until its window ends.
///
/// `Forwarded`, `X-Forwarded-*`, `X-Original-URL` and the other forwarding
/// headers (see [`uip_cache_core::forwarding`]) are removed before the app
/// sees a request, unless its peer is in the config's
/// `server.trusted_proxies`; the key holds the scheme and host the app's
/// `ConnectionInfo` then reads. Behind a proxy, list it there.
#[derive(Clone)]
pub struct Cache {
    cache: HttpCache,
    refresher: Option<Arc<HttpFetcher>>,
}

impl Cache {
    /// The middleware with the config's policies and the store it names
    /// (memory; Redis with the `redis` feature). Never blocks.
    pub fn from_config(config: &CacheConfig) -> Result<Self, ConfigError> {
        #[cfg(feature = "redis")]
        let cache = uip_cache_redis::http_cache_from_config(config)?;
        #[cfg(not(feature = "redis"))]
        let cache = HttpCache::with_memory_store(config)?;
        Ok(Cache::new(cache))
    }

    /// The middleware over a store chosen in code.
    pub fn with_store(config: &CacheConfig, store: impl Store) -> Result<Self, ConfigError> {
        Ok(Cache::new(HttpCache::new(config, Arc::new(store))?))
    }

    /// The middleware over an existing cache handle (shared with a Tower
    /// layer or admin routes); refreshes go through `warming.base_url` when
    /// the config sets it.
    pub fn new(cache: HttpCache) -> Self {
        let refresher = HttpFetcher::from_config(cache.config()).and_then(|f| match f {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!(error = %e, "warming.base_url: no background refresh");
                None
            }
        });
        Cache { cache, refresher }
    }

    /// Refreshes stale-while-revalidate entries through `base_url`
    /// (`http://host:port` where this app listens).
    pub fn refresh_through(mut self, base_url: &str) -> Result<Self, String> {
        self.refresher = Some(Arc::new(HttpFetcher::new(base_url)?));
        Ok(self)
    }

    /// The shared cache handle.
    pub fn cache(&self) -> &HttpCache {
        &self.cache
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache").field("cache", &self.cache).finish()
    }
}

impl<S, B> Transform<S, ServiceRequest> for Cache
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<CacheBody<B>>;
    type Error = Error;
    type Transform = CacheMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CacheMiddleware {
            service: Rc::new(service),
            cache: self.cache.clone(),
            refresher: self.refresher.clone(),
        }))
    }
}

/// The service [`Cache`] wraps around an app or scope.
pub struct CacheMiddleware<S> {
    service: Rc<S>,
    cache: HttpCache,
    refresher: Option<Arc<HttpFetcher>>,
}

impl<S> fmt::Debug for CacheMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMiddleware")
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S, B> Service<ServiceRequest> for CacheMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<CacheBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        Box::pin(handle(
            self.cache.clone(),
            self.service.clone(),
            self.refresher.clone(),
            req,
        ))
    }
}

// ===== translation between actix and core =====

pub(crate) struct Headers<'a>(pub(crate) &'a HeaderMap);

impl HeaderSource for Headers<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

fn header_list(headers: &HeaderMap) -> Vec<(FieldName, Bytes)> {
    headers
        .iter()
        .map(|(n, v)| (field_name(n.as_str()), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// The facts of the connection as the server knows them: the peer, and
/// TLS from the listener (`AppConfig::secure`), never the scheme of the
/// client's absolute-form target.
fn connection(req: &ServiceRequest) -> Connection {
    Connection::new(req.peer_addr(), req.app_config().secure())
}

/// Makes the request the app sees agree with its key, before anything
/// reads it:
/// - an absolute-form target (or HTTP/2's `:scheme` and `:authority`)
///   becomes origin-form with its authority as `Host` (RFC 9112 section
///   3.2.2): `ConnectionInfo` would take the scheme from the target and the
///   host from `Host`;
/// - the forwarding headers core says to remove go: all of them from a peer
///   not in `server.trusted_proxies` (`ConnectionInfo` reads `Forwarded` and
///   `X-Forwarded-*` before `Host`, while the key holds `Host`).
fn guard(cache: &HttpCache, req: &mut ServiceRequest) {
    use actix_web::HttpMessage;

    let mut changed = false;
    if let Some(authority) = req.uri().authority() {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = actix_web::http::Uri::builder().path_and_query(pq).build();
        if let (Ok(host), Ok(uri)) = (HeaderValue::from_str(authority.as_str()), uri) {
            req.headers_mut().insert(HOST, host);
            req.head_mut().uri = uri;
            changed = true;
        }
    }
    let strip = cache
        .client_origin(&connection(req), None, &Headers(req.headers()))
        .strip();
    if req.headers().keys().any(|n| strip.contains(n.as_str())) {
        // Every spelling of the names (`X_Forwarded_Host` too).
        let names: Vec<_> = req
            .headers()
            .keys()
            .filter(|n| strip.contains(n.as_str()))
            .cloned()
            .collect();
        for name in names {
            req.headers_mut().remove(name);
        }
        changed = true;
    }
    if changed {
        // An outer middleware may have read the connection info already;
        // the app reads it again from what is left.
        req.extensions_mut().remove::<ConnectionInfo>();
    }
}

fn view<'a>(
    cache: &HttpCache,
    req: &'a ServiceRequest,
    headers: &'a Headers<'a>,
) -> RequestView<'a> {
    let target = req.uri().authority().map(|a| a.as_str());
    let origin = cache.client_origin(&connection(req), target, headers);
    RequestView::new(req.method().as_str(), req.path(), headers)
        .query(req.uri().query())
        .origin(origin)
}

/// The view of a refresh this middleware sent: the client's scheme, and
/// the key holding what a trusted proxy had sent (its headers are still
/// there only if one did).
fn refreshed<'a>(v: RequestView<'a>, scheme: &'a str) -> RequestView<'a> {
    let mut v = v.scheme(Some(scheme));
    v.via_trusted_proxy = true;
    v
}

/// The headers of an origin response on its way out: without those the
/// cache consumes, with `X-Cache` and `Cache-Status`.
fn outgoing<B>(cache: &HttpCache, res: &mut ServiceResponse<B>, f: Forward) {
    for h in cache.hidden_response_headers() {
        if let Ok(n) = HeaderName::from_bytes(h.as_bytes()) {
            res.headers_mut().remove(n);
        }
    }
    let upstream: Vec<HeaderValue> = res.headers().get_all("cache-status").cloned().collect();
    let ours: Vec<_> = cache
        .forward_headers(f, upstream.iter().map(HeaderValue::as_bytes))
        .collect();
    for (name, value) in ours {
        if let Ok(v) = HeaderValue::from_maybe_shared(value) {
            res.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
}

fn from_cached<B: MessageBody>(r: CachedResponse, head: bool) -> HttpResponse<CacheBody<B>> {
    let len = r.body.len();
    let stored_len = r
        .headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(len);
    let body = if head {
        CacheBody::head(stored_len)
    } else {
        CacheBody::cached(r.body)
    };
    let mut res = HttpResponse::with_body(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        body,
    );
    for (n, v) in r.headers {
        // actix computes Content-Length from the body itself.
        if n == CONTENT_LENGTH.as_str() {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(&v),
        ) {
            res.headers_mut().append(n, v);
        }
    }
    res
}

/// A stale entry standing in for an inner service's error
/// (stale-if-error): actix renders it as the response. Rendered once: its
/// body may be read as it is sent (a large gzip entry decompressed for a
/// client without gzip), so it is taken, not copied.
#[derive(Debug)]
struct StaleOnError(std::sync::Mutex<Option<CachedResponse>>, StatusCode, bool);

impl StaleOnError {
    fn new(r: CachedResponse, head: bool) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
        StaleOnError(std::sync::Mutex::new(Some(r)), status, head)
    }
}

impl fmt::Display for StaleOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the origin failed; a stale entry answered (stale-if-error)")
    }
}

impl actix_web::ResponseError for StaleOnError {
    fn status_code(&self) -> StatusCode {
        self.1
    }

    fn error_response(&self) -> HttpResponse {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match taken {
            Some(r) => from_cached::<actix_web::body::BoxBody>(r, self.2).map_into_boxed_body(),
            // Rendered before: the origin's failure, without the entry.
            None => HttpResponse::new(StatusCode::BAD_GATEWAY),
        }
    }
}

// ===== the request path: core decides, this translates =====

async fn handle<S, B>(
    cache: HttpCache,
    svc: Rc<S>,
    refresher: Option<Arc<HttpFetcher>>,
    mut req: ServiceRequest,
) -> Result<ServiceResponse<CacheBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    let head = req.method() == actix_web::http::Method::HEAD;
    // A refresh this middleware sent itself (see `Cache`): fetched and
    // recorded here, under the client's key and scheme, before any outer
    // middleware touches the answer. The marker never reaches the app, and
    // one that does not hold this cache's token is only dropped.
    // Its headers are those the client's request had once `guard` was done
    // with it, so they are not filtered again: the app sees what it saw,
    // and the key holds whatever a trusted proxy had sent.
    if let Some(marker) = req.headers_mut().remove(REFRESH_HEADER).next() {
        if let Some(scheme) = cache.refresh_token().check(marker.as_bytes()) {
            let scheme = scheme.to_owned();
            let start = {
                let hs = Headers(req.headers());
                cache.start(&refreshed(view(&cache, &req, &hs), &scheme))
            };
            let (buffered, plan) = match start {
                Start::Plan(plan) => (None, Some(plan)),
                Start::ReadBody(limit) => (read_payload(&mut req, limit).await, None),
            };
            let plan = {
                let hs = Headers(req.headers());
                let v = refreshed(view(&cache, &req, &hs), &scheme).body(buffered.as_deref());
                match plan.unwrap_or_else(|| cache.plan(&v)) {
                    Plan::Cache(plan) => Ok(cache
                        .begin_refresh(plan, &v, header_list(req.headers()))
                        .await),
                    Plan::Bypass(reason) => Err(reason),
                }
            };
            // Never the normal path: a refresh must not start another.
            return match plan {
                Ok(ticket) => fetch(svc, req, ticket, head).await.map(|mut res| {
                    res.headers_mut().insert(
                        HeaderName::from_static(REFRESHED_HEADER),
                        HeaderValue::from_static("1"),
                    );
                    res
                }),
                Err(reason) => bypass(cache, svc, req, reason).await,
            };
        }
    }
    guard(&cache, &mut req);
    let start = {
        let hs = Headers(req.headers());
        cache.start(&view(&cache, &req, &hs))
    };
    // Policies that key on the body: read it (up to their limit) first,
    // then plan with it.
    let (buffered, plan) = match start {
        Start::Plan(plan) => (None, Some(plan)),
        Start::ReadBody(limit) => match read_payload(&mut req, limit).await {
            Some(bytes) => (Some(bytes), None),
            None => return bypass(cache, svc, req, NoCacheReason::BodyTooLarge).await,
        },
    };
    let begin = {
        let hs = Headers(req.headers());
        let v = view(&cache, &req, &hs).body(buffered.as_deref());
        match plan.unwrap_or_else(|| cache.plan(&v)) {
            Plan::Bypass(reason) => return bypass(cache, svc, req, reason).await,
            Plan::Cache(plan) => cache.begin(plan, &v, || header_list(req.headers())).await,
        }
    };
    // A GET or HEAD the cache handles has no body in its key. Over HTTP/1
    // one that announces a body bypasses (core reads Content-Length and
    // Transfer-Encoding), but actix gives every HTTP/2 request a payload
    // whether or not DATA frames follow; so the app gets no body here, and
    // the answer it gives is the one the key stands for.
    if buffered.is_none()
        && matches!(
            *req.method(),
            actix_web::http::Method::GET | actix_web::http::Method::HEAD
        )
    {
        drop(actix_web::HttpMessage::take_payload(&mut req));
    }
    match begin {
        Begin::Respond(r) => Ok(req.into_response(from_cached(r, head))),
        Begin::RespondAndRefresh(r, ticket) => {
            // See `Cache`: the refresh is a request of its own, through the
            // app's address; the ticket holds the key until it is stored.
            if let Some(f) = refresher {
                actix_web::rt::spawn(async move {
                    let token = ticket.cache().refresh_token().clone();
                    f.refresh(ticket, &token).await
                });
            }
            Ok(req.into_response(from_cached(r, head)))
        }
        Begin::Fetch(ticket) => fetch(svc, req, ticket, head).await,
    }
}

/// The payload stream actix takes back (`Payload::Stream`).
type PayloadStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>,
>;

/// Reads the request body up to `limit` bytes: the bytes when it ends
/// within them (and the request gets exactly them back as its payload);
/// `None` when it is longer (a larger `Content-Length` is not read at all),
/// the request's payload then being what was read followed by the rest.
async fn read_payload(req: &mut ServiceRequest, limit: u64) -> Option<Bytes> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;

    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return None;
    }
    let mut payload = req.take_payload();
    let mut buf = bytes::BytesMut::new();
    // A client trickling its body gets this long; then it goes on unbuffered.
    let deadline = tokio::time::Instant::now() + uip_cache_core::BODY_READ_TIMEOUT;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, payload.next()).await else {
            let read = futures_util::stream::once(std::future::ready(Ok(buf.freeze())));
            let rest: PayloadStream = Box::pin(read.chain(payload));
            req.set_payload(actix_web::dev::Payload::Stream { payload: rest });
            return None;
        };
        match next {
            None => {
                let bytes = buf.freeze();
                req.set_payload(actix_web::dev::Payload::from(bytes.clone()));
                return Some(bytes);
            }
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > limit {
                    let read = futures_util::stream::once(std::future::ready(Ok(buf.freeze())));
                    let rest: PayloadStream = Box::pin(read.chain(payload));
                    req.set_payload(actix_web::dev::Payload::Stream { payload: rest });
                    return None;
                }
            }
            Some(Err(e)) => {
                let read = futures_util::stream::iter([Ok(buf.freeze()), Err(e)]);
                let rest: PayloadStream = Box::pin(read);
                req.set_payload(actix_web::dev::Payload::Stream { payload: rest });
                return None;
            }
        }
    }
}

async fn fetch<S, B>(
    svc: Rc<S>,
    mut req: ServiceRequest,
    ticket: FetchTicket,
    head: bool,
) -> Result<ServiceResponse<CacheBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    let changes = ticket.origin_header_changes();
    for name in changes.remove {
        req.headers_mut().remove(*name);
    }
    for (name, value) in changes.set {
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            req.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    let cache = ticket.cache().clone();
    let res = match svc.call(req).await {
        Ok(res) => res,
        // The request went to the inner service (no clone of it may be alive
        // while the router matches it), so a stale entry that stale-if-error
        // allows goes back as the error's own response.
        // Only a server error: a 401 or 429 of an inner middleware (auth,
        // rate limits) is an answer, not a failure to cover.
        Err(e) if e.as_response_error().status_code().is_server_error() => {
            return Err(match ticket.origin_failed() {
                Some(stale) => {
                    tracing::warn!(error = %e, "the app failed; a stale entry answered (stale-if-error)");
                    StaleOnError::new(stale, head).into()
                }
                None => e,
            })
        }
        Err(e) => return Err(e),
    };
    match ticket
        .origin_responded(res.status().as_u16(), header_list(res.headers()))
        .await
    {
        After::Respond(r) => Ok(ServiceResponse::new(
            res.request().clone(),
            from_cached(r, head),
        )),
        After::Pass(f) => {
            let mut res = res.map_body(|_, b| CacheBody::passthrough(b));
            outgoing(&cache, &mut res, f);
            Ok(res)
        }
        After::Record { x_cache, recording } => {
            let (pump, tap) = recording.tee();
            let mut origin_body = None;
            let mut res = res.map_body(|_, b| {
                let size = b.size();
                origin_body = Some(b);
                CacheBody::tapped(tap, size)
            });
            if let Some(body) = origin_body {
                // Read the origin body at the origin's pace, whatever the
                // client does: actix never polls a `Sized(0)` body and a slow
                // client must not hold up the requests coalesced behind this one.
                let mut body = Box::pin(body);
                actix_web::rt::spawn(pump.drive(
                    move |cx| body.as_mut().poll_next(cx),
                    |chunk| chunk.as_ref().ok().cloned(),
                    Result::is_err,
                ));
            }
            outgoing(&cache, &mut res, Forward::new(x_cache, true, None));
            Ok(res)
        }
    }
}

async fn bypass<S, B>(
    cache: HttpCache,
    svc: Rc<S>,
    req: ServiceRequest,
    reason: NoCacheReason,
) -> Result<ServiceResponse<CacheBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    cache.stats().bypass(reason);
    // Noted from the same view as the key (scheme, host), before the
    // request goes: core decides what its success invalidates.
    let target = uip_cache_core::http::request::is_unsafe(req.method().as_str())
        .then(|| cache.unsafe_request(&view(&cache, &req, &Headers(req.headers()))))
        .flatten();
    let mut res = svc
        .call(req)
        .await?
        .map_body(|_, b| CacheBody::passthrough(b));

    if let Some(target) = target {
        let locations: Vec<&str> = [LOCATION, CONTENT_LOCATION]
            .iter()
            .filter_map(|h| res.headers().get(h)?.to_str().ok())
            .collect();
        cache
            .invalidate_after_unsafe(&target, res.status().as_u16(), &locations)
            .await;
    }
    outgoing(&cache, &mut res, Forward::bypass(reason));
    Ok(res)
}
