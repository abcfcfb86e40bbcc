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
//! and query, which a client chooses. A tag's hash is kept beside its name
//! too, and the tags are spread over [`TAG_SHARDS`] tables: a store holds
//! a tag per path, so its tag table is as large as the store, and a table
//! that doubles moves every slot at once. With every name hashed again
//! (a pointer to follow per tag), a write of the server paused the store
//! for 9, 15 and 39 ms as it grew to some 55 000 entries, and for 485 ms
//! at a million (`benches/fill.rs`); now a write moves one shard's slots,
//! hashing nothing. A set of members (a tag's, a path's) splits the same
//! way once it is large ([`Members`]).

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

type MemberTable = HashMap<Member, u64, BuildHasherDefault<StoredHash>>;

/// Members a set holds in one table before it is split into
/// [`MEMBER_SHARDS`].
const SPLIT_AT: usize = 4096;

/// Tables a large set is split into.
const MEMBER_SHARDS: usize = 64;

/// The shard of a hash among `n`: bits 40 and up, which a table takes
/// neither for a slot (the low bits) nor for a control byte (the top
/// seven).
fn shard_of(hash: u64, n: usize) -> usize {
    (hash >> 40) as usize % n
}

/// key -> generation of the write that indexed it. A set that grows large
/// (a policy's tag holds every entry the policy stored) is split into
/// shards, so that a write that makes it grow moves one shard's members,
/// not all of them at once.
#[derive(Debug)]
pub(super) enum Members {
    One(MemberTable),
    Split(Box<[MemberTable]>),
}

impl Default for Members {
    fn default() -> Self {
        Members::One(MemberTable::default())
    }
}

impl Members {
    /// Its tables: one, or its shards.
    fn tables(&self) -> &[MemberTable] {
        match self {
            Members::One(t) => std::slice::from_ref(t),
            Members::Split(shards) => shards,
        }
    }

    fn table(&self, hash: u64) -> &MemberTable {
        match self {
            Members::One(t) => t,
            Members::Split(shards) => &shards[shard_of(hash, shards.len())],
        }
    }

    fn table_mut(&mut self, hash: u64) -> &mut MemberTable {
        match self {
            Members::One(t) => t,
            Members::Split(shards) => {
                let n = shards.len();
                &mut shards[shard_of(hash, n)]
            }
        }
    }

    /// Adds (or updates) `member` with `generation`.
    pub(super) fn insert(&mut self, member: Member, generation: u64) {
        if let Members::One(t) = self {
            if t.len() >= SPLIT_AT && !t.contains_key(&member) {
                let mut shards: Box<[MemberTable]> =
                    (0..MEMBER_SHARDS).map(|_| MemberTable::default()).collect();
                for (m, g) in t.drain() {
                    shards[shard_of(m.hash, MEMBER_SHARDS)].insert(m, g);
                }
                *self = Members::Split(shards);
            }
        }
        self.table_mut(member.hash).insert(member, generation);
    }

    /// The generation `member` was indexed with.
    pub(super) fn get(&self, member: &Member) -> Option<&u64> {
        self.table(member.hash).get(member)
    }

    /// Drops `member`.
    pub(super) fn remove(&mut self, member: &Member) -> Option<u64> {
        self.table_mut(member.hash).remove(member)
    }

    /// How many members.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tables().iter().map(HashMap::len).sum()
    }

    /// Whether it has no member.
    pub(super) fn is_empty(&self) -> bool {
        self.tables().iter().all(HashMap::is_empty)
    }

    /// Every member with its generation.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Member, &u64)> {
        self.tables().iter().flatten()
    }

    /// The generations of every member.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(_, g)| g)
    }
}

impl IntoIterator for Members {
    type Item = (Member, u64);
    type IntoIter = Box<dyn Iterator<Item = (Member, u64)>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Members::One(t) => Box::new(t.into_iter()),
            Members::Split(shards) => Box::new(shards.into_vec().into_iter().flatten()),
        }
    }
}

/// Which keys carry a tag, and which are stored under a path (ordered, for
/// prefix ranges).
#[derive(Default)]
pub(super) struct Index {
    pub(super) tags: Tags,
    pub(super) paths: BTreeMap<String, Members>,
    /// The latest hard purges, numbered as they counted themselves (see
    /// `write::write`), for a write that raced one to tell whether it
    /// concerned its entry.
    purges: VecDeque<(u64, Purge)>,
}

/// Tables the tags are spread over ([`shard_of`]).
const TAG_SHARDS: usize = 64;

/// A tag's name with its SipHash, made once by [`Tags`].
struct TagName {
    hash: u64,
    name: Box<str>,
}

impl Keyed for TagName {
    fn stored_hash(&self) -> u64 {
        self.hash
    }
    fn text(&self) -> &str {
        &self.name
    }
}

impl<'a> Borrow<dyn Keyed + 'a> for TagName {
    fn borrow(&self) -> &(dyn Keyed + 'a) {
        self
    }
}

impl Hash for TagName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for TagName {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name
    }
}

impl Eq for TagName {}

type TagTable = HashMap<TagName, Members, BuildHasherDefault<StoredHash>>;

/// The members of each tag: a map from the tag's name, in shards.
pub(super) struct Tags {
    hasher: std::hash::RandomState,
    shards: Box<[TagTable]>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            hasher: std::hash::RandomState::new(),
            shards: (0..TAG_SHARDS).map(|_| TagTable::default()).collect(),
        }
    }
}

impl Tags {
    /// `tag` with its hash, and the shard it belongs in.
    fn probe<'a>(&self, tag: &'a str) -> (Probe<'a>, usize) {
        let hash = self.hasher.hash_one(tag);
        (Probe { hash, key: tag }, shard_of(hash, TAG_SHARDS))
    }

    /// The members of `tag`.
    pub(super) fn get(&self, tag: &str) -> Option<&Members> {
        let (probe, shard) = self.probe(tag);
        self.shards[shard].get(&probe as &dyn Keyed)
    }

    fn get_mut(&mut self, tag: &str) -> Option<&mut Members> {
        let (probe, shard) = self.probe(tag);
        self.shards[shard].get_mut(&probe as &dyn Keyed)
    }

    /// Takes the members of `tag` out.
    pub(super) fn remove(&mut self, tag: &str) -> Option<Members> {
        let (probe, shard) = self.probe(tag);
        self.shards[shard].remove(&probe as &dyn Keyed)
    }

    /// Adds `member` (of write `generation`) to `tag`'s set; the name is
    /// copied only for a set that does not exist yet.
    fn add(&mut self, tag: &str, member: &Member, generation: u64) {
        let (probe, shard) = self.probe(tag);
        let shard = &mut self.shards[shard];
        match shard.get_mut(&probe as &dyn Keyed) {
            Some(m) => {
                m.insert(member.clone(), generation);
            }
            None => {
                let mut m = Members::default();
                m.insert(member.clone(), generation);
                let name = TagName {
                    hash: probe.hash,
                    name: tag.into(),
                };
                shard.insert(name, m);
            }
        }
    }

    /// How many tags have members.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Whether no tag has members.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
            self.tags.add(t, member, e.generation);
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

    proptest! {
        /// Whatever the names, each tag's set holds exactly the members
        /// added under that name, is found by it and by no other, and goes
        /// whole when it is taken out.
        #[test]
        fn a_tag_finds_its_own_members_and_no_others(names in proptest::collection::vec(".{0,12}", 1..40)) {
            let keys = Keys::default();
            let mut tags = Tags::default();
            let mut expected: HashMap<&str, Vec<u64>> = HashMap::new();
            for (i, name) in names.iter().enumerate() {
                let member = keys.member(Arc::from(format!("k{i}").as_str()));
                tags.add(name, &member, i as u64);
                expected.entry(name).or_default().push(i as u64);
            }
            prop_assert_eq!(tags.len(), expected.len());
            for (name, generations) in &expected {
                let mut got: Vec<u64> = tags.get(name).unwrap().values().copied().collect();
                got.sort_unstable();
                prop_assert_eq!(&got, generations);
            }
            prop_assert!(tags.get("not one of them: longer than twelve").is_none());
            for name in expected.keys() {
                prop_assert!(tags.remove(name).is_some());
                prop_assert!(tags.get(name).is_none());
            }
            prop_assert!(tags.is_empty());
        }
    }

    #[test]
    fn a_set_split_into_shards_keeps_every_member_once() {
        let keys = Keys::default();
        let member = |i: usize| keys.member(Arc::from(format!("GET|http|h|/{i}").as_str()));
        let mut set = Members::default();
        let n = SPLIT_AT * 3;
        for i in 0..n {
            set.insert(member(i), i as u64);
            // A member added again changes its generation, not the count.
            set.insert(member(i / 2), (i / 2) as u64);
        }
        assert!(matches!(set, Members::Split(_)), "past SPLIT_AT it splits");
        assert_eq!(set.len(), n);
        assert_eq!(set.iter().count(), n);
        for i in (0..n).step_by(7) {
            assert_eq!(set.get(&member(i)), Some(&(i as u64)));
        }
        for i in 0..n - 1 {
            assert_eq!(set.remove(&member(i)), Some(i as u64));
        }
        assert!(!set.is_empty());
        let left: Vec<(Member, u64)> = set.into_iter().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, (n - 1) as u64);
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
