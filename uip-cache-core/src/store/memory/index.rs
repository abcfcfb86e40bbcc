//! The tag and path index of the memory store: which keys an invalidation
//! looks at. Members carry the generation of the write that added them, so
//! a removal notice for an old entry never drops the members of the entry
//! that replaced it.
//!
//! A key is hashed once per write, with this index's own random keys, and
//! the sets it joins (one per tag, one for its path) use that hash as it is.
//! A tag such as a policy's may hold every entry of the cache: growing its
//! set then moves the stored hashes instead of hashing every key again under
//! the index lock, and each further set a write joins costs no hashing of
//! the key at all. The hash stays keyed (a seed per index, over keys that
//! are SHA-256 digests), so a client that chooses URLs cannot choose
//! collisions. Tags are hashed with the standard library's SipHash: some
//! are made of the request's path and query, which a client chooses.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use super::MemEntry;
use crate::pattern::{PathSelector, UrlPattern};

/// A key with its hash, computed once by [`Index::member`].
#[derive(Clone, Debug)]
pub(super) struct Member {
    hash: u64,
    pub(super) key: Arc<str>,
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl Eq for Member {}

impl Hash for Member {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of member sets: a [`Member`] gives its hash already made, and
/// this passes it on. (Written here rather than taken from a crate: it is
/// the dozen lines below, and only `Member` is ever hashed with it.)
#[derive(Default)]
pub(super) struct StoredHash(u64);

impl Hasher for StoredHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Never reached through `Member`; kept correct for any other use.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// key -> generation of the write that indexed it.
pub(super) type Members = HashMap<Member, u64, BuildHasherDefault<StoredHash>>;

/// Which keys carry a tag, and which are stored under a path (ordered, for
/// prefix ranges).
#[derive(Default)]
pub(super) struct Index {
    pub(super) tags: HashMap<String, Members>,
    pub(super) paths: BTreeMap<String, Members>,
    keys: foldhash::fast::RandomState,
    /// The latest hard purges, numbered as they counted themselves (see
    /// `write::write`), for a write that raced one to tell whether it
    /// concerned its entry.
    purges: VecDeque<(u64, Purge)>,
}

/// What a hard purge removed: entries with any of these tags, or under
/// this pattern.
pub(super) enum Purge {
    Tags(Vec<String>),
    Pattern(UrlPattern),
}

/// How many hard purges the index remembers for writes in progress: a
/// write older than all of them withdraws itself.
const RECENT_PURGES: usize = 256;

impl Index {
    /// Notes the purge numbered `seq` (the purge count it raised).
    pub(super) fn purged(&mut self, seq: u64, purge: Purge) {
        self.purges.push_back((seq, purge));
        while self.purges.len() > RECENT_PURGES {
            self.purges.pop_front();
        }
    }

    /// Whether a purge counted after `seen` concerns `entry` (its tags,
    /// its path and query), or may have: the index no longer remembers
    /// all of them.
    pub(super) fn purged_since(&self, seen: u64, entry: &MemEntry) -> bool {
        let mut since = self.purges.iter().filter(|(seq, _)| *seq > seen).peekable();
        if since.peek().is_none_or(|(seq, _)| *seq != seen + 1) {
            return true;
        }
        since.any(|(_, purge)| match purge {
            Purge::Tags(tags) => tags.iter().any(|t| entry.tags.contains(t)),
            Purge::Pattern(p) => p.matches(&entry.path, entry.query.as_deref()),
        })
    }

    /// `key` with its hash under this index's keys.
    fn member(&self, key: &Arc<str>) -> Member {
        Member {
            hash: self.keys.hash_one(&**key),
            key: key.clone(),
        }
    }

    /// The keys (and write generations) indexed under the paths `pattern`
    /// selects; its query constraint is left to the caller.
    pub(super) fn path_members(&self, pattern: &UrlPattern) -> Vec<(Arc<str>, u64)> {
        match pattern.selector() {
            PathSelector::Exact(p) => self
                .paths
                .get(p)
                .map(|m| m.iter().map(|(k, g)| (k.key.clone(), *g)).collect())
                .unwrap_or_default(),
            PathSelector::Prefix(prefix) => self
                .paths
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(p, _)| p.starts_with(prefix))
                .flat_map(|(_, m)| m.iter().map(|(k, g)| (k.key.clone(), *g)))
                .collect(),
        }
    }

    /// Indexes `e` under `key`.
    pub(super) fn add(&mut self, key: &Arc<str>, e: &MemEntry) {
        let member = self.member(key);
        for t in e.tags.iter() {
            // The tag is copied only for a set that does not exist yet.
            match self.tags.get_mut(t.as_str()) {
                Some(m) => {
                    m.insert(member.clone(), e.generation);
                }
                None => {
                    let mut m = Members::default();
                    m.insert(member.clone(), e.generation);
                    self.tags.insert(t.clone(), m);
                }
            }
        }
        match self.paths.get_mut(&*e.path) {
            Some(m) => {
                m.insert(member, e.generation);
            }
            None => {
                let mut m = Members::default();
                m.insert(member, e.generation);
                self.paths.insert(e.path.to_string(), m);
            }
        }
    }

    /// Drops the members `e` added under `key`, unless a newer write's
    /// replaced them.
    pub(super) fn remove(&mut self, key: &Arc<str>, e: &MemEntry) {
        /// Drops `member` if it holds `generation`; whether the set is now empty.
        fn drop_member(members: Option<&mut Members>, member: &Member, generation: u64) -> bool {
            let Some(m) = members else { return false };
            if m.get(member) == Some(&generation) {
                m.remove(member);
            }
            m.is_empty()
        }
        let member = self.member(key);
        for t in e.tags.iter() {
            if drop_member(self.tags.get_mut(t), &member, e.generation) {
                self.tags.remove(t);
            }
        }
        if drop_member(self.paths.get_mut(&*e.path), &member, e.generation) {
            self.paths.remove(&*e.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Members built by one index are equal exactly when their keys are,
        /// whatever the keys, so a set never holds a key twice nor takes one
        /// key for another.
        #[test]
        fn members_are_equal_exactly_when_their_keys_are(a in ".{0,40}", b in ".{0,40}") {
            let index = Index::default();
            let (ka, kb): (Arc<str>, Arc<str>) = (Arc::from(a.as_str()), Arc::from(b.as_str()));
            let (ma, mb) = (index.member(&ka), index.member(&kb));
            prop_assert_eq!(ma == mb, a == b);
            let mut set = Members::default();
            set.insert(ma, 1);
            set.insert(mb, 2);
            prop_assert_eq!(set.len(), if a == b { 1 } else { 2 });
            prop_assert_eq!(set.get(&index.member(&kb)), Some(&2));
        }
    }

    #[test]
    fn two_indexes_hash_keys_differently() {
        // Keyed per index: the hash of a key cannot be known in advance.
        let key: Arc<str> = Arc::from("GET|https|example.org|/a");
        let hashes: std::collections::HashSet<u64> =
            (0..8).map(|_| Index::default().member(&key).hash).collect();
        assert!(hashes.len() > 1, "every index hashed the key alike");
    }
}
