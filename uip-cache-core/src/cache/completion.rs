//! Completing a stored part (RFC 9111 sections 3.3 and 3.4): a GET for the
//! whole representation that finds no complete entry, only a fresh stored
//! part of it that begins at byte 0, asks the origin for the rest
//! (`Range: bytes=<next>-`, with the part's strong validator as
//! `If-Range`; a part without one is not completed), and gives the
//! client the part and the rest as one 200 when both are bytes of the
//! same representation.
//!
//! What the origin answers decides ([`Completion::answer`]): a 206 of
//! exactly the rest that shares the part's strong validator is combined; a
//! 206 (or 416) that cannot be is dropped and the whole fetched again
//! without `Range`, so that a client never gets a 206 it did not ask for
//! nor bytes of two representations; anything else is an ordinary answer
//! to an ordinary miss.

use bytes::Bytes;

use super::{CachePlan, HttpCache, RangeReply};
use crate::entry::{BodyEncoding, StoredResponse};
use crate::field::FieldName;
use crate::http::admission;
use crate::http::freshness::{self, Usability};
use crate::http::range::{self, ByteRange, RangeSlicer};
use crate::key::CacheKey;
use crate::request::{HeaderSource, RequestView};

/// A stored part a whole GET completes: its bytes (the first of the
/// representation), the representation's length, and the part's strong
/// validator.
#[derive(Clone, Debug)]
pub(crate) struct Completion {
    prefix: Bytes,
    len: u64,
    validator: Option<Strong>,
}

/// A strong validator of a stored part (RFC 9110 section 8.8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Strong {
    /// A strong entity-tag, whole (`"..."`).
    Tag(Bytes),
    /// A `Last-Modified` that is strong by the response's `Date`, of a
    /// part without any entity-tag.
    Date(Bytes),
}

/// What the origin's answer to the `Range` of the rest gives the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A 206 of exactly the rest, of the same representation: combine.
    Combine,
    /// A 206 or a 416 that cannot be combined: fetch the whole again.
    Refetch,
    /// Any other answer: an ordinary miss.
    Ordinary,
}

/// The request headers that make a whole GET unfit to complete a part:
/// the client's own conditions are answered by the origin, as on any miss.
const CONDITIONALS: [&str; 5] = [
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
];

/// Whether `req` may complete a stored part: a GET (never a HEAD) without
/// a `Range` of its own, without conditions, and without a body in its
/// key (its request can be sent again as it came).
pub(crate) fn may_complete(req: &RequestView<'_>) -> bool {
    req.method == "GET"
        && req.body.is_none()
        && req.headers.first("range").is_none()
        && CONDITIONALS.iter().all(|h| req.headers.first(h).is_none())
}

impl Completion {
    /// The completion a stored part offers: a 206 stored as it came, of
    /// `bytes 0-a/len` with `a + 1 < len`, whose body is exactly those
    /// `a + 1` bytes, with a strong validator (without one no answer to
    /// the `Range` of the rest could be combined with it: asking for the
    /// rest would only cost the origin a request before the whole).
    pub(crate) fn of_part(entry: &StoredResponse) -> Option<Completion> {
        if entry.status != 206 || entry.compression != BodyEncoding::Identity {
            return None;
        }
        let (part, len) = range::stored_part(entry.header("content-range")?)?;
        if part.start != 0 || part.end >= len || entry.body.len() as u64 != part.len() {
            return None;
        }
        let validator = match &entry.etag {
            Some(tag) => {
                range::strong_tag(tag.trim_ascii()).map(|t| Strong::Tag(Bytes::copy_from_slice(t)))
            }
            // RFC 9110 section 13.1.5: a date only when there is no
            // entity-tag at all, and the date is strong.
            None => range::strong_last_modified(
                entry.last_modified.as_deref(),
                entry.header("date").map(|d| &d[..]),
            )
            .map(|d| Strong::Date(Bytes::copy_from_slice(d))),
        };
        Some(Completion {
            prefix: entry.body.clone(),
            len,
            validator: Some(validator?),
        })
    }

    /// The first byte the origin is asked for.
    fn next(&self) -> u64 {
        self.prefix.len() as u64
    }

    /// The headers the origin's request gets: the `Range` of the rest, and
    /// the part's strong validator as `If-Range`.
    pub(crate) fn origin_headers(&self) -> Vec<(&'static str, Bytes)> {
        let mut set = vec![("range", Bytes::from(format!("bytes={}-", self.next())))];
        match &self.validator {
            Some(Strong::Tag(v) | Strong::Date(v)) => set.push(("if-range", v.clone())),
            None => {}
        }
        set
    }

    /// What the origin's answer (`status`, `headers`) gives the client.
    pub(crate) fn answer(&self, status: u16, headers: &dyn HeaderSource) -> Answer {
        match status {
            206 if self.combines(headers) => Answer::Combine,
            206 | 416 => Answer::Refetch,
            _ => Answer::Ordinary,
        }
    }

    /// Whether a 206 with `headers` holds exactly the rest of the part's
    /// representation (one `Content-Range` of `bytes next-(len-1)/len`, no
    /// content coding, a `Content-Length`, when sent, of the rest), and has
    /// the part's strong validator (RFC 9111 section 3.4).
    fn combines(&self, headers: &dyn HeaderSource) -> bool {
        let Some(validator) = &self.validator else {
            return false;
        };
        if admission::part_of(headers) != Some((ByteRange::new(self.next(), self.len), self.len)) {
            return false;
        }
        let etag = headers.first("etag");
        match validator {
            Strong::Tag(tag) => etag
                .and_then(|e| range::strong_tag(e.trim_ascii()))
                .is_some_and(|e| e == &tag[..]),
            Strong::Date(lm) => {
                etag.is_none()
                    && range::strong_last_modified(
                        headers.first("last-modified"),
                        headers.first("date"),
                    )
                    .is_some_and(|d| d.trim_ascii() == lm.trim_ascii())
            }
        }
    }

    /// The headers of the combined 200, from the origin's 206 (RFC 9111
    /// section 3.4: the new response's), its `Content-Range` removed and
    /// its `Content-Length` that of the whole.
    pub(crate) fn whole_headers(&self, headers: &[(FieldName, Bytes)]) -> Vec<(FieldName, Bytes)> {
        let mut whole: Vec<(FieldName, Bytes)> = headers
            .iter()
            .filter(|(n, _)| n != "content-range" && n != "content-length")
            .cloned()
            .collect();
        whole.push(("content-length".into(), Bytes::from(self.len.to_string())));
        whole
    }

    /// The client's 200: the part, then the origin's bytes from where it
    /// ends, cut at the representation's length.
    pub(crate) fn reply(&self) -> Option<RangeReply> {
        let slicer = RangeSlicer::completing(self.prefix.clone(), self.len)?;
        Some(RangeReply {
            status: 200,
            headers: vec![
                ("content-length", Bytes::from(self.len.to_string())),
                ("accept-ranges", Bytes::from_static(b"bytes")),
            ],
            content_length: self.len,
            slicer,
        })
    }

    /// The part's bytes: the first of the recorded whole.
    pub(crate) fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    /// The whole's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests;

/// How many keys with parts an instance remembers for completion: past it
/// the least used are forgotten, and their parts only answer ranges.
pub(crate) const PART_HINTS: u64 = 10_000;

/// The hint of a plain key: the last 16 hex digits of its SHA-256 (a
/// collision costs one lookup, never a wrong answer: the part found is
/// the request's own, under its own key).
fn hint(key: &CacheKey) -> u64 {
    let s = key.as_str();
    s.get(s.len().saturating_sub(16)..)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl HttpCache {
    /// Notes that a part is being stored for `plan` (a plan for the
    /// complete response: its key is the plain key).
    pub(super) fn note_part(&self, plan: &CachePlan) {
        self.inner.parts.insert(hint(&plan.key), ());
    }

    /// The stored part a whole GET may complete (see [`Completion`]): only
    /// when a part may be stored under the request's key (this instance
    /// stored one: the hint saves every other miss a store round trip; or
    /// the store is shared, where another instance may have), the request
    /// may complete one ([`may_complete`]), and the part is fresh.
    pub(super) async fn part_to_complete(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
    ) -> Option<Box<Completion>> {
        if plan.part || !may_complete(req) {
            return None;
        }
        if !self.inner.parts.contains_key(&hint(&plan.key)) {
            // Only a shared store may hold a part this instance did not
            // store, and a request that will not fetch (`only-if-cached`)
            // or that no entry would come of (hit-for-miss) is not worth
            // the store read.
            if !self.inner.store.shared()
                || plan.request_cc.only_if_cached
                || self.is_uncacheable(plan)
            {
                return None;
            }
        }
        let entry = self.lookup(&plan.for_part(), req).await?;
        let now = self.inner.clock.now();
        if freshness::usability(&entry, &plan.request_cc, now) != Usability::Fresh {
            return None;
        }
        Completion::of_part(&entry).map(Box::new)
    }
}
