//! The fetch from the origin: the [`FetchTicket`] an adapter holds while the
//! origin answers, and what to do with the answer ([`After`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

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
    /// without the `Range`, to store the whole. Send `reply`'s status,
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
        let remove: &'static [&'static str] = match self.range {
            RangeFetch::Whole => &["if-none-match", "if-modified-since", "range", "if-range"],
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
                    let recording = Recording::storing(
                        max_size,
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
        let partial = range == RangeFetch::Pass;
        let entry = match cache.admit(&plan, &view, &origin) {
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
        let recording = Recording::storing(
            max_size,
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
