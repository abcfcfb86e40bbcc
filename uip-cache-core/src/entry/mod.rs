//! Stored responses and their versioned binary encoding.
//!
//! The encoding is written by hand rather than with a serde format so that
//! decoding can hand out the body as a zero-copy slice of the stored bytes (the
//! hit path copies nothing) and so that every length is checked: corrupt or
//! foreign bytes under a key decode to an [`EntryError`], never a panic.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! "UIPC" version:u8 flags:u8 status:u16
//! stored_at_ms:u64 initial_age_ms:u64 fresh_ms:u64 swr_ms:u64 sie_ms:u64
//! etag:opt  last_modified:opt            opt = u32 len (u32::MAX = none) + bytes
//! vary: u16 count, each u16 len + name
//! tags: u16 count, each u16 len + tag
//! headers: u16 count, each u16 name len + name + u32 value len + value
//! body: u64 len + bytes (must end the entry exactly)
//! ```
//!
//! New fields go at the end under a new version; older versions keep decoding
//! with defaults for what they lack.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::field::FieldName;
use bytes::Bytes;

mod codec;

const MAGIC: &[u8; 4] = b"UIPC";
/// How long, at least, an entry with validators is kept for revalidation.
pub const REVALIDATION_GRACE: Duration = Duration::from_secs(300);

/// The longest a store keeps an entry: HTTP's largest delta-seconds
/// (2^31 s, RFC 9111 section 1.2.2), the bound every freshness lifetime
/// and age is clamped to (`http::date::MAX_DELTA`; entries are below the
/// HTTP rules, so the value is stated here and a test holds the two equal).
const MAX_STORAGE_TTL: Duration = Duration::from_secs(1 << 31);

/// The version [`StoredResponse::encode`] writes.
pub const ENTRY_VERSION: u8 = 1;

const FLAG_GZIP: u8 = 1;
const FLAG_MUST_REVALIDATE: u8 = 2;
const FLAG_NO_CACHE: u8 = 4;

/// How the stored body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyEncoding {
    /// As the origin sent it.
    #[default]
    Identity,
    /// gzip-compressed by the cache.
    Gzip,
}

/// A response as kept in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredResponse {
    /// Status code.
    pub status: u16,
    /// End-to-end headers as received (hop-by-hop headers removed), names in lower case.
    pub headers: Vec<(FieldName, Bytes)>,
    /// The body, encoded as `compression` says.
    pub body: Bytes,
    /// How `body` is encoded.
    pub compression: BodyEncoding,
    /// When the response was received.
    pub stored_at: SystemTime,
    /// Its age when received (RFC 9111 corrected initial age).
    pub initial_age: Duration,
    /// How long it is fresh after it was generated.
    pub freshness_lifetime: Duration,
    /// How long after going stale it may be served while revalidating.
    pub stale_while_revalidate: Duration,
    /// How long after going stale it may be served when the origin fails.
    pub stale_if_error: Duration,
    /// `must-revalidate` / `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `no-cache`: stored, but revalidated before every use.
    pub no_cache: bool,
    /// Strong or weak `ETag`.
    pub etag: Option<Bytes>,
    /// `Last-Modified`.
    pub last_modified: Option<Bytes>,
    /// Lower-case header names of the response's `Vary`.
    pub vary: Vec<String>,
    /// Tags the entry was stored with.
    pub tags: Vec<String>,
}

impl Default for StoredResponse {
    fn default() -> Self {
        StoredResponse {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
            compression: BodyEncoding::Identity,
            stored_at: UNIX_EPOCH,
            initial_age: Duration::ZERO,
            freshness_lifetime: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            no_cache: false,
            etag: None,
            last_modified: None,
            vary: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes do not start with the entry magic: not ours.
    #[error("not a uip-cache entry")]
    Foreign,
    /// Written by a newer version.
    #[error("entry version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Shorter than its lengths say.
    #[error("entry is truncated")]
    Truncated,
    /// Longer than its lengths say.
    #[error("entry has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A name or tag is not UTF-8.
    #[error("entry holds a name that is not UTF-8")]
    InvalidUtf8,
    /// Too many headers, tags or a too-long field to encode.
    #[error("entry field is too large to encode: {0}")]
    TooLarge(&'static str),
}

impl StoredResponse {
    /// A response with `status` and `body`, stored now, with no freshness yet;
    /// set the other public fields as needed.
    pub fn new(status: u16, body: Bytes) -> Self {
        StoredResponse {
            status,
            body,
            stored_at: SystemTime::now(),
            ..StoredResponse::default()
        }
    }

    /// The age now (RFC 9111 section 4.2.3): initial age plus time resident.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age
            .saturating_add(now.duration_since(self.stored_at).unwrap_or_default())
    }

    /// Whether the entry is fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.age(now) < self.freshness_lifetime
    }

    /// How long it has been stale at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.freshness_lifetime)
    }

    /// How long the store should keep it: freshness plus the longest stale
    /// window, minus the age it already had; at least one second. Entries with
    /// validators are kept a while past that so they can be revalidated: twice
    /// their lifetime, and at least [`REVALIDATION_GRACE`] (a `max-age` of a
    /// second or two, with `Date` at one-second resolution, would otherwise be
    /// gone before anyone could revalidate it).
    pub fn storage_ttl(&self) -> Duration {
        let stale = self.stale_while_revalidate.max(self.stale_if_error);
        let mut ttl = self
            .freshness_lifetime
            .saturating_add(stale)
            .saturating_sub(self.initial_age);
        if self.etag.is_some() || self.last_modified.is_some() {
            ttl = ttl
                .max(
                    self.freshness_lifetime
                        .saturating_mul(2)
                        .saturating_sub(self.initial_age),
                )
                .max(REVALIDATION_GRACE);
        }
        ttl.clamp(Duration::from_secs(1), MAX_STORAGE_TTL)
    }

    /// [`StoredResponse::storage_ttl`], kept long enough to answer stale
    /// for `unreachable` past its freshness when the origin cannot be
    /// reached (`defaults.stale_if_unreachable`), if it may ever answer
    /// stale (not `no-cache`, not `must-revalidate`).
    pub fn storage_ttl_with_unreachable(&self, unreachable: Duration) -> Duration {
        let ttl = self.storage_ttl();
        if unreachable.is_zero() || self.no_cache || self.must_revalidate {
            return ttl;
        }
        let kept = self
            .freshness_lifetime
            .saturating_add(unreachable)
            .saturating_sub(self.initial_age);
        ttl.max(kept).clamp(Duration::from_secs(1), MAX_STORAGE_TTL)
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests;
