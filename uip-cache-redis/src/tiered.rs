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
//! - A tag invalidation drops the tagged L1 entries; a URL pattern, which an
//!   L1 filled from L2 cannot match (the query is not in the entry), drops
//!   all of L1.
//! - When Redis is down the store fails open as the Redis store does.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use uip_cache_core::invalidate::Invalidation;
use uip_cache_core::store::{
    MemoryStore, MemoryUsage, PutOptions, Store, StoreFuture, StoreHealth,
};
use uip_cache_core::{CacheConfig, StoredResponse, UrlPattern};

use crate::store::{RedisConfigError, RedisStore};

/// The L1 + Redis store. Cheap to clone.
#[derive(Clone)]
pub struct TieredStore {
    inner: Arc<Inner>,
}

struct Inner {
    l1: MemoryStore,
    l2: RedisStore,
    max_ttl: Duration,
    channel: String,
    /// Whether invalidation messages are arriving: L1 is used only then.
    subscribed: AtomicBool,
    /// Whether the subscriber task runs (started on first use, in a runtime).
    started: AtomicBool,
    /// Who this instance is on the channel: its own messages are skipped.
    id: String,
}

impl fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredStore")
            .field("l2", &self.inner.l2)
            .field("subscribed", &self.inner.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

/// A message on the backplane, after the sender's id: an invalidation line,
/// or `key <key>` for one deleted key.
const KEY_PREFIX: &str = "key ";

/// 64 random bits (the std hasher's keys come from the operating system's
/// random source) naming this instance on the channel.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl TieredStore {
    /// The store a `store.type: tiered` config describes. Never connects:
    /// the first call does (and starts the subscriber).
    pub fn from_config(config: &CacheConfig) -> Result<Self, RedisConfigError> {
        let l2 = RedisStore::from_config(config)?;
        let channel = format!("{}invalidations", l2.prefix());
        Ok(TieredStore {
            inner: Arc::new(Inner {
                l1: MemoryStore::new(config.store.l1.max_bytes.bytes()),
                l2,
                max_ttl: config.store.l1.max_ttl.get(),
                channel,
                subscribed: AtomicBool::new(false),
                started: AtomicBool::new(false),
                id: instance_id(),
            }),
        })
    }

    /// Whether L1 is in use (the subscription is up).
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire)
    }

    /// Starts the subscriber once, when called inside a Tokio runtime.
    fn ensure_subscriber(&self) {
        if self.inner.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        rt.spawn(subscribe(Arc::downgrade(&self.inner)));
    }

    async fn publish(&self, message: &str) {
        let message = format!("{} {message}", self.inner.id);
        if let Err(e) = self.inner.l2.publish(&self.inner.channel, &message).await {
            // The other instances keep their L1 copy at most `max_ttl`.
            tracing::warn!(error = %e, "tiered store: could not publish an invalidation");
        }
    }
}

/// The subscriber: applies every message to L1; on a lost connection, stops
/// using L1 and reconnects with a growing pause (at most 5 s).
async fn subscribe(weak: Weak<Inner>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let client = inner.l2.pubsub_client();
        let channel = inner.channel.clone();
        drop(inner);
        let connected = async {
            let mut pubsub = client?.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(Ok(mut pubsub)) => {
                pause = Duration::from_millis(100);
                {
                    let Some(inner) = weak.upgrade() else { return };
                    // Whatever was published while we were away is lost:
                    // start from an empty L1.
                    inner.l1.clear();
                    inner.subscribed.store(true, Ordering::Release);
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    apply(&inner, &text).await;
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "tiered store: subscription failed"),
            Err(_) => tracing::debug!("tiered store: subscription timed out"),
        }
        {
            let Some(inner) = weak.upgrade() else { return };
            inner.subscribed.store(false, Ordering::Release);
        }
        tracing::warn!(
            retry_in = ?pause,
            "tiered store: invalidation channel lost; L1 unused until it is back"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Drops from L1 what a backplane message concerns (another instance's;
/// this one has applied its own already).
async fn apply(inner: &Inner, message: &str) {
    let Some((sender, message)) = message.split_once(' ') else {
        return;
    };
    if sender == inner.id {
        return;
    }
    if let Some(key) = message.strip_prefix(KEY_PREFIX) {
        let _ = inner.l1.delete(key).await;
        return;
    }
    match Invalidation::from_line(message) {
        Some(Invalidation::Tags(tags)) => {
            let _ = inner.l1.invalidate_tags(&tags).await;
        }
        // Patterns, and anything not understood: drop all of L1.
        _ => inner.l1.clear(),
    }
}

impl Store for TieredStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            self.ensure_subscriber();
            let l1 = self.is_subscribed();
            if l1 {
                if let Some(v) = self.inner.l1.get(key).await? {
                    return Ok(Some(v));
                }
            }
            let value = self.inner.l2.get(key).await?;
            if let (true, Some(v)) = (l1, &value) {
                // Fill L1 with the entry's own tags (for tag invalidations)
                // and lifetime, at most `max_ttl`.
                if let Ok(entry) = StoredResponse::decode(v) {
                    let path = entry
                        .tags
                        .iter()
                        .find_map(|t| t.strip_prefix("path:"))
                        .unwrap_or("/")
                        .to_owned();
                    let ttl = entry.storage_ttl().min(self.inner.max_ttl);
                    let options = PutOptions::new(ttl, &path).tags(&entry.tags);
                    let _ = self.inner.l1.put(key, v.clone(), options).await;
                }
            }
            Ok(value)
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
            self.inner.l2.put(key, value.clone(), options).await?;
            // No message: a new entry replaces one that was stale or
            // invalidated (and that invalidation was published), and an
            // older copy elsewhere is still a valid one for its own lifetime.
            if self.is_subscribed() {
                self.inner.l1.put(key, value, l1_options).await?;
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let _ = self.inner.l1.delete(key).await;
            let removed = self.inner.l2.delete(key).await?;
            self.publish(&format!("{KEY_PREFIX}{key}")).await;
            Ok(removed)
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let _ = self.inner.l1.invalidate_tags(tags).await;
            let n = self.inner.l2.invalidate_tags(tags).await?;
            self.publish(&Invalidation::Tags(tags.to_vec()).to_line())
                .await;
            Ok(n)
        })
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.inner.l1.clear();
            let n = self.inner.l2.invalidate_pattern(pattern).await?;
            self.publish(&Invalidation::Pattern(pattern.clone()).to_line())
                .await;
            Ok(n)
        })
    }

    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.inner.l2.keys_count()
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.inner.l2.memory()
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        self.inner.l2.health()
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
