//! Local copies of large entries, checked against Redis on every hit.
//!
//! A stored value starts with a 16-byte header: the write generation (which
//! the indexes name, so purges delete only what they indexed) and a write
//! version drawn afresh for every write, soft purges included. A copy keeps
//! the header it was read with; a hit on it asks Redis for the header alone
//! (`GETRANGE key 0 15`) and serves the copy only if the two are equal, so a
//! copy is never staler than Redis and needs no invalidation messages. What
//! a hit saves is the transfer of the entry through Redis: for a 64 KB body,
//! most of the cost of a hit.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;
use uip_cache_core::zerocopy;

/// Bytes before the entry in a stored value: generation, then version.
pub(super) const HEADER: usize = 16;

/// A value's header.
pub(super) type Header = [u8; HEADER];

/// Entries at least this large get a copy: below it, reading the header
/// costs about what reading the whole entry does.
pub(super) const MIN_LEN: usize = 16 * 1024;

/// A copy nobody asked for in this long makes room (the entry has likely
/// expired in Redis).
const IDLE: Duration = Duration::from_secs(300);

/// A fresh write version: 64 bits of SipHash under this process's random
/// keys over a counter, so two writes of one key by any two instances
/// differ but with chance 2^-64.
pub(super) fn fresh_version() -> [u8; 8] {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    KEYS.get_or_init(RandomState::new).hash_one(n).to_be_bytes()
}

/// The header of a value written under `generation`.
pub(super) fn header(generation: u64) -> Header {
    let mut h = [0; HEADER];
    h[..8].copy_from_slice(&generation.to_be_bytes());
    h[8..].copy_from_slice(&fresh_version());
    h
}

/// Copies by storage key, bounded by bytes.
pub(super) struct LocalCopies {
    cache: Cache<String, (Header, Bytes)>,
    max_bytes: u64,
    /// Bytes of the copies not yet removed. The cache applies its bound
    /// (fifteen sixteenths of `max_bytes`) after a batch of writes, so on
    /// its own it may hold more for a moment; a copy takes at most the
    /// sixteenth left, and one that would take this past `max_bytes` waits
    /// for the cache to apply its bound first, or is not kept.
    held: Arc<AtomicU64>,
}

/// What a copy counts against the bound: key, header and entry, the entry
/// rounded up to whole pages as sealed memory takes them.
fn weight(key: &str, entry: &Bytes) -> u64 {
    (key.len() + HEADER) as u64 + (entry.len() as u64).next_multiple_of(4096)
}

impl LocalCopies {
    /// Copies within `max_bytes`; `None` when that is 0.
    pub(super) fn new(max_bytes: u64) -> Option<Self> {
        let held = Arc::new(AtomicU64::new(0));
        let released = held.clone();
        (max_bytes > 0).then(|| LocalCopies {
            cache: Cache::builder()
                .max_capacity(max_bytes - max_bytes / 16)
                .weigher(|k: &String, (_, v): &(Header, Bytes)| {
                    u32::try_from(weight(k, v)).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .eviction_listener(move |k, (_, v): (Header, Bytes), _| {
                    released.fetch_sub(weight(&k, &v), Ordering::Relaxed);
                })
                .build(),
            max_bytes,
            held,
        })
    }

    /// The copy of `key` and the header it was read with.
    pub(super) fn get(&self, key: &str) -> Option<(Header, Bytes)> {
        self.cache.get(key)
    }

    /// Keeps `entry`, written under `header`, if it is large enough; gives
    /// back the kept bytes (in sealed memory when the process allows it,
    /// so a server can send them without copying).
    pub(super) fn keep(&self, key: &str, header: Header, entry: Bytes) -> Option<Bytes> {
        // One copy takes at most a sixteenth of the room, so a few huge
        // entries cannot keep pushing every other copy out.
        let w = weight(key, &entry);
        if entry.len() < MIN_LEN || w > self.max_bytes / 16 {
            return None;
        }
        if self.held.load(Ordering::Relaxed) + w > self.max_bytes {
            // Let the cache apply its bound (and report what it dropped).
            self.cache.run_pending_tasks();
        }
        if self.held.fetch_add(w, Ordering::Relaxed) + w > self.max_bytes {
            self.held.fetch_sub(w, Ordering::Relaxed);
            return None;
        }
        let entry = zerocopy::seal(entry);
        self.cache.insert(key.to_owned(), (header, entry.clone()));
        Some(entry)
    }

    /// Drops the copy of `key`.
    pub(super) fn forget(&self, key: &str) {
        self.cache.invalidate(key);
    }
}

/// Splits a stored value into its header and entry; `None` for values too
/// short to have one (foreign bytes).
pub(super) fn split(stored: &Bytes) -> Option<(Header, Bytes)> {
    let header: Header = stored.get(..HEADER)?.try_into().ok()?;
    Some((header, stored.slice(HEADER..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_differ_and_headers_carry_the_generation() {
        let a = header(7);
        let b = header(7);
        assert_eq!(a[..8], 7u64.to_be_bytes());
        assert_ne!(a, b, "every write has its own version");
        let stored = Bytes::from([&a[..], b"entry"].concat());
        assert_eq!(split(&stored), Some((a, Bytes::from_static(b"entry"))));
        assert_eq!(split(&Bytes::from_static(b"short")), None);
    }

    #[test]
    fn only_large_entries_are_kept_and_the_bound_holds() {
        let copies = LocalCopies::new(1 << 20).unwrap();
        assert!(LocalCopies::new(0).is_none());
        let h = header(1);
        assert!(copies.keep("small", h, Bytes::from(vec![1; 100])).is_none());
        assert!(copies.get("small").is_none());
        let big = Bytes::from(vec![2; MIN_LEN]);
        assert_eq!(copies.keep("big", h, big.clone()).as_ref(), Some(&big));
        assert_eq!(copies.get("big"), Some((h, big.clone())));
        copies.forget("big");
        assert!(copies.get("big").is_none());
        assert!(
            copies
                .keep("huge", h, Bytes::from(vec![3; 100_000]))
                .is_none(),
            "more than a sixteenth of the room"
        );
        for i in 0..256 {
            copies.keep(&format!("k{i}"), h, big.clone());
            assert!(
                copies.held.load(Ordering::Relaxed) <= 1 << 20,
                "at every moment"
            );
        }
        copies.cache.run_pending_tasks();
        assert!(copies.cache.weighted_size() <= 1 << 20);
        assert_eq!(
            copies.held.load(Ordering::Relaxed),
            copies.cache.weighted_size()
        );
        // Full, it still takes new copies in place of old ones.
        assert!(copies.keep("late", h, big.clone()).is_some());
    }
}
