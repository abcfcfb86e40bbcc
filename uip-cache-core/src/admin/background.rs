//! The background tasks of the admin API: warming at start-up, every
//! `interval` and on cron schedules, and the time-based monitor. Each task
//! holds only a weak reference to the admin API and a shutdown receiver, so
//! it ends when the last [`Admin`] clone is dropped or on
//! [`Admin::shutdown`], even while it sleeps.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Admin, Inner};
use crate::config::StrategyKind;
use crate::warm::{Target, Warmer};

/// The background tasks could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Not called from inside a Tokio runtime.
    #[error("the admin background tasks need a Tokio runtime: call start() from async code")]
    NoRuntime,
}

/// Sleeps `d`, or returns false early when the admin API goes away.
async fn sleep_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => !*stop.borrow(),
        // A change is a shutdown; an error means the sender (the admin API) is gone.
        _ = stop.changed() => false,
    }
}

fn warmer_of(weak: &Weak<Inner>) -> Option<Arc<Warmer>> {
    weak.upgrade()?.warmer.clone()
}

impl Admin {
    /// Starts the background tasks the config asks for: warming (when
    /// `warming.enabled` and there is a fetcher) on start-up, every
    /// `interval` and on each cron `schedule`; the time-based monitor (when a
    /// `time_based` strategy is enabled). Calling it again does nothing.
    /// After a reload ([`Admin::reload`]) the schedules and the monitor
    /// are started again from the new settings.
    pub fn start(&self) -> Result<(), StartError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        if self.inner.started.swap(true, Ordering::AcqRel) || *self.inner.shutdown.borrow() {
            return Ok(());
        }
        let config = self.inner.cache.config();
        if let (Some(_), true, true) = (
            &self.inner.warmer,
            config.warming.enabled,
            config.warming.on_startup,
        ) {
            let mut stop = self.inner.shutdown.subscribe();
            let w = Arc::downgrade(&self.inner);
            rt.spawn(async move {
                let Some(warmer) = warmer_of(&w) else { return };
                tokio::select! {
                    _ = warmer.run() => {}
                    _ = stop.changed() => {}
                }
            });
        }
        self.start_schedules(&rt);
        Ok(())
    }

    /// Stops the schedules and the monitor of the settings they were
    /// started for, and starts those of the settings the cache runs on
    /// now (after a reload). Nothing before [`Admin::start`] or after
    /// [`Admin::shutdown`].
    pub(super) fn restart_schedules(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.inner.started.load(Ordering::Acquire) || *self.inner.shutdown.borrow() {
            return;
        }
        self.start_schedules(&rt);
    }

    fn start_schedules(&self, rt: &tokio::runtime::Handle) {
        let (generation, _) = tokio::sync::watch::channel(false);
        let subscribe = || generation.subscribe();
        let config = self.inner.cache.config();
        let weak = Arc::downgrade(&self.inner);
        if let (Some(warmer), true) = (&self.inner.warmer, config.warming.enabled) {
            let interval = config.warming.interval.get();
            let targets = warmer.targets();
            if targets.iter().any(|t| t.schedule.is_none()) && !interval.is_zero() {
                let mut stop = subscribe();
                let w = weak.clone();
                rt.spawn(async move {
                    while sleep_or_stop(interval, &mut stop).await {
                        let Some(warmer) = warmer_of(&w) else { return };
                        let all = warmer.targets();
                        let targets: Vec<&Target> =
                            all.iter().filter(|t| t.schedule.is_none()).collect();
                        tokio::select! {
                            _ = warmer.run_targets(&targets) => {}
                            _ = stop.changed() => return,
                        }
                    }
                });
            }
            let mut schedules: Vec<String> =
                targets.iter().filter_map(|t| t.schedule.clone()).collect();
            schedules.sort_unstable();
            schedules.dedup();
            for expr in schedules {
                let Ok(cron) = crate::schedule::parse_cron(&expr) else {
                    // Validated when the config loaded.
                    continue;
                };
                let mut stop = subscribe();
                let w = weak.clone();
                rt.spawn(async move {
                    loop {
                        let now = chrono::Utc::now();
                        let Ok(next) = cron.find_next_occurrence(&now, false) else {
                            tracing::warn!(target: "uip_cache::warm", schedule = %expr, "the schedule has no next occurrence; it stops");
                            return;
                        };
                        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
                        if !sleep_or_stop(wait, &mut stop).await {
                            return;
                        }
                        let Some(warmer) = warmer_of(&w) else { return };
                        let all = warmer.targets();
                        let targets: Vec<&Target> = all
                            .iter()
                            .filter(|t| t.schedule.as_deref() == Some(expr.as_str()))
                            .collect();
                        tokio::select! {
                            _ = warmer.run_targets(&targets) => {}
                            _ = stop.changed() => return,
                        }
                    }
                });
            }
        }
        if let Some(s) = config
            .invalidation
            .strategies
            .iter()
            .find(|s| s.enabled && s.kind == StrategyKind::TimeBased)
        {
            let every = s
                .check_interval
                .map_or(Duration::from_secs(60), |d| d.get())
                .max(Duration::from_secs(1));
            let threshold = s.eviction_threshold.unwrap_or(1000);
            let mut stop = subscribe();
            rt.spawn(async move {
                let mut last: Option<(u64, u64)> = None;
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    last = monitor_tick(&inner, last, threshold).await;
                    drop(inner);
                    if !sleep_or_stop(every, &mut stop).await {
                        return;
                    }
                }
            });
        }
        // The tasks of the settings before stop.
        let mut current = self
            .inner
            .schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = current.replace(generation) {
            previous.send_replace(true);
        }
        // A shutdown meanwhile stops these too.
        if *self.inner.shutdown.borrow() {
            if let Some(g) = current.take() {
                g.send_replace(true);
            }
        }
    }

    /// Stops the background tasks (a warming run in progress is dropped;
    /// entries it already stored stay).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        if let Some(generation) = self
            .inner
            .schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            generation.send_replace(true);
        }
    }
}

/// One check of the time-based monitor: reads the store's eviction and
/// expiration counts into the metrics and warns when evictions since the
/// last check pass `threshold`. Returns the counts for the next check.
async fn monitor_tick(
    inner: &Inner,
    last: Option<(u64, u64)>,
    threshold: u64,
) -> Option<(u64, u64)> {
    let Some(m) = inner.cache.store_memory().await else {
        return last;
    };
    inner
        .cache
        .stats()
        .store_removals(m.evictions, m.expirations);
    if let Some((evicted, _)) = last {
        let new = m.evictions.saturating_sub(evicted);
        if new > threshold {
            tracing::warn!(target: "uip_cache::monitor", evictions = new, threshold, used_memory_bytes = m.used_memory_bytes, max_memory_bytes = ?m.max_memory_bytes, "high eviction rate: the store is too small for what is cached");
        }
    }
    Some((m.evictions, m.expirations))
}
