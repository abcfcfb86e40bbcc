//! A client's answer to its `Range`, cut from a complete response.

use bytes::Bytes;

use crate::field::HeaderEdits;
use crate::http::range::RangeSlicer;

/// This client's answer to its `Range` when the origin sent the complete
/// representation ([`After::Part`](crate::After::Part)): the cache fetched
/// the whole to store it, and the client gets the part it asked for.
///
/// An adapter sends [`status`](RangeReply::status) instead of the
/// origin's, applies [`header_edits`](RangeReply::header_edits) after the
/// usual [`HttpCache::response_edits`](crate::HttpCache::response_edits),
/// and sends the pieces [`into_body`](RangeReply::into_body) cuts from the
/// origin's body: push each chunk of it, send what pops out, and stop once
/// it [is done](RangeSlicer::is_done).
#[derive(Debug)]
pub struct RangeReply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, Bytes)>,
    pub(crate) content_length: u64,
    pub(crate) slicer: RangeSlicer,
}

impl RangeReply {
    /// 206 (the ranges), 416 (none of them lies within the
    /// representation), or 200: the whole, made of a stored part and the
    /// origin's 206 of the rest ([`After::Part`](crate::After::Part) for a
    /// request without `Range`).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response's `Content-Length`: of the part, or parts, for a GET;
    /// the same for a HEAD, whose body is empty.
    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    /// Sets `Content-Range` (or, for several ranges, the
    /// `multipart/byteranges` `Content-Type`), `Content-Length` and
    /// `Accept-Ranges` over the origin's.
    pub fn header_edits(&self) -> HeaderEdits<'static> {
        let mut edits = HeaderEdits::new();
        // Fields that describe the whole body are false of a part:
        // integrity checks of clients would reject it.
        for name in WHOLE_BODY_FIELDS {
            edits.remove(name);
        }
        // A whole made of a stored part and the origin's 206 of the rest.
        if self.status == 200 {
            edits.remove("content-range");
        }
        for (name, value) in &self.headers {
            edits.set(name, value.clone());
        }
        edits
    }

    /// The body: cuts the part (or parts) from the origin's body as it is
    /// pushed in. Empty for a 416 and for a HEAD.
    pub fn into_body(self) -> RangeSlicer {
        self.slicer
    }
}

/// Response fields that describe the whole body (its digest, its trailer
/// fields), removed from a 206 cut from it.
const WHOLE_BODY_FIELDS: [&str; 4] = ["content-digest", "repr-digest", "content-md5", "trailer"];
