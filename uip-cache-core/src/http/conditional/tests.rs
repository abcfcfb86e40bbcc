use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use super::{freshen, not_modified, Freshened};
use crate::entry::StoredResponse;
use crate::http::encoding::accepts_gzip;
use crate::http::testing::{admit_with, origin_304, policy};
use crate::policy::Policy;
use crate::request::RequestView;
use crate::stats::NoCacheReason;

#[test]
fn conditionals() {
    let mut e = StoredResponse::new(200, Bytes::new());
    e.etag = Some(Bytes::from_static(b"W/\"v1\""));
    e.last_modified = Some(Bytes::from(httpdate::fmt_http_date(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    )));
    let m = |h: &[(&str, &str)]| {
        let h = h.to_vec();
        not_modified(&RequestView::new("GET", "/p", &h), &e)
    };
    assert!(m(&[("if-none-match", "\"v1\"")]), "weak comparison");
    assert!(m(&[("if-none-match", "\"x\", W/\"v1\"")]));
    assert!(m(&[("if-none-match", "*")]));
    assert!(!m(&[("if-none-match", "\"v2\"")]));
    let later = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000));
    let earlier = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(10));
    assert!(m(&[("if-modified-since", &later)]));
    assert!(!m(&[("if-modified-since", &earlier)]));
    assert!(
        !m(&[("if-none-match", "\"v2\""), ("if-modified-since", &later)]),
        "If-None-Match wins"
    );
    assert!(!m(&[]));
}

#[test]
fn no_304_from_a_stored_error_and_gzip_q0_refuses() {
    let mut e = StoredResponse::new(404, Bytes::new());
    e.etag = Some(Bytes::from_static(b"\"x\""));
    let h = [("if-none-match", "\"x\"")];
    assert!(!not_modified(&RequestView::new("GET", "/p", &h), &e));
    e.status = 200;
    assert!(not_modified(&RequestView::new("GET", "/p", &h), &e));

    assert!(!accepts_gzip(&[("accept-encoding", "gzip;q=0")]));
    assert!(!accepts_gzip(&[("accept-encoding", "gzip; q=0.0, *")]));
    assert!(!accepts_gzip(&[("accept-encoding", "*;q=0")]));
    assert!(accepts_gzip(&[("accept-encoding", "br, gzip;q=0.5")]));
    assert!(accepts_gzip(&[("accept-encoding", "*")]));
    assert!(!accepts_gzip(&[("accept-encoding", "identity")]));
}

#[test]
fn a_304_never_puts_a_cookie_in_the_shared_entry_and_no_store_removes() {
    let p = policy("");
    let now = SystemTime::now();
    let mut entry = admit_with(
        &p,
        &[],
        200,
        &[
            ("cache-control", "max-age=1"),
            ("etag", "\"v\""),
            ("x-a", "1"),
        ],
    )
    .unwrap();
    let h: Vec<(String, String)> = vec![
        ("cache-control".into(), "max-age=60".into()),
        ("set-cookie".into(), "session=alice".into()),
        ("x-a".into(), "2".into()),
    ];
    let list: Vec<(FieldName, Bytes)> = h
        .iter()
        .map(|(n, v)| (n.clone().into(), Bytes::from(v.clone())))
        .collect();
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/p", &none);
    assert!(matches!(
        freshen(&mut entry, &p, &req, &origin_304(&list, &h, now)),
        Freshened::Store
    ));
    assert!(entry.header("set-cookie").is_none(), "{:?}", entry.headers);
    assert_eq!(entry.header("x-a").unwrap(), "2");
    assert_eq!(entry.freshness_lifetime, Duration::from_secs(60));

    for cc in ["no-store", "private"] {
        let h: Vec<(String, String)> = vec![("cache-control".into(), cc.into())];
        let list: Vec<(FieldName, Bytes)> =
            vec![("cache-control".into(), Bytes::from(cc.to_owned()))];
        let mut e = entry.clone();
        assert!(
            matches!(
                freshen(&mut e, &p, &req, &origin_304(&list, &h, now)),
                Freshened::Remove(_)
            ),
            "{cc}"
        );
    }
}

#[test]
fn a_304_with_another_strong_etag_does_not_update_the_entry() {
    let p = policy("");
    let now = SystemTime::now();
    let mut entry = admit_with(
        &p,
        &[],
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"a\"")],
    )
    .unwrap();
    let h: Vec<(String, String)> = vec![("etag".into(), "\"b\"".into())];
    let list: Vec<(FieldName, Bytes)> = vec![("etag".into(), Bytes::from_static(b"\"b\""))];
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/p", &none);
    assert!(matches!(
        freshen(&mut entry, &p, &req, &origin_304(&list, &h, now)),
        Freshened::Remove(_)
    ));
    assert_eq!(entry.etag.as_deref(), Some(&b"\"a\""[..]));
}

/// A 304 for a request carrying credentials the key does not hold is this
/// client's answer: whatever it says, the shared entry is neither updated
/// nor removed. Without credentials, the response alone decides.
#[test]
fn a_304_to_a_request_with_unkeyed_credentials_leaves_the_shared_entry_alone() {
    let ttl = policy("    ttl: 60\n");
    let keyed = policy("    ttl: 60\n    vary_by: [\"header:cookie\"]\n");
    let now = SystemTime::now();
    // Lives on the policy TTL: no freshness of its own.
    let stored = admit_with(&ttl, &[], 200, &[("etag", "\"v\"")]).unwrap();
    let respond = |p: &Policy, req_h: &[(&str, &str)], resp_h: &[(&str, &str)]| {
        let h: Vec<(String, String)> = resp_h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let list: Vec<(FieldName, Bytes)> = resp_h
            .iter()
            .map(|(n, v)| (n.to_string().into(), Bytes::from(v.to_string())))
            .collect();
        let req_h = req_h.to_vec();
        let req = RequestView::new("GET", "/p", &req_h);
        let mut e = stored.clone();
        let out = freshen(&mut e, p, &req, &origin_304(&list, &h, now));
        (out, e)
    };
    let cookie = [("cookie", "session=mallory")];
    let auth = [("authorization", "Bearer mallory")];
    for creds in [&cookie[..], &auth[..]] {
        for resp in [
            &[("etag", "\"v\"")][..],
            &[("etag", "\"v\""), ("cache-control", "private")][..],
            &[("etag", "\"v\""), ("cache-control", "no-store")][..],
            &[("etag", "\"other\"")][..],
        ] {
            let (out, _) = respond(&ttl, creds, resp);
            assert!(
                matches!(out, Freshened::Keep(_)),
                "{creds:?} {resp:?}: {out:?}"
            );
        }
        // The origin's own permission to share makes the 304 fit to update.
        let (out, e) = respond(&ttl, creds, &[("cache-control", "public, max-age=30")]);
        assert!(matches!(out, Freshened::Store), "{creds:?}: {out:?}");
        assert_eq!(e.freshness_lifetime, Duration::from_secs(30));
    }
    // A key holding the cookie makes the entry this cookie's: the response decides.
    let stored_keyed = admit_with(&keyed, &cookie, 200, &[("etag", "\"v\"")]).unwrap();
    let h = vec![("cache-control".to_string(), "private".to_string())];
    let list: Vec<(FieldName, Bytes)> = vec![("cache-control".into(), Bytes::from("private"))];
    let req_h = cookie.to_vec();
    let req = RequestView::new("GET", "/p", &req_h);
    let mut e = stored_keyed.clone();
    assert!(matches!(
        freshen(&mut e, &keyed, &req, &origin_304(&list, &h, now)),
        Freshened::Remove(NoCacheReason::Private)
    ));
    // Without credentials, the response decides; a Set-Cookie on the 304 is
    // this client's state: neither stored nor a reason to remove.
    let (out, _) = respond(&ttl, &[], &[("cache-control", "no-store")]);
    assert!(matches!(
        out,
        Freshened::Remove(NoCacheReason::ResponseNoStore)
    ));
    let (out, e) = respond(&ttl, &[], &[("set-cookie", "session=new")]);
    assert!(matches!(out, Freshened::Store), "{out:?}");
    assert!(e.header("set-cookie").is_none());
}

/// Without `Last-Modified`, `If-Modified-Since` is evaluated against the
/// stored `Date`, or else the time the response was received (RFC 9111
/// section 4.3.2): a 304 only when the response was generated at or before
/// the client's date.
#[test]
fn if_modified_since_without_last_modified_uses_date_then_the_time_received() {
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let ims = |e: &StoredResponse, s: u64| {
        let h = [("if-modified-since", httpdate::fmt_http_date(at(s)))];
        not_modified(&RequestView::new("GET", "/p", &h), e)
    };
    let mut dated = StoredResponse::new(200, Bytes::new());
    dated.stored_at = at(5_000_000);
    dated.headers = vec![(
        FieldName::from("date"),
        Bytes::from(httpdate::fmt_http_date(at(1_000_000))),
    )];
    assert!(ims(&dated, 1_000_000), "generated at the client's date");
    assert!(ims(&dated, 2_000_000), "generated before it");
    assert!(
        !ims(&dated, 999_999),
        "generated after it: may have changed"
    );

    let mut undated = StoredResponse::new(200, Bytes::new());
    undated.stored_at = at(3_000_000);
    assert!(ims(&undated, 3_000_000));
    assert!(ims(&undated, 4_000_000));
    assert!(!ims(&undated, 2_999_999));
}
