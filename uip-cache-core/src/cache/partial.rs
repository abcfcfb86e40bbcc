//! Ranges (RFC 9110 section 14): the 206 or 416 a complete 200 gives a
//! request with `Range`, whether the 200 comes from the store
//! ([`respond`](super::respond)) or from the origin as its bytes arrive
//! ([`fetch`](super::fetch)).

use bytes::Bytes;

use crate::adapter::RangeReply;
use crate::http::range::{self, Multipart, RangeSlicer, Ranges};

/// The partial answer `ranges` of a representation of `len` bytes whose
/// type is `content_type` call for; `None` when the whole representation
/// answers (the request asked for it, or a multipart body could not be
/// laid out).
pub(crate) fn part(ranges: Ranges, len: u64, content_type: Option<&[u8]>) -> Option<RangeReply> {
    let ranges = match ranges {
        Ranges::Whole => return None,
        Ranges::Unsatisfiable => {
            return Some(RangeReply {
                status: 416,
                content_length: 0,
                headers: vec![
                    ("content-range", Bytes::from(range::unsatisfied_range(len))),
                    ("content-length", Bytes::from_static(b"0")),
                    ("accept-ranges", Bytes::from_static(b"bytes")),
                ],
                slicer: RangeSlicer::empty(),
            })
        }
        Ranges::Partial(ranges) => ranges,
    };
    let mut headers = Vec::with_capacity(3);
    let slicer = match ranges.as_slice() {
        [one] => {
            headers.push((
                "content-range",
                Bytes::from(range::content_range(*one, len)),
            ));
            RangeSlicer::new(ranges, None)?
        }
        _ => {
            let m = Multipart::new(&boundary()?, &ranges, len, content_type)?;
            headers.push(("content-type", Bytes::from(m.content_type())));
            RangeSlicer::new(ranges, Some(m))?
        }
    };
    headers.push(("content-length", Bytes::from(slicer.len().to_string())));
    headers.push(("accept-ranges", Bytes::from_static(b"bytes")));
    Some(RangeReply {
        status: 206,
        headers,
        content_length: slicer.len(),
        slicer,
    })
}

/// A multipart boundary of 32 random hex digits, new for each response, so
/// that content cannot predict it and forge parts.
fn boundary() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}
