//! Content codings: whether a client takes gzip (RFC 9110 section 12.5.3),
//! and which representation of an entry holding the cache's gzip a request
//! gets, with the headers that describe it.

use crate::field::FieldName;
use bytes::Bytes;

use super::cache_control::request_cache_control;
use crate::compress;
use crate::entry::{BodyEncoding, StoredResponse};
use crate::request::{HeaderSource, RequestView};

/// Whether the client accepts gzip: an explicit `gzip` (or `x-gzip`) item
/// decides by its q-value, else `*` does (RFC 9110 section 12.5.3).
pub fn accepts_gzip(headers: &dyn HeaderSource) -> bool {
    let (mut gzip, mut star) = (None, None);
    headers.for_each_value("accept-encoding", &mut |v| {
        for item in v.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let mut q_zero = false;
            for p in parts {
                let p = p.trim_ascii();
                if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                    q_zero = std::str::from_utf8(&p[2..])
                        .ok()
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0);
                }
            }
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || !q_zero);
            } else if coding == b"*" {
                star = Some(star.unwrap_or(false) || !q_zero);
            }
        }
    });
    gzip.or(star).unwrap_or(false)
}

/// Whether the representation an entry gives depends on `Accept-Encoding`:
/// it holds a gzip body the cache made, which goes out as it is or
/// decompressed. An entry whose headers forbid transformation (the origin
/// said `no-transform` in a 304 after the body was compressed, or an entry
/// written before the cache honoured it) goes out decompressed to everyone.
pub(crate) fn varies_by_encoding(entry: &StoredResponse) -> bool {
    entry.compression == BodyEncoding::Gzip && !compress::forbids_transform(&entry.headers)
}

/// Whether `req` takes a gzip body the cache made, when the entry allows
/// one ([`varies_by_encoding`]): the client accepts gzip and does not ask
/// for the content untransformed (`Cache-Control: no-transform`, RFC 9111
/// section 5.2.1.6). The others get the origin's identity bytes.
pub(crate) fn takes_cache_gzip(req: &RequestView<'_>) -> bool {
    accepts_gzip(req.headers) && !request_cache_control(req.headers).no_transform
}

/// Appends the entry's headers that `keep` selects, as the representation
/// sent says: for the cache's gzip (`gzip`), its own validator
/// ([`compress::gzip_etag`]), and neither `Accept-Ranges` nor digests
/// (they are about the origin's bytes, not these; a 304 may have merged
/// one in after the body was compressed); when the representation depends on
/// `Accept-Encoding` (`varies`), a `Vary` that names it, merged with the
/// origin's.
pub(crate) fn representation_headers(
    entry: &StoredResponse,
    gzip: bool,
    varies: bool,
    keep: impl Fn(&str) -> bool,
    out: &mut Vec<(FieldName, Bytes)>,
) {
    for (n, v) in &entry.headers {
        if !keep(n) {
            continue;
        }
        match &**n {
            "vary" if varies => {}
            "accept-ranges" | "content-digest" | "repr-digest" | "digest" | "content-md5"
                if gzip => {}
            "etag" if gzip => out.extend(compress::gzip_etag(v).map(|t| (n.clone(), t))),
            _ => out.push((n.clone(), v.clone())),
        }
    }
    if varies {
        let mut vary = entry.vary.join(", ");
        if !entry.vary.iter().any(|v| v == "accept-encoding") {
            if !vary.is_empty() {
                vary.push_str(", ");
            }
            vary.push_str("accept-encoding");
        }
        out.push(("vary".into(), Bytes::from(vary)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        let a = |v: &str| accepts_gzip(&vec![("accept-encoding", v)]);
        assert!(a("gzip"));
        assert!(a("br, GZIP;q=0.5"));
        assert!(a("*"));
        assert!(!a("gzip;q=0"));
        assert!(!a("br, deflate"));
        assert!(!accepts_gzip(&Vec::<(String, String)>::new()));
    }
}
