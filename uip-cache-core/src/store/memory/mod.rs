//! The in-process store, [`MemoryStore`]: here the moka cache it is built
//! on, weighted by bytes with a TTL per entry; in `index` the tag and path
//! index, in `weight` what an entry costs, in `write` writes, in `purge`
//! hard and soft purges, in `traits` the store traits.

mod index;
mod purge;
mod traits;
mod weight;
mod write;

use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use index::{Index, Keys, Member, StoredHash};

/// The in-process store: a [moka] cache weighted by bytes, with per-entry
/// expiry, and tag and path indexes for invalidation.
///
/// Invalidation looks only at the entries under the tag, or under the
/// pattern's literal path prefix (a `BTreeMap` range), never at the whole
/// cache. Index members carry the generation of the write that added them, so
/// a removal notice for an old entry never drops the index members of the
/// entry that replaced it.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use uip_cache_core::store::{MemoryStore, PutOptions, Storage};
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new(64 << 20);
/// let tags = vec!["camera".to_string()];
/// store.put("k", Bytes::from_static(b"v"), PutOptions::new(Duration::from_secs(60), "/cams").tags(&tags)).await?;
/// assert_eq!(store.get("k").await?, Some(Bytes::from_static(b"v")));
/// assert_eq!(store.invalidate_tags(&tags).await?, 1);
/// assert_eq!(store.get("k").await?, None);
/// # Ok::<(), uip_cache_core::store::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keyed by [`Member`]: each key hashed once, with `keys`.
    cache: Cache<Member, Arc<MemEntry>, BuildHasherDefault<StoredHash>>,
    keys: Keys,
    index: Arc<Mutex<Index>>,
    generation: AtomicU64,
    /// Invalidations that have taken index members (see `write::write`).
    invalidations: AtomicU64,
    evictions: Arc<AtomicU64>,
    expirations: Arc<AtomicU64>,
    max_bytes: u64,
    /// Bytes written since the cache last applied its pending writes (see
    /// `settle`).
    unsettled: AtomicU64,
    /// Runs once in the next write, between its indexing and its insert:
    /// the race with a purge that a test makes happen.
    #[cfg(test)]
    between_index_and_insert: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

struct MemEntry {
    value: Bytes,
    tags: Box<[String]>,
    path: Box<str>,
    query: Option<Box<str>>,
    generation: u64,
    ttl: Duration,
    /// What the entry costs (see `weight::weight`), reckoned once when written.
    weight: u32,
}

struct PerEntryTtl;

impl Expiry<Member, Arc<MemEntry>> for PerEntryTtl {
    fn expire_after_create(&self, _: &Member, v: &Arc<MemEntry>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    // The default keeps the old expiry on replacement; a new write gets its own TTL.
    fn expire_after_update(
        &self,
        _: &Member,
        v: &Arc<MemEntry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // A panic while holding the lock cannot leave the index inconsistent in a
    // way that matters more than losing the cache, so keep going.
    index.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of keys and entries.
    pub fn new(max_bytes: u64) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let evictions = Arc::new(AtomicU64::new(0));
        let listener_index = index.clone();
        let listener_evictions = evictions.clone();
        let expirations = Arc::new(AtomicU64::new(0));
        let listener_expirations = expirations.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Member, e: &Arc<MemEntry>| e.weight)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<Member>, entry: Arc<MemEntry>, cause| {
                match cause {
                    RemovalCause::Size => listener_evictions.fetch_add(1, Ordering::Relaxed),
                    RemovalCause::Expired => listener_expirations.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                lock(&listener_index).remove(&key, &entry);
            })
            .build_with_hasher(BuildHasherDefault::default());
        MemoryStore {
            inner: Arc::new(Inner {
                cache,
                keys: Keys::default(),
                index,
                generation: AtomicU64::new(1),
                invalidations: AtomicU64::new(0),
                evictions,
                expirations,
                max_bytes,
                unsettled: AtomicU64::new(0),
                #[cfg(test)]
                between_index_and_insert: Mutex::new(None),
            }),
        }
    }

    /// Drops every entry (a tiered store's L1 after it may have missed
    /// invalidations).
    pub fn clear(&self) {
        self.inner.cache.invalidate_all();
    }

    /// A store sized by `store.max_bytes` of the config.
    pub fn from_config(config: &crate::CacheConfig) -> Self {
        Self::new(config.store.memory_max_bytes())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.inner.cache.entry_count())
            .field("weighted_size", &self.inner.cache.weighted_size())
            .field("max_bytes", &self.inner.max_bytes)
            .finish()
    }
}
