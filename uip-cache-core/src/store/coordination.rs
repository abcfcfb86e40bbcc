//! Working together with the other instances that share a store:
//! [`Coordination`].

use std::time::Duration;

use super::StoreFuture;

/// What instances sharing one store need from it to work together: a
/// shared log of invalidations (so an instance does not store a response
/// another one invalidated while it was fetched) and leases (so one of them
/// fetches a missing entry). Every method has a default for a store used by
/// one process alone, where the cache's own log and locks cover it: such a
/// store implements nothing here (`impl Coordination for MyStore {}`).
pub trait Coordination: Send + Sync {
    /// Whether other instances read and write this store too, so that it
    /// may hold what this process never wrote (an instance then looks for
    /// what it would otherwise remember having stored, such as a part to
    /// complete). Stores of one process answer `false` (the default).
    fn shared(&self) -> bool {
        false
    }

    /// A counter every recorded invalidation raises, shared by all instances
    /// using the store. Stores local to one process return 0 (the cache's
    /// own log covers them).
    fn epoch(&self) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }

    /// Records an invalidation (one line, see
    /// [`Invalidation::to_line`](crate::invalidate::Invalidation::to_line))
    /// for the other instances sharing the store, raising the epoch. A
    /// store may bound what it keeps: it may record a wider invalidation
    /// (one concerning at least what `line` concerns), or none at all so
    /// long as [`Coordination::invalidations_since`] then answers `None` for the
    /// epochs before it, never a narrower one.
    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        let _ = line;
        Box::pin(async { Ok(()) })
    }

    /// The invalidations recorded since `epoch`, oldest first; `None` when the
    /// store no longer holds all of them (the caller must assume the worst).
    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        let _ = epoch;
        Box::pin(async { Ok(Some(Vec::new())) })
    }

    /// Takes a short lease on `key` for `token`, so that one of several
    /// instances sharing this store fetches it from the origin; false when
    /// another holder has it. Stores not shared between processes need no
    /// lease: the default always grants it.
    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        let _ = (key, token, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Gives back a lease taken with `token` (a lease since taken over by
    /// someone else is left alone).
    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        let _ = (key, token);
        Box::pin(async { Ok(()) })
    }
}
