//! The invalidation fence: a fetch in flight is not stored when an
//! invalidation concerning it ran since the request arrived, here or on an
//! instance sharing the store.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{CachePlan, HttpCache};
use crate::invalidate::Invalidation;
use crate::request::RequestView;
use crate::store::StoreError;

/// How many of its own invalidations an instance remembers for fetches in
/// flight; a fetch older than all of them is not stored.
const RECENT_INVALIDATIONS: usize = 1024;

impl HttpCache {
    /// Remembers an invalidation before it runs, here and for the instances
    /// sharing the store, so that fetches in flight for what it removes are
    /// not stored when they arrive.
    ///
    /// A failed shared record is returned (after the caller has deleted
    /// anyway): instances sharing the store may then keep a fetch that was
    /// in flight, so webhook senders should see an error and retry.
    pub(super) async fn note(&self, what: Invalidation) -> Result<(), StoreError> {
        let line = what.to_line();
        {
            let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let seq = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            recent.push_back((seq, what));
            while recent.len() > RECENT_INVALIDATIONS {
                recent.pop_front();
            }
        }
        // Part of the purge: bounded by its deadline, not the request path's.
        let started = Instant::now();
        let recorded = tokio::time::timeout(
            self.purge_timeout(),
            self.inner.store.record_invalidation(&line),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::from_kind(crate::store::StoreErrorKind::Timeout)));
        self.inner.stats.store_op(started.elapsed());
        recorded.inspect_err(|e| {
            self.inner.stats.store_error();
            if let Some(left_out) = self.inner.quiet.record.admit() {
                tracing::warn!(error = %e, left_out, "the shared invalidation record failed: instances sharing the store may store a fetch that was in flight");
            }
        })
    }

    /// Whether an invalidation that concerns this response (its path, query
    /// or tags) ran since the plan was made, here or on an instance sharing
    /// the store. When the record no longer reaches back that far, assume so.
    pub(super) async fn invalidated_since(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        tags: &[String],
    ) -> bool {
        self.invalidated_since_but(plan, req, tags, None).await
    }

    /// [`HttpCache::invalidated_since`], not counting one run of `own` (an
    /// invalidation the request itself caused) here and one in the shared
    /// record: any other concerning invalidation still counts, however it
    /// interleaved with `own`.
    pub(super) async fn invalidated_since_but(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        tags: &[String],
        own: Option<&Invalidation>,
    ) -> bool {
        let concerns = |inv: &Invalidation| inv.concerns(req.path, req.query, tags);
        if self.inner.epoch.load(Ordering::Acquire) != plan.epoch {
            let recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let since: Vec<&(u64, Invalidation)> =
                recent.iter().filter(|(seq, _)| *seq > plan.epoch).collect();
            let complete = since.first().is_some_and(|(seq, _)| *seq == plan.epoch + 1);
            let mut excused = own;
            let mut counts = |inv: &Invalidation| {
                if excused.is_some_and(|o| o.same_as(inv)) {
                    excused = None;
                    return false;
                }
                concerns(inv)
            };
            if !complete || since.iter().any(|(_, inv)| counts(inv)) {
                return true;
            }
        }
        if plan.store_epoch_unknown {
            return true;
        }
        let Some(before) = plan.store_epoch else {
            return false;
        };
        match self.guarded("epoch", self.inner.store.epoch()).await {
            Some(now) if now == before => false,
            Some(_) => match self
                .guarded(
                    "invalidations",
                    self.inner.store.invalidations_since(before),
                )
                .await
            {
                Some(Some(lines)) => {
                    let mut excused = own.map(Invalidation::to_line);
                    lines.iter().any(|l| {
                        if excused.as_deref() == Some(l.as_str()) {
                            excused = None;
                            return false;
                        }
                        Invalidation::from_line(l).is_none_or(|inv| concerns(&inv))
                    })
                }
                _ => true,
            },
            None => true,
        }
    }
}
