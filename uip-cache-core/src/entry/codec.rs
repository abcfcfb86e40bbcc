//! The versioned binary encoding of a [`StoredResponse`] (the layout is in
//! the module docs of [`crate::entry`]): every length is checked, so
//! corrupt or foreign bytes decode to an [`EntryError`], never a panic.

use std::time::{Duration, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    BodyEncoding, EntryError, StoredResponse, ENTRY_VERSION, FLAG_GZIP, FLAG_MUST_REVALIDATE,
    FLAG_NO_CACHE, MAGIC,
};

impl StoredResponse {
    /// How many bytes [`encode`](Self::encode) writes.
    pub(super) fn encoded_len(&self) -> usize {
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
        Self::decode_as(bytes, true)
    }

    /// [`StoredResponse::decode`] for an answer, which needs no tags: they
    /// are checked as text but not kept (`tags` is empty), so a hit
    /// allocates none of them. The same bytes are refused.
    pub(crate) fn decode_untagged(bytes: &Bytes) -> Result<Self, EntryError> {
        Self::decode_as(bytes, false)
    }

    fn decode_as(bytes: &Bytes, keep_tags: bool) -> Result<Self, EntryError> {
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
        let vary = r.strings(true)?;
        let tags = r.strings(keep_tags)?;
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
    /// A list of strings, kept or only checked.
    fn strings(&mut self, keep: bool) -> Result<Vec<String>, EntryError> {
        let n = self.u16()? as usize;
        let mut v = Vec::with_capacity(if keep { n.min(64) } else { 0 });
        for _ in 0..n {
            let len = self.u16()? as usize;
            if keep {
                v.push(self.string(len)?);
            } else {
                self.text(len, |_| ())?;
            }
        }
        Ok(v)
    }
}
