//! `store.type: tiered`: an in-process L1 (the memory store: bounded bytes,
//! entries kept at most `store.l1.max_ttl`) in front of Redis or Redis
//! Cluster (L2), with an invalidation backplane: every invalidation and
//! delete is published on a Redis channel that every instance subscribes
//! to, and each drops what it concerns from its L1.
//!
//! - An L1 hit costs no network round trip; an L2 hit fills L1.
//! - While the subscription is down (Redis restarting, the connection
//!   killed), L1 is not used at all: every read goes to L2, so nothing is
//!   served that an invalidation missed meanwhile; when the subscription is
//!   back, L1 starts empty. The subscriber reconnects by itself.
//! - The subscription is pinged every `store.l1.ping_interval`: a
//!   connection that died without a word (a NAT or firewall forgetting an
//!   idle flow) counts as down the moment a ping goes unanswered for that
//!   long, so L1 serves at most two intervals' worth of invalidations it
//!   may have missed.
//! - An invalidation is published before the L2 purge starts (so other
//!   instances stop serving their copies at once) and again after it (they
//!   may have refilled L1 from entries L2 still held), whatever L2 said
//!   and even if the caller stops waiting: the rest of the work then goes
//!   on in a task of its own.
//! - A tag invalidation drops the tagged L1 entries; an exact URL (an unsafe
//!   request's target) drops the L1 entries of its path; a wider pattern,
//!   which an L1 filled from L2 cannot match (the query is not in the
//!   entry), drops all of L1.
//! - A read from L2 that an invalidation overtook does not stay in L1.
//! - While L1 is in use, concurrent reads of one key that miss L1 share one
//!   L2 read and one L1 fill (a hot entry expiring from L1 costs one round
//!   trip, not one per waiting request); a read never shares one that
//!   began before an invalidation it came after, and a waiter leaving does
//!   not stop the others' read.
//! - When Redis is down the store fails open as the Redis store does.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::invalidate::Invalidation;
use uip_cache_core::pattern::PathSelector;
use uip_cache_core::store::{
    Coordination, HealthStatus, MemoryStore, MemoryUsage, PutOptions, Rewrite, Storage, StoreError,
    StoreFuture, StoreHealth, StoreStatus,
};
use uip_cache_core::{CacheConfig, StoredResponse, UrlPattern};

use crate::store::{RedisConfigError, RedisStore};

mod backplane;
mod flight;
#[cfg(test)]
mod tests;

use backplane::{instance_id, KEY_PREFIX};
use flight::{FlightError, Flights, Landing};

/// The L1 + Redis store. Cheap to clone.
#[derive(Clone)]
pub struct TieredStore {
    inner: Arc<Inner>,
}

struct Inner {
    l1: MemoryStore,
    l2: RedisStore,
    max_ttl: Duration,
    /// How often the subscription is pinged, and how long a ping may take.
    ping_every: Duration,
    channel: String,
    /// Whether invalidation messages are arriving: L1 is used only then.
    subscribed: AtomicBool,
    /// Whether the subscriber task runs (started on first use, in a runtime).
    started: AtomicBool,
    /// Who this instance is on the channel: its own messages are skipped.
    id: String,
    /// Raised by every invalidation applied to L1 (local, received, a
    /// clear): a read from L2 that started before one does not stay in L1.
    generation: AtomicU64,
    /// The L2 reads that fill L1, shared by concurrent `get`s of a key.
    flights: Arc<Flights>,
    /// Holds an L2 read open, for tests.
    #[cfg(test)]
    hold: tests::Hold,
    /// Holds a put before its write to L2, for tests.
    #[cfg(test)]
    hold_put: tests::Hold,
}

impl Inner {
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops what an invalidation concerns from L1.
    async fn drop_from_l1(&self, what: &Invalidation) {
        self.bump();
        match what {
            Invalidation::Tags(tags) => {
                let _ = self.l1.invalidate_tags(tags).await;
            }
            // L1 entries filled from L2 know their path (a `path:` tag) but
            // not their query: an exact URL drops every entry of its path; a
            // wider pattern (or anything else) drops all of L1.
            Invalidation::Pattern(p) => match p.selector() {
                PathSelector::Exact(path) => {
                    // Entries put here are indexed by path and query;
                    // those filled from L2 by their `path:` tag.
                    let _ = self.l1.invalidate_pattern(p).await;
                    let _ = self.l1.invalidate_tags(&[format!("path:{path}")]).await;
                }
                _ => self.l1.clear(),
            },
            _ => self.l1.clear(),
        }
        self.bump();
    }
}

impl fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredStore")
            .field("l2", &self.inner.l2)
            .field("subscribed", &self.inner.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

impl TieredStore {
    /// The store a `store.type: tiered` config describes. Never connects:
    /// the first call does (and starts the subscriber).
    pub fn from_config(config: &CacheConfig) -> Result<Self, RedisConfigError> {
        let l2 = RedisStore::from_config(config)?;
        let channel = l2.invalidation_channel();
        Ok(TieredStore {
            inner: Arc::new(Inner {
                l1: MemoryStore::new(config.store.l1.max_bytes.bytes()),
                l2,
                max_ttl: config.store.l1.max_ttl.get(),
                ping_every: config.store.l1.ping_interval.get(),
                channel,
                subscribed: AtomicBool::new(false),
                started: AtomicBool::new(false),
                id: instance_id(),
                generation: AtomicU64::new(0),
                flights: Arc::default(),
                #[cfg(test)]
                hold: tests::Hold::default(),
                #[cfg(test)]
                hold_put: tests::Hold::default(),
            }),
        })
    }

    /// Whether L1 is in use (the subscription is up).
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire)
    }

    /// Runs an invalidation: L1; the other instances told, in a task of
    /// its own so that L2 need not wait for it; L2; L1 again (reads during
    /// the L2 work may have refilled it); the other instances told again,
    /// whatever L2 said. Should the caller stop waiting before the end, the
    /// last two steps run in a task of their own.
    async fn invalidate<T>(
        &self,
        what: Invalidation,
        l2: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let line = what.to_line();
        self.inner.drop_from_l1(&what).await;
        let mut rest = Unfinished {
            store: Some(self.clone()),
            what,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let (store, line) = (self.clone(), line.clone());
                rt.spawn(async move { store.publish(&line).await });
            }
            Err(_) => {
                let _ = self.publish(&line).await;
            }
        }
        let result = l2.await;
        self.inner.drop_from_l1(&rest.what).await;
        let published = self.publish(&line).await;
        rest.store = None;
        let value = result?;
        published.map(|()| value)
    }

    /// Reads `key` from L2 and fills L1 with it, unless an invalidation
    /// ran since `generation` was read (before this read) or a write of the
    /// key here superseded the read (`landing`).
    async fn read_through(
        &self,
        key: &str,
        generation: u64,
        landing: &Landing,
    ) -> Result<Option<Bytes>, StoreError> {
        let value = self.inner.l2.get(key).await?;
        #[cfg(test)]
        self.inner.hold.pass().await;
        if let Some(v) = &value {
            // Fill L1 with the entry's own tags (for tag invalidations),
            // for what is left of its storage time, at most `max_ttl`.
            if let Ok(entry) = StoredResponse::decode(v) {
                let path = entry
                    .tags
                    .iter()
                    .find_map(|t| t.strip_prefix("path:"))
                    .unwrap_or("/")
                    .to_owned();
                let left = entry
                    .storage_ttl()
                    .saturating_sub(entry.age(std::time::SystemTime::now()));
                let ttl = left.min(self.inner.max_ttl);
                if !ttl.is_zero() {
                    let options = PutOptions::new(ttl, &path).tags(&entry.tags);
                    self.fill_l1(key, v.clone(), options, generation).await;
                    if landing.superseded() {
                        let _ = self.inner.l1.delete(key).await;
                    }
                }
            }
        }
        Ok(value)
    }

    /// Puts into L1 unless an invalidation ran since `generation` was read.
    async fn fill_l1(&self, key: &str, value: Bytes, options: PutOptions<'_>, generation: u64) {
        let _ = self.inner.l1.put(key, value, options).await;
        if self.inner.generation.load(Ordering::Acquire) != generation || !self.is_subscribed() {
            let _ = self.inner.l1.delete(key).await;
        }
    }
}

/// The end of an invalidation whose caller may stop waiting: dropped before
/// it is done, it drops L1 again and tells the other instances from a task
/// of its own.
struct Unfinished {
    store: Option<TieredStore>,
    what: Invalidation,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let what = self.what.clone();
        rt.spawn(async move {
            store.inner.drop_from_l1(&what).await;
            let _ = store.publish(&what.to_line()).await;
        });
    }
}

impl Storage for TieredStore {
    /// An L1 hit, while L1 is trusted (subscribed to invalidations).
    fn get_now(&self, key: &str) -> Option<Bytes> {
        if !self.is_subscribed() {
            return None;
        }
        self.inner.l1.get_now(key)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            self.ensure_subscriber();
            if !self.is_subscribed() {
                return self.inner.l2.get(key).await;
            }
            if let Some(v) = self.inner.l1.get(key).await? {
                return Ok(Some(v));
            }
            // Joined only if no invalidation was applied since the flight
            // recorded this generation: see `flight` for why that is right.
            let generation = self.inner.generation.load(Ordering::Acquire);
            let flight = self
                .inner
                .flights
                .join_or_start(key, generation, |landing| {
                    let (store, key) = (self.clone(), key.to_owned());
                    Box::pin(async move {
                        store
                            .read_through(&key, generation, &landing)
                            .await
                            .map_err(FlightError::from)
                    })
                });
            flight.await.map_err(StoreError::from)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.ensure_subscriber();
            let mut l1_options = options;
            l1_options.ttl = l1_options.ttl.min(self.inner.max_ttl);
            let generation = self.inner.generation.load(Ordering::Acquire);
            #[cfg(test)]
            self.inner.hold_put.pass().await;
            let written = self.inner.l2.put(key, value.clone(), options).await;
            // Once Redis has it (or may have it), before the fill below: a
            // read that begins after the write must not share a read of
            // Redis from before it (see `flight`).
            self.inner.flights.supersede(key);
            written?;
            // No message: a new entry replaces one that was stale or
            // invalidated (and that invalidation was published), and an
            // older copy elsewhere is still a valid one for its own lifetime.
            if self.is_subscribed() {
                self.fill_l1(key, value, l1_options, generation).await;
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.inner.bump();
            let _ = self.inner.l1.delete(key).await;
            let removed = self.inner.l2.delete(key).await;
            self.inner.bump();
            let _ = self.inner.l1.delete(key).await;
            let published = self.publish(&format!("{KEY_PREFIX}{key}")).await;
            let removed = removed?;
            published.map(|()| removed)
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(self.invalidate(
            Invalidation::Tags(tags.to_vec()),
            self.inner.l2.invalidate_tags(tags),
        ))
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        Box::pin(self.invalidate(
            Invalidation::Pattern(pattern.clone()),
            self.inner.l2.invalidate_pattern(pattern),
        ))
    }

    /// Soft in Redis; the L1 copies are dropped (hard), here and on every
    /// instance, so the next read finds the rewritten entry in Redis.
    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.invalidate(
            Invalidation::Tags(tags.to_vec()),
            self.inner.l2.soft_invalidate_tags(tags, rewrite),
        ))
    }

    /// See [`TieredStore::soft_invalidate_tags`].
    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.invalidate(
            Invalidation::Pattern(pattern.clone()),
            self.inner.l2.soft_invalidate_pattern(pattern, rewrite),
        ))
    }
}

impl StoreStatus for TieredStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.inner.l2.keys_count()
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.inner.l2.memory()
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async move {
            let health = self.inner.l2.health().await?;
            // Redis answers but invalidations do not arrive: L1 is off, so
            // every read costs a round trip. Worth an operator's look.
            let channel_down = self.inner.started.load(Ordering::Acquire) && !self.is_subscribed();
            Ok(match (health.status, channel_down) {
                (HealthStatus::Connected, true) => StoreHealth::new(
                    HealthStatus::Degraded,
                    health.backend,
                    Some(
                        "the invalidation channel is down: L1 is not used until it is back".into(),
                    ),
                ),
                _ => health,
            })
        })
    }
}

/// Redis's: the instances share it.
impl Coordination for TieredStore {
    fn shared(&self) -> bool {
        self.inner.l2.shared()
    }

    fn epoch(&self) -> StoreFuture<'_, u64> {
        self.inner.l2.epoch()
    }

    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        self.inner.l2.record_invalidation(line)
    }

    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        self.inner.l2.invalidations_since(epoch)
    }

    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        self.inner.l2.try_lease(key, token, ttl)
    }

    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        self.inner.l2.release_lease(key, token)
    }
}
