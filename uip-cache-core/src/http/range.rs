//! Byte ranges (RFC 9110 section 14): what a `Range` header asks for, the
//! part of a representation that answers it, `Content-Range`, `If-Range`
//! (RFC 9110 section 13.1.5), and the body of a 206 cut from a complete
//! representation as its bytes go by ([`RangeSlicer`]).
//!
//! A `Range` the cache cannot read with certainty is ignored, as RFC 9110
//! section 14.2 allows: the client gets the whole representation. So is one
//! asking for more than [`MAX_RANGES`] ranges, or for more than two that
//! overlap (RFC 9110 section 14.2 names both as signs of a broken client or
//! of a denial-of-service attempt). Ranges that overlap or touch are joined
//! and sent in ascending order (RFC 9110 section 14.6), so a response never
//! holds a byte twice and never more parts than [`MAX_RANGES`].
//!
//! Every offset is a `u64` checked against the representation's length:
//! numbers too large for one (`bytes=0-99999999999999999999999`) saturate
//! and mean "past the end", and no arithmetic here can overflow.
//!
//! ```
//! use uip_cache_core::http::range::{self, ByteRange, Ranges};
//!
//! let asked = range::parse(b"bytes=0-1, 4-, -2").unwrap();
//! // Of a 10-byte representation: 0-1, and 4-9 (with the last 2 in it).
//! assert_eq!(
//!     range::resolve(&asked, 10),
//!     Ranges::Partial(vec![ByteRange::new(0, 2), ByteRange::new(4, 10)])
//! );
//! assert_eq!(range::content_range(ByteRange::new(4, 10), 10), "bytes 4-9/10");
//! assert_eq!(range::resolve(&range::parse(b"bytes=20-").unwrap(), 10), Ranges::Unsatisfiable);
//! assert!(range::parse(b"bytes=5-1").is_err());
//! ```

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use super::date::parse_http_date;
use crate::request::{HeaderSource, RequestView};

/// The most ranges one request may ask for. A `Range` with more is ignored
/// and the whole representation answers (200).
pub const MAX_RANGES: usize = 16;

/// How many of the ranges asked for may overlap another before the
/// `Range` is ignored (RFC 9110 section 14.2: "more than two overlapping
/// ranges").
pub const MAX_OVERLAPPING: usize = 2;

/// A range of bytes of a representation: `start..end`, never empty once
/// resolved against a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    /// The offset of its first byte.
    pub start: u64,
    /// The offset just past its last byte.
    pub end: u64,
}

impl ByteRange {
    /// The bytes `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        ByteRange { start, end }
    }

    /// How many bytes it holds.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds none.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same bytes as indexes into a buffer of `len` bytes: `None` when
    /// they do not all lie within it.
    pub fn within(&self, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(self.start).ok()?;
        let end = usize::try_from(self.end).ok()?;
        (start <= end && end <= len).then_some(start..end)
    }
}

/// One `range-spec` as the client wrote it (RFC 9110 section 14.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-` or `first-last`; a number too large for a `u64` is `u64::MAX`.
    From {
        /// The first byte asked for.
        first: u64,
        /// The last byte asked for (inclusive), when given.
        last: Option<u64>,
    },
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

/// Why a `Range` header is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// Not a `bytes` ranges-specifier the grammar allows (another unit, a
    /// last byte before the first, stray characters, an empty set).
    Invalid,
    /// More than [`MAX_RANGES`] ranges.
    TooMany,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ignored::Invalid => "not a valid bytes range",
            Ignored::TooMany => "too many ranges",
        })
    }
}

/// What a `Range` asks of a representation of a given length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Send the whole representation (200): the `Range` is ignored.
    Whole,
    /// Send these bytes (206): sorted, disjoint, not adjacent, each within
    /// the representation, at least one and at most [`MAX_RANGES`].
    Partial(Vec<ByteRange>),
    /// None of the ranges lies within the representation (416).
    Unsatisfiable,
}

/// Reads a `Range` field value: `bytes=` then a comma-separated list of
/// `first-last`, `first-` and `-suffix`, with optional whitespace around
/// the items and empty items (RFC 9110 sections 5.6.1 and 14.1.1). The
/// unit is matched without regard to case. Work and memory are linear in
/// the value's length, and at most [`MAX_RANGES`] specs are kept.
pub fn parse(value: &[u8]) -> Result<Vec<RangeSpec>, Ignored> {
    let value = value.trim_ascii();
    let eq = value
        .iter()
        .position(|&b| b == b'=')
        .ok_or(Ignored::Invalid)?;
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return Err(Ignored::Invalid);
    }
    let mut specs = Vec::new();
    for item in value[eq + 1..].split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return Err(Ignored::TooMany);
        }
        specs.push(parse_spec(item).ok_or(Ignored::Invalid)?);
    }
    if specs.is_empty() {
        return Err(Ignored::Invalid);
    }
    Ok(specs)
}

/// One `range-spec`, without surrounding whitespace.
fn parse_spec(item: &[u8]) -> Option<RangeSpec> {
    let dash = item.iter().position(|&b| b == b'-')?;
    let (first, last) = (&item[..dash], &item[dash + 1..]);
    if first.is_empty() {
        return Some(RangeSpec::Suffix(number(last)?));
    }
    let first = number(first)?;
    let last = match last {
        [] => None,
        last => Some(number(last)?),
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(RangeSpec::From { first, last })
}

/// `1*DIGIT`, saturating at `u64::MAX`.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The bytes `specs` ask for of a representation of `len` bytes (RFC 9110
/// section 14.1.2): each satisfiable range cut to the representation,
/// then sorted and joined where they overlap or touch. More than
/// [`MAX_OVERLAPPING`] overlapping ranges, or an empty representation,
/// give [`Ranges::Whole`].
pub fn resolve(specs: &[RangeSpec], len: u64) -> Ranges {
    if len == 0 || specs.len() > MAX_RANGES {
        return Ranges::Whole;
    }
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| match *spec {
            RangeSpec::From { first, .. } if first >= len => None,
            RangeSpec::From { first, last } => {
                let end = last.map_or(len, |last| last.saturating_add(1).min(len));
                Some(ByteRange::new(first, end))
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some(ByteRange::new(len.saturating_sub(n), len)),
        })
        .collect();
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    ranges.sort_unstable();
    let mut joined: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    let mut overlapping = 0;
    for r in ranges {
        match joined.last_mut() {
            Some(last) if r.start <= last.end => {
                if r.start < last.end {
                    overlapping += 1;
                }
                last.end = last.end.max(r.end);
            }
            _ => joined.push(r),
        }
    }
    if overlapping > MAX_OVERLAPPING {
        return Ranges::Whole;
    }
    Ranges::Partial(joined)
}

/// What the `Range` fields of a request ask of a representation of `len`
/// bytes: [`Ranges::Whole`] when there is none, more than one, or one that
/// is ignored ([`parse`]).
pub fn requested(headers: &dyn HeaderSource, len: u64) -> Ranges {
    match range_field(headers) {
        Some(value) => match parse(value) {
            Ok(specs) => resolve(&specs, len),
            Err(_) => Ranges::Whole,
        },
        None => Ranges::Whole,
    }
}

/// What `req` gets of a complete representation of `len` bytes with
/// validators `v`: its ranges ([`requested`]) when it is a GET or a HEAD
/// whose `If-Range` holds ([`if_range_holds`]) and that sets no
/// precondition the origin evaluates (`If-Match`, `If-Unmodified-Since`);
/// otherwise [`Ranges::Whole`].
///
/// RFC 9110 section 14.2 defines range handling for GET only; a HEAD is
/// answered with the head of the GET's answer, 206 included, as origin
/// servers commonly do.
pub fn for_request(req: &RequestView<'_>, len: u64, v: &Validators<'_>) -> Ranges {
    let method = req.method;
    if !(method == "GET" || method == "HEAD")
        || range_field(req.headers).is_none()
        || req.headers.first("if-match").is_some()
        || req.headers.first("if-unmodified-since").is_some()
        || !if_range_holds(req.headers, v)
    {
        return Ranges::Whole;
    }
    requested(req.headers, len)
}

/// Whether the request has a `Range` field at all (the cache then fetches
/// a whole response to answer it: see [`for_request`]).
pub fn has_range(headers: &dyn HeaderSource) -> bool {
    headers.first("range").is_some()
}

/// The request's one `Range` value; `None` without one, or with several
/// (a singleton field sent twice is not read).
fn range_field(headers: &dyn HeaderSource) -> Option<&[u8]> {
    let mut count = 0;
    headers.for_each_value("range", &mut |_| count += 1);
    (count == 1).then(|| headers.first("range")).flatten()
}

/// `Content-Range` of a part: `bytes first-last/len`.
pub fn content_range(r: ByteRange, len: u64) -> String {
    format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1))
}

/// `Content-Range` of a 416: `bytes */len`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// The complete length a `Content-Range` states (`bytes 0-9/100`,
/// `bytes */100`); `None` when it does not state one (`/*`) or does not
/// parse.
pub fn complete_length(content_range: &[u8]) -> Option<u64> {
    let v = content_range.trim_ascii();
    let rest = v
        .get(..6)?
        .eq_ignore_ascii_case(b"bytes ")
        .then(|| &v[6..])?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let len = &rest[slash + 1..];
    (len.len() <= 19).then_some(())?;
    number(len)
}

/// The part a 206's `Content-Range` says it holds, and the complete length:
/// only the strict single-part form `bytes first-last/length` (digits, at
/// most 19 each, `first <= last < length`), as a stored partial response
/// needs it. `bytes */length`, an unknown length (`/*`), white space
/// inside, another unit or any other text give `None`.
pub fn stored_part(content_range: &[u8]) -> Option<(ByteRange, u64)> {
    let v = content_range.trim_ascii();
    let rest = v.strip_prefix(b"bytes ")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (span, len) = (&rest[..slash], &rest[slash + 1..]);
    let dash = span.iter().position(|&b| b == b'-')?;
    let (first, last) = (&span[..dash], &span[dash + 1..]);
    let strict = |d: &[u8]| (d.len() <= 19).then(|| number(d)).flatten();
    let (first, last, len) = (strict(first)?, strict(last)?, strict(len)?);
    if first > last || last >= len {
        return None;
    }
    // `last < len <= u64::MAX`: the end does not overflow.
    Some((ByteRange::new(first, last + 1), len))
}

/// Whether every one of `ranges` lies within `part`: a stored partial
/// response may answer them only then.
pub fn all_within(ranges: &[ByteRange], part: ByteRange) -> bool {
    !ranges.is_empty()
        && ranges
            .iter()
            .all(|r| !r.is_empty() && part.start <= r.start && r.end <= part.end)
}

/// The first byte each `first-last` and `first-` range of a `Range` value
/// asks for (none for suffix ranges); empty when the value is ignored.
pub fn first_positions(value: &[u8]) -> Vec<u64> {
    parse(value)
        .map(|specs| {
            specs
                .iter()
                .filter_map(|s| match s {
                    RangeSpec::From { first, .. } => Some(*first),
                    RangeSpec::Suffix(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The validators of a representation, as `If-Range` compares them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validators<'a> {
    /// Its `ETag`.
    pub etag: Option<&'a [u8]>,
    /// Its `Last-Modified`.
    pub last_modified: Option<&'a [u8]>,
    /// The `Date` of the response that carried it.
    pub date: Option<&'a [u8]>,
    /// Whether its `Last-Modified` may count as strong at all: false for a
    /// representation whose bytes the same date does not pin down (a gzip
    /// the cache made, which another compression of the same content may
    /// not match byte for byte).
    pub dates_strong: bool,
}

/// Whether the request's `If-Range` lets its `Range` be answered from a
/// representation with these validators (RFC 9110 section 13.1.5): true
/// without `If-Range`; an entity-tag holds when it matches the
/// representation's by the strong comparison (a weak tag on either side
/// never does); a date holds when it equals `Last-Modified` and that date
/// is strong, that is when the response's `Date` is at least a second
/// later (RFC 9110 section 8.8.2.2). Anything else, several `If-Range`
/// fields included, is false: the whole representation answers.
pub fn if_range_holds(headers: &dyn HeaderSource, v: &Validators<'_>) -> bool {
    let mut count = 0;
    headers.for_each_value("if-range", &mut |_| count += 1);
    if count == 0 {
        return true;
    }
    let Some(cond) = headers.first("if-range").filter(|_| count == 1) else {
        return false;
    };
    let cond = cond.trim_ascii();
    if cond.starts_with(b"\"") || cond.starts_with(b"W/") {
        return strong_tag(cond).is_some()
            && v.etag.and_then(|e| strong_tag(e.trim_ascii())) == strong_tag(cond);
    }
    if !v.dates_strong {
        return false;
    }
    let (Some(when), Some(last)) = (
        parse_http_date(cond),
        v.last_modified.and_then(parse_http_date),
    ) else {
        return false;
    };
    date_is_strong(last, v.date) && when == last
}

/// Whether a `Last-Modified` of `last` is a strong validator of a response
/// whose `Date` is `date`: the `Date` is at least a second later (RFC 9110
/// section 8.8.2.2).
fn date_is_strong(last: std::time::SystemTime, date: Option<&[u8]>) -> bool {
    date.and_then(parse_http_date)
        .and_then(|date| date.duration_since(last).ok())
        .is_some_and(|d| d.as_secs() >= 1)
}

/// A response's `Last-Modified`, when it is a strong validator (see
/// [`date_is_strong`]): a cache may send it as `If-Range`, and compare it
/// to combine two parts of one representation, only then.
pub(crate) fn strong_last_modified<'a>(
    last_modified: Option<&'a [u8]>,
    date: Option<&[u8]>,
) -> Option<&'a [u8]> {
    let lm = last_modified?;
    date_is_strong(parse_http_date(lm)?, date).then_some(lm)
}

/// A strong entity-tag (`"opaque"`, RFC 9110 section 8.8.3), whole.
pub(crate) fn strong_tag(t: &[u8]) -> Option<&[u8]> {
    let opaque = t.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        .then_some(t)
}

/// The layout of a `multipart/byteranges` body (RFC 9110 section 14.6):
/// before each part a delimiter and its `Content-Type` and
/// `Content-Range`, after the last the closing delimiter.
#[derive(Clone, Debug)]
pub struct Multipart {
    boundary: String,
    heads: Vec<Bytes>,
    close: Bytes,
}

impl Multipart {
    /// The parts of `ranges` of a representation of `len` bytes whose
    /// type is `content_type` (left out of the parts when `None`, or when
    /// it holds a line break), delimited by `boundary` (which the caller
    /// makes unpredictable: 1 to 70 characters of letters and digits).
    pub fn new(
        boundary: &str,
        ranges: &[ByteRange],
        len: u64,
        content_type: Option<&[u8]>,
    ) -> Option<Self> {
        if boundary.is_empty()
            || boundary.len() > 70
            || !boundary.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        let content_type = content_type.filter(|t| !t.iter().any(|&b| b == b'\r' || b == b'\n'));
        let heads = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut h = Vec::with_capacity(boundary.len() + 96);
                if i > 0 {
                    h.extend_from_slice(b"\r\n");
                }
                h.extend_from_slice(b"--");
                h.extend_from_slice(boundary.as_bytes());
                h.extend_from_slice(b"\r\n");
                if let Some(t) = content_type {
                    h.extend_from_slice(b"Content-Type: ");
                    h.extend_from_slice(t);
                    h.extend_from_slice(b"\r\n");
                }
                h.extend_from_slice(b"Content-Range: ");
                h.extend_from_slice(content_range(*r, len).as_bytes());
                h.extend_from_slice(b"\r\n\r\n");
                Bytes::from(h)
            })
            .collect();
        Some(Multipart {
            close: Bytes::from(format!("\r\n--{boundary}--\r\n")),
            boundary: boundary.to_owned(),
            heads,
        })
    }

    /// The response's `Content-Type`: `multipart/byteranges; boundary=...`.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }
}

/// Cuts the body of a 206 (one range, or a `multipart/byteranges` of
/// several) from a complete representation as its bytes go by: push the
/// representation's chunks in order, pop what the client gets. The pieces
/// are slices of the chunks pushed ([`Bytes::slice`], no copy) and, for
/// several ranges, the parts' headers.
///
/// Memory is bounded by what is pushed and not yet popped; the input past
/// the last range is not needed ([`RangeSlicer::is_complete`]). A
/// representation that ends before the last range leaves the body short of
/// [`RangeSlicer::len`]: the client sees it cut, never complete with
/// wrong bytes.
#[derive(Clone, Debug)]
pub struct RangeSlicer {
    ranges: Vec<ByteRange>,
    multipart: Option<Multipart>,
    /// The range whose bytes come next.
    next: usize,
    /// Whether the head of part `next` has been queued.
    head_queued: bool,
    /// The offset of the next byte pushed.
    pos: u64,
    queue: VecDeque<Bytes>,
    /// Bytes queued or still to be queued, not yet popped.
    remaining: u64,
}

impl RangeSlicer {
    /// The body of one range, or of several as `multipart` lays them out
    /// (which must be of the same ranges); `None` when its length would
    /// not fit a `u64`, or several ranges come without a layout.
    pub fn new(ranges: Vec<ByteRange>, multipart: Option<Multipart>) -> Option<Self> {
        let mut len = 0u64;
        for r in &ranges {
            len = len.checked_add(r.len())?;
        }
        if let Some(m) = &multipart {
            if m.heads.len() != ranges.len() {
                return None;
            }
            for h in m.heads.iter().chain([&m.close]) {
                len = len.checked_add(h.len() as u64)?;
            }
        } else if ranges.len() > 1 {
            return None;
        }
        Some(RangeSlicer {
            ranges,
            multipart,
            next: 0,
            head_queued: false,
            pos: 0,
            queue: VecDeque::new(),
            remaining: len,
        })
    }

    /// A body with nothing in it (a 416, or the head of a HEAD).
    pub fn empty() -> Self {
        RangeSlicer {
            ranges: Vec::new(),
            multipart: None,
            next: 0,
            head_queued: false,
            pos: 0,
            queue: VecDeque::new(),
            remaining: 0,
        }
    }

    /// The whole representation of `len` bytes, its first bytes `prefix`
    /// (a stored part that begins at 0) and the rest cut from input that
    /// starts where `prefix` ends (the origin's answer to the `Range` of
    /// the rest): nothing past `len` is ever sent. `None` when `prefix` is
    /// not shorter than `len`.
    pub fn completing(prefix: Bytes, len: u64) -> Option<Self> {
        let pos = prefix.len() as u64;
        if pos >= len {
            return None;
        }
        let mut s = RangeSlicer::new(vec![ByteRange::new(pos, len)], None)?;
        s.pos = pos;
        // Queued whole: `remaining` counts it, as the rest.
        s.remaining = len;
        if !prefix.is_empty() {
            s.queue.push_back(prefix);
        }
        Some(s)
    }

    /// The same body cut from input that starts at offset `pos` of the
    /// representation (a stored part of it) rather than at 0. Every range
    /// must start at or after `pos`: input before a range's start is never
    /// sent, so a range that begins earlier would come out short, never
    /// with other bytes.
    pub fn starting_at(mut self, pos: u64) -> Self {
        self.pos = pos;
        self
    }

    /// The next chunk of the representation, which starts where the last
    /// one ended.
    pub fn push(&mut self, chunk: Bytes) {
        let start = self.pos;
        let end = start.saturating_add(chunk.len() as u64);
        while let Some(r) = self.ranges.get(self.next).copied() {
            if r.start >= end {
                break;
            }
            let from = r.start.max(start);
            let to = r.end.min(end);
            if from < to {
                if !self.head_queued {
                    self.head_queued = true;
                    if let Some(h) = self.multipart.as_ref().and_then(|m| m.heads.get(self.next)) {
                        self.queue.push_back(h.clone());
                    }
                }
                // Within the chunk: both offsets are at most its length.
                let (a, b) = ((from - start) as usize, (to - start) as usize);
                self.queue.push_back(chunk.slice(a..b));
            }
            if r.end > end {
                break;
            }
            self.next += 1;
            self.head_queued = false;
            if self.next == self.ranges.len() {
                if let Some(m) = &self.multipart {
                    self.queue.push_back(m.close.clone());
                }
            }
        }
        self.pos = end;
    }

    /// The next piece of the body, if one is ready.
    pub fn pop(&mut self) -> Option<Bytes> {
        let b = self.queue.pop_front()?;
        self.remaining = self.remaining.saturating_sub(b.len() as u64);
        Some(b)
    }

    /// The whole body, when it is one piece cut already (one range of one
    /// chunk pushed).
    pub fn take_whole(&mut self) -> Option<Bytes> {
        if self.is_complete() && self.queue.len() == 1 {
            self.pop()
        } else {
            None
        }
    }

    /// Whether every range has been cut from the input: the rest of the
    /// representation is not needed (what is queued still is to be popped).
    pub fn is_complete(&self) -> bool {
        self.next >= self.ranges.len()
    }

    /// Whether the whole body has been popped.
    pub fn is_done(&self) -> bool {
        self.is_complete() && self.queue.is_empty()
    }

    /// Bytes of the body not yet popped (all of it at first: the
    /// response's `Content-Length`).
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether no bytes are left to pop.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
mod tests;
