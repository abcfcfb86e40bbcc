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

use super::{
    Coordination, HealthStatus, MemoryUsage, PutOptions, Rewrite, Storage, StoreFuture,
    StoreHealth, StoreStatus,
};
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
    cache: Cache<Arc<str>, Arc<MemEntry>>,
    index: Arc<Mutex<Index>>,
    generation: AtomicU64,
    /// Invalidations that have taken index members (see `put_sync`).
    invalidations: AtomicU64,
    evictions: Arc<AtomicU64>,
    expirations: Arc<AtomicU64>,
    max_bytes: u64,
    /// Bytes written since the cache last applied its pending writes (see
    /// `settle`).
    unsettled: AtomicU64,
}

struct MemEntry {
    value: Bytes,
    tags: Box<[String]>,
    path: Box<str>,
    query: Option<Box<str>>,
    generation: u64,
    ttl: Duration,
    /// What the entry costs (see [`weight`]), reckoned once when written.
    weight: u32,
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

/// The bytes glibc's malloc takes for a request of `n` (none for 0): the
/// request plus an 8-byte chunk header, rounded up to 16, at least 32.
fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8).div_ceil(16) * 16).max(32)
    }
}

/// moka's own bookkeeping per entry (its hash table bucket and slot, the
/// entry's info, access- and write-order queue nodes, timer wheel node, the
/// key's hash record and `Arc` of the key), measured by
/// `tests/memory_bound.rs` at about 400 bytes, with room to spare.
const MOKA_PER_ENTRY: usize = 512;
/// One member of a tag's or path's set in the index (an `Arc<str>` and a
/// generation, 24 bytes, in a hash table at most 7/8 full that doubles).
const INDEX_MEMBER: usize = 64;
/// A tag or path set of its own (its slot in the index map, the members
/// table's first allocation), besides its name: charged to every entry, as
/// if no other entry shared its tags and path.
const INDEX_SET: usize = 256;
/// A value in sealed memory besides its pages: its region, registry node
/// and `Bytes` owner, and what the kernel keeps for the file and its
/// mapping (charged to the process's cgroup too).
const SEALED_PER_VALUE: usize = 1024;
const PAGE: usize = 4096;

/// Bytes an entry really costs, as allocated: its value (an exact heap
/// allocation and the shared header its first clone makes, or whole pages
/// of sealed memory), key, the entry with its tags, path and query, its
/// index members and sets, and moka's bookkeeping. `tests/memory_bound.rs`
/// checks that this is never less than what a full store holds.
fn weight(key: &str, value: &Bytes, sealed: bool, o: &PutOptions<'_>) -> u32 {
    let value = if sealed {
        value.len().div_ceil(PAGE) * PAGE + SEALED_PER_VALUE
    } else {
        heap(value.len()) + heap(3 * std::mem::size_of::<usize>())
    };
    let names: usize = o.tags.iter().map(|t| heap(t.len())).sum::<usize>() + heap(o.path.len());
    let n = value
        + heap(2 * std::mem::size_of::<usize>() + key.len())
        + heap(2 * std::mem::size_of::<usize>() + std::mem::size_of::<MemEntry>())
        + heap(std::mem::size_of_val(o.tags))
        // The entry's own copies of its tags and path, and the index's.
        + 2 * names
        + o.query.map_or(0, |q| heap(q.len()))
        + (o.tags.len() + 1) * (INDEX_MEMBER + INDEX_SET)
        + MOKA_PER_ENTRY;
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
            .weigher(|_: &Arc<str>, e: &Arc<MemEntry>| e.weight)
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
                unsettled: AtomicU64::new(0),
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

    /// A new entry of `value` under `key`, with the next write generation.
    fn entry(&self, key: &str, value: Bytes, o: &PutOptions<'_>) -> Arc<MemEntry> {
        // Large values go to sealed memory when the server sends hits
        // with sendfile (a no-op otherwise); others are copied into an
        // allocation of their own length, so that a value sliced from a
        // larger buffer (a read buffer, a reply from another store) does
        // not keep the whole buffer.
        let value = crate::zerocopy::seal(value);
        let sealed = crate::zerocopy::find(&value).is_some();
        let value = if sealed {
            value
        } else {
            Bytes::copy_from_slice(&value)
        };
        Arc::new(MemEntry {
            weight: weight(key, &value, sealed, o),
            value,
            tags: o.tags.into(),
            path: o.path.into(),
            query: o.query.map(Into::into),
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed),
            ttl: o.ttl,
        })
    }

    fn put_sync(&self, key: &str, value: Bytes, o: PutOptions<'_>) {
        let entry = self.entry(key, value, &o);
        self.write(Arc::from(key), entry, None);
    }

    /// Writes `entry` under `key`: whatever is there, or with `over`, only
    /// if the entry there is still the write of that generation (checked
    /// and replaced in one step). Whether it was written.
    fn write(&self, key: Arc<str>, entry: Arc<MemEntry>, over: Option<u64>) -> bool {
        let generation = entry.generation;
        let weight = u64::from(entry.weight);
        // Index first, then the cache. An invalidation that takes the index
        // members between the two would miss the entry, so invalidations count
        // themselves (under the index lock, as they take members); if one did
        // meanwhile, this write withdraws itself.
        let index_it = || {
            let mut index = lock(&self.inner.index);
            index.add(&key, &entry);
            self.inner.invalidations.load(Ordering::Acquire)
        };
        let seen = match over {
            None => {
                let seen = index_it();
                self.inner.cache.insert(key.clone(), entry.clone());
                seen
            }
            Some(old) => {
                // Indexed only once it is sure to be written (a key has
                // one member per set, which would be the current entry's):
                // within the step, so under the key's lock. Nothing holds
                // the index lock while calling into the cache, so this
                // order cannot deadlock.
                let mut seen = None;
                let new = entry.clone();
                self.inner
                    .cache
                    .entry(key.clone())
                    .and_compute_with(|current| match current {
                        Some(e) if e.value().generation == old => {
                            seen = Some(index_it());
                            Op::Put(new)
                        }
                        _ => Op::Nop,
                    });
                let Some(seen) = seen else { return false };
                seen
            }
        };
        if self.inner.invalidations.load(Ordering::Acquire) != seen {
            self.remove_if_generation(&key, generation);
        }
        self.settle(weight);
        true
    }

    /// Counts `weight` more bytes written, and once they reach 1/64 of
    /// the capacity has the cache apply its pending writes (and evict) now.
    /// moka counts a write only when it applies it, which it does every 64
    /// writes or so when nobody else is at it, but up to 384 may wait: 24 MB
    /// of 64 KB entries held beyond `max_bytes` unseen.
    fn settle(&self, weight: u64) {
        let every = (self.inner.max_bytes / 64).max(1);
        let before = self.inner.unsettled.fetch_add(weight, Ordering::Relaxed);
        if before < every && before + weight >= every {
            self.inner.cache.run_pending_tasks();
            self.inner.unsettled.store(0, Ordering::Relaxed);
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
            // Only over the entry read: a write since then is newer than
            // the purge and stays.
            let entry = self.entry(&key, value, &options);
            if self.write(key, entry, Some(generation)) {
                n += 1;
            }
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

impl Storage for MemoryStore {
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
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_tags(tags), None, rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }

    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let n = self.rewrite_sync(self.members_of_pattern(pattern), Some(pattern), rewrite);
        Box::pin(async move { Ok(Some(n)) })
    }
}

/// One process alone: the cache's own log and locks cover it.
impl Coordination for MemoryStore {}

impl StoreStatus for MemoryStore {
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

    #[test]
    fn a_soft_purge_leaves_an_entry_written_after_it_read_alone() {
        let s = MemoryStore::new(1 << 20);
        let tags = vec!["t".to_string()];
        let options = || PutOptions::new(Duration::from_secs(60), "/p").tags(&tags);
        s.put_sync("k", Bytes::from_static(b"old"), options());
        // The rewrite runs after the purge read the entry and before it
        // writes: a put then is the race, made every time.
        let rewrite = |old: &Bytes| {
            assert_eq!(old, &Bytes::from_static(b"old"));
            s.put_sync("k", Bytes::from_static(b"new"), options());
            Some((Bytes::from_static(b"old, purged"), Duration::from_secs(60)))
        };
        assert_eq!(s.rewrite_sync(s.members_of_tags(&tags), None, &rewrite), 0);
        assert_eq!(s.get_sync("k"), Some(Bytes::from_static(b"new")));
        s.inner.cache.run_pending_tasks();
        // The purge's index members went with its write; the new entry's stay.
        let index = lock(&s.inner.index);
        let generation = s.inner.cache.get("k").unwrap().generation;
        assert_eq!(index.tags["t"].values().collect::<Vec<_>>(), [&generation]);
        assert_eq!(
            index.paths["/p"].values().collect::<Vec<_>>(),
            [&generation]
        );
    }

    #[test]
    fn a_soft_purge_rewrites_the_entry_it_read() {
        let s = MemoryStore::new(1 << 20);
        let tags = vec!["t".to_string()];
        let options = PutOptions::new(Duration::from_secs(60), "/p").tags(&tags);
        s.put_sync("k", Bytes::from_static(b"old"), options);
        let rewrite = |_: &Bytes| Some((Bytes::from_static(b"purged"), Duration::from_secs(60)));
        assert_eq!(s.rewrite_sync(s.members_of_tags(&tags), None, &rewrite), 1);
        assert_eq!(s.get_sync("k"), Some(Bytes::from_static(b"purged")));
        assert_eq!(s.invalidate_tags_sync(&tags), 1);
    }

    #[test]
    fn values_are_kept_in_allocations_of_their_own_length() {
        let s = MemoryStore::new(1 << 20);
        let buffer = Bytes::from(vec![5u8; 64 * 1024]);
        s.put_sync(
            "k",
            buffer.slice(10..20),
            PutOptions::new(Duration::from_secs(60), "/p"),
        );
        let e = s.inner.cache.get("k").unwrap();
        assert_eq!(&e.value[..], &[5u8; 10]);
        // A copy, not a slice keeping the 64 KB buffer, and charged as such.
        let at = e.value.as_ptr() as usize;
        let start = buffer.as_ptr() as usize;
        assert!(!(start..start + buffer.len()).contains(&at));
        assert!(e.weight < 4096, "{}", e.weight);
    }
}
