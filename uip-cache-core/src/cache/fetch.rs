//! The fetch from the origin: the [`FetchTicket`] an adapter holds while the
//! origin answers, and what to do with the answer ([`After`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use super::completion::{Answer, Completion};
use super::partial;
use super::recording::Finish;
use super::{CachePlan, CachedResponse, HttpCache, RangeReply, Recording};
use crate::compress;
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::admission::{self, OriginResponse, PER_CLIENT};
use crate::http::cache_status::{Forward, OriginFailure, XCache};
use crate::http::conditional::{freshen, Freshened};
use crate::http::encoding::forbids_transform;
use crate::http::freshness;
use crate::http::range::{self, RangeSlicer, Validators};
use crate::lock::{LockGuard, Waiter};
use crate::request::{HeaderList, HeaderSource, RequestView};
use crate::stats::NoCacheReason;

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
    pub(super) fn view<'a>(&'a self, headers: &'a HeaderList<'a>) -> RequestView<'a> {
        RequestView::new(&self.method, &self.path, headers)
            .query(self.query.as_deref())
            .scheme(self.scheme.as_deref())
            .authority(self.authority.as_deref())
            .body(self.body.as_deref())
    }

    pub(super) fn header_list(&self) -> HeaderList<'_> {
        HeaderList(&self.headers)
    }
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
    /// The client asked for a range; the cache sent the origin its request
    /// without the `Range`, to store the whole. Or the client asked for the
    /// whole and the cache asked the origin for the rest of a stored part:
    /// `reply` is then a 200 whose body is the part, then the origin's.
    /// Send `reply`'s status,
    /// headers and body cut from the origin's response, with the cache
    /// headers of `forward` ([`HttpCache::response_edits`]), feeding the
    /// whole body to `recording`, when there is one, as it streams.
    Part {
        /// `X-Cache` and `Cache-Status` of the response.
        forward: Forward,
        /// Records the whole body and stores the entry when it ends
        /// (`None`: the response is not stored).
        recording: Option<Recording>,
        /// The client's part.
        reply: Box<RangeReply>,
    },
    /// The origin's answer cannot be used: the cache asked it for the
    /// rest of a stored part ([`FetchTicket::may_refetch`]) and it sent
    /// a 206 (or 416) that cannot be combined with the part. Drop that
    /// answer, unread, and send the client's request to the origin once
    /// more as this ticket says ([`FetchTicket::origin_header_changes`],
    /// applied to the request as the client sent it), reporting the
    /// outcome to this ticket. Its answer is never `Refetch`.
    Refetch(Box<FetchTicket>),
}

/// What a fetch does with the client's `Range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeFetch {
    /// The request has none (or is not a GET or a HEAD).
    None,
    /// Removed from the origin's request: the whole is fetched, stored,
    /// and the range cut from it.
    Whole,
    /// Sent on: the origin's partial answer passes through, never stored.
    Pass,
}

/// A fetch from the origin the cache is waiting on.
pub struct FetchTicket {
    cache: HttpCache,
    plan: CachePlan,
    request: OwnedRequest,
    stale: Option<StoredResponse>,
    guard: Option<LockGuard>,
    /// The task holding the key when this fetch refreshes for it.
    holder: Option<Waiter>,
    request_time: SystemTime,
    range: RangeFetch,
    /// The origin body's length when the adapter knows it exactly.
    body_length: Option<u64>,
    /// The stored part this fetch completes: the origin is asked for the
    /// rest of it.
    completion: Option<Box<Completion>>,
    /// Whether the cache set `Range` and `If-Range` on this request (or
    /// on the first request of a refetch): changes remove them again.
    added_range: bool,
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
    pub(super) fn ticket(
        &self,
        plan: CachePlan,
        req: &RequestView<'_>,
        headers: Vec<(FieldName, Bytes)>,
        stale: Option<StoredResponse>,
        guard: Option<LockGuard>,
    ) -> FetchTicket {
        let range = self.range_fetch(&plan, req, stale.is_some());
        FetchTicket {
            cache: self.clone(),
            plan,
            request: OwnedRequest::new(req, headers),
            stale,
            guard,
            holder: None,
            request_time: self.inner.clock.now(),
            range,
            body_length: None,
            completion: None,
            added_range: false,
        }
    }

    /// What a fetch for `req` does with its `Range`; with a stale entry
    /// to revalidate (`stale`), the whole is fetched.
    fn range_fetch(&self, plan: &CachePlan, req: &RequestView<'_>, stale: bool) -> RangeFetch {
        match req.headers.first("range") {
            Some(_) if !(req.method == "GET" || req.method == "HEAD") => RangeFetch::None,
            Some(r) if !stale && self.passes_range(plan, r) => RangeFetch::Pass,
            Some(_) => RangeFetch::Whole,
            None => RangeFetch::None,
        }
    }

    /// Whether a fetch for `req` without a stale entry sends its `Range`
    /// to the origin: its answer is never stored, so it neither takes the
    /// key nor waits for whoever holds it.
    pub(super) fn passes_range_on(&self, plan: &CachePlan, req: &RequestView<'_>) -> bool {
        self.range_fetch(plan, req, false) == RangeFetch::Pass
    }
}

impl FetchTicket {
    /// Makes this fetch complete the stored part `completion`, when it is
    /// a plain miss of a whole GET (nothing stale to revalidate, no
    /// `Range` of the client's, no refresh for another task).
    pub(super) fn completing(mut self, completion: Option<Box<Completion>>) -> Self {
        if self.stale.is_none() && self.range == RangeFetch::None && self.holder.is_none() {
            self.added_range = completion.is_some();
            self.completion = completion;
        }
        self
    }

    /// Whether the origin's answer to this fetch may be
    /// [`After::Refetch`]: the cache asks the origin for the rest of a
    /// stored part. An adapter that cannot send the request twice keeps
    /// what it needs to send it again only then.
    pub fn may_refetch(&self) -> bool {
        self.completion.is_some()
    }

    /// The same fetch, without the stored part: the whole, once more.
    fn refetch(mut self) -> FetchTicket {
        self.completion = None;
        self.request_time = self.cache.inner.clock.now();
        self.body_length = None;
        self
    }

    /// Marks this fetch as made for the task holding its key (a refresh
    /// sent back through the app): its write is counted once that task has
    /// let go of the key.
    pub(super) fn for_holder(mut self) -> Self {
        self.holder = self.cache.inner.locks.follow(self.plan.key.as_str());
        self
    }

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

    /// The exact length of the origin's body, when the adapter knows it
    /// other than by its `Content-Length` (an in-process body's exact size
    /// hint): a range the client asked for is cut from the body by it.
    pub fn origin_body_length(&mut self, len: Option<u64>) {
        self.body_length = len;
    }

    /// How to change the request before it goes to the origin: the
    /// client's validators removed (and its `Range` and `If-Range`, when
    /// the cache fetches the whole to answer the range itself), then a
    /// stale entry's set.
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
        if let Some(c) = &self.completion {
            set.extend(c.origin_headers());
        }
        let remove: &'static [&'static str] = match self.range {
            RangeFetch::Whole => &["if-none-match", "if-modified-since", "range", "if-range"],
            _ if self.added_range => &["if-none-match", "if-modified-since", "range", "if-range"],
            RangeFetch::None | RangeFetch::Pass => &["if-none-match", "if-modified-since"],
        };
        OriginHeaders { remove, set }
    }

    /// The origin failed (the inner service gave an error): a stale entry
    /// within stale-if-error answers instead; `None` means the error goes
    /// to the client.
    pub fn origin_failed(self) -> Option<CachedResponse> {
        self.serve_stale(
            self.cache.inner.clock.now(),
            OriginFailure::Unreachable,
            Duration::ZERO,
        )
    }

    /// The response in hand is a proxy's own answer for an origin that
    /// could not be reached, closed the connection without answering, or
    /// did not answer in time (the adapter saw
    /// [`OriginUnreachable`](crate::OriginUnreachable) on it): the stale
    /// entry that may answer instead, as [`FetchTicket::origin_failed`].
    /// `None`: go on with [`FetchTicket::origin_responded`].
    pub fn origin_unreachable(&self) -> Option<CachedResponse> {
        self.serve_stale(
            self.cache.inner.clock.now(),
            OriginFailure::Unreachable,
            self.plan.settings.stale_if_unreachable(),
        )
    }

    /// A stale entry that may answer for the failed origin: within its
    /// stale-if-error window, or `unreachable` when that is longer.
    fn serve_stale(
        &self,
        now: SystemTime,
        failed: OriginFailure,
        unreachable: Duration,
    ) -> Option<CachedResponse> {
        let cc = &self.plan.request_cc;
        let e = self
            .stale
            .as_ref()
            .filter(|e| freshness::serves_when_unreachable(e, cc, now, unreachable))?;
        let hs = self.request.header_list();
        let r = self.cache.respond_after(
            &self.plan.settings,
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
        let response_time = self.cache.inner.clock.now();
        let cache = self.cache.clone();
        if status >= 500 {
            if let Some(r) =
                self.serve_stale(response_time, OriginFailure::Status(status), Duration::ZERO)
            {
                return After::Respond(r);
            }
        }
        let list = HeaderList(&headers);
        // The rest of a stored part was asked for: an answer that cannot
        // be combined with it is neither passed on (a 206 the client did
        // not ask for) nor mixed with it.
        let range_sent = self.completion.is_some();
        let combine = match self.completion.as_deref().map(|c| c.answer(status, &list)) {
            Some(Answer::Refetch) => return After::Refetch(Box::new(self.refetch())),
            Some(Answer::Combine) => true,
            Some(Answer::Ordinary) | None => false,
        };
        let origin = OriginResponse::new(status, &list, &headers, self.request_time, response_time);
        let outcome = self.outcome();
        let FetchTicket {
            plan,
            request,
            stale,
            guard,
            holder,
            range,
            body_length,
            completion,
            ..
        } = self;

        let hs = request.header_list();
        let view = request.view(&hs);
        if let (304, Some(mut entry)) = (status, stale) {
            cache.stats().revalidation();
            let mut stored = false;
            match freshen(&mut entry, cache.policy(&plan), &view, &origin) {
                Freshened::Store => {
                    // The origin now forbids transformation: keep its
                    // bytes, not the gzip the cache made of them.
                    if entry.compression == BodyEncoding::Gzip
                        && (forbids_transform(&headers) || forbids_transform(&entry.headers))
                    {
                        if let Some(body) = compress::gunzip_off_runtime(entry.body.clone()).await {
                            entry.body = body;
                            entry.compression = BodyEncoding::Identity;
                        }
                    }
                    stored = cache.put_entry(&plan, &view, entry.clone()).await;
                    if stored {
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
            // Let go of the key (and the shared store's lease) in the
            // background: the answer is at hand and waits for no store
            // round trip. A holder lets go once it has read this answer:
            // the write is counted after that.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let cache = cache.clone();
                    rt.spawn(async move { cache.release_and_count(guard, holder, stored).await });
                }
                Err(_) => cache.release_and_count(guard, None, stored).await,
            }
            return match cache.respond(
                &plan.settings,
                &entry,
                &view,
                XCache::Expired,
                response_time,
            ) {
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
        let head = request.method.eq_ignore_ascii_case("HEAD");
        let declared = list
            .first("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        let reply = match range {
            RangeFetch::Whole => {
                // The complete length: announced, or known to the adapter
                // (an application's answer to a HEAD may hold the body
                // its server leaves out; an empty one says nothing).
                let len = declared.or(body_length.filter(|&n| !head || n > 0));
                if let (200, Some(len)) = (status, len) {
                    cache.note_length(&plan, len);
                }
                part_of_whole(status, &list, len, &view).map(Box::new)
            }
            RangeFetch::Pass => {
                // The origin says how large the representation is now.
                if let Some(len) = list.first("content-range").and_then(range::complete_length) {
                    cache.note_length(&plan, len);
                }
                None
            }
            RangeFetch::None => None,
        };
        let pass = |forward: Forward, reply: Option<Box<RangeReply>>| match reply {
            Some(reply) => After::Part {
                forward,
                recording: None,
                reply,
            },
            None => After::Pass(forward),
        };
        if head {
            // A HEAD response has no body to store for GETs.
            return pass(Forward::new(outcome, false, None), reply);
        }
        if let (true, Some(c)) = (combine, completion) {
            return complete_part(
                cache, plan, request, &c, &headers, &origin, outcome, guard, holder,
            );
        }
        // A part of the representation for a client that asked for a
        // range (RFC 9111 section 3.3): stored under the key of parts,
        // never the plain key, as the origin sent it (never compressed);
        // one that may not be stored goes the way of any 206.
        if status == 206 && range != RangeFetch::None && request.method == "GET" {
            let part = admission::part_of(&list);
            let admitted = admission::admit_part(cache.policy(&plan), &view, &origin);
            if let (Some((part, _)), Ok(entry)) = (part, admitted) {
                let max_size = cache.max_size(&plan);
                if part.len() <= max_size {
                    cache.note_part(&plan);
                    // A large part goes to a store that takes bodies as
                    // they stream in as a large whole does.
                    let recording = Recording::storing_large(
                        max_size,
                        Some(part.len()),
                        Finish {
                            plan: plan.for_part(),
                            cache,
                            request,
                            entry,
                            transform: false,
                            guard,
                            holder,
                            exact_len: Some(part.len()),
                        },
                    );
                    return After::Record {
                        x_cache: outcome,
                        recording,
                    };
                }
            }
        }
        // The origin saw a `Range` (the client's, or the cache's for the
        // rest of a part): what it answers may be that request's alone.
        let partial = range == RangeFetch::Pass || range_sent;
        let admitted = if range_sent && !admission::is_complete_200(&origin) {
            cache
                .stats()
                .uncacheable(NoCacheReason::RangeOrPrecondition);
            Err(NoCacheReason::RangeOrPrecondition)
        } else {
            cache.admit(&plan, &view, &origin)
        };
        let entry = match admitted {
            Ok(entry) => {
                cache.forget_uncacheable(&plan);
                entry
            }
            Err(reason) => {
                cache.remember_uncacheable(&plan, &view, reason, partial);
                return pass(Forward::new(outcome, false, Some(reason)), reply);
            }
        };
        // Read here, from all the origin's headers: the entry does not keep
        // those the cache consumes (`Surrogate-Control`).
        let transform = !forbids_transform(&headers);
        let max_size = cache.max_size(&plan);
        if declared.is_some_and(|len| len > max_size) {
            cache.stats().uncacheable(NoCacheReason::TooLarge);
            cache.remember_uncacheable(&plan, &view, NoCacheReason::TooLarge, partial);
            let f = Forward::new(outcome, false, Some(NoCacheReason::TooLarge));
            return pass(f, reply);
        }
        let recording = Recording::storing_large(
            max_size,
            declared,
            Finish {
                cache,
                plan,
                request,
                entry,
                transform,
                guard,
                holder,
                exact_len: None,
            },
        );
        match reply {
            Some(reply) => After::Part {
                forward: Forward::recorded(outcome),
                recording: Some(recording),
                reply,
            },
            None => After::Record {
                x_cache: outcome,
                recording,
            },
        }
    }
}

/// The client's 200 when the origin's 206 holds the rest of the stored
/// part `c` of the same representation (RFC 9111 section 3.4): the part,
/// then the origin's bytes, with the origin's headers; stored as a
/// complete 200 under the plain key when the rules for a 200 admit it.
#[allow(clippy::too_many_arguments)]
fn complete_part(
    cache: HttpCache,
    plan: CachePlan,
    request: OwnedRequest,
    c: &Completion,
    headers: &[(FieldName, Bytes)],
    origin: &OriginResponse<'_>,
    outcome: XCache,
    guard: Option<LockGuard>,
    holder: Option<Waiter>,
) -> After {
    let Some(reply) = c.reply().map(Box::new) else {
        // Not reached: a completion's part is shorter than the whole.
        return After::Pass(Forward::new(outcome, false, None));
    };
    let whole = c.whole_headers(headers);
    let list = HeaderList(&whole);
    let origin = OriginResponse::new(
        200,
        &list,
        &whole,
        origin.request_time,
        origin.response_time,
    );
    let hs = request.header_list();
    let view = request.view(&hs);
    let entry = match cache.admit(&plan, &view, &origin) {
        Ok(entry) => {
            cache.forget_uncacheable(&plan);
            entry
        }
        Err(reason) => {
            cache.remember_uncacheable(&plan, &view, reason, false);
            return After::Part {
                forward: Forward::new(outcome, false, Some(reason)),
                recording: None,
                reply,
            };
        }
    };
    let max_size = cache.max_size(&plan);
    if c.len() > max_size {
        cache.stats().uncacheable(NoCacheReason::TooLarge);
        cache.remember_uncacheable(&plan, &view, NoCacheReason::TooLarge, false);
        return After::Part {
            forward: Forward::new(outcome, false, Some(NoCacheReason::TooLarge)),
            recording: None,
            reply,
        };
    }
    let transform = !forbids_transform(headers);
    let exact_len = Some(c.len());
    // A large whole goes to a store that takes bodies as they stream in as
    // any large whole does.
    let mut recording = Recording::storing_large(
        max_size,
        exact_len,
        Finish {
            cache,
            plan,
            request,
            entry,
            transform,
            guard,
            holder,
            exact_len,
        },
    );
    // The whole is the part, then what the origin sends.
    recording.begin_with(c.prefix().clone());
    After::Part {
        forward: Forward::recorded(outcome),
        recording: Some(recording),
        reply,
    }
}

/// The client's part of the origin's complete answer to a request whose
/// `Range` the cache removed: `None` when the client gets the whole (not a
/// complete 200, a length not known in advance, an `If-Range` the new
/// response does not satisfy, or a `Range` that is ignored).
fn part_of_whole(
    status: u16,
    headers: &HeaderList<'_>,
    len: Option<u64>,
    req: &RequestView<'_>,
) -> Option<RangeReply> {
    let len = len?;
    if status != 200 || headers.first("content-range").is_some() {
        return None;
    }
    let validators = Validators {
        etag: headers.first("etag"),
        last_modified: headers.first("last-modified"),
        date: headers.first("date"),
        dates_strong: true,
    };
    let ranges = range::for_request(req, len, &validators);
    let mut reply = partial::part(ranges, len, headers.first("content-type"))?;
    if req.method.eq_ignore_ascii_case("HEAD") {
        reply.slicer = RangeSlicer::empty();
    }
    Some(reply)
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
