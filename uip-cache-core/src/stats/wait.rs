//! Waiting until the counters reach a state, woken by their updates
//! instead of polling: [`CacheStats::wait_until`] and
//! [`CacheStats::wait_for_sets`].

use std::sync::atomic::{fence, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

use super::{CacheStats, StatsSnapshot};

/// Wakes the tasks in [`CacheStats::wait_until`] after a counter changed.
///
/// An update pays one more atomic load while nobody waits: the counters are
/// added to in sequentially consistent order and `waiting` is read the same
/// way, so either the updater sees a waiter (and wakes it) or the waiter,
/// which registers before it reads the counters, sees the update.
#[derive(Debug, Default)]
pub(super) struct Changes {
    waiting: AtomicUsize,
    notify: Notify,
}

impl Changes {
    pub(super) fn changed(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// Counts a waiter of [`Changes`] while it lives (a cancelled wait included).
struct Waiting<'a>(&'a Changes);

impl<'a> Waiting<'a> {
    fn enter(changes: &'a Changes) -> Self {
        changes.waiting.fetch_add(1, SeqCst);
        Waiting(changes)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

impl CacheStats {
    /// Waits until `ready` holds for the counters, and returns the snapshot
    /// it held for. `ready` is asked at once and again after every update of
    /// a counter; nothing polls or sleeps.
    ///
    /// For tests of work the cache finishes in the background (storing a
    /// response once its body has passed, a revalidation, a purge after an
    /// unsafe request). The wait has no bound of its own: put it under
    /// `tokio::time::timeout`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use uip_cache_core::{CacheStats, NoCacheReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let stats = Arc::new(CacheStats::new());
    /// let background = stats.clone();
    /// tokio::spawn(async move {
    ///     background.uncacheable(NoCacheReason::Invalidated);
    /// });
    /// let snap = tokio::time::timeout(
    ///     Duration::from_secs(5),
    ///     stats.wait_until(|s| s.uncacheable.contains_key("invalidated")),
    /// )
    /// .await
    /// .expect("the response was refused within 5 s");
    /// assert_eq!(snap.uncacheable["invalidated"], 1);
    /// # }
    /// ```
    pub async fn wait_until(&self, mut ready: impl FnMut(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let _waiting = Waiting::enter(&self.changes);
        loop {
            // Registered before the counters are read: an update after the
            // read wakes it.
            let changed = self.changes.notify.notified();
            fence(SeqCst);
            let snap = self.snapshot();
            if ready(&snap) {
                return snap;
            }
            changed.await;
        }
    }

    /// Waits until at least `n` entries have been written since the
    /// counters started ([`StatsSnapshot::sets`]), and returns the snapshot
    /// that showed it. An adapter answers before the entry is in the store
    /// (it is written once the body has passed); this is how a test knows the
    /// next request can be a hit. The cache counts a write once the fetch
    /// that made it has let go of its key, here and in a shared store, so
    /// the next stale hit of that key starts a refresh. See
    /// [`CacheStats::wait_until`] for any other state.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use uip_cache_core::{CacheConfig, HttpCache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = CacheConfig::from_yaml_str(
    ///     "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n",
    /// )
    /// .unwrap();
    /// let cache = HttpCache::with_memory_store(&config).unwrap();
    /// // ... a request through an adapter misses and its response streams on ...
    /// # cache.stats().set();
    /// tokio::time::timeout(Duration::from_secs(5), cache.stats().wait_for_sets(1))
    ///     .await
    ///     .expect("the response was stored within 5 s");
    /// // ... the same request now is a hit.
    /// # }
    /// ```
    pub async fn wait_for_sets(&self, n: u64) -> StatsSnapshot {
        self.wait_until(|s| s.sets >= n).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use super::super::CacheStats;

    #[tokio::test]
    async fn a_wait_that_is_already_satisfied_returns_at_once() {
        let s = CacheStats::new();
        s.set();
        let snap = futures_util::FutureExt::now_or_never(s.wait_for_sets(1))
            .expect("no waiting when the count is there");
        assert_eq!(snap.sets, 1);
        assert_eq!(s.changes.waiting.load(SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_see_every_update_made_on_other_threads() {
        let s = std::sync::Arc::new(CacheStats::new());
        for round in 1..=200u64 {
            let writer = s.clone();
            let t = std::thread::spawn(move || writer.set());
            let waited = tokio::time::timeout(Duration::from_secs(10), s.wait_for_sets(round));
            assert!(waited.await.is_ok(), "round {round}: the set was missed");
            t.join().unwrap();
        }
        let other = s.clone();
        std::thread::spawn(move || other.store_error());
        let snap = s.wait_until(|snap| snap.store_errors == 1).await;
        assert_eq!((snap.sets, snap.store_errors), (200, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_nothing_behind() {
        let s = CacheStats::new();
        let gave_up = tokio::time::timeout(Duration::from_secs(1), s.wait_for_sets(1)).await;
        assert!(gave_up.is_err());
        assert_eq!(s.changes.waiting.load(SeqCst), 0);
    }
}
