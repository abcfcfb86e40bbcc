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
use std::future::Future;
use std::pin::Pin;
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
    /// Gives the key back elsewhere (a lease in a shared store).
    give_back: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
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
            give_back: None,
        })
    }

    /// A wait for the fetch of `key` under way, if there is one, without
    /// becoming the leader when there is none.
    pub fn follow(&self, key: &str) -> Option<Waiter> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|rx| Waiter { rx: rx.clone() })
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

    /// Runs `f` when the guard is dropped, however the fetch ended.
    pub fn on_release(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_release = Some(Box::new(f));
    }

    /// Gives the key back elsewhere too once the fetch ends (a lease held
    /// in a shared store): `give_back` runs when the guard is let go of,
    /// awaited by [`LockGuard::release`], or spawned on the current tokio
    /// runtime when the guard is dropped (outside one, it does not run).
    pub fn on_release_await(&mut self, give_back: impl Future<Output = ()> + Send + 'static) {
        self.give_back = Some(Box::pin(give_back));
    }

    /// Lets go of the key, as dropping the guard does, and returns once it
    /// has been given back everywhere ([`LockGuard::on_release_await`]):
    /// the waiters here are woken at once, as on drop, while the key is
    /// given back elsewhere.
    pub async fn release(mut self) {
        let give_back =
            self.give_back
                .take()
                .map(|g| match tokio::runtime::Handle::try_current() {
                    Ok(rt) => GiveBack::Running(rt.spawn(g)),
                    Err(_) => GiveBack::Here(g),
                });
        drop(self);
        match give_back {
            Some(GiveBack::Running(task)) => {
                let _ = task.await;
            }
            Some(GiveBack::Here(g)) => g.await,
            None => {}
        }
    }
}

/// Where [`LockGuard::release`] gives the key back: in a task started
/// before the key is let go of here, as on drop, or, with no runtime to
/// start one on, after.
enum GiveBack {
    Running(tokio::task::JoinHandle<()>),
    Here(Pin<Box<dyn Future<Output = ()> + Send>>),
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
        if let Some(g) = self.give_back.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(g);
            }
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

    #[tokio::test]
    async fn release_wakes_the_waiters_then_returns_once_the_key_is_given_back() {
        let t = LockTable::new();
        assert!(t.follow("k").is_none(), "nothing to follow");
        let Lock::Leader(mut guard) = t.acquire("k") else {
            panic!("first is leader")
        };
        let (give_back, given_back) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        guard.on_release_await(async move {
            let _ = given_back.await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let follower = t.follow("k").expect("a fetch to follow");
        guard.stored();
        let release = tokio::spawn(guard.release());
        // Waiters here wake, and the key is free here, while it is still
        // being given back elsewhere.
        assert_eq!(
            follower.wait(Duration::from_secs(5)).await,
            WaitOutcome::Stored
        );
        assert!(!t.is_locked("k"));
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!release.is_finished());
        give_back.send(()).unwrap();
        release.await.unwrap();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_dropped_guard_still_gives_the_key_back() {
        let t = LockTable::new();
        let Lock::Leader(mut guard) = t.acquire("k") else {
            panic!("first is leader")
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        guard.on_release_await(async move {
            let _ = tx.send(());
        });
        drop(guard);
        assert!(!t.is_locked("k"));
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("given back in the background")
            .unwrap();
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
