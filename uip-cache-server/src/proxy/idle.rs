//! The idle keep-alive connections of one backend, shared by the pool of
//! hyper connections (`pool.rs`) and the pool of bare sockets (`raw.rs`):
//! reused most recent first, each for at most the idle timeout, at most
//! `max` of them, and a task closes those idle for longer while any are
//! kept.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Idle connections of kind `C`; what makes one reusable is the caller's
/// to say (`usable`).
pub(super) struct IdleSet<C> {
    /// Most recently used last; whether the closing task runs.
    list: Mutex<(Vec<(C, Instant)>, bool)>,
    max: usize,
    timeout: Duration,
    /// Whether a connection idle for a while is still worth keeping.
    open: fn(&C) -> bool,
}

impl<C: Send + 'static> IdleSet<C> {
    /// At most `max` kept, each for at most `timeout`, and while `open`
    /// says so of it.
    pub(super) fn new(max: usize, timeout: Duration, open: fn(&C) -> bool) -> Arc<Self> {
        Arc::new(IdleSet {
            list: Mutex::new((Vec::new(), false)),
            max,
            timeout,
            open,
        })
    }

    fn list(&self) -> MutexGuard<'_, (Vec<(C, Instant)>, bool)> {
        // A panic while holding it leaves a consistent list.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection still fresh and `usable`; the
    /// others on the way are closed.
    pub(super) fn take(&self, usable: impl Fn(&C) -> bool) -> Option<C> {
        let now = Instant::now();
        loop {
            let (c, since) = self.list().0.pop()?;
            if now.saturating_duration_since(since) < self.timeout && usable(&c) {
                return Some(c);
            }
        }
    }

    /// Keeps `c` if there is room; else it is dropped, which closes it.
    pub(super) fn put(self: &Arc<Self>, c: C) {
        let mut list = self.list();
        if list.0.len() >= self.max {
            return;
        }
        list.0.push((c, Instant::now()));
        if !list.1 {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                list.1 = true;
                runtime.spawn(reap(Arc::downgrade(self)));
            }
        }
    }

    /// How many are idle now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.list().0.len()
    }
}

/// Closes the connections of `set` idle for longer than its timeout (or
/// no longer open), every timeout, until none is idle or the set is gone.
async fn reap<C: Send + 'static>(set: Weak<IdleSet<C>>) {
    let every = match set.upgrade() {
        Some(s) => s.timeout,
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(set) = set.upgrade() else { return };
        let now = Instant::now();
        let mut list = set.list();
        list.0
            .retain(|(c, since)| now.saturating_duration_since(*since) < every && (set.open)(c));
        if list.0.is_empty() {
            list.1 = false;
            return;
        }
    }
}
