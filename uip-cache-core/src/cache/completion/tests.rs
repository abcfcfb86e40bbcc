use proptest::prelude::*;

use super::*;
use crate::request::HeaderList;

const LM: &str = "Tue, 01 Dec 2026 10:00:00 GMT";
const LATER: &str = "Tue, 01 Dec 2026 10:00:05 GMT";

fn list(pairs: &[(&str, &str)]) -> Vec<(FieldName, Bytes)> {
    pairs
        .iter()
        .map(|(n, v)| (FieldName::from(n.to_string()), Bytes::from(v.to_string())))
        .collect()
}

/// A stored part as the part admission leaves it.
fn part(content_range: &str, body: &str, etag: Option<&str>, lm: Option<&str>) -> StoredResponse {
    let mut headers = vec![("content-range", content_range), ("date", LATER)];
    if let Some(e) = etag {
        headers.push(("etag", e));
    }
    if let Some(l) = lm {
        headers.push(("last-modified", l));
    }
    StoredResponse {
        status: 206,
        headers: list(&headers),
        body: Bytes::from(body.to_string()),
        etag: etag.map(|e| Bytes::from(e.to_string())),
        last_modified: lm.map(|l| Bytes::from(l.to_string())),
        ..StoredResponse::default()
    }
}

fn answer(c: &Completion, status: u16, headers: &[(&str, &str)]) -> Answer {
    let h = list(headers);
    c.answer(status, &HeaderList(&h))
}

/// What the client's body is when the origin sends `chunks` after the part.
fn body_of(c: &Completion, chunks: &[Bytes]) -> Vec<u8> {
    let mut s = c.reply().expect("a reply").into_body();
    let mut out = Vec::new();
    let mut drain = |s: &mut RangeSlicer| {
        while let Some(b) = s.pop() {
            out.extend_from_slice(&b);
        }
    };
    drain(&mut s);
    for ch in chunks {
        if s.is_complete() {
            break;
        }
        s.push(ch.clone());
        drain(&mut s);
    }
    out
}

#[test]
fn a_part_from_byte_0_short_of_the_whole_is_completed_from_its_end() {
    let c = Completion::of_part(&part("bytes 0-4/10", "01234", Some("\"v1\""), None)).unwrap();
    assert_eq!(
        c.origin_headers(),
        vec![
            ("range", Bytes::from_static(b"bytes=5-")),
            ("if-range", Bytes::from_static(b"\"v1\"")),
        ]
    );
    assert_eq!(c.len(), 10);
    assert_eq!(&c.prefix()[..], b"01234");
}

const TAG: Option<&str> = Some("\"v1\"");

#[test]
fn parts_that_cannot_be_completed() {
    for (why, entry) in [
        ("not from 0", part("bytes 1-4/10", "1234", TAG, None)),
        (
            "the whole already",
            part("bytes 0-9/10", "0123456789", TAG, None),
        ),
        ("body shorter", part("bytes 0-4/10", "0123", TAG, None)),
        ("body longer", part("bytes 0-4/10", "012345", TAG, None)),
        ("unknown length", part("bytes 0-4/*", "01234", TAG, None)),
        ("not strict", part("bytes 0-4 /10", "01234", TAG, None)),
    ] {
        assert!(Completion::of_part(&entry).is_none(), "{why}");
    }
    let mut complete = part("bytes 0-4/10", "01234", TAG, None);
    complete.status = 200;
    assert!(Completion::of_part(&complete).is_none(), "a 200");
    let mut gzip = part("bytes 0-4/10", "01234", TAG, None);
    gzip.compression = BodyEncoding::Gzip;
    assert!(Completion::of_part(&gzip).is_none(), "gzip");
    // No strong validator: no answer to the `Range` of the rest could be
    // combined with it, so the origin is not asked for the rest at all
    // (it would cost a request before the whole, on every whole GET that
    // cannot be stored).
    for (etag, lm) in [
        (Some("W/\"v1\""), Some(LM)),
        (None, Some(LATER)),
        (None, None),
    ] {
        let weak = part("bytes 0-4/10", "01234", etag, lm);
        assert!(Completion::of_part(&weak).is_none(), "{etag:?} {lm:?}");
    }
}

#[test]
fn if_range_is_a_strong_tag_or_else_a_strong_date() {
    let range = ("range", Bytes::from_static(b"bytes=5-"));
    let of = |etag, lm| {
        Completion::of_part(&part("bytes 0-4/10", "01234", etag, lm))
            .unwrap()
            .origin_headers()
    };
    assert_eq!(
        of(None, Some(LM)),
        vec![
            range.clone(),
            ("if-range", Bytes::from_static(LM.as_bytes()))
        ]
    );
    assert_eq!(
        of(Some("\"v1\""), Some(LM)),
        vec![range, ("if-range", Bytes::from_static(b"\"v1\""))]
    );
}

#[test]
fn only_the_exact_rest_with_the_same_strong_validator_combines() {
    let tagged = Completion::of_part(&part("bytes 0-4/10", "01234", Some("\"v1\""), None)).unwrap();
    let rest = ("content-range", "bytes 5-9/10");
    for (want, status, headers) in [
        (Answer::Combine, 206, vec![rest, ("etag", "\"v1\"")]),
        (
            Answer::Combine,
            206,
            vec![rest, ("etag", "\"v1\""), ("content-length", "5")],
        ),
        (Answer::Refetch, 206, vec![rest, ("etag", "\"v2\"")]),
        (Answer::Refetch, 206, vec![rest, ("etag", "W/\"v1\"")]),
        (Answer::Refetch, 206, vec![rest]),
        (
            Answer::Refetch,
            206,
            vec![rest, ("etag", "\"v1\""), ("content-length", "6")],
        ),
        (
            Answer::Refetch,
            206,
            vec![rest, ("etag", "\"v1\""), ("content-encoding", "gzip")],
        ),
        (
            Answer::Refetch,
            206,
            vec![("content-range", "bytes 5-9/11"), ("etag", "\"v1\"")],
        ),
        (
            Answer::Refetch,
            206,
            vec![("content-range", "bytes 4-9/10"), ("etag", "\"v1\"")],
        ),
        (
            Answer::Refetch,
            206,
            vec![("content-range", "bytes 5-8/10"), ("etag", "\"v1\"")],
        ),
        (Answer::Refetch, 206, vec![rest, rest, ("etag", "\"v1\"")]),
        (Answer::Refetch, 416, vec![("content-range", "bytes */3")]),
        (Answer::Ordinary, 200, vec![("etag", "\"v1\"")]),
        (Answer::Ordinary, 404, vec![]),
        (Answer::Ordinary, 304, vec![("etag", "\"v1\"")]),
    ] {
        assert_eq!(
            answer(&tagged, status, &headers),
            want,
            "{status} {headers:?}"
        );
    }

    let dated = Completion::of_part(&part("bytes 0-4/10", "01234", None, Some(LM))).unwrap();
    let same = [rest, ("last-modified", LM), ("date", LATER)];
    assert_eq!(answer(&dated, 206, &same), Answer::Combine);
    // The same date, but weak in the new response, or with a tag now.
    let weak = [rest, ("last-modified", LM), ("date", LM)];
    assert_eq!(answer(&dated, 206, &weak), Answer::Refetch);
    let tag = [
        rest,
        ("last-modified", LM),
        ("date", LATER),
        ("etag", "\"x\""),
    ];
    assert_eq!(answer(&dated, 206, &tag), Answer::Refetch);
}

#[test]
fn the_whole_has_the_new_headers_and_the_length_of_the_whole() {
    let c = Completion::of_part(&part("bytes 0-4/10", "01234", Some("\"v1\""), None)).unwrap();
    let got = c.whole_headers(&list(&[
        ("content-range", "bytes 5-9/10"),
        ("content-length", "5"),
        ("etag", "\"v1\""),
        ("a", "2"),
    ]));
    assert_eq!(
        got,
        list(&[("etag", "\"v1\""), ("a", "2"), ("content-length", "10")])
    );
    let reply = c.reply().unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.content_length(), 10);
    assert_eq!(
        body_of(&c, &[Bytes::from_static(b"56"), Bytes::from_static(b"789")]),
        b"0123456789"
    );
    // An origin that sends more than it said: cut at the whole's length.
    assert_eq!(
        body_of(&c, &[Bytes::from_static(b"56789abc")]),
        b"0123456789"
    );
}

#[test]
fn only_a_plain_whole_get_completes() {
    let plain: [(&str, &str); 0] = [];
    assert!(may_complete(&RequestView::new("GET", "/a", &plain)));
    assert!(!may_complete(&RequestView::new("HEAD", "/a", &plain)));
    assert!(!may_complete(&RequestView::new("POST", "/a", &plain)));
    for h in [
        "range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    ] {
        let headers = [(h, "x")];
        assert!(
            !may_complete(&RequestView::new("GET", "/a", &headers)),
            "{h}"
        );
    }
    assert!(!may_complete(
        &RequestView::new("GET", "/a", &plain).body(Some(b"q"))
    ));
}

proptest! {
    /// Any part, any length, any answer: never a panic; a combination only
    /// of the exact rest with the part's own strong tag; and the client's
    /// body only ever holds the part's bytes, then the origin's bytes at
    /// their offsets, never more than the whole.
    #[test]
    fn combining_never_mixes_or_overruns(
        part_len in 0u64..40,
        len in 0u64..80,
        first in 0u64..90,
        last in 0u64..90,
        total in 0u64..90,
        same_tag in any::<bool>(),
        declared in proptest::option::of(0u64..90),
        received in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..8),
    ) {
        let body: String = (0..part_len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let cr = format!("bytes 0-{}/{len}", part_len.saturating_sub(1));
        let entry = part(&cr, &body, Some("\"p\""), None);
        let Some(c) = Completion::of_part(&entry) else {
            // Only a non-empty part short of the whole is completed.
            prop_assert!(part_len == 0 || part_len >= len);
            return Ok(());
        };
        prop_assert!(part_len > 0 && part_len < len);
        let new_cr = format!("bytes {first}-{last}/{total}");
        let tag = if same_tag { "\"p\"" } else { "\"q\"" };
        let declared = declared.map(|d| d.to_string());
        let mut headers = vec![("content-range", new_cr.as_str()), ("etag", tag)];
        if let Some(d) = &declared {
            headers.push(("content-length", d.as_str()));
        }
        let a = answer(&c, 206, &headers);
        let exact = first == part_len && last + 1 == len && total == len;
        let length_ok = declared.as_deref().is_none_or(|d| d == (len - part_len).to_string());
        prop_assert_eq!(a == Answer::Combine, exact && same_tag && length_ok);
        if a != Answer::Combine {
            prop_assert_eq!(a, Answer::Refetch);
            return Ok(());
        }
        let chunks: Vec<Bytes> = received.iter().map(|c| Bytes::from(c.clone())).collect();
        let out = body_of(&c, &chunks);
        let origin: Vec<u8> = received.concat();
        prop_assert!(out.len() as u64 <= len);
        prop_assert_eq!(&out[..part_len as usize], body.as_bytes());
        let rest = &out[part_len as usize..];
        prop_assert_eq!(rest, &origin[..rest.len()]);
        prop_assert_eq!(out.len() as u64, (part_len + origin.len() as u64).min(len));
    }
}
