//! Coalescing: one fetch per key in this instance (the lock table), and
//! across instances sharing the store (a lease in the store).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{CachePlan, HttpCache};
use crate::entry::StoredResponse;
use crate::lock::{Lock, LockGuard, Waiter};
use crate::request::RequestView;

/// What the local leader of a key should do once instances sharing the store
/// have been consulted.
#[derive(Debug)]
pub(crate) enum Lead {
    /// Fetch from the origin (the shared lease is ours, or not to be had in time).
    Fetch,
    /// Another instance fetched and stored it meanwhile: serve this.
    Found(Box<StoredResponse>),
}

impl HttpCache {
    /// Joins the coalescing table for the plan's key.
    pub(crate) fn lock(&self, plan: &CachePlan) -> Lock {
        self.inner.locks.acquire(plan.key.as_str())
    }

    /// Coalesces across instances sharing the store: takes a lease on the
    /// plan's key (given back when `guard` is released or dropped) or,
    /// when another instance holds it, waits for its entry to appear,
    /// bounded by `lock_timeout`.
    /// Store failures mean "fetch" (fail-open).
    ///
    /// It also notes the shared store's invalidation counter, so that a
    /// response is not stored if another instance invalidated meanwhile.
    pub(crate) async fn lead(
        &self,
        plan: &mut CachePlan,
        req: &RequestView<'_>,
        guard: &mut LockGuard,
    ) -> Lead {
        self.note_store_epoch(plan).await;
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed)
            ^ (SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64)
                << 16;
        let lease_key = format!("{}:lease", plan.key);
        let ttl = plan.settings.lock_timeout();
        // On the cache's clock; the store's lease itself expires in real
        // time, which ends the wait too.
        let deadline = self.inner.clock.instant() + ttl;
        loop {
            match self
                .guarded("lease", self.inner.store.try_lease(&lease_key, token, ttl))
                .await
            {
                Some(false) => {}
                // Ours, or the store cannot say: fetch.
                _ => {
                    let cache = self.clone();
                    guard.on_release_await(async move {
                        cache
                            .guarded("lease", cache.inner.store.release_lease(&lease_key, token))
                            .await;
                    });
                    return Lead::Fetch;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(entry) = self.lookup(plan, req).await {
                self.inner.stats.coalesced();
                return Lead::Found(Box::new(entry));
            }
            if self.inner.clock.instant() >= deadline {
                return Lead::Fetch;
            }
        }
    }

    /// Lets go of the key after a fetch that wrote it (`stored`) or not:
    /// here and in the store (`guard`), and, for a fetch made for another
    /// task holding the key (`holder`, see [`HttpCache::begin_refresh`]),
    /// once that task has let go too (bounded by `lock_timeout`). Only then
    /// is the write counted, so that whoever waits for the count
    /// ([`CacheStats::wait_for_sets`](crate::CacheStats::wait_for_sets))
    /// finds the key free: the next stale hit starts its refresh.
    pub(crate) async fn release_and_count(
        &self,
        guard: Option<LockGuard>,
        holder: Option<Waiter>,
        stored: bool,
    ) {
        if let Some(g) = guard {
            g.release().await;
        }
        if !stored {
            return;
        }
        if let Some(w) = holder {
            w.wait(self.lock_timeout()).await;
        }
        self.inner.stats.set();
    }

    /// Notes the shared store's invalidation counter before a fetch, so that
    /// what other instances invalidate meanwhile is not stored afterwards.
    pub(crate) async fn note_store_epoch(&self, plan: &mut CachePlan) {
        plan.store_epoch = self.guarded("epoch", self.inner.store.epoch()).await;
        plan.store_epoch_unknown = plan.store_epoch.is_none();
    }
}
