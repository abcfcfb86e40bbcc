use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::sync::Cache;
use moka::Expiry;

use super::{HealthStatus, MemoryUsage, PutOptions, Store, StoreFuture, StoreHealth};
use crate::pattern::{PathSelector, UrlPattern};

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
/// use uip_cache_core::store::{MemoryStore, PutOptions, Store};
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
    cache: Cache<Arc<str>, Arc<MemEntry>>,
    index: Arc<Mutex<Index>>,
    generation: AtomicU64,
    /// Invalidations that have taken index members (see `put_sync`).
    invalidations: AtomicU64,
    evictions: Arc<AtomicU64>,
    expirations: Arc<AtomicU64>,
    max_bytes: u64,
}

struct MemEntry {
    value: Bytes,
    tags: Box<[String]>,
    path: Box<str>,
    query: Option<Box<str>>,
    generation: u64,
    ttl: Duration,
}

/// key -> generation of the write that indexed it.
type Members = HashMap<Arc<str>, u64>;

#[derive(Default)]
struct Index {
    tags: HashMap<String, Members>,
    paths: BTreeMap<String, Members>,
}

impl Index {
    /// The keys (and write generations) indexed under the paths `pattern`
    /// selects; its query constraint is left to the caller.
    fn path_members(&self, pattern: &UrlPattern) -> Vec<(Arc<str>, u64)> {
        match pattern.selector() {
            PathSelector::Exact(p) => self
                .paths
                .get(p)
                .map(|m| m.iter().map(|(k, g)| (k.clone(), *g)).collect())
                .unwrap_or_default(),
            PathSelector::Prefix(prefix) => self
                .paths
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(p, _)| p.starts_with(prefix))
                .flat_map(|(_, m)| m.iter().map(|(k, g)| (k.clone(), *g)))
                .collect(),
        }
    }

    fn add(&mut self, key: &Arc<str>, e: &MemEntry) {
        for t in e.tags.iter() {
            self.tags
                .entry(t.clone())
                .or_default()
                .insert(key.clone(), e.generation);
        }
        self.paths
            .entry(e.path.to_string())
            .or_default()
            .insert(key.clone(), e.generation);
    }

    fn remove(&mut self, key: &Arc<str>, e: &MemEntry) {
        /// Drops `key` if it holds `generation`; whether the set is now empty.
        fn drop_member(members: Option<&mut Members>, key: &Arc<str>, generation: u64) -> bool {
            let Some(m) = members else { return false };
            if m.get(key) == Some(&generation) {
                m.remove(key);
            }
            m.is_empty()
        }
        for t in e.tags.iter() {
            if drop_member(self.tags.get_mut(t), key, e.generation) {
                self.tags.remove(t);
            }
        }
        if drop_member(self.paths.get_mut(&*e.path), key, e.generation) {
            self.paths.remove(&*e.path);
        }
    }
}

struct PerEntryTtl;

impl Expiry<Arc<str>, Arc<MemEntry>> for PerEntryTtl {
    fn expire_after_create(&self, _: &Arc<str>, v: &Arc<MemEntry>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    // The default keeps the old expiry on replacement; a new write gets its own TTL.
    fn expire_after_update(
        &self,
        _: &Arc<str>,
        v: &Arc<MemEntry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Bytes an entry is charged for: key, value, tags, path and a fixed overhead
/// for the index and moka's own bookkeeping.
fn weight(key: &Arc<str>, e: &Arc<MemEntry>) -> u32 {
    let tags: usize = e.tags.iter().map(|t| t.len() * 2 + 48).sum();
    let n = key.len() * 3
        + e.value.len()
        + tags
        + e.path.len() * 2
        + e.query.as_ref().map_or(0, |q| q.len())
        + 160;
    u32::try_from(n).unwrap_or(u32::MAX)
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
            .weigher(weight)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<Arc<str>>, entry: Arc<MemEntry>, cause| {
                match cause {
                    RemovalCause::Size => listener_evictions.fetch_add(1, Ordering::Relaxed),
                    RemovalCause::Expired => listener_expirations.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                lock(&listener_index).remove(&key, &entry);
            })
            .build();
        MemoryStore {
            inner: Arc::new(Inner {
                cache,
                index,
                generation: AtomicU64::new(1),
                invalidations: AtomicU64::new(0),
                evictions,
                expirations,
                max_bytes,
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

    /// Removes `key` only if it still holds the write `generation`.
    fn remove_if_generation(&self, key: &Arc<str>, generation: u64) -> bool {
        let result =
            self.inner
                .cache
                .entry(key.clone())
                .and_compute_with(|current| match current {
                    Some(e) if e.value().generation == generation => Op::Remove,
                    _ => Op::Nop,
                });
        matches!(result, moka::ops::compute::CompResult::Removed(_))
    }

    fn get_sync(&self, key: &str) -> Option<Bytes> {
        self.inner.cache.get(key).map(|e| e.value.clone())
    }

    fn put_sync(&self, key: &str, value: Bytes, o: PutOptions<'_>) {
        let key: Arc<str> = Arc::from(key);
        let entry = Arc::new(MemEntry {
            // Large values go to sealed memory when the server sends hits
            // with sendfile (a no-op otherwise).
            value: crate::zerocopy::seal(value),
            tags: o.tags.into(),
            path: o.path.into(),
            query: o.query.map(Into::into),
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed),
            ttl: o.ttl,
        });
        let generation = entry.generation;
        // Index first, then the cache. An invalidation that takes the index
        // members between the two would miss the entry, so invalidations count
        // themselves (under the index lock, as they take members); if one did
        // meanwhile, this write withdraws itself.
        let seen = {
            let mut index = lock(&self.inner.index);
            index.add(&key, &entry);
            self.inner.invalidations.load(Ordering::Acquire)
        };
        self.inner.cache.insert(key.clone(), entry);
        if self.inner.invalidations.load(Ordering::Acquire) != seen {
            self.remove_if_generation(&key, generation);
        }
    }

    fn invalidate_tags_sync(&self, tags: &[String]) -> u64 {
        let members: Vec<(Arc<str>, u64)> = {
            let mut index = lock(&self.inner.index);
            self.inner.invalidations.fetch_add(1, Ordering::AcqRel);
            tags.iter()
                .filter_map(|t| index.tags.remove(t))
                .flat_map(|m| m.into_iter())
                .collect()
        };
        members
            .iter()
            .filter(|(k, g)| self.remove_if_generation(k, *g))
            .count() as u64
    }

    /// Rewrites the given entries in place (a soft purge), keeping their
    /// tags, path and query.
    fn rewrite_sync(
        &self,
        members: Vec<(Arc<str>, u64)>,
        pattern: Option<&UrlPattern>,
        rewrite: &super::Rewrite<'_>,
    ) -> u64 {
        let mut n = 0;
        for (key, generation) in members {
            let Some(e) = self.inner.cache.get(&key) else {
                continue;
            };
            if e.generation != generation
                || pattern.is_some_and(|p| !p.matches(&e.path, e.query.as_deref()))
            {
                continue;
            }
            let Some((value, ttl)) = rewrite(&e.value) else {
                continue;
            };
            let tags = e.tags.to_vec();
            let options = PutOptions::new(ttl, &e.path)
                .tags(&tags)
                .query(e.query.as_deref());
            self.put_sync(&key, value, options);
            n += 1;
        }
        n
    }

    fn members_of_tags(&self, tags: &[String]) -> Vec<(Arc<str>, u64)> {
        let index = lock(&self.inner.index);
        tags.iter()
            .filter_map(|t| index.tags.get(t))
            .flat_map(|m| m.iter().map(|(k, g)| (k.clone(), *g)))
            .collect()
    }

    fn members_of_pattern(&self, pattern: &UrlPattern) -> Vec<(Arc<str>, u64)> {
        lock(&self.inner.index).path_members(pattern)
    }

    fn invalidate_pattern_sync(&self, pattern: &UrlPattern) -> u64 {
        let members: Vec<(Arc<str>, u64)> = {
            let index = lock(&self.inner.index);
            self.inner.invalidations.fetch_add(1, Ordering::AcqRel);
            index.path_members(pattern)
        };
        let mut removed = 0;
        for (key, generation) in members {
            let Some(e) = self.inner.cache.get(&key) else {
                continue;
            };
            if e.generation == generation
                && pattern.matches(&e.path, e.query.as_deref())
                && self.remove_if_generation(&key, generation)
            {
                removed += 1;
            }
        }
        removed
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

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        let v = self.get_sync(key);
        Box::pin(async move { Ok(v) })
    }

    fn get_now(&self, key: &str) -> Option<Bytes> {
        self.get_sync(key)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()> {
        self.put_sync(key, value, options);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        let removed = self.inner.cache.remove(key).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        let n = self.invalidate_tags_sync(tags);
        Box::pin(async move { Ok(n) })
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        let n = self.invalidate_pattern_sync(pattern);
        Box::pin(async move { Ok(n) })
    }

    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a super::Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_tags(tags), None, rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }

    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a super::Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_pattern(pattern), Some(pattern), rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }

    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.inner.cache.run_pending_tasks();
        let n = self.inner.cache.entry_count();
        Box::pin(async move { Ok(n) })
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.inner.cache.run_pending_tasks();
        let usage = MemoryUsage::new(
            self.inner.cache.weighted_size(),
            Some(self.inner.max_bytes),
            self.inner.evictions.load(Ordering::Relaxed),
        )
        .with_expirations(self.inner.expirations.load(Ordering::Relaxed));
        Box::pin(async move { Ok(usage) })
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async { Ok(StoreHealth::new(HealthStatus::Connected, "memory", None)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_shrinks_as_entries_leave() {
        let s = MemoryStore::new(1 << 20);
        let tags = vec!["a".to_string(), "b".to_string()];
        s.put_sync(
            "k1",
            Bytes::from_static(b"1"),
            PutOptions::new(Duration::from_secs(60), "/x").tags(&tags),
        );
        s.put_sync(
            "k2",
            Bytes::from_static(b"2"),
            PutOptions::new(Duration::from_secs(60), "/y").tags(&tags[..1]),
        );
        assert_eq!(lock(&s.inner.index).tags.len(), 2);
        assert_eq!(s.invalidate_tags_sync(&["a".to_string()]), 2);
        s.inner.cache.run_pending_tasks();
        let index = lock(&s.inner.index);
        assert!(index.tags.is_empty(), "tag b's member left with its entry");
        assert!(index.paths.is_empty());
    }

    #[test]
    fn replacing_an_entry_keeps_the_new_index_members() {
        let s = MemoryStore::new(1 << 20);
        let tags = vec!["t".to_string()];
        s.put_sync(
            "k",
            Bytes::from_static(b"old"),
            PutOptions::new(Duration::from_secs(60), "/p").tags(&tags),
        );
        s.put_sync(
            "k",
            Bytes::from_static(b"new"),
            PutOptions::new(Duration::from_secs(60), "/p").tags(&tags),
        );
        s.inner.cache.run_pending_tasks();
        // The removal notice of "old" must not have removed the member of "new".
        assert_eq!(s.invalidate_tags_sync(&tags), 1);
        assert_eq!(s.get_sync("k"), None);
    }
}
