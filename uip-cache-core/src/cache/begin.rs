//! The start of the request protocol: look up, coalesce, decide
//! ([`HttpCache::begin`]).

use crate::field::FieldName;
use bytes::Bytes;

use super::lease::Lead;
use super::{CachePlan, CachedBody, CachedResponse, FetchTicket, HttpCache};
use crate::entry::StoredResponse;
use crate::http::cache_status::XCache;
use crate::http::freshness::{self, Usability};
use crate::lock::{Lock, LockGuard, WaitOutcome};
use crate::request::RequestView;
use crate::stats::NoCacheReason;

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

impl HttpCache {
    /// Looks the request up and decides, coalescing concurrent misses for one
    /// key (and, through a store lease, across instances sharing the store).
    /// `headers` are all the request's headers, kept for after the fetch.
    pub async fn begin(
        &self,
        mut plan: CachePlan,
        req: &RequestView<'_>,
        headers: impl FnOnce() -> Vec<(FieldName, Bytes)>,
    ) -> Begin {
        // A hit ends here. Everything after it (the coalescing lock, the
        // lease, the waits) is boxed: its future is several kilobytes that
        // a hit would otherwise carry and copy for nothing.
        let (writes, entry) = match plan.absent.take() {
            // Nothing was under the key when `answer_now` asked the store
            // at hand (or `answer_later` asked it, or found it failing),
            // and the cache has written nothing since: that is this
            // lookup, counted as one. After a write, look: what
            // decides before the coalescing lock (`only-if-cached`,
            // stale-while-revalidate) sees the entry as a lookup would.
            Some(at_hand) if at_hand.writes == self.writes() => {
                if !at_hand.counted {
                    self.inner.stats.store_op(at_hand.took);
                }
                self.inner.stats.latency(at_hand.took);
                (at_hand.writes, None)
            }
            _ => (self.writes(), self.lookup(&plan, req).await),
        };
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
        // A stored part a whole GET completes, looked for once.
        let mut completion = None;
        let mut looked_for_part = false;
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
                // No complete entry: a stored part may answer a range
                // within it (a complete entry, even a stale one, always
                // answers first).
                Found::Unusable(None) => {
                    if let Some(r) = self.answer_from_part(&plan, req).await {
                        return Begin::Respond(r);
                    }
                    // Or a whole GET completes a part that begins the
                    // representation: the origin is asked for the rest.
                    // It fetches as any miss, holding the key, so the
                    // requests coalesced behind it get the complete entry.
                    if !looked_for_part {
                        looked_for_part = true;
                        completion = self.part_to_complete(&plan, req).await;
                    }
                }
            }
            if plan.request_cc.only_if_cached {
                self.stats().uncacheable(NoCacheReason::NoFreshness);
                let mut headers = vec![("x-cache".into(), Bytes::from_static(b"MISS"))];
                headers.extend(self.own_status(&plan.settings, "only-if-cached"));
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
                let ticket = self.ticket(plan, req, headers(), None, None);
                return Begin::Fetch(ticket.completing(completion));
            }
            // A range the origin answers itself (`range_passthrough_above`):
            // nothing to store, so nothing to coalesce, and no request for
            // the key waits for it.
            if stale.is_none() && self.passes_range_on(&plan, req) {
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
                    if w.wait(plan.settings.lock_timeout()).await != WaitOutcome::Stored
                        || rounds > 3
                    {
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
        let ticket = self.ticket(plan, req, headers(), stale, guard);
        Begin::Fetch(ticket.completing(completion))
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
        let now = self.inner.clock.now();
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
        now: std::time::SystemTime,
    ) -> Option<CachedResponse> {
        let x = match usability {
            Usability::Fresh => XCache::Hit,
            Usability::StaleAccepted | Usability::StaleWhileRevalidate => XCache::Stale,
            _ => return None,
        };
        let r = self.respond(&plan.settings, entry, req, x, now)?;
        self.count(plan, x);
        Some(r)
    }

    /// The answer a stored part of the representation gives `req` (a GET
    /// with a `Range` within the part: see
    /// [`respond_part`](HttpCache::respond_part)), when one is fresh, or
    /// stale where the request accepts it; counted.
    async fn answer_from_part(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
    ) -> Option<CachedResponse> {
        if req.method != "GET" || !crate::http::range::has_range(req.headers) {
            return None;
        }
        let entry = self.lookup(&plan.for_part(), req).await?;
        let now = self.inner.clock.now();
        let x = match freshness::usability(&entry, &plan.request_cc, now) {
            Usability::Fresh => XCache::Hit,
            Usability::StaleAccepted => XCache::Stale,
            _ => return None,
        };
        let r = self.respond_part(&plan.settings, &entry, req, x, now)?;
        self.count(plan, x);
        Some(r)
    }

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
        self.ticket(plan, req, headers, stale, None).for_holder()
    }
}
