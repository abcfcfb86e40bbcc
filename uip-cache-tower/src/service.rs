use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;
use uip_cache_core::{
    After, Begin, BypassTicket, CachedBody, CachedResponse, FetchTicket, Forward, HttpCache,
    Looked, NoCacheReason, OriginUnreachable, Plan, Recording, Settings, Start,
};

use crate::body::CacheBody;
use crate::headers::{apply, extend, guard, header_list, view, HeaderMapRef};
use crate::request_body::{read_limited, Read, RequestBody};

/// The service [`CacheLayer`](crate::CacheLayer) wraps around an origin.
///
/// It answers fresh hits from the store without calling the origin, sends
/// one request per key to the origin on a miss while concurrent requests for
/// that key wait, streams the origin's body to the client while recording it,
/// and never turns a store failure into an error.
///
/// Each request is handled on one [`Settings`], taken when it arrives and
/// kept to its end whatever reload happens meanwhile: those in its
/// extensions when a front-end put an `Arc<Settings>` there (a server
/// that chose the request's route by them), else the settings the cache
/// runs on.
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

    /// The service it wraps.
    pub fn get_ref(&self) -> &S {
        &self.inner
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

/// The future of [`CacheService`]: ready at once for a hit the store had
/// at hand ([`HttpCache::answer_now`]), otherwise boxed. Boxed because the
/// request path awaits the store, the coalescing lock and the origin in a
/// sequence that a hand-written state machine would make much harder to
/// read, and one allocation is small next to a store round trip.
pub struct ResponseFuture<B: Body, E> {
    inner: State<B, E>,
}

enum State<B: Body, E> {
    Ready(Option<Response<CacheBody<B>>>),
    Boxed(BoxedResponse<B, E>),
}

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

// The response waiting in `Ready` is only ever moved out, never pinned, and
// the box is its own pin: nothing here needs to stay put.
impl<B: Body, E> Unpin for ResponseFuture<B, E> {}

impl<B: Body, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            State::Ready(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
            State::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

impl<B: Body, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The inner service receives the request with a [`RequestBody`]: the
/// client's body untouched, or, for policies that key on the body, exactly
/// the bytes the cache read.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let settings = parts
            .extensions
            .get::<Arc<Settings>>()
            .cloned()
            .unwrap_or_else(|| self.cache.settings());
        let cache = self.cache.pinned(settings);
        // A lookup a front end made before this path (the server's fast
        // loop) that found nothing: this request's own lookup when it is
        // of this cache and key. Never passed on to the inner service.
        let looked = parts.extensions.remove::<Looked>();
        guard(&cache, &mut parts);
        let start = {
            let hs = HeaderMapRef(&parts.headers);
            // A body the key does not hold makes a GET or HEAD bypass; an
            // HTTP/2 request need not announce one in its headers.
            let has_body = !body.is_end_stream() && body.size_hint().exact() != Some(0);
            let v =
                view(&cache, &parts.method, &parts.uri, &parts.extensions, &hs).has_body(has_body);
            match cache.start(&v) {
                Start::Plan(Plan::Cache(mut plan)) => match cache.answer_now(&mut plan, &v) {
                    // A hit the store had at hand: answered here, the
                    // origin service untouched (it stays ready).
                    Some(r) => {
                        return ResponseFuture {
                            inner: State::Ready(Some(from_cached(r))),
                        }
                    }
                    None => {
                        if let Some(looked) = looked {
                            cache.note_looked(&mut plan, looked);
                        }
                        Start::Plan(Plan::Cache(plan))
                    }
                },
                start => start,
            }
        };
        // Call the instance that was polled ready; keep a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            inner: State::Boxed(Box::pin(handle(cache, inner, parts, body, start))),
        }
    }
}

// ===== the request path =====
// Every decision is core's (uip_cache_core::HttpCache); this only translates.
// The paths that call the origin are boxed where they start: their futures
// (the origin's among them) are large, and a hit should not carry, and copy
// into its own box, room for a request it never sends. Each box is made in
// a statement of its own: a temporary in an `.await` statement keeps its
// room in the enclosing future even once moved into the box.

async fn handle<S, ReqBody, ResBody>(
    cache: HttpCache,
    inner: S,
    parts: http::request::Parts,
    body: ReqBody,
    start: Start,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    let (body, buffered, plan) = match start {
        Start::Plan(plan) => (RequestBody::new(body), None, Some(plan)),
        Start::ReadBody(limit) => {
            let read = Box::pin(read_limited(body, limit, &parts.headers));
            match read.await {
                Read::Whole(bytes) => (RequestBody::buffered(bytes.clone()), Some(bytes), None),
                Read::Over(body) => {
                    let ticket = {
                        let hs = HeaderMapRef(&parts.headers);
                        let v = view(&cache, &parts.method, &parts.uri, &parts.extensions, &hs);
                        cache.bypass(&v, NoCacheReason::BodyTooLarge)
                    };
                    let req = Request::from_parts(parts, body);
                    let pass = Box::pin(bypass(inner, req, ticket));
                    return pass.await;
                }
            }
        }
    };
    let begin = {
        let hs = HeaderMapRef(&parts.headers);
        let v = view(&cache, &parts.method, &parts.uri, &parts.extensions, &hs)
            .body(buffered.as_deref());
        match plan.unwrap_or_else(|| cache.plan(&v)) {
            Plan::Bypass(reason) => {
                let ticket = cache.bypass(&v, reason);
                let req = Request::from_parts(parts, body);
                let pass = Box::pin(bypass(inner, req, ticket));
                return pass.await;
            }
            Plan::Cache(plan) => cache.begin(plan, &v, || header_list(&parts.headers)).await,
        }
    };
    match begin {
        Begin::Respond(r) => Ok(from_cached(r)),
        Begin::RespondAndRefresh(r, ticket) => {
            refresh_behind(inner, Request::from_parts(parts, body), ticket);
            Ok(from_cached(r))
        }
        Begin::Fetch(ticket) => {
            let fetch = Box::pin(fetch(inner, Request::from_parts(parts, body), ticket));
            fetch.await
        }
    }
}

/// Sends the request of a stale-while-revalidate refresh in the background.
fn refresh_behind<S, ReqBody, ResBody>(
    inner: S,
    req: Request<RequestBody<ReqBody>>,
    ticket: FetchTicket,
) where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    tokio::spawn(async move {
        // A recorded body is read to its end by its own pump; nobody
        // reads this response.
        let _ = fetch(inner, req, ticket).await;
    });
}

async fn fetch<S, ReqBody, ResBody>(
    mut inner: S,
    mut req: Request<RequestBody<ReqBody>>,
    mut ticket: FetchTicket,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    // Core may ask for the request once more (`After::Refetch`): keep it
    // as the client sent it, with a service to send it to, only then. The
    // body of a GET the cache handles is empty or bytes read for its key.
    let again = ticket.may_refetch().then(|| {
        let body = req.body().buffered_bytes().cloned().unwrap_or_default();
        let mut copy = Request::new(RequestBody::buffered(body));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        (inner.clone(), copy)
    });
    apply(req.headers_mut(), ticket.origin_header_changes().into());
    let cache = ticket.cache().clone();
    let resp = match inner.call(req).await {
        Ok(resp) => resp,
        Err(e) => return ticket.origin_failed().map(from_cached).ok_or(e),
    };
    // A proxy's own answer for an origin it could not reach: a stale
    // entry may answer instead.
    if resp.extensions().get::<OriginUnreachable>().is_some() {
        if let Some(r) = ticket.origin_unreachable() {
            return Ok(from_cached(r));
        }
    }
    // An in-process body's size, which its headers may not say.
    ticket.origin_body_length(resp.body().size_hint().exact());
    match ticket
        .origin_responded(resp.status().as_u16(), header_list(resp.headers()))
        .await
    {
        After::Respond(r) => Ok(from_cached(r)),
        After::Pass(f) => Ok(passthrough(&cache, resp, f)),
        After::Record { x_cache, recording } => Ok(recorded(
            &cache,
            resp,
            Forward::recorded(x_cache),
            recording,
        )),
        After::Part {
            forward,
            recording,
            reply,
        } => {
            let mut resp = match recording {
                Some(recording) => recorded(&cache, resp, forward, recording),
                None => passthrough(&cache, resp, forward),
            };
            *resp.status_mut() = StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::OK);
            apply(resp.headers_mut(), reply.header_edits());
            Ok(resp.map(|body| body.cut(reply.into_body())))
        }
        After::Refetch(ticket) => {
            // The origin's answer is dropped unread.
            drop(resp);
            let Some((mut inner, req)) = again else {
                // Core asks only fetches that may refetch.
                let mut resp = Response::new(CacheBody::cached(CachedBody::empty()));
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(resp);
            };
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let again = Box::pin(fetch(inner, req, *ticket));
            again.await
        }
    }
}

/// The origin's response streamed to the client while `recording` records
/// it, with the cache headers of `f`.
fn recorded<ResBody>(
    cache: &HttpCache,
    resp: Response<ResBody>,
    f: Forward,
    recording: Recording,
) -> Response<CacheBody<ResBody>>
where
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    let mut resp = tee(resp, recording);
    let edits = cache.response_edits(f, &HeaderMapRef(resp.headers()));
    apply(resp.headers_mut(), edits);
    resp
}

/// The origin's response streamed to the client while `recording` records
/// its body, its headers as they are.
fn tee<ResBody>(resp: Response<ResBody>, recording: Recording) -> Response<CacheBody<ResBody>>
where
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    let (pump, tap) = recording.tee(|b| Ok(http_body::Frame::data(b)));
    let (parts, body) = resp.into_parts();
    let size = body.size_hint();
    // Read the origin body at the origin's pace, whatever the client
    // does: the entry is stored when the body ends, even if the server
    // stops polling at the announced length or the client stalls (the
    // requests coalesced behind this one wait for it).
    let mut body = Box::pin(body);
    // A small body is usually all read already: then the pump is done in
    // its first poll, here, and costs no task.
    uip_cache_core::task::run_or_spawn(
        &tokio::runtime::Handle::current(),
        pump.drive(
            move |cx| {
                if body.is_end_stream() {
                    return Poll::Ready(None);
                }
                body.as_mut().poll_frame(cx)
            },
            |frame| frame.as_ref().ok().and_then(|f| f.data_ref().cloned()),
            Result::is_err,
        ),
    );
    Response::from_parts(parts, CacheBody::tapped(tap, size))
}

async fn bypass<S, ReqBody, ResBody>(
    mut inner: S,
    req: Request<ReqBody>,
    mut ticket: BypassTicket,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    // A POST's answer may become the GET entry of its URL: its headers
    // are needed then, and the request is gone once sent.
    let post = ticket.wants_request_headers();
    if post {
        ticket
            .note_request_headers(header_list(req.headers()))
            .await;
    }
    let resp = inner.call(req).await?;
    let status = resp.status().as_u16();
    let edits = ticket
        .origin_responded(status, &HeaderMapRef(resp.headers()))
        .await;
    let recording = match post {
        true => {
            ticket
                .record_answer(status, header_list(resp.headers()))
                .await
        }
        false => None,
    };
    let mut resp = match recording {
        Some(recording) => tee(resp, recording),
        None => resp.map(CacheBody::passthrough),
    };
    apply(resp.headers_mut(), edits);
    Ok(resp)
}

fn from_cached<B: Body>(r: CachedResponse) -> Response<CacheBody<B>> {
    let mut resp = Response::new(CacheBody::cached(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    extend(resp.headers_mut(), r.headers);
    resp
}

fn passthrough<B: Body>(
    cache: &HttpCache,
    resp: Response<B>,
    f: Forward,
) -> Response<CacheBody<B>> {
    let mut resp = resp.map(CacheBody::passthrough);
    let edits = cache.response_edits(f, &HeaderMapRef(resp.headers()));
    apply(resp.headers_mut(), edits);
    resp
}
