//! Content codings: whether a client takes gzip (RFC 9110 section 12.5.3),
//! when the cache may make a gzip representation of its own (RFC 9110
//! sections 7.7 and 8.8.3) and the validator it gets, and which
//! representation of an entry holding the cache's gzip a request gets, with
//! the headers that describe it. The compression itself is
//! [`crate::compress`]'s.

use crate::field::FieldName;
use bytes::Bytes;

use super::cache_control::{request_cache_control, CacheControl};
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

/// Whether a response forbids intermediaries to transform its content
/// (RFC 9110 section 7.7): `no-transform` in `Cache-Control` or in any
/// targeted cache-control field (`CDN-Cache-Control`, `Surrogate-Control`,
/// any `*-Cache-Control`), whichever of them this cache obeys. Reading
/// every one of them is the cautious side: a directive meant for another
/// cache only costs a compression.
pub fn forbids_transform(headers: &[(FieldName, Bytes)]) -> bool {
    headers.iter().any(|(n, v)| {
        let n: &str = n;
        (n == "cache-control" || n == "surrogate-control" || n.ends_with("-cache-control"))
            && CacheControl::parse([&v[..]]).no_transform
    })
}

/// Whether the cache may store a gzip representation of its own of a
/// response with `headers`: not when the origin forbade transformation,
/// encoded the content itself (any `Content-Encoding`, even `identity`),
/// sent part of a representation (`Content-Range`), or declared a digest of
/// the bytes it sent (`Content-Digest`, `Repr-Digest`, `Digest`,
/// `Content-MD5`), which a compressed body would no longer match.
pub fn may_compress(headers: &[(FieldName, Bytes)]) -> bool {
    const FORBIDDING: [&str; 6] = [
        "content-encoding",
        "content-range",
        "content-digest",
        "repr-digest",
        "digest",
        "content-md5",
    ];
    !headers.iter().any(|(n, _)| FORBIDDING.contains(&&**n)) && !forbids_transform(headers)
}

/// The validator of the gzip representation the cache made of a response
/// whose entity-tag is `etag`: weak, with `-gzip` added to the opaque tag
/// (`"abc"` and `W/"abc"` both give `W/"abc-gzip"`).
///
/// Distinct, so that an `If-None-Match` naming one representation never
/// validates the other; weak, because the cache promises the same content,
/// not the same bytes: a later compression of the same origin body (another
/// `level`, another library) may differ byte for byte, so the tag must
/// never satisfy a strong comparison (`If-Match`, `If-Range`). `None` when
/// `etag` is not a valid entity-tag: the gzip representation then has none.
pub fn gzip_etag(etag: &[u8]) -> Option<Bytes> {
    let t = etag.trim_ascii();
    let t = t.strip_prefix(b"W/").unwrap_or(t);
    let opaque = t.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    let mut v = Vec::with_capacity(opaque.len() + 9);
    v.extend_from_slice(b"W/\"");
    v.extend_from_slice(opaque);
    v.extend_from_slice(b"-gzip\"");
    Some(Bytes::from(v))
}

/// Whether the representation an entry gives depends on `Accept-Encoding`:
/// it holds a gzip body the cache made, which goes out as it is or
/// decompressed. An entry whose headers forbid transformation (the origin
/// said `no-transform` in a 304 after the body was compressed, or an entry
/// written before the cache honoured it) goes out decompressed to everyone.
pub(crate) fn varies_by_encoding(entry: &StoredResponse) -> bool {
    entry.compression == BodyEncoding::Gzip && !forbids_transform(&entry.headers)
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
/// ([`gzip_etag`]), and neither `Accept-Ranges` nor digests
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
            "etag" if gzip => out.extend(gzip_etag(v).map(|t| (n.clone(), t))),
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

    fn h(list: &[(&str, &str)]) -> Vec<(FieldName, Bytes)> {
        list.iter()
            .map(|(n, v)| (n.to_string().into(), Bytes::from(v.to_string())))
            .collect()
    }

    #[test]
    fn no_transform_and_encoded_partial_or_digested_bodies_are_not_compressed() {
        assert!(may_compress(&h(&[("cache-control", "max-age=60")])));
        for refused in [
            ("cache-control", "max-age=60, no-transform"),
            ("cache-control", "No-Transform"),
            ("cdn-cache-control", "max-age=60, no-transform"),
            ("surrogate-control", "no-transform"),
            ("content-encoding", "br"),
            ("content-encoding", "identity"),
            ("content-range", "bytes 0-9/100"),
            ("content-digest", "sha-256=:x:"),
            ("repr-digest", "sha-256=:x:"),
            ("digest", "SHA-256=x"),
            ("content-md5", "x"),
        ] {
            assert!(
                !may_compress(&h(&[("cache-control", "max-age=60"), refused])),
                "{refused:?}"
            );
        }
        // A second Cache-Control line counts too.
        assert!(forbids_transform(&h(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "no-transform")
        ])));
        // Inside a quoted string it is not a directive; reading it as one
        // would only be cautious, but the parser does not.
        assert!(!forbids_transform(&h(&[(
            "cache-control",
            r#"max-age=60, x="no-transform""#
        )])));
    }

    #[test]
    fn a_cache_made_gzip_gets_a_weak_distinct_validator() {
        let t = |e: &str| gzip_etag(e.as_bytes()).map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(t(r#""abc""#).as_deref(), Some(r#"W/"abc-gzip""#));
        assert_eq!(t(r#"W/"abc""#).as_deref(), Some(r#"W/"abc-gzip""#));
        assert_eq!(t(r#" "" "#).as_deref(), Some(r#"W/"-gzip""#));
        assert_eq!(t("abc"), None, "not an entity-tag");
        assert_eq!(t(r#""a"b""#), None, "a quote inside");
        assert_eq!(t(r#""a b""#), None, "a space inside");
    }

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
