//! Coalesced L2 reads: concurrent `get`s of one key that miss L1 share one
//! read from Redis and one L1 fill (a flight).
//!
//! Why a follower never gets a value an invalidation it came after should
//! have hidden: every invalidation applied to L1 raises the generation
//! before and after its L2 purge, and a flight records the generation
//! before its L2 read. A follower joins only a flight recorded at the
//! generation it reads itself on arrival. If an invalidation completed
//! before it arrived, its last raise came after its L2 purge, so a flight
//! at the follower's generation began its read after that purge: it cannot
//! have read what the purge removed. Any other flight is left to those
//! already on it, and the follower starts its own, which later arrivals
//! join instead.
//!
//! A write here (`put`) does not raise the generation, since that would
//! throw away every other key's fill under a steady flow of misses: once
//! Redis has it, it supersedes its key's flight instead
//! ([`Flights::supersede`]). The flight leaves the map, so a read that
//! begins after the write starts a read of its own (and sees the write);
//! the flight's own fill, which may carry what Redis held before the
//! write, is taken back out of L1.
//!
//! Why nobody hangs when a waiter leaves: a flight is a [`Shared`] future
//! that owns everything it needs (the store, the key), so whichever waiter
//! is still there drives it. The map holds only a [`WeakShared`]: when the
//! last waiter leaves, the flight is dropped, and its [`Landing`] removes
//! its entry, as it does when the flight completes. The map therefore holds
//! at most one entry per flight someone still waits on.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use uip_cache_core::store::{StoreError, StoreErrorKind};

/// What every waiter on a flight gets: cloneable, so not a [`StoreError`].
pub(super) type Output = Result<Option<Bytes>, FlightError>;

/// One L2 read (and L1 fill) that several `get`s wait on.
pub(super) type Flight = Shared<BoxFuture<'static, Output>>;

/// The flights in the air, by key.
#[derive(Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    /// How many `get`s joined a flight another one started.
    #[cfg(test)]
    pub(super) joined: AtomicU64,
}

struct Entry {
    /// The store's generation when the flight was started (before its read).
    generation: u64,
    id: u64,
    flight: WeakShared<BoxFuture<'static, Output>>,
    superseded: Arc<AtomicBool>,
}

impl Flights {
    /// The live flight for `key` recorded at `generation`, or a new one
    /// made by `start` (which then replaces any other for later arrivals).
    /// `start` gets the [`Landing`] its future must own, which tells
    /// whether a write here superseded the flight.
    pub(super) fn join_or_start(
        self: &Arc<Self>,
        key: &str,
        generation: u64,
        start: impl FnOnce(Landing) -> BoxFuture<'static, Output>,
    ) -> Flight {
        // A strong handle is never dropped under the lock: if it were the
        // last one, the flight's `Landing` would take the lock again.
        let other: Option<Flight>;
        let flight = {
            let mut map = lock(&self.map);
            let live = map
                .get(key)
                .and_then(|e| e.flight.upgrade().map(|f| (e.generation, f)));
            match live {
                Some((recorded, flight)) if recorded == generation => {
                    #[cfg(test)]
                    self.joined.fetch_add(1, Ordering::Relaxed);
                    return flight;
                }
                live => other = live.map(|(_, f)| f),
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let superseded = Arc::new(AtomicBool::new(false));
            let landing = Landing {
                flights: Arc::clone(self),
                key: key.to_owned(),
                id,
                superseded: superseded.clone(),
            };
            let flight = start(landing).shared();
            if let Some(weak) = flight.downgrade() {
                map.insert(
                    key.to_owned(),
                    Entry {
                        generation,
                        id,
                        flight: weak,
                        superseded,
                    },
                );
            }
            flight
        };
        drop(other);
        flight
    }

    /// A write of `key` here reached Redis: its flight, if any, is no
    /// longer joined, and its fill does not stay in L1 (see the module
    /// docs). Called between the write to Redis and the write's own fill
    /// of L1: a flight's fill made before this call is overwritten by the
    /// write's fill, one made after it is taken out, and a flight that
    /// started while the write was under way (which may have read what
    /// Redis held before it) is not joined by reads that begin after.
    pub(super) fn supersede(&self, key: &str) {
        let entry = lock(&self.map).remove(key);
        if let Some(e) = &entry {
            e.superseded.store(true, Ordering::Release);
        }
        // The weak handle is dropped outside the lock (a `Landing` takes it).
        drop(entry);
    }

    /// How many flights are in the map.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Owned by a flight's future: when the flight completes or is dropped
/// (nobody waits any more), removes its entry unless a newer flight has
/// taken the key.
pub(super) struct Landing {
    flights: Arc<Flights>,
    key: String,
    id: u64,
    superseded: Arc<AtomicBool>,
}

impl Landing {
    /// Whether a write of the key here has begun since the flight started.
    pub(super) fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut map = lock(&self.flights.map);
        if map.get(&self.key).is_some_and(|e| e.id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// A [`StoreError`] every waiter can have a copy of: its kind and what
/// caused it, turned back into the same error for each.
#[derive(Clone)]
pub(super) struct FlightError {
    kind: StoreErrorKind,
    source: Option<Arc<str>>,
}

impl From<StoreError> for FlightError {
    fn from(e: StoreError) -> Self {
        FlightError {
            kind: e.kind(),
            source: std::error::Error::source(&e).map(|s| Arc::from(s.to_string())),
        }
    }
}

impl From<FlightError> for StoreError {
    fn from(e: FlightError) -> Self {
        match e.source {
            Some(source) => StoreError::new(e.kind, source.to_string()),
            None => StoreError::from_kind(e.kind),
        }
    }
}

impl fmt::Debug for FlightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&StoreError::from(self.clone()), f)
    }
}
