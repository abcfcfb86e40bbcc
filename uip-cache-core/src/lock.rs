//! Request coalescing: one origin fetch per key; concurrent requests for the
//! same key wait for it, bounded by a timeout.
//!
//! The first request for a key becomes the leader and holds a [`LockGuard`];
//! the others get a [`Waiter`]. Dropping the guard (entry stored, response
//! uncacheable, client gone, panic) wakes every waiter. A waiter learns whether
//! the leader stored something: if so it looks in the store again (and may
//! lead the next fetch, for another variant); if not, it goes to the origin
//! itself rather than queueing behind an uncacheable response.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The table of keys being fetched.
#[derive(Clone, Default)]
pub struct LockTable {
    map: Arc<Mutex<HashMap<String, watch::Receiver<bool>>>>,
}

/// The outcome of [`LockTable::acquire`].
#[derive(Debug)]
pub enum Lock {
    /// This request fetches; drop the guard when the entry is stored (or not).
    Leader(LockGuard),
    /// Another request is fetching; wait for it.
    Follower(Waiter),
}

/// Held by the request that fetches a key.
pub struct LockGuard {
    map: Arc<Mutex<HashMap<String, watch::Receiver<bool>>>>,
    key: String,
    // Dropped after the key leaves the map: receivers see the channel close.
    tx: watch::Sender<bool>,
    on_release: Option<Box<dyn FnOnce() + Send>>,
}

/// Held by requests waiting for another's fetch.
pub struct Waiter {
    rx: watch::Receiver<bool>,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitOutcome {
    /// The leader stored an entry: look again.
    Stored,
    /// The leader finished without storing: fetch alone.
    NotStored,
    /// The leader took longer than the timeout: fetch alone.
    TimedOut,
}

impl LockTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Becomes the leader for `key`, or a follower of the current leader.
    pub fn acquire(&self, key: &str) -> Lock {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            return Lock::Follower(Waiter { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(false);
        map.insert(key.to_owned(), rx);
        Lock::Leader(LockGuard {
            map: self.map.clone(),
            key: key.to_owned(),
            tx,
            on_release: None,
        })
    }

    /// Whether a fetch of `key` is under way.
    pub fn is_locked(&self, key: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Number of keys being fetched.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is being fetched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LockGuard {
    /// Tells the waiters an entry was stored (call before dropping the guard).
    pub fn stored(&self) {
        self.tx.send_replace(true);
    }

    /// Runs `f` when the guard is dropped, however the fetch ended (used to
    /// give back a lease held in a shared store).
    pub fn on_release(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_release = Some(Box::new(f));
    }
}

impl Waiter {
    /// Waits until the leader is done or `timeout` passes.
    pub async fn wait(mut self, timeout: Duration) -> WaitOutcome {
        // `changed` fails once the sender is dropped: that is the signal.
        let done =
            tokio::time::timeout(timeout, async { while self.rx.changed().await.is_ok() {} }).await;
        match done {
            Err(_) => WaitOutcome::TimedOut,
            Ok(()) if *self.rx.borrow() => WaitOutcome::Stored,
            Ok(()) => WaitOutcome::NotStored,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(f) = self.on_release.take() {
            f();
        }
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl fmt::Debug for LockTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockTable")
            .field("locked", &self.len())
            .finish()
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("key", &self.key).finish()
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_waiters_wake_when_it_drops() {
        let t = LockTable::new();
        let Lock::Leader(guard) = t.acquire("k") else {
            panic!("first is leader")
        };
        let Lock::Follower(w1) = t.acquire("k") else {
            panic!("second follows")
        };
        let Lock::Follower(w2) = t.acquire("k") else {
            panic!("third follows")
        };
        assert!(matches!(t.acquire("other"), Lock::Leader(_)));
        let waiting = tokio::spawn(async move {
            (
                w1.wait(Duration::from_secs(5)).await,
                w2.wait(Duration::from_secs(5)).await,
            )
        });
        tokio::task::yield_now().await;
        guard.stored();
        drop(guard);
        assert_eq!(
            waiting.await.unwrap(),
            (WaitOutcome::Stored, WaitOutcome::Stored)
        );
        assert!(!t.is_locked("k"));
        let Lock::Leader(g) = t.acquire("k") else {
            panic!("a new fetch can start")
        };
        let Lock::Follower(w) = t.acquire("k") else {
            panic!()
        };
        drop(g);
        assert_eq!(w.wait(Duration::from_secs(5)).await, WaitOutcome::NotStored);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let t = LockTable::new();
        let _guard = t.acquire("k");
        let Lock::Follower(w) = t.acquire("k") else {
            panic!()
        };
        assert_eq!(
            w.wait(Duration::from_millis(50)).await,
            WaitOutcome::TimedOut
        );
    }
}
