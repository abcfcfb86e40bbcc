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
use std::sync::OnceLock;
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
}

impl LocalCopies {
    /// Copies within `max_bytes`; `None` when that is 0.
    pub(super) fn new(max_bytes: u64) -> Option<Self> {
        (max_bytes > 0).then(|| LocalCopies {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, (_, v): &(Header, Bytes)| {
                    u32::try_from(k.len() + HEADER + v.len()).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build(),
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
        if entry.len() < MIN_LEN {
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
        let copies = LocalCopies::new(256 * 1024).unwrap();
        assert!(LocalCopies::new(0).is_none());
        let h = header(1);
        assert!(copies.keep("small", h, Bytes::from(vec![1; 100])).is_none());
        assert!(copies.get("small").is_none());
        let big = Bytes::from(vec![2; MIN_LEN]);
        assert_eq!(copies.keep("big", h, big.clone()).as_ref(), Some(&big));
        assert_eq!(copies.get("big"), Some((h, big.clone())));
        copies.forget("big");
        assert!(copies.get("big").is_none());
        for i in 0..64 {
            copies.keep(&format!("k{i}"), h, big.clone());
        }
        copies.cache.run_pending_tasks();
        assert!(copies.cache.weighted_size() <= 256 * 1024);
    }
}
