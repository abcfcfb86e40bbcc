//! Writes to the memory store: a new entry (sealed or copied to an
//! allocation of its own), indexed before it is cached, withdrawn if an
//! invalidation concerning it took the index meanwhile, and moka's pending
//! writes applied before they can hold much beyond the bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use moka::ops::compute::Op;

use super::index::{Keyed, Member};
use super::{lock, weight, MemEntry, MemoryStore};
use crate::store::PutOptions;

impl MemoryStore {
    /// Removes `key` only if it still holds the write `generation`.
    pub(super) fn remove_if_generation(&self, key: &Member, generation: u64) -> bool {
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

    pub(super) fn get_sync(&self, key: &str) -> Option<Bytes> {
        self.entry_of(key).map(|e| e.value.clone())
    }

    /// The entry under `key`, found without allocating.
    pub(super) fn entry_of(&self, key: &str) -> Option<Arc<MemEntry>> {
        let probe = self.inner.keys.probe(key);
        self.inner.cache.get(&probe as &dyn Keyed)
    }

    /// `key` with its hash, as the cache and the index hold it.
    pub(super) fn member(&self, key: &str) -> Member {
        self.inner.keys.member(Arc::from(key))
    }

    /// A new entry of `value` under `key`, with the next write generation.
    pub(super) fn entry(&self, key: &str, value: Bytes, o: &PutOptions<'_>) -> Arc<MemEntry> {
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
            weight: weight::weight(key, &value, sealed, o),
            value,
            tags: o.tags.into(),
            path: o.path.into(),
            query: o.query.map(Into::into),
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed),
            ttl: o.ttl,
        })
    }

    pub(super) fn put_sync(&self, key: &str, value: Bytes, o: PutOptions<'_>) {
        let entry = self.entry(key, value, &o);
        self.write(self.member(key), entry, None);
    }

    /// Writes `entry` under `key`: whatever is there, or with `over`, only
    /// if the entry there is still the write of that generation (checked
    /// and replaced in one step). Whether it was written.
    pub(super) fn write(&self, key: Member, entry: Arc<MemEntry>, over: Option<u64>) -> bool {
        let generation = entry.generation;
        let weight = u64::from(entry.weight);
        // Index first, then the cache. An invalidation that takes the index
        // members between the two would miss the entry, so invalidations count
        // and note themselves (under the index lock, as they take members); if
        // one that concerns this entry did meanwhile, this write withdraws
        // itself.
        let index_it = || {
            let mut index = lock(&self.inner.index);
            index.add(&key, &entry);
            self.inner.invalidations.load(Ordering::Acquire)
        };
        let seen = match over {
            None => {
                let seen = index_it();
                #[cfg(test)]
                if let Some(between) = self.inner.between_index_and_insert.lock().unwrap().take() {
                    between();
                }
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
        // Only a purge that concerns this entry withdraws it: the others
        // (another URL's, run by another request meanwhile) leave it be.
        if self.inner.invalidations.load(Ordering::Acquire) != seen
            && lock(&self.inner.index).purged_since(seen, &entry)
        {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::MemoryStore;
    use crate::pattern::UrlPattern;
    use crate::store::PutOptions;

    /// Writes `k` (tag `t`, path `/p`) while `purge` runs between its
    /// indexing and its insert, and returns what `k` then holds.
    fn write_racing(purge: impl FnOnce(&MemoryStore) + Send + 'static) -> Option<Bytes> {
        let s = MemoryStore::new(1 << 20);
        let other = s.clone();
        *s.inner.between_index_and_insert.lock().unwrap() = Some(Box::new(move || purge(&other)));
        let tags = vec!["t".to_string()];
        s.put_sync(
            "k",
            Bytes::from_static(b"v"),
            PutOptions::new(Duration::from_secs(60), "/p").tags(&tags),
        );
        s.get_sync("k")
    }

    /// Another request's purge raced a write: before, any purge counted
    /// meanwhile withdrew the write, and a response stored for one URL was
    /// lost to a purge of another.
    #[test]
    fn only_a_purge_concerning_the_entry_withdraws_a_write_it_raced() {
        let got = write_racing(|s| {
            s.invalidate_tags_sync(&["other".to_string()]);
            s.invalidate_pattern_sync(&UrlPattern::exact("/elsewhere"));
        });
        assert_eq!(got, Some(Bytes::from_static(b"v")), "other URLs' purges");
        let by_tag = write_racing(|s| {
            s.invalidate_tags_sync(&["t".to_string()]);
        });
        assert_eq!(by_tag, None, "purged by its tag");
        let by_pattern = write_racing(|s| {
            s.invalidate_pattern_sync(&UrlPattern::exact("/p"));
        });
        assert_eq!(by_pattern, None, "purged by its path");
        // More purges than the index remembers: any may have concerned it.
        let unknown = write_racing(|s| {
            for i in 0..300 {
                s.invalidate_tags_sync(&[format!("other-{i}")]);
            }
        });
        assert_eq!(unknown, None, "purges it cannot see");
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
    fn values_are_kept_in_allocations_of_their_own_length() {
        let s = MemoryStore::new(1 << 20);
        let buffer = Bytes::from(vec![5u8; 64 * 1024]);
        s.put_sync(
            "k",
            buffer.slice(10..20),
            PutOptions::new(Duration::from_secs(60), "/p"),
        );
        let e = s.entry_of("k").unwrap();
        assert_eq!(&e.value[..], &[5u8; 10]);
        // A copy, not a slice keeping the 64 KB buffer, and charged as such.
        let at = e.value.as_ptr() as usize;
        let start = buffer.as_ptr() as usize;
        assert!(!(start..start + buffer.len()).contains(&at));
        assert!(e.weight < 4096, "{}", e.weight);
    }
}
