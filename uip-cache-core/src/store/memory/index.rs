//! The tag and path index of the memory store: which keys an invalidation
//! looks at. Members carry the generation of the write that added them, so
//! a removal notice for an old entry never drops the members of the entry
//! that replaced it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::MemEntry;
use crate::pattern::{PathSelector, UrlPattern};

/// key -> generation of the write that indexed it.
pub(super) type Members = HashMap<Arc<str>, u64>;

/// Which keys carry a tag, and which are stored under a path (ordered, for
/// prefix ranges).
#[derive(Default)]
pub(super) struct Index {
    pub(super) tags: HashMap<String, Members>,
    pub(super) paths: BTreeMap<String, Members>,
}

impl Index {
    /// The keys (and write generations) indexed under the paths `pattern`
    /// selects; its query constraint is left to the caller.
    pub(super) fn path_members(&self, pattern: &UrlPattern) -> Vec<(Arc<str>, u64)> {
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
    pub(super) fn add(&mut self, key: &Arc<str>, e: &MemEntry) {
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

    /// Drops the members `e` added under `key`, unless a newer write's
    /// replaced them.
    pub(super) fn remove(&mut self, key: &Arc<str>, e: &MemEntry) {
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
