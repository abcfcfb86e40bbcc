use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::Error;
use futures_util::future::LocalBoxFuture;
use uip_cache_core::refresh::{REFRESHED_HEADER, REFRESH_HEADER};
use uip_cache_core::warm::HttpFetcher;
use uip_cache_core::{
    After, Begin, BypassTicket, CacheConfig, ConfigError, FetchTicket, Forward, HttpCache,
    NoCacheReason, Plan, Recording, Start, Store,
};

use crate::body::CacheBody;
use crate::translate::{
    apply, from_cached, guard, header_list, read_payload, view, Headers, StaleOnError,
};

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
        let refresher = HttpFetcher::from_config(&cache.config()).and_then(|f| match f {
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
    // One config for the whole request, whatever reload happens while it
    // runs: the settings are loaded once, here, and every decision below
    // (forwarding headers, plan, key, policy, storing) reads them.
    let cache = cache.pinned(cache.settings());
    let head = req.method() == actix_web::http::Method::HEAD;
    // A refresh this middleware sent itself (see `Cache`): fetched and
    // recorded here, under the client's key and scheme, before any outer
    // middleware touches the answer. The marker never reaches the app, and
    // one that does not hold this cache's token is only dropped.
    // Its headers are those the client's request had once `guard` was done
    // with it, so they are not filtered again: the app sees what it saw,
    // and the key holds whatever a trusted proxy had sent.
    if let Some(marker) = req.headers_mut().remove(REFRESH_HEADER).next() {
        if let Some(refresh) = cache.refresh_marked(marker.as_bytes()) {
            let start = {
                let hs = Headers(req.headers());
                cache.start(&view(&cache, &req, &hs, Some(refresh)))
            };
            let (buffered, plan) = match start {
                Start::Plan(plan) => (None, Some(plan)),
                Start::ReadBody(limit) => (read_payload(&mut req, limit).await, None),
            };
            let plan = {
                let hs = Headers(req.headers());
                let v = view(&cache, &req, &hs, Some(refresh)).body(buffered.as_deref());
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
                Err(reason) => {
                    let hs = Headers(req.headers());
                    let ticket = cache.bypass(&view(&cache, &req, &hs, None), reason);
                    bypass(svc, req, ticket).await
                }
            };
        }
    }
    guard(&cache, &mut req);
    let start = {
        let hs = Headers(req.headers());
        cache.start(&view(&cache, &req, &hs, None))
    };
    // Policies that key on the body: read it (up to their limit) first,
    // then plan with it.
    let (buffered, plan) = match start {
        Start::Plan(plan) => (None, Some(plan)),
        Start::ReadBody(limit) => match read_payload(&mut req, limit).await {
            Some(bytes) => (Some(bytes), None),
            None => {
                let hs = Headers(req.headers());
                let v = view(&cache, &req, &hs, None);
                let ticket = cache.bypass(&v, NoCacheReason::BodyTooLarge);
                return bypass(svc, req, ticket).await;
            }
        },
    };
    let begin = {
        let hs = Headers(req.headers());
        let v = view(&cache, &req, &hs, None).body(buffered.as_deref());
        match plan.unwrap_or_else(|| cache.plan(&v)) {
            Plan::Bypass(reason) => {
                let ticket = cache.bypass(&v, reason);
                return bypass(svc, req, ticket).await;
            }
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

async fn fetch<S, B>(
    svc: Rc<S>,
    mut req: ServiceRequest,
    mut ticket: FetchTicket,
    head: bool,
) -> Result<ServiceResponse<CacheBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    apply(req.headers_mut(), ticket.origin_header_changes().into());
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
                    // A line a second at most: while the app fails, every
                    // request a stale entry covers would write one.
                    static COVERED: uip_cache_core::quiet::Quiet =
                        uip_cache_core::quiet::Quiet::new();
                    if let Some(left_out) = COVERED.admit() {
                        tracing::warn!(error = %e, left_out, "the app failed; a stale entry answered (stale-if-error)");
                    }
                    StaleOnError::new(stale, head).into()
                }
                None => e,
            });
        }
        Err(e) => return Err(e),
    };
    // An in-process body's size, which its headers may not say.
    if let BodySize::Sized(n) = res.response().body().size() {
        ticket.origin_body_length(Some(n));
    }
    match ticket
        .origin_responded(res.status().as_u16(), header_list(res.headers()))
        .await
    {
        After::Respond(r) => Ok(ServiceResponse::new(
            res.request().clone(),
            from_cached(r, head),
        )),
        After::Pass(f) => Ok(passed(&cache, res, f)),
        After::Record { x_cache, recording } => {
            Ok(recorded(&cache, res, Forward::recorded(x_cache), recording))
        }
        After::Part {
            forward,
            recording,
            reply,
        } => {
            let mut res = match recording {
                Some(recording) => recorded(&cache, res, forward, recording),
                None => passed(&cache, res, forward),
            };
            let status = StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::OK);
            *res.response_mut().status_mut() = status;
            apply(res.headers_mut(), reply.header_edits());
            let len = reply.content_length();
            let slicer = reply.into_body();
            // A HEAD's length without bytes, as for a stored answer.
            Ok(res.map_body(|_, b| match head {
                true => CacheBody::head(len),
                false => b.cut(slicer),
            }))
        }
        After::Refetch(ticket) => {
            // The origin's answer is dropped unread, and the request goes
            // to the app once more: the same head (the ticket's changes
            // take the cache's `Range` off it), routed afresh, no body
            // (a GET the cache handles has none the app sees).
            let http_req = res.request().clone();
            drop(res);
            let mut req = ServiceRequest::from_request(http_req);
            req.match_info_mut().reset();
            Box::pin(fetch(svc, req, *ticket, head)).await
        }
    }
}

/// The origin's response passed through, with the cache headers of `f`.
fn passed<B: MessageBody>(
    cache: &HttpCache,
    res: ServiceResponse<B>,
    f: Forward,
) -> ServiceResponse<CacheBody<B>> {
    let mut res = res.map_body(|_, b| CacheBody::passthrough(b));
    let edits = cache.response_edits(f, &Headers(res.headers()));
    apply(res.headers_mut(), edits);
    res
}

/// The origin's response streamed to the client while `recording` records
/// it, with the cache headers of `f`.
fn recorded<B: MessageBody + 'static>(
    cache: &HttpCache,
    res: ServiceResponse<B>,
    f: Forward,
    recording: Recording,
) -> ServiceResponse<CacheBody<B>> {
    let mut res = tee(res, recording);
    let edits = cache.response_edits(f, &Headers(res.headers()));
    apply(res.headers_mut(), edits);
    res
}

/// The origin's response streamed to the client while `recording` records
/// its body, its headers as they are.
fn tee<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
    recording: Recording,
) -> ServiceResponse<CacheBody<B>> {
    let (pump, tap) = recording.tee(Ok);
    let mut origin_body = None;
    let res = res.map_body(|_, b| {
        let size = b.size();
        origin_body = Some(b);
        CacheBody::tapped(tap, size)
    });
    if let Some(body) = origin_body {
        // Read the origin body at the origin's pace, whatever the client
        // does: actix never polls a `Sized(0)` body and a slow client must
        // not hold up the requests coalesced behind this one.
        // A small body is usually all read already: then the pump is
        // done in its first poll, here, and costs no task.
        let mut body = Box::pin(body);
        let pump = Box::pin(pump.drive(
            move |cx| body.as_mut().poll_next(cx),
            |chunk| chunk.as_ref().ok().cloned(),
            Result::is_err,
        ));
        if let Some(rest) = uip_cache_core::task::until_it_waits(pump) {
            actix_web::rt::spawn(rest);
        }
    }
    res
}

async fn bypass<S, B>(
    svc: Rc<S>,
    req: ServiceRequest,
    mut ticket: BypassTicket,
) -> Result<ServiceResponse<CacheBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    // A POST's answer may become the GET entry of its URL: its headers
    // are needed then, and the request is gone once sent.
    let post = ticket.wants_request_headers();
    if post {
        ticket
            .note_request_headers(header_list(req.headers()))
            .await;
    }
    let res = svc.call(req).await?;
    let status = res.status().as_u16();
    let edits = ticket
        .origin_responded(status, &Headers(res.headers()))
        .await;
    let recording = match post {
        true => {
            ticket
                .record_answer(status, header_list(res.headers()))
                .await
        }
        false => None,
    };
    let mut res = match recording {
        Some(recording) => tee(res, recording),
        None => res.map_body(|_, b| CacheBody::passthrough(b)),
    };
    apply(res.headers_mut(), edits);
    Ok(res)
}
