//! Hit-for-miss: keys whose last response could not be stored go to the
//! origin at once instead of queueing behind one another.

use moka::ops::compute::Op;

use super::{CachePlan, HttpCache};
use crate::request::RequestView;
use crate::stats::NoCacheReason;

impl HttpCache {
    /// Remembers that `plan`'s key got a response that cannot be stored, so
    /// that its next requests go to the origin at once (hit-for-miss). Only
    /// reasons that come from the response: a request's own `Authorization`
    /// or `Cookie`, or a transient failure, says nothing about the next one.
    ///
    /// Not for a request with `Authorization` or `Cookie` (its answer may
    /// be personal), or one whose `Range` went to the origin (`partial`: the
    /// answer may be a part), and not for a status (an origin
    /// error passes). A mark is not renewed while it lasts, so a key that
    /// keeps failing to store is queued again at least once a period. The
    /// table holds keys (a prefix and a SHA-256), at most 100 000; a mark
    /// lasts `defaults.hit_for_miss` on the cache's clock.
    pub(crate) fn remember_uncacheable(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        reason: NoCacheReason,
        partial: bool,
    ) {
        let by_response = matches!(
            reason,
            NoCacheReason::ResponseNoStore
                | NoCacheReason::Private
                | NoCacheReason::SetCookie
                | NoCacheReason::VaryStar
                | NoCacheReason::TooLarge
                | NoCacheReason::NoFreshness
                | NoCacheReason::Streaming
        );
        let personal = partial
            || ["authorization", "cookie"]
                .iter()
                .any(|h| req.headers.first(h).is_some());
        // The window is the table's: a request planned before a reload
        // that changed `defaults.hit_for_miss` marks the new table for the
        // new window, not for the one it began with.
        let table = self.inner.uncacheable.load();
        if let (true, false, Some(u)) = (by_response, personal, &*table) {
            let now = self.inner.clock.instant();
            let until = now + u.window;
            // A mark the clock has passed may still be in the table (its
            // expiry is in real time): it is replaced, a live one is kept.
            u.marks
                .entry(plan.key.as_str().to_owned())
                .and_compute_with(|old| match old {
                    Some(old) if now < old.value().1 => Op::Nop,
                    _ => Op::Put((reason, until)),
                });
        }
    }

    /// The key stores again: forget that it did not. (Looked for first:
    /// the key is almost never there, and a lookup costs moka less than a
    /// removal.)
    pub(crate) fn forget_uncacheable(&self, plan: &CachePlan) {
        if let Some(u) = &*self.inner.uncacheable.load() {
            if u.marks.contains_key(plan.key.as_str()) {
                u.marks.invalidate(plan.key.as_str());
            }
        }
    }

    /// Whether `plan`'s key recently got a response that cannot be stored.
    pub(crate) fn is_uncacheable(&self, plan: &CachePlan) -> bool {
        let table = self.inner.uncacheable.load();
        let Some(u) = &*table else {
            return false;
        };
        // A `get`, not `contains_key`: moka counts the read of a key it has
        // not got towards the key's popularity, which is what lets a key
        // many requests ask for into a table full of one-off marks.
        u.marks
            .get(plan.key.as_str())
            .is_some_and(|(_, until)| self.inner.clock.instant() < until)
    }

    /// Remembers whether `plan`'s representation is larger than its
    /// policy's `range_passthrough_above` (for `defaults.hit_for_miss`, as
    /// a mark of hit-for-miss lasts).
    pub(crate) fn note_length(&self, plan: &CachePlan, len: u64) {
        let large = &self.inner.large;
        let window = plan.settings.hit_for_miss();
        if len > self.policy(plan).range_passthrough_above() && !window.is_zero() {
            large.insert(
                plan.key.as_str().to_owned(),
                self.inner.clock.instant() + window,
            );
        } else if large.contains_key(plan.key.as_str()) {
            large.invalidate(plan.key.as_str());
        }
    }

    /// Whether a `Range` request for `plan`'s key that misses goes to the
    /// origin with its `Range`, instead of fetching the whole to store:
    /// when the policy's `range_passthrough_above` is 0, when it asks for
    /// a first byte past that size (the representation is larger than
    /// that), or when the representation was found larger not long ago.
    pub(crate) fn passes_range(&self, plan: &CachePlan, range: &[u8]) -> bool {
        let limit = self.policy(plan).range_passthrough_above();
        if limit == 0
            || crate::http::range::first_positions(range)
                .iter()
                .any(|&first| first >= limit)
        {
            return true;
        }
        self.inner
            .large
            .get(plan.key.as_str())
            .is_some_and(|until| self.inner.clock.instant() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CachePlan, HttpCache};
    use crate::request::RequestView;
    use crate::stats::NoCacheReason;
    use crate::{CacheConfig, Plan};

    fn plan(cache: &HttpCache, query: &str) -> CachePlan {
        let headers = [("host", "api.example")];
        let req = RequestView::new("GET", "/items", &headers)
            .query(Some(query))
            .authority(Some("api.example"));
        match cache.plan(&req) {
            Plan::Cache(p) => p,
            _ => unreachable!("the policy matches"),
        }
    }

    /// A miss as the cache makes it on a key whose answer cannot be
    /// stored: `looks` requests look for a mark, then the mark is made.
    fn misses(cache: &HttpCache, p: &CachePlan, looks: usize) {
        let headers = [("host", "api.example")];
        let req = RequestView::new("GET", "/items", &headers).authority(Some("api.example"));
        for _ in 0..looks {
            assert!(!cache.is_uncacheable(p));
        }
        cache.remember_uncacheable(p, &req, NoCacheReason::ResponseNoStore, false);
    }

    /// With the table full of one-off marks (keys requested once each, as
    /// many distinct uncacheable URLs give), a key many requests asked for
    /// is marked at its first uncacheable answer: that is what hit-for-miss
    /// is for.
    #[test]
    fn a_popular_key_is_marked_when_the_table_is_full() {
        let config = CacheConfig::from_yaml_str(
            "defaults:\n  hit_for_miss: 600\npolicies:\n  - name: items\n    pattern: /items\n    ttl: 60\n",
        )
        .unwrap();
        let cache = HttpCache::builder(&config).build().unwrap();
        assert_ne!(plan(&cache, "a").key, plan(&cache, "b").key);
        let table = cache.inner.uncacheable.load();
        let marks = &(*table).as_ref().unwrap().marks;
        // Three tables' worth: moka counts popularity only once a table
        // is half full, and a full table's own marks are what a new one
        // must beat.
        for i in 0..300_000 {
            misses(&cache, &plan(&cache, &format!("i={i}")), 1);
        }
        marks.run_pending_tasks();
        assert_eq!(marks.entry_count(), 100_000, "full");
        let hot = plan(&cache, "hot");
        misses(&cache, &hot, 50);
        marks.run_pending_tasks();
        assert!(
            cache.is_uncacheable(&hot),
            "a key 50 requests asked for was not marked"
        );
    }
}
