//! The tag and path index of the memory store: which keys an invalidation
//! looks at. Members carry the generation of the write that added them, so
//! a removal notice for an old entry never drops the members of the entry
//! that replaced it.
//!
//! A key is hashed once per write, with the store's own random keys, into a
//! [`Member`]: moka's table and the sets the key joins (one per tag, one
//! for its path) use that hash as it is. moka rehashes every key of its
//! table each time removals have left a tenth of it as tombstones, which a
//! cache that evicts on every write does often, and a tag such as a
//! policy's may hold every entry of the cache: neither hashes a key's text
//! again, and each further set a write joins costs no hashing at all. The
//! hash stays keyed (a seed per store, over keys that are SHA-256 digests),
//! so a client that chooses URLs cannot choose collisions. Tags are hashed
//! with the standard library's SipHash: some are made of the request's path
//! and query, which a client chooses.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use super::MemEntry;
use crate::pattern::{PathSelector, UrlPattern};

/// A key with its hash, computed once by [`Keys::member`]: the key of moka's
/// table and of the index's sets.
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

/// What moka's table is looked up by: a stored [`Member`], or a borrowed
/// key with its hash ([`Probe`]), so that a lookup by `&str` allocates
/// nothing. (moka takes lookups through `Borrow` only, hence the trait
/// object.) Both hash and compare alike.
pub(super) trait Keyed {
    fn stored_hash(&self) -> u64;
    fn text(&self) -> &str;
}

impl Keyed for Member {
    fn stored_hash(&self) -> u64 {
        self.hash
    }
    fn text(&self) -> &str {
        &self.key
    }
}

/// A key borrowed for a lookup, with its hash.
pub(super) struct Probe<'a> {
    hash: u64,
    key: &'a str,
}

impl Keyed for Probe<'_> {
    fn stored_hash(&self) -> u64 {
        self.hash
    }
    fn text(&self) -> &str {
        self.key
    }
}

impl<'a> Borrow<dyn Keyed + 'a> for Member {
    fn borrow(&self) -> &(dyn Keyed + 'a) {
        self
    }
}

impl Hash for dyn Keyed + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.stored_hash());
    }
}

impl PartialEq for dyn Keyed + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.stored_hash() == other.stored_hash() && self.text() == other.text()
    }
}

impl Eq for dyn Keyed + '_ {}

/// The store's hash keys: makes [`Member`]s and [`Probe`]s.
#[derive(Default)]
pub(super) struct Keys(foldhash::fast::RandomState);

impl Keys {
    /// `key` with its hash under these keys.
    pub(super) fn member(&self, key: Arc<str>) -> Member {
        Member {
            hash: self.0.hash_one(&*key),
            key,
        }
    }

    /// `key`, borrowed, with its hash under these keys.
    pub(super) fn probe<'a>(&self, key: &'a str) -> Probe<'a> {
        Probe {
            hash: self.0.hash_one(key),
            key,
        }
    }
}

/// The hasher of moka's table and the member sets: a [`Member`] gives its
/// hash already made, and this passes it on. (Written here rather than
/// taken from a crate: it is the dozen lines below, and only keys that
/// carry their hash are ever hashed with it.)
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
        // Never reached through `Member` or `Probe`; kept correct for any
        // other use.
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

    /// The keys (and write generations) indexed under the paths `pattern`
    /// selects; its query constraint is left to the caller.
    pub(super) fn path_members(&self, pattern: &UrlPattern) -> Vec<(Member, u64)> {
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

    /// Indexes `e` under `key`.
    pub(super) fn add(&mut self, member: &Member, e: &MemEntry) {
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
                m.insert(member.clone(), e.generation);
            }
            None => {
                let mut m = Members::default();
                m.insert(member.clone(), e.generation);
                self.paths.insert(e.path.to_string(), m);
            }
        }
    }

    /// Drops the members `e` added under `key`, unless a newer write's
    /// replaced them.
    pub(super) fn remove(&mut self, member: &Member, e: &MemEntry) {
        /// Drops `member` if it holds `generation`; whether the set is now empty.
        fn drop_member(members: Option<&mut Members>, member: &Member, generation: u64) -> bool {
            let Some(m) = members else { return false };
            if m.get(member) == Some(&generation) {
                m.remove(member);
            }
            m.is_empty()
        }
        for t in e.tags.iter() {
            if drop_member(self.tags.get_mut(t), member, e.generation) {
                self.tags.remove(t);
            }
        }
        if drop_member(self.paths.get_mut(&*e.path), member, e.generation) {
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
        /// Members made with one store's keys are equal exactly when their
        /// keys are, whatever the keys, so a set never holds a key twice
        /// nor takes one key for another; a probe of a key finds that
        /// key's member and no other, as moka's lookups by `&str` do.
        #[test]
        fn members_and_probes_are_equal_exactly_when_their_keys_are(a in ".{0,40}", b in ".{0,40}") {
            let keys = Keys::default();
            let (ma, mb) = (keys.member(Arc::from(a.as_str())), keys.member(Arc::from(b.as_str())));
            prop_assert_eq!(ma == mb, a == b);
            let mut set = Members::default();
            set.insert(ma.clone(), 1);
            set.insert(mb.clone(), 2);
            prop_assert_eq!(set.len(), if a == b { 1 } else { 2 });
            prop_assert_eq!(set.get(&keys.member(Arc::from(b.as_str()))), Some(&2));

            let probe = keys.probe(&b);
            let (pa, pb): (&dyn Keyed, &dyn Keyed) = (&probe, &probe);
            let stored_a: &dyn Keyed = ma.borrow();
            let stored_b: &dyn Keyed = mb.borrow();
            prop_assert_eq!(stored_a == pa, a == b);
            prop_assert!(stored_b == pb);
            let hash = |k: &dyn Keyed| BuildHasherDefault::<StoredHash>::default().hash_one(k);
            prop_assert_eq!(hash(stored_b), hash(pb));
            prop_assert_eq!(hash(stored_b), BuildHasherDefault::<StoredHash>::default().hash_one(&mb));
        }
    }

    #[test]
    fn two_stores_hash_keys_differently() {
        // Keyed per store: the hash of a key cannot be known in advance.
        let key: Arc<str> = Arc::from("GET|https|example.org|/a");
        let hashes: std::collections::HashSet<u64> = (0..8)
            .map(|_| Keys::default().member(key.clone()).hash)
            .collect();
        assert!(hashes.len() > 1, "every store hashed the key alike");
    }
}
