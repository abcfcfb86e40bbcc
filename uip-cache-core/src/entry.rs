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
use bytes::{Buf, BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"UIPC";
/// How long, at least, an entry with validators is kept for revalidation.
pub const REVALIDATION_GRACE: Duration = Duration::from_secs(300);

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
        ttl.clamp(Duration::from_secs(1), crate::http::date::MAX_DELTA)
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// How many bytes [`encode`](Self::encode) writes.
    fn encoded_len(&self) -> usize {
        let fixed = MAGIC.len() + 1 + 1 + 2 + 5 * 8;
        let validators: usize = [&self.etag, &self.last_modified]
            .iter()
            .map(|v| 4 + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        let strings: usize = self
            .vary
            .iter()
            .chain(&self.tags)
            .map(|s| 2 + s.len())
            .sum();
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| 2 + n.len() + 4 + v.len())
            .sum();
        fixed + validators + 2 + 2 + strings + 2 + headers + 8 + self.body.len()
    }

    /// Encodes the entry into one allocation of exactly its length (a
    /// store keeps these bytes as they are, so spare capacity would be
    /// memory held for nothing).
    pub fn encode(&self) -> Result<Bytes, EntryError> {
        let len = self.encoded_len();
        let mut out = BytesMut::with_capacity(len);
        out.put_slice(MAGIC);
        out.put_u8(ENTRY_VERSION);
        let mut flags = 0;
        if self.compression == BodyEncoding::Gzip {
            flags |= FLAG_GZIP;
        }
        if self.must_revalidate {
            flags |= FLAG_MUST_REVALIDATE;
        }
        if self.no_cache {
            flags |= FLAG_NO_CACHE;
        }
        out.put_u8(flags);
        out.put_u16_le(self.status);
        out.put_u64_le(millis(
            self.stored_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        ));
        out.put_u64_le(millis(self.initial_age));
        out.put_u64_le(millis(self.freshness_lifetime));
        out.put_u64_le(millis(self.stale_while_revalidate));
        out.put_u64_le(millis(self.stale_if_error));
        put_opt(&mut out, self.etag.as_deref())?;
        put_opt(&mut out, self.last_modified.as_deref())?;
        put_strings(&mut out, &self.vary, "vary")?;
        put_strings(&mut out, &self.tags, "tags")?;
        put_count(&mut out, self.headers.len(), "headers")?;
        for (n, v) in &self.headers {
            put_u16_len(&mut out, n.len(), "header name")?;
            out.put_slice(n.as_bytes());
            put_u32_len(&mut out, v.len(), "header value")?;
            out.put_slice(v);
        }
        out.put_u64_le(self.body.len() as u64);
        out.put_slice(&self.body);
        debug_assert_eq!(out.len(), len, "encoded_len matches encode");
        debug_assert_eq!(out.capacity(), len, "encoding never grew its buffer");
        Ok(out.freeze())
    }

    /// Decodes an entry; the body and header values share `bytes`' memory.
    pub fn decode(bytes: &Bytes) -> Result<Self, EntryError> {
        let mut r = Reader { buf: bytes.clone() };
        if r.buf.len() < 4 || &r.buf[..4] != MAGIC {
            return Err(EntryError::Foreign);
        }
        r.buf.advance(4);
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        let status = r.u16()?;
        let stored_at = UNIX_EPOCH + Duration::from_millis(r.u64()?);
        let initial_age = Duration::from_millis(r.u64()?);
        let freshness_lifetime = Duration::from_millis(r.u64()?);
        let stale_while_revalidate = Duration::from_millis(r.u64()?);
        let stale_if_error = Duration::from_millis(r.u64()?);
        let etag = r.opt()?;
        let last_modified = r.opt()?;
        let vary = r.strings()?;
        let tags = r.strings()?;
        let n = r.u16()? as usize;
        let mut headers = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let name_len = r.u16()? as usize;
            let name = r.text(name_len, crate::field::field_name)?;
            let value_len = r.u32()? as usize;
            let value = r.take(value_len)?;
            headers.push((name, value));
        }
        let body_len = r.u64()?;
        let body = r.take(usize::try_from(body_len).map_err(|_| EntryError::Truncated)?)?;
        if !r.buf.is_empty() {
            return Err(EntryError::TrailingBytes(r.buf.len()));
        }
        Ok(StoredResponse {
            status,
            headers,
            body,
            compression: if flags & FLAG_GZIP != 0 {
                BodyEncoding::Gzip
            } else {
                BodyEncoding::Identity
            },
            stored_at,
            initial_age,
            freshness_lifetime,
            stale_while_revalidate,
            stale_if_error,
            must_revalidate: flags & FLAG_MUST_REVALIDATE != 0,
            no_cache: flags & FLAG_NO_CACHE != 0,
            etag,
            last_modified,
            vary,
            tags,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn put_u16_len(out: &mut BytesMut, len: usize, what: &'static str) -> Result<(), EntryError> {
    out.put_u16_le(u16::try_from(len).map_err(|_| EntryError::TooLarge(what))?);
    Ok(())
}

fn put_u32_len(out: &mut BytesMut, len: usize, what: &'static str) -> Result<(), EntryError> {
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| l != u32::MAX)
        .ok_or(EntryError::TooLarge(what))?;
    out.put_u32_le(len);
    Ok(())
}

fn put_count(out: &mut BytesMut, n: usize, what: &'static str) -> Result<(), EntryError> {
    put_u16_len(out, n, what)
}

fn put_opt(out: &mut BytesMut, v: Option<&[u8]>) -> Result<(), EntryError> {
    match v {
        Some(v) => {
            put_u32_len(out, v.len(), "validator")?;
            out.put_slice(v);
        }
        None => out.put_u32_le(u32::MAX),
    }
    Ok(())
}

fn put_strings(out: &mut BytesMut, items: &[String], what: &'static str) -> Result<(), EntryError> {
    put_count(out, items.len(), what)?;
    for s in items {
        put_u16_len(out, s.len(), what)?;
        out.put_slice(s.as_bytes());
    }
    Ok(())
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), EntryError> {
        if self.buf.len() < n {
            Err(EntryError::Truncated)
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16, EntryError> {
        self.need(2)?;
        Ok(self.buf.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, EntryError> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, EntryError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }
    fn take(&mut self, n: usize) -> Result<Bytes, EntryError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
    /// The next `n` bytes as text, made by `f` from a borrow.
    fn text<T>(&mut self, n: usize, f: impl FnOnce(&str) -> T) -> Result<T, EntryError> {
        self.need(n)?;
        let text = std::str::from_utf8(&self.buf[..n]).map_err(|_| EntryError::InvalidUtf8)?;
        let t = f(text);
        self.buf.advance(n);
        Ok(t)
    }
    fn string(&mut self, n: usize) -> Result<String, EntryError> {
        self.text(n, str::to_owned)
    }
    fn opt(&mut self) -> Result<Option<Bytes>, EntryError> {
        match self.u32()? {
            u32::MAX => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }
    fn strings(&mut self) -> Result<Vec<String>, EntryError> {
        let n = self.u16()? as usize;
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let len = self.u16()? as usize;
            v.push(self.string(len)?);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> StoredResponse {
        StoredResponse {
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/ld+json"),
                ),
                ("x-bin".into(), Bytes::from_static(&[0xff, 0x00, 0x7f])),
            ],
            // A body that is itself gzip data (magic 0x1f 0x8b) must come back as is.
            body: Bytes::from_static(&[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]),
            compression: BodyEncoding::Identity,
            stored_at: UNIX_EPOCH + Duration::from_millis(1_732_000_000_123),
            initial_age: Duration::from_secs(3),
            freshness_lifetime: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(300),
            must_revalidate: true,
            no_cache: false,
            etag: Some(Bytes::from_static(b"\"v1\"")),
            last_modified: None,
            vary: vec!["accept-language".into()],
            tags: vec!["camera".into(), "policy:cams".into()],
        }
    }

    #[test]
    fn round_trips_including_gzip_looking_bodies() {
        let e = sample();
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), e.encoded_len());
        let d = StoredResponse::decode(&bytes).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.compression, BodyEncoding::Identity);
        assert_eq!(&d.body[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn rejects_foreign_truncated_and_trailing_bytes() {
        assert_eq!(
            StoredResponse::decode(&Bytes::from_static(b"hello")),
            Err(EntryError::Foreign)
        );
        assert_eq!(
            StoredResponse::decode(&Bytes::new()),
            Err(EntryError::Foreign)
        );
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                StoredResponse::decode(&bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            StoredResponse::decode(&Bytes::from(longer)),
            Err(EntryError::TrailingBytes(1))
        );
        let mut newer = bytes.to_vec();
        newer[4] = 99;
        assert_eq!(
            StoredResponse::decode(&Bytes::from(newer)),
            Err(EntryError::UnsupportedVersion(99))
        );
    }

    #[test]
    fn freshness_and_storage_ttl() {
        let e = sample();
        let t0 = e.stored_at;
        assert_eq!(e.age(t0), Duration::from_secs(3));
        assert!(e.is_fresh(t0 + Duration::from_secs(56)));
        assert!(!e.is_fresh(t0 + Duration::from_secs(57)));
        assert_eq!(
            e.staleness(t0 + Duration::from_secs(67)),
            Duration::from_secs(10)
        );
        // 60 fresh + 300 stale-if-error - 3 already old.
        assert_eq!(e.storage_ttl(), Duration::from_secs(357));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut with_magic = b"UIPC\x01".to_vec();
            with_magic.extend_from_slice(&data);
            let _ = StoredResponse::decode(&Bytes::from(data));
            let _ = StoredResponse::decode(&Bytes::from(with_magic));
        }

        #[test]
        fn arbitrary_entries_round_trip(
            status in 100u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..256),
            tags in proptest::collection::vec("[a-z:]{0,12}", 0..5),
            headers in proptest::collection::vec(("[a-z-]{1,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..6),
            fresh in 0u64..1_000_000,
            gzip in any::<bool>(),
            etag in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            last_modified in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            vary in proptest::collection::vec("[a-z-]{0,12}", 0..3),
        ) {
            let e = StoredResponse {
                status,
                body: Bytes::from(body),
                tags,
                headers: headers.into_iter().map(|(n, v)| (n.into(), Bytes::from(v))).collect(),
                freshness_lifetime: Duration::from_millis(fresh),
                compression: if gzip { BodyEncoding::Gzip } else { BodyEncoding::Identity },
                etag: etag.map(Bytes::from),
                last_modified: last_modified.map(Bytes::from),
                vary,
                ..StoredResponse::default()
            };
            let bytes = e.encode().unwrap();
            prop_assert_eq!(bytes.len(), e.encoded_len());
            prop_assert_eq!(StoredResponse::decode(&bytes).unwrap(), e);
        }
    }
}
