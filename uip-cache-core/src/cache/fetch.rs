//! The fetch from the origin: the [`FetchTicket`] an adapter holds while the
//! origin answers, and what to do with the answer ([`After`]).

use std::fmt;
use std::time::SystemTime;

use crate::field::FieldName;
use bytes::Bytes;

use super::recording::Finish;
use super::{CachePlan, CachedResponse, HttpCache, Recording};
use crate::compress;
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::admission::{OriginResponse, PER_CLIENT};
use crate::http::cache_status::{Forward, OriginFailure, XCache};
use crate::http::conditional::{freshen, Freshened};
use crate::http::encoding::forbids_transform;
use crate::http::freshness;
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
        FetchTicket {
            cache: self.clone(),
            plan,
            request: OwnedRequest::new(req, headers),
            stale,
            guard,
            holder: None,
            request_time: self.inner.clock.now(),
        }
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
        self.serve_stale(self.cache.inner.clock.now(), OriginFailure::Unreachable)
    }

    fn serve_stale(&self, now: SystemTime, failed: OriginFailure) -> Option<CachedResponse> {
        let e = self
            .stale
            .as_ref()
            .filter(|e| freshness::serves_on_error(e, &self.plan.request_cc, now))?;
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
            holder,
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
<<<<<<< HEAD
            drop(guard);
            return match cache.respond(
                &plan.settings,
                &entry,
                &view,
                XCache::Expired,
                response_time,
            ) {
=======
            match (holder, tokio::runtime::Handle::try_current()) {
                // The holder lets go once it has read this answer: the
                // write is counted after that, in the background.
                (Some(holder), Ok(rt)) => {
                    let cache = cache.clone();
                    rt.spawn(
                        async move { cache.release_and_count(guard, Some(holder), stored).await },
                    );
                }
                _ => cache.release_and_count(guard, None, stored).await,
            }
            return match cache.respond(&entry, &view, XCache::Expired, response_time) {
>>>>>>> r20-split
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
        let transform = !forbids_transform(&headers);
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
            recording: Recording::storing(
                max_size,
                Finish {
                    cache,
                    plan,
                    request,
                    entry,
                    transform,
                    guard,
                    holder,
                },
            ),
        }
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
