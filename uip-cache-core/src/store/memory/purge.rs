//! Purges of the memory store: by tag and by URL pattern, hard (removed)
//! or soft (rewritten in place), looking only at the index members under
//! the tags or the pattern's path prefix.

use std::sync::atomic::Ordering;

use super::index::{Member, Purge};
use super::{lock, MemoryStore};
use crate::pattern::UrlPattern;
use crate::store::{PutOptions, Rewrite};

impl MemoryStore {
    pub(super) fn invalidate_tags_sync(&self, tags: &[String]) -> u64 {
        let members: Vec<(Member, u64)> = {
            let mut index = lock(&self.inner.index);
            let seq = self.inner.invalidations.fetch_add(1, Ordering::AcqRel) + 1;
            index.purged(seq, Purge::Tags(tags.to_vec()));
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
    pub(super) fn rewrite_sync(
        &self,
        members: Vec<(Member, u64)>,
        pattern: Option<&UrlPattern>,
        rewrite: &Rewrite<'_>,
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
            let entry = self.entry(&key.key, value, &options);
            if self.write(key, entry, Some(generation)) {
                n += 1;
            }
        }
        n
    }

    pub(super) fn members_of_tags(&self, tags: &[String]) -> Vec<(Member, u64)> {
        let index = lock(&self.inner.index);
        tags.iter()
            .filter_map(|t| index.tags.get(t))
            .flat_map(|m| m.iter().map(|(k, g)| (k.clone(), *g)))
            .collect()
    }

    pub(super) fn members_of_pattern(&self, pattern: &UrlPattern) -> Vec<(Member, u64)> {
        lock(&self.inner.index).path_members(pattern)
    }

    pub(super) fn invalidate_pattern_sync(&self, pattern: &UrlPattern) -> u64 {
        let members: Vec<(Member, u64)> = {
            let mut index = lock(&self.inner.index);
            let seq = self.inner.invalidations.fetch_add(1, Ordering::AcqRel) + 1;
            index.purged(seq, Purge::Pattern(pattern.clone()));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::{lock, MemoryStore};
    use crate::store::PutOptions;

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
        let generation = s.entry_of("k").unwrap().generation;
        assert_eq!(
            index.tags.get("t").unwrap().values().collect::<Vec<_>>(),
            [&generation]
        );
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
}
