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
        match &self.pinned {
            Some(settings) => settings.clone(),
            None => self.inner.settings.load_full(),
        }
    }

    /// A handle on the same cache (store, statistics, coalescing) that
    /// reads `settings` instead of the settings the cache runs on: an
    /// adapter takes the settings once when a request arrives and handles
    /// the whole request with such a handle, so that its route, its
    /// forwarding headers, its key and its policy all come from one
    /// config, whatever reload happens meanwhile.
    #[must_use]
    pub fn pinned(&self, settings: Arc<Settings>) -> HttpCache {
        HttpCache {
            inner: self.inner.clone(),
            pinned: Some(settings),
        }
    }

    /// Runs the cache on `settings` from now on, and returns the settings it
    /// ran on before: a config reload compiles the new config
    /// ([`Settings::compile`]) and swaps it in at once. Requests that began
    /// before the swap end on the settings they began with; requests that
    /// begin after it use the new ones. The store, the entries and the
    /// coalescing table stay.
    ///
    /// The policies may differ: the per-policy statistics are kept by
    /// name, so a policy kept across the swap keeps its counters, a removed
    /// one is no longer reported, and a new one starts at zero. The
    /// hit-for-miss marks stay while `defaults.hit_for_miss` is the same;
    /// when it changes they are dropped (they were made for another
    /// window). A handle made by [`HttpCache::pinned`] keeps reading the
    /// settings it was pinned to.
    pub fn replace_settings(&self, settings: Arc<Settings>) -> Arc<Settings> {
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
            self.inner
                .stats
                .rename_policies(settings.policies().iter().map(|p| p.name()));
        }
        if current.hit_for_miss() != settings.hit_for_miss() {
            self.inner
                .uncacheable
                .store(uncacheable_table(settings.hit_for_miss()).map(Arc::new));
        }
        self.inner.settings.swap(settings)
    }
}

/// The hit-for-miss table for marks of `window`; none when it is zero.
/// The table's own expiry, in real time, only frees room: a mark ends when
/// the clock passes the end it holds.
pub(super) fn uncacheable_table(window: Duration) -> Option<Uncacheable> {
    (!window.is_zero()).then(|| Uncacheable {
        window,
        marks: moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(window)
            .build(),
    })
}
