//! The bytes the connections of one listener owe their clients together,
//! and the choice of connections to close when there are too many.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::now_ms;
use super::watch::Watch;

/// The bytes the connections of one listener owe their clients, and the
/// connections, to close the longest-stalled when there are too many.
pub(crate) struct Inflight {
    limit: u64,
    pub(super) bytes: AtomicU64,
    /// Owed bytes of connections chosen to close and not closed yet.
    pub(super) doomed: AtomicU64,
    conns: Mutex<Registry>,
}

struct Registry {
    conns: Vec<Weak<Watch>>,
    prune_at: usize,
}

impl Inflight {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Inflight {
            limit,
            bytes: AtomicU64::new(0),
            doomed: AtomicU64::new(0),
            conns: Mutex::new(Registry {
                conns: Vec::new(),
                prune_at: 1024,
            }),
        })
    }

    /// A watch for a new connection.
    pub(crate) fn watch(self: &Arc<Self>) -> Arc<Watch> {
        let now = now_ms();
        let watch = Arc::new(Watch::new(self.clone(), now));
        // One lock per connection, never per write.
        let mut reg = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if reg.conns.len() >= reg.prune_at {
            reg.conns.retain(|w| w.strong_count() > 0);
            reg.prune_at = (reg.conns.len() * 2).max(1024);
        }
        reg.conns.push(Arc::downgrade(&watch));
        watch
    }

    /// Bytes owed beyond the limit, not counting connections already
    /// chosen to close.
    pub(super) fn excess(&self) -> u64 {
        self.bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.doomed.load(Ordering::Relaxed))
            .saturating_sub(self.limit)
    }

    pub(super) fn add(&self, n: u64) {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.shed();
        }
    }

    pub(super) fn sub(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Past the limit: chooses the connections whose socket has refused
    /// writes the longest (then those that went longest without taking a
    /// byte), until what they owe covers the excess, and tells them to
    /// close. One caller at a time; the others go on.
    fn shed(&self) {
        if self.excess() == 0 {
            return;
        }
        let Ok(reg) = self.conns.try_lock() else {
            return;
        };
        let mut excess = self.excess();
        if excess == 0 {
            return;
        }
        let mut stalled: Vec<((bool, u64), Arc<Watch>)> = reg
            .conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|w| !w.doomed.load(Ordering::Relaxed) && w.holds() > 0)
            .map(|w| (w.stalled_since(), w))
            .collect();
        drop(reg);
        stalled.sort_unstable_by_key(|(since, _)| *since);
        let mut closed = 0usize;
        for (_, w) in &stalled {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(w.doom());
            closed += 1;
        }
        tracing::debug!(
            closed,
            limit = self.limit,
            "bytes in flight to slow clients past server.max_inflight_bytes: closing the longest-stalled connections"
        );
    }
}

impl fmt::Debug for Inflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflight")
            .field("limit", &self.limit)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
