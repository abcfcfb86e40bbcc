//! The request path as a small protocol every adapter follows, so that the
//! Tower layer, the actix-web middleware and the server behave alike and
//! adapters only translate types:
//!
//! 1. [`HttpCache::plan`]: bypass, or handle with the cache.
//! 2. [`HttpCache::begin`]: look up, coalesce, decide. The answer is a
//!    response to send ([`Begin::Respond`]), one to send while the adapter
//!    refreshes the entry in the background ([`Begin::RespondAndRefresh`]),
//!    or a [`FetchTicket`] for the origin ([`Begin::Fetch`]).
//! 3. The adapter applies [`FetchTicket::origin_header_changes`] to the
//!    request and calls the origin, then reports the outcome:
//!    [`FetchTicket::origin_failed`] or [`FetchTicket::origin_responded`],
//!    which says whether to send a stored response, pass the origin's
//!    response through, or stream it while recording it ([`After::Record`]).
//! 4. While a recorded body streams, the adapter feeds it to the
//!    [`Recording`], which stores the entry when the body ends.

use std::fmt;
use std::time::SystemTime;

use crate::field::FieldName;
use bytes::Bytes;

use super::{CachePlan, CachedBody, CachedResponse, HttpCache, Lead};
use crate::compress;
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::admission::{OriginResponse, PER_CLIENT};
use crate::http::cache_status::{Forward, OriginFailure, XCache};
use crate::http::conditional::{freshen, Freshened};
use crate::http::freshness::{self, Usability};
use crate::lock::{Lock, LockGuard, WaitOutcome};
use crate::record::BodyRecorder;
use crate::request::{HeaderList, HeaderSource, RequestView};
use crate::stats::NoCacheReason;

/// How long, at least, a recording goes on once no client reads it.
const ORPHAN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The parts of a request the cache still needs once the request itself has
/// gone to the origin.
#[derive(Clone, Debug)]
pub struct OwnedRequest {
    method: String,
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
    headers: Vec<(FieldName, Bytes)>,
    /// The body the key holds (policies with `vary_by: [body]`), so that a
    /// variant key (response `Vary`) holds it too.
    body: Option<Bytes>,
}

impl OwnedRequest {
    /// Copies a request's view, with every header (`headers`, lower-case names).
    pub fn new(req: &RequestView<'_>, headers: Vec<(FieldName, Bytes)>) -> Self {
        OwnedRequest {
            method: req.method.to_owned(),
            scheme: req.scheme.map(str::to_owned),
            authority: req.authority.map(str::to_owned),
            path: req.path.to_owned(),
            query: req.query.map(str::to_owned),
            headers,
            body: req.body.map(Bytes::copy_from_slice),
        }
    }

    /// The view of this request, its headers looked up through `headers`
    /// (made with [`OwnedRequest::header_list`]).
    fn view<'a>(&'a self, headers: &'a HeaderList<'a>) -> RequestView<'a> {
        RequestView::new(&self.method, &self.path, headers)
            .query(self.query.as_deref())
            .scheme(self.scheme.as_deref())
            .authority(self.authority.as_deref())
            .body(self.body.as_deref())
    }

    fn header_list(&self) -> HeaderList<'_> {
        HeaderList(&self.headers)
    }
}

/// What [`HttpCache::begin`] decided.
#[derive(Debug)]
pub enum Begin {
    /// Send this response; the origin is not needed.
    Respond(CachedResponse),
    /// Send this (stale) response, and refresh the entry in the background:
    /// send the request to the origin as the ticket says, report the outcome
    /// and read a recorded body to its end.
    RespondAndRefresh(CachedResponse, FetchTicket),
    /// Go to the origin.
    Fetch(FetchTicket),
}

/// What to do with the origin's answer.
#[derive(Debug)]
pub enum After {
    /// Send this response instead (a revalidated entry, or stale-if-error).
    Respond(CachedResponse),
    /// Send the origin's response as it is, with these cache headers
    /// ([`HttpCache::forward_headers`]).
    Pass(Forward),
    /// Send the origin's response with this `X-Cache`, feeding its body to
    /// `recording` as it streams.
    Record {
        /// The `X-Cache` value.
        x_cache: XCache,
        /// Records the body and stores the entry when it ends.
        recording: Recording,
    },
}

/// Records a response body as it streams to the client, up to the policy's
/// `max_size`, and stores the entry when the body ends. Adapters call
/// [`chunk`](Recording::chunk) for each data chunk and
/// [`failed`](Recording::failed) or [`ended`](Recording::ended) once; a
/// recording dropped before either (the client went away) stores nothing.
pub struct Recording {
    recorder: Option<BodyRecorder>,
    finish: Option<OnEnd>,
    max_size: u64,
    /// How long a recording may go on once nobody reads it.
    orphan_limit: std::time::Duration,
}

/// What a recording does with its outcome.
type OnEnd = Box<dyn FnOnce(Result<Bytes, NoCacheReason>) + Send>;

impl Recording {
    /// A chunk went to the client.
    pub fn chunk(&mut self, data: &Bytes) {
        if let Some(r) = self.recorder.as_mut() {
            if !r.push(data) {
                // Past max_size: stop recording, keep streaming.
                self.recorder = None;
                self.end(Err(NoCacheReason::TooLarge));
            }
        }
    }

    /// The body stream failed.
    pub fn failed(&mut self) {
        self.recorder = None;
        self.end(Err(NoCacheReason::IncompleteBody));
    }

    /// The body ended: store what was recorded.
    pub fn ended(&mut self) {
        if let Some(r) = self.recorder.take() {
            let body = r.finish().ok_or(NoCacheReason::TooLarge);
            self.end(body);
        }
    }

    /// Whether the outcome has been handed on (stored, or given up).
    pub fn is_done(&self) -> bool {
        self.finish.is_none()
    }

    /// The most bytes it records.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// How long it may go on once no client reads the body.
    pub fn orphan_limit(&self) -> std::time::Duration {
        self.orphan_limit
    }

    /// Whether chunks are still being recorded (not ended, not past `max_size`).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn end(&mut self, body: Result<Bytes, NoCacheReason>) {
        if let Some(f) = self.finish.take() {
            f(body);
        }
    }

    /// A recording of at most `max` bytes whose outcome lands in the returned
    /// slot (`Some(body)` once stored), for tests of what drives recordings.
    #[doc(hidden)]
    pub fn for_test(max: u64) -> (Self, std::sync::Arc<std::sync::Mutex<Option<Bytes>>>) {
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        let recording = Recording {
            recorder: Some(BodyRecorder::new(max)),
            max_size: max,
            orphan_limit: std::time::Duration::from_secs(5),
            finish: Some(Box::new(move |body| {
                if let (Ok(b), Ok(mut s)) = (body, out.lock()) {
                    *s = Some(b);
                }
            })),
        };
        (recording, slot)
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("recording", &self.recorder.is_some())
            .field("done", &self.is_done())
            .finish()
    }
}

/// What a looked-up entry gives a request.
enum Found {
    /// A response, fresh or stale where allowed.
    Answer(CachedResponse),
    /// A stale-while-revalidate response, and this request refreshes the
    /// entry (it holds the key).
    Refresh(CachedResponse, StoredResponse, LockGuard),
    /// No entry, or one that may not answer (kept for revalidation).
    Unusable(Option<StoredResponse>),
}

/// A fetch from the origin the cache is waiting on.
pub struct FetchTicket {
    cache: HttpCache,
    plan: CachePlan,
    request: OwnedRequest,
    stale: Option<StoredResponse>,
    guard: Option<LockGuard>,
    request_time: SystemTime,
}

/// Stores a recorded response once its body has streamed.
struct Finish {
    cache: HttpCache,
    plan: CachePlan,
    request: OwnedRequest,
    entry: StoredResponse,
    /// Whether the cache may compress the body (no `no-transform`).
    transform: bool,
    guard: Option<LockGuard>,
}

/// Header changes for the origin request.
#[derive(Debug)]
#[non_exhaustive]
pub struct OriginHeaders {
    /// Remove these (the client's own validators: the cache answers them from
    /// the entry, and needs a full response to store).
    pub remove: &'static [&'static str],
    /// Then set these (a stale entry's validators: a revalidation).
    pub set: Vec<(&'static str, Bytes)>,
}

impl HttpCache {
    /// Looks the request up and decides, coalescing concurrent misses for one
    /// key (and, through a store lease, across instances sharing the store).
    /// `headers` are all the request's headers, kept for after the fetch.
    pub async fn begin(
        &self,
        plan: CachePlan,
        req: &RequestView<'_>,
        headers: impl FnOnce() -> Vec<(FieldName, Bytes)>,
    ) -> Begin {
        // A hit ends here. Everything after it (the coalescing lock, the
        // lease, the waits) is boxed: its future is several kilobytes that
        // a hit would otherwise carry and copy for nothing.
        let writes = self.writes();
        let entry = self.lookup(&plan, req).await;
        match self.found(&plan, req, entry) {
            Found::Answer(r) => Begin::Respond(r),
            found => {
                // Boxed in a statement of its own, or the future's room
                // would stay reserved here (see the Tower service).
                let slow = Box::pin(self.begin_slow(plan, req, headers, writes, found));
                slow.await
            }
        }
    }

    /// [`HttpCache::begin`] past a lookup that gave no answer: `writes`
    /// as it was before that lookup.
    async fn begin_slow(
        &self,
        mut plan: CachePlan,
        req: &RequestView<'_>,
        headers: impl FnOnce() -> Vec<(FieldName, Bytes)>,
        mut writes: u64,
        mut found: Found,
    ) -> Begin {
        let mut stale = None;
        let mut guard = None;
        // Rounds of waiting for a leader that stored something (another
        // variant, say); bounded so a request never waits forever.
        let mut rounds = 0;
        loop {
            match found {
                Found::Answer(r) => return Begin::Respond(r),
                Found::Refresh(r, entry, g) => {
                    // Refresh once, in the background.
                    self.note_store_epoch(&mut plan).await;
                    let ticket = self.ticket(plan, req, headers(), Some(entry), Some(g));
                    return Begin::RespondAndRefresh(r, ticket);
                }
                Found::Unusable(Some(entry)) => stale = Some(entry),
                Found::Unusable(None) => {}
            }
            if plan.request_cc.only_if_cached {
                self.stats().uncacheable(NoCacheReason::NoFreshness);
                let mut headers = vec![("x-cache".into(), Bytes::from_static(b"MISS"))];
                headers.extend(self.own_status("only-if-cached"));
                return Begin::Respond(CachedResponse {
                    status: 504,
                    headers,
                    body: CachedBody::empty(),
                });
            }
            // Hit-for-miss: this key's last response could not be stored, so
            // waiting for another request's fetch would gain nothing.
            if stale.is_none() && self.is_uncacheable(&plan) {
                self.stats().hit_for_miss();
                self.note_store_epoch(&mut plan).await;
                return Begin::Fetch(self.ticket(plan, req, headers(), None, None));
            }
            match self.lock(&plan) {
                Lock::Leader(mut g) => {
                    // A leader that finished storing this key while we looked
                    // it up has just let go of the lock: look again, holding it.
                    if self.writes() != writes {
                        if let Some(entry) = self.lookup(&plan, req).await {
                            if let Some((Usability::Fresh | Usability::StaleAccepted, r)) =
                                self.answer(&plan, req, &entry)
                            {
                                g.stored();
                                return Begin::Respond(r);
                            }
                            stale = Some(entry);
                        }
                    }
                    // Other instances sharing the store may be fetching it too.
                    if let Lead::Found(entry) = self.lead(&mut plan, req, &mut g).await {
                        // Another instance stored it: it answers only if it may
                        // answer this request, as any entry found by lookup.
                        match self.answer(&plan, req, &entry) {
                            Some((Usability::Fresh | Usability::StaleAccepted, r)) => {
                                g.stored();
                                return Begin::Respond(r);
                            }
                            _ => stale = Some(*entry),
                        }
                    }
                    guard = Some(g);
                    break;
                }
                Lock::Follower(w) => {
                    self.stats().coalesced();
                    // Look again once the leader has stored; past the timeout,
                    // or if it stored nothing, go to the origin alone.
                    rounds += 1;
                    if w.wait(self.lock_timeout()).await != WaitOutcome::Stored || rounds > 3 {
                        break;
                    }
                    writes = self.writes();
                    let entry = self.lookup(&plan, req).await;
                    found = self.found(&plan, req, entry);
                }
            }
        }
        if guard.is_none() {
            // Not the leader (the wait timed out): still learn what instances
            // sharing the store invalidate while this fetch runs.
            self.note_store_epoch(&mut plan).await;
        }
        Begin::Fetch(self.ticket(plan, req, headers(), stale, guard))
    }

    /// What a looked-up entry gives this request, counted when it answers.
    fn found(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: Option<StoredResponse>,
    ) -> Found {
        let Some(entry) = entry else {
            return Found::Unusable(None);
        };
        match self.answer(plan, req, &entry) {
            Some((Usability::StaleWhileRevalidate, r)) => match self.lock(plan) {
                Lock::Leader(g) => Found::Refresh(r, entry, g),
                Lock::Follower(_) => Found::Answer(r),
            },
            Some((_, r)) => Found::Answer(r),
            None => Found::Unusable(Some(entry)),
        }
    }

    /// The response `entry` gives this request now, if it may answer it
    /// without the origin (fresh, or stale where allowed), counted.
    fn answer(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
    ) -> Option<(Usability, CachedResponse)> {
        let now = SystemTime::now();
        let usability = freshness::usability(entry, &plan.request_cc, now);
        Some((usability, self.answer_as(plan, req, entry, usability, now)?))
    }

    /// The response `entry` gives this request when its `usability` at
    /// `now` lets it answer without the origin, counted.
    pub(crate) fn answer_as(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
        usability: Usability,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        let x = match usability {
            Usability::Fresh => XCache::Hit,
            Usability::StaleAccepted | Usability::StaleWhileRevalidate => XCache::Stale,
            _ => return None,
        };
        let r = self.respond(entry, req, x, now)?;
        self.count(plan, x);
        Some(r)
    }

    fn ticket(
        &self,
        plan: CachePlan,
        req: &RequestView<'_>,
        headers: Vec<(FieldName, Bytes)>,
        stale: Option<StoredResponse>,
        guard: Option<LockGuard>,
    ) -> FetchTicket {
        FetchTicket {
            cache: self.clone(),
            plan,
            request: OwnedRequest::new(req, headers),
            stale,
            guard,
            request_time: SystemTime::now(),
        }
    }
}

impl HttpCache {
    /// A fetch that refreshes `req`'s entry for another task holding the
    /// key (a stale-while-revalidate refresh sent back through the app by
    /// a front-end that cannot send the client's request on itself): it
    /// neither waits for nor takes the key, and revalidates the stored
    /// entry when there is one.
    pub async fn begin_refresh(
        &self,
        mut plan: CachePlan,
        req: &RequestView<'_>,
        headers: Vec<(FieldName, Bytes)>,
    ) -> FetchTicket {
        let stale = self.lookup(&plan, req).await;
        self.note_store_epoch(&mut plan).await;
        self.ticket(plan, req, headers, stale, None)
    }
}

impl FetchTicket {
    /// Lets go of the key as if this fetch had stored it: another request
    /// did the fetch and the store (see [`HttpCache::begin_refresh`]), so
    /// the requests waiting for the key look it up again.
    pub fn stored_elsewhere(self) {
        if let Some(g) = &self.guard {
            g.stored();
        }
    }

    /// The method of the request this fetch is for.
    pub fn method(&self) -> &str {
        &self.request.method
    }

    /// Its path and query, as the client sent them.
    pub fn path_and_query(&self) -> String {
        match &self.request.query {
            Some(q) => format!("{}?{q}", self.request.path),
            None => self.request.path.clone(),
        }
    }

    /// The host the client addressed (the key's authority), when known.
    pub fn authority(&self) -> Option<&str> {
        self.request.authority.as_deref()
    }

    /// The scheme the key holds (`http` or `https`), when known.
    pub fn scheme(&self) -> Option<&str> {
        self.request.scheme.as_deref()
    }

    /// Its headers (lower-case names), as the client sent them.
    pub fn request_headers(&self) -> &[(FieldName, Bytes)] {
        &self.request.headers
    }

    /// The cache this fetch is for.
    pub fn cache(&self) -> &HttpCache {
        &self.cache
    }

    /// `MISS`, or `EXPIRED` when an expired entry is being revalidated or replaced.
    pub fn outcome(&self) -> XCache {
        if self.stale.is_some() {
            XCache::Expired
        } else {
            XCache::Miss
        }
    }

    /// How to change the request before it goes to the origin.
    pub fn origin_header_changes(&self) -> OriginHeaders {
        let mut set = Vec::new();
        if let Some(e) = &self.stale {
            if let Some(v) = &e.etag {
                set.push(("if-none-match", v.clone()));
            }
            if let Some(v) = &e.last_modified {
                set.push(("if-modified-since", v.clone()));
            }
        }
        OriginHeaders {
            remove: &["if-none-match", "if-modified-since"],
            set,
        }
    }

    /// The origin failed: a stale entry within stale-if-error answers
    /// instead; `None` means the error goes to the client.
    pub fn origin_failed(self) -> Option<CachedResponse> {
        self.serve_stale(SystemTime::now(), OriginFailure::Unreachable)
    }

    fn serve_stale(&self, now: SystemTime, failed: OriginFailure) -> Option<CachedResponse> {
        let e = self
            .stale
            .as_ref()
            .filter(|e| freshness::serves_on_error(e, &self.plan.request_cc, now))?;
        let hs = self.request.header_list();
        let r = self.cache.respond_after(
            e,
            &self.request.view(&hs),
            XCache::Stale,
            now,
            Some(failed),
        )?;
        self.cache.count(&self.plan, XCache::Stale);
        Some(r)
    }

    /// The origin answered `status` with `headers` (lower-case names).
    pub async fn origin_responded(self, status: u16, headers: Vec<(FieldName, Bytes)>) -> After {
        let response_time = SystemTime::now();
        let cache = self.cache.clone();
        if status >= 500 {
            if let Some(r) = self.serve_stale(response_time, OriginFailure::Status(status)) {
                return After::Respond(r);
            }
        }
        let list = HeaderList(&headers);
        let origin = OriginResponse::new(status, &list, &headers, self.request_time, response_time);
        let outcome = self.outcome();
        let FetchTicket {
            plan,
            request,
            stale,
            guard,
            ..
        } = self;

        let hs = request.header_list();
        let view = request.view(&hs);
        if let (304, Some(mut entry)) = (status, stale) {
            cache.stats().revalidation();
            match freshen(&mut entry, cache.policy(&plan), &view, &origin) {
                Freshened::Store => {
                    // The origin now forbids transformation: keep its
                    // bytes, not the gzip the cache made of them.
                    if entry.compression == BodyEncoding::Gzip
                        && (compress::forbids_transform(&headers)
                            || compress::forbids_transform(&entry.headers))
                    {
                        if let Some(body) = compress::gunzip_off_runtime(entry.body.clone()).await {
                            entry.body = body;
                            entry.compression = BodyEncoding::Identity;
                        }
                    }
                    if cache.put_entry(&plan, &view, entry.clone()).await {
                        if let Some(g) = &guard {
                            g.stored();
                        }
                    }
                }
                Freshened::Remove(reason) => {
                    cache.stats().uncacheable(reason);
                    cache.remove_entry(&plan, &view, &entry).await;
                }
                // This client's answer only: the shared entry stays as it was.
                Freshened::Keep(reason) => cache.stats().uncacheable(reason),
            }
            drop(guard);
            return match cache.respond(&entry, &view, XCache::Expired, response_time) {
                Some(mut r) => {
                    cache.count(&plan, XCache::Expired);
                    // The 304's cookies are this client's alone: never stored,
                    // but delivered.
                    r.headers.extend(
                        headers
                            .iter()
                            .filter(|(n, _)| PER_CLIENT.contains(&&**n))
                            .cloned(),
                    );
                    After::Respond(r)
                }
                None => After::Pass(Forward::new(XCache::Expired, false, None)),
            };
        }
        cache.count(&plan, outcome);
        if request.method.eq_ignore_ascii_case("HEAD") {
            // A HEAD response has no body to store for GETs.
            return After::Pass(Forward::new(outcome, false, None));
        }
        let entry = match cache.admit(&plan, &view, &origin) {
            Ok(entry) => {
                cache.forget_uncacheable(&plan);
                entry
            }
            Err(reason) => {
                cache.remember_uncacheable(&plan, &view, reason);
                return After::Pass(Forward::new(outcome, false, Some(reason)));
            }
        };
        // Read here, from all the origin's headers: the entry does not keep
        // those the cache consumes (`Surrogate-Control`).
        let transform = !compress::forbids_transform(&headers);
        let max_size = cache.max_size(&plan);
        let declared = list
            .first("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_size) {
            cache.stats().uncacheable(NoCacheReason::TooLarge);
            cache.remember_uncacheable(&plan, &view, NoCacheReason::TooLarge);
            return After::Pass(Forward::new(outcome, false, Some(NoCacheReason::TooLarge)));
        }
        After::Record {
            x_cache: outcome,
            recording: Recording {
                recorder: Some(BodyRecorder::new(max_size)),
                max_size,
                // Long enough for a background refresh (no client from the
                // start), short enough to end a stream that never does.
                orphan_limit: cache.lock_timeout().max(ORPHAN_LIMIT),
                finish: Some(Box::new(move |body| {
                    Box::new(Finish {
                        cache,
                        plan,
                        request,
                        entry,
                        transform,
                        guard,
                    })
                    .done(body)
                })),
            },
        }
    }
}

impl Finish {
    /// The recorded body ended: with all of it, or with why it cannot be
    /// stored. The write runs in a task of its own (on the current tokio
    /// runtime); waiting requests wake once it is done.
    fn done(self: Box<Self>, body: Result<Bytes, NoCacheReason>) {
        let body = match body {
            Ok(b) => b,
            Err(reason) => {
                self.cache.stats().uncacheable(reason);
                return;
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let Finish {
                cache,
                plan,
                request,
                entry,
                transform,
                guard,
            } = *self;
            let hs = request.header_list();
            if cache
                .store_body(&plan, &request.view(&hs), entry, body, transform)
                .await
            {
                if let Some(g) = &guard {
                    g.stored();
                }
            }
            drop(guard);
        });
    }
}

impl fmt::Debug for FetchTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchTicket")
            .field("key", &self.plan.key)
            .field("revalidating", &self.stale.is_some())
            .field("leader", &self.guard.is_some())
            .finish()
    }
}

impl fmt::Debug for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finish")
            .field("key", &self.plan.key)
            .finish()
    }
}
