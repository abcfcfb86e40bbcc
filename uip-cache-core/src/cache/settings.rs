//! The settings a cache runs on, and replacing them while it runs.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::{HttpCache, Uncacheable};
use crate::settings::Settings;

impl HttpCache {
    /// The settings the cache runs on now: the compiled policies, event
    /// rules, header names and limits. A request takes them once, when it
    /// is planned ([`HttpCache::plan`]), and keeps them to its end.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.load_full()
    }

    /// Runs the cache on `settings` from now on, and returns the settings it
    /// ran on before: a config reload compiles the new config
    /// ([`Settings::compile`]) and swaps it in at once. Requests that began
    /// before the swap end on the settings they began with; requests that
    /// begin after it use the new ones. The store, the entries, the
    /// statistics and the coalescing table stay.
    ///
    /// The hit-for-miss marks stay while `defaults.hit_for_miss` is the
    /// same; when it changes they are dropped (they were made for another
    /// window).
    ///
    /// # Errors
    ///
    /// Settings whose policies are not the ones the cache runs on, by name
    /// and in order, are given back unused: the per-policy statistics are
    /// counted by a policy's place in the list, so another list would count
    /// one policy's requests under another's name. A new list of policies
    /// needs a new cache.
    pub fn replace_settings(
        &self,
        settings: Arc<Settings>,
    ) -> Result<Arc<Settings>, Arc<Settings>> {
        let _one_at_a_time = self
            .inner
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.settings.load_full();
        let names = |s: &Settings| {
            s.policies()
                .iter()
                .map(|p| p.name().to_owned())
                .collect::<Vec<_>>()
        };
        if names(&current) != names(&settings) {
            return Err(settings);
        }
        if current.hit_for_miss() != settings.hit_for_miss() {
            self.inner
                .uncacheable
                .store(uncacheable_table(settings.hit_for_miss()).map(Arc::new));
        }
        Ok(self.inner.settings.swap(settings))
    }
}

/// The hit-for-miss table for marks of `window`; none when it is zero.
/// The table's own expiry, in real time, only frees room: a mark ends when
/// the clock passes the end it holds.
pub(super) fn uncacheable_table(window: Duration) -> Option<Uncacheable> {
    (!window.is_zero()).then(|| {
        moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(window)
            .build()
    })
}
