use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use super::{MAX_ORIGIN_TAGS, MAX_ORIGIN_TAG_LEN};
use crate::entry::StoredResponse;
use crate::http::cache_control::CacheControl;
use crate::http::conditional::freshen;
use crate::http::freshness::{serves_on_error, usability};
use crate::http::testing::{admit_with, origin_304, policy, with_origin};
use crate::request::RequestView;
use crate::stats::NoCacheReason;

#[test]
fn refusals_name_their_reason() {
    let p = policy("    ttl: 60\n");
    type Headers = &'static [(&'static str, &'static str)];
    let cases: &[(Headers, u16, Headers, NoCacheReason)] = &[
        (
            &[],
            200,
            &[("cache-control", "no-store")],
            NoCacheReason::ResponseNoStore,
        ),
        (
            &[],
            200,
            &[("cache-control", "private, max-age=60")],
            NoCacheReason::Private,
        ),
        (&[], 200, &[("set-cookie", "a=b")], NoCacheReason::SetCookie),
        (
            &[("authorization", "Bearer x")],
            200,
            &[],
            NoCacheReason::Authorization,
        ),
        (&[], 200, &[("vary", "Accept, *")], NoCacheReason::VaryStar),
        (&[], 206, &[], NoCacheReason::Status),
        (&[], 500, &[], NoCacheReason::Status),
    ];
    for (req, status, headers, want) in cases {
        assert_eq!(
            admit_with(&p, req, *status, headers).unwrap_err(),
            *want,
            "{headers:?}"
        );
    }
    // Authorization with an explicit public / s-maxage is storable.
    assert!(admit_with(
        &p,
        &[("authorization", "x")],
        200,
        &[("cache-control", "public")]
    )
    .is_ok());
    assert!(admit_with(
        &p,
        &[("authorization", "x")],
        200,
        &[("cache-control", "s-maxage=5")]
    )
    .is_ok());
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_not_stored() {
    let p = policy("    ttl: 60\n");
    let e = admit_with(
        &p,
        &[],
        200,
        &[
            ("connection", "x-trace, close"),
            ("x-trace", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("age", "3"),
        ],
    )
    .unwrap();
    let names: Vec<_> = e.headers.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, ["content-type"]);
}

#[test]
fn cookie_requests_need_explicit_shared_freshness_or_a_cookie_key() {
    let ttl = policy("    ttl: 60\n");
    let cookie = [("cookie", "session=alice")];
    // A policy TTL alone does not make a cookie-dependent response shared.
    assert_eq!(
        admit_with(&ttl, &cookie, 200, &[]).unwrap_err(),
        NoCacheReason::Cookie
    );
    let over = policy("    ttl: 60\n    ttl_mode: override\n");
    assert_eq!(
        admit_with(&over, &cookie, 200, &[]).unwrap_err(),
        NoCacheReason::Cookie
    );
    // The origin's explicit freshness, or public, says it may be shared.
    for cc in ["max-age=30", "s-maxage=30", "public"] {
        assert!(
            admit_with(&ttl, &cookie, 200, &[("cache-control", cc)]).is_ok(),
            "{cc}"
        );
    }
    // Keyed on the cookie (by the policy or the response's Vary), it is safe.
    let keyed = policy("    ttl: 60\n    vary_by: [\"header:cookie\"]\n");
    assert!(admit_with(&keyed, &cookie, 200, &[]).is_ok());
    assert!(admit_with(&ttl, &cookie, 200, &[("vary", "Cookie")]).is_ok());
    // Without a cookie nothing changes.
    assert!(admit_with(&ttl, &[], 200, &[]).is_ok());
}

#[test]
fn override_never_overrides_authorization_private_or_no_store() {
    let over = policy("    ttl: 60\n    ttl_mode: override\n");
    let auth = [("authorization", "Bearer x")];
    assert_eq!(
        admit_with(&over, &auth, 200, &[("cache-control", "max-age=60")]).unwrap_err(),
        NoCacheReason::Authorization
    );
    assert_eq!(
        admit_with(&over, &[], 200, &[("cache-control", "private")]).unwrap_err(),
        NoCacheReason::Private
    );
    assert_eq!(
        admit_with(&over, &[], 200, &[("cache-control", "no-store")]).unwrap_err(),
        NoCacheReason::ResponseNoStore
    );
}

#[test]
fn explicit_freshness_stores_any_final_status_the_list_is_for_the_rest() {
    let bare = policy("");
    let ttl = policy("    ttl: 60\n");
    for status in [200, 302, 307, 400, 403, 500, 503, 599] {
        let e = admit_with(&bare, &[], status, &[("cache-control", "max-age=60")]).unwrap();
        // Errors for at most negative_ttl (10s by default).
        let want = if status >= 400 { 10 } else { 60 };
        assert_eq!(e.freshness_lifetime, Duration::from_secs(want), "{status}");
    }
    // The policy TTL applies only to DEFAULT_STATUSES: no error.
    for status in [500, 404, 405, 410, 414, 501, 302] {
        assert_eq!(
            admit_with(&ttl, &[], status, &[]).unwrap_err(),
            NoCacheReason::Status,
            "{status}"
        );
    }
    for status in [200, 203, 204, 300, 301, 308] {
        let e = admit_with(&ttl, &[], status, &[]).unwrap();
        assert_eq!(e.freshness_lifetime, Duration::from_secs(60), "{status}");
    }
    assert_eq!(
        admit_with(&bare, &[], 206, &[("cache-control", "max-age=60")]).unwrap_err(),
        NoCacheReason::Status
    );
}

mod arbitrary_headers {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,25}",
            "-?[0-9]{1,30}",
            "(max-age|s-maxage|stale-while-revalidate|stale-if-error|min-fresh|max-stale)=[0-9]{0,25}",
            "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
            "[ -~]{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn admission_freshening_usability_and_ttl_never_panic(
            cc in value(), age in value(), expires in value(), date in value(),
            lm in value(), req_cc in value(), ttl_override in any::<bool>(),
            elapsed in 0u64..(1 << 40),
        ) {
            let p = if ttl_override {
                policy("    ttl: 60\n    ttl_mode: override\n    stale_while_revalidate: 30\n")
            } else {
                policy("")
            };
            let headers = [
                ("cache-control", cc.as_str()),
                ("age", age.as_str()),
                ("expires", expires.as_str()),
                ("date", date.as_str()),
                ("last-modified", lm.as_str()),
                ("etag", "\"e\""),
            ];
            if let Ok(mut e) = admit_with(&p, &[("cache-control", req_cc.as_str())], 200, &headers) {
                let _ = e.storage_ttl();
                let later = SystemTime::now() + Duration::from_secs(elapsed);
                let rcc = CacheControl::parse([req_cc.as_bytes()]);
                let _ = usability(&e, &rcc, later);
                let _ = serves_on_error(&e, &rcc, later);
                let _ = e.staleness(later);
                let h: Vec<(String, String)> =
                    headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
                let list: Vec<(FieldName, Bytes)> = headers
                    .iter()
                    .map(|(n, v)| (n.to_string().into(), Bytes::from(v.to_string())))
                    .collect();
                let none: [(&str, &str); 0] = [];
                let req = RequestView::new("GET", "/p", &none);
                let _ = freshen(&mut e, &p, &req, &origin_304(&list, &h, later));
                let _ = e.storage_ttl();
                let _ = usability(&e, &rcc, later);
                let bytes = e.encode().unwrap();
                prop_assert!(StoredResponse::decode(&bytes).is_ok());
            }
        }
    }
}

#[test]
fn a_policy_ttl_never_stands_in_for_the_origins_permission_to_share() {
    let over = policy("    ttl: 60\n    ttl_mode: override\n");
    let ttl = policy("    ttl: 60\n");
    let auth = [("authorization", "Bearer x")];
    // must-revalidate permits sharing only with the origin's own lifetime.
    let mr = [("cache-control", "max-age=0, must-revalidate")];
    assert_eq!(
        admit_with(&over, &auth, 200, &mr).unwrap_err(),
        NoCacheReason::Authorization
    );
    assert_eq!(
        admit_with(&ttl, &auth, 200, &[("cache-control", "must-revalidate")]).unwrap_err(),
        NoCacheReason::Authorization
    );
    assert!(admit_with(
        &ttl,
        &auth,
        200,
        &[("cache-control", "max-age=60, must-revalidate")]
    )
    .is_ok());
    // max-age=0 is no permission for a cookie request; nor is max-age under override.
    let cookie = [("cookie", "s=1")];
    assert_eq!(
        admit_with(&ttl, &cookie, 200, &[("cache-control", "max-age=0")]).unwrap_err(),
        NoCacheReason::Cookie
    );
    assert_eq!(
        admit_with(&over, &cookie, 200, &[("cache-control", "max-age=60")]).unwrap_err(),
        NoCacheReason::Cookie
    );
    // The statuses list gates the policy TTL; public alone does not open it.
    assert_eq!(
        admit_with(&ttl, &[], 503, &[("cache-control", "public")]).unwrap_err(),
        NoCacheReason::Status
    );
    assert_eq!(
        admit_with(&over, &[], 500, &[("expires", "0")]).unwrap_err(),
        NoCacheReason::Status
    );
    // public does allow heuristic freshness for any status (RFC 9111 4.2.2),
    // an error's for at most negative_ttl.
    let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(1000));
    let e = admit_with(
        &policy(""),
        &[],
        299,
        &[("cache-control", "public"), ("last-modified", &lm)],
    )
    .unwrap();
    assert!(e.freshness_lifetime >= Duration::from_secs(99));
    let e = admit_with(
        &policy(""),
        &[],
        599,
        &[("cache-control", "public"), ("last-modified", &lm)],
    )
    .unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(10));
}

#[test]
fn event_streams_are_never_recorded() {
    assert_eq!(
        admit_with(
            &policy("    ttl: 60\n"),
            &[],
            200,
            &[("content-type", "text/event-stream; charset=utf-8")]
        )
        .unwrap_err(),
        NoCacheReason::Streaming
    );
}

#[test]
fn targeted_cache_control_wins_and_is_not_stored() {
    let bare = policy("");
    let both = [
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60"),
    ];
    let e = admit_with(&bare, &[], 200, &both).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(60));
    // Passed on for caches further down; Surrogate-Control is consumed.
    assert!(e.header("cdn-cache-control").is_some());
    let e = admit_with(&bare, &[], 200, &[("surrogate-control", "max-age=60")]).unwrap();
    assert!(e.header("surrogate-control").is_none());
    // An invalid targeted field is ignored: Cache-Control decides.
    assert_eq!(
        admit_with(
            &bare,
            &[],
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=\"60\"")
            ]
        )
        .unwrap_err(),
        NoCacheReason::ResponseNoStore
    );
    for cdn in ["private", "no-store"] {
        let h = [("cache-control", "max-age=60"), ("cdn-cache-control", cdn)];
        assert!(admit_with(&bare, &[], 200, &h).is_err(), "{cdn}");
    }
    // The targeted field replaces Expires too.
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
    assert_eq!(
        admit_with(
            &bare,
            &[],
            200,
            &[("expires", &later), ("surrogate-control", "no-cache")]
        )
        .unwrap_err(),
        NoCacheReason::NoFreshness
    );
}

#[test]
fn origin_tag_headers_tag_the_entry_bounded_and_are_not_stored() {
    let bare = policy("");
    let e = admit_with(
        &bare,
        &[],
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-key", "item-7  list,cams"),
            ("cache-tag", "cams, zone:north"),
        ],
    )
    .unwrap();
    assert_eq!(e.tags, ["cams", "item-7", "list", "zone:north"]);
    assert!(e.header("surrogate-key").is_none() && e.header("cache-tag").is_none());
    let many: String = (0..500).map(|i| format!("t{i} ")).collect();
    let long = "x".repeat(MAX_ORIGIN_TAG_LEN + 1);
    let e = admit_with(
        &bare,
        &[],
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-key", &format!("{long} {many}")),
        ],
    )
    .unwrap();
    assert_eq!(e.tags.len(), MAX_ORIGIN_TAGS);
    assert!(e.tags.iter().all(|t| t.len() <= MAX_ORIGIN_TAG_LEN));
}

// ===== one request must not make an error everyone's answer (CPDoS) =====

#[test]
fn answers_to_ranges_and_preconditions_are_stored_only_when_complete_200s() {
    let ttl = policy("    ttl: 60\n");
    let cc = ("cache-control", "max-age=60");
    for req in [
        ("range", "bytes=999999-"),
        ("if-range", "\"x\""),
        ("if-match", "\"nope\""),
        ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ] {
        for status in [416, 412, 200, 404] {
            let headers: &[(&str, &str)] = if status == 416 {
                &[cc, ("content-range", "bytes */10")]
            } else {
                &[cc]
            };
            let got = admit_with(&ttl, &[req], status, headers);
            if status == 200 {
                assert!(got.is_ok(), "{req:?}");
            } else {
                assert_eq!(
                    got.unwrap_err(),
                    NoCacheReason::RangeOrPrecondition,
                    "{req:?} {status}"
                );
            }
        }
        // A 200 that says it is a part is not complete.
        assert_eq!(
            admit_with(&ttl, &[req], 200, &[cc, ("content-range", "bytes 0-1/10")]).unwrap_err(),
            NoCacheReason::RangeOrPrecondition
        );
    }
    // Without them, a 412 with max-age is a plain (capped) error entry.
    assert!(admit_with(&ttl, &[], 412, &[cc]).is_ok());
}

#[test]
fn a_tricky_or_unreadable_cache_control_never_lets_private_through() {
    let ttl = policy("    ttl: 60\n");
    assert_eq!(
        admit_with(
            &ttl,
            &[],
            200,
            &[("cache-control", r#"max-age=60, x="a\"b", private"#)]
        )
        .unwrap_err(),
        NoCacheReason::Private
    );
    for bad in [
        r#"max-age=60, x="open, private"#,
        "max-age=60; private",
        "max-age=60, pri vate",
    ] {
        assert_eq!(
            admit_with(&ttl, &[], 200, &[("cache-control", bad)]).unwrap_err(),
            NoCacheReason::UnparsableCacheControl,
            "{bad}"
        );
    }
    // A targeted field that is not a valid Structured Field is ignored,
    // but what it says against sharing still holds.
    assert_eq!(
        admit_with(
            &ttl,
            &[],
            200,
            &[
                ("cdn-cache-control", "max-age=60, &&, private"),
                ("cache-control", "max-age=60")
            ]
        )
        .unwrap_err(),
        NoCacheReason::Private
    );
    assert_eq!(
        admit_with(
            &ttl,
            &[],
            200,
            &[
                ("cdn-cache-control", "max-age =60"),
                ("cache-control", "max-age=60")
            ]
        )
        .unwrap_err(),
        NoCacheReason::UnparsableCacheControl
    );
    // A valid targeted field with a quoted-pair still shows its private.
    assert_eq!(
        admit_with(
            &ttl,
            &[],
            200,
            &[
                ("cdn-cache-control", r#"x="a\"b", private"#),
                ("cache-control", "max-age=60")
            ]
        )
        .unwrap_err(),
        NoCacheReason::Private
    );
    // Set-Cookie2 is a Set-Cookie.
    assert_eq!(
        admit_with(&ttl, &[], 200, &[("set-cookie2", "a=b; Version=1")]).unwrap_err(),
        NoCacheReason::SetCookie
    );
}

#[test]
fn must_understand_lifts_no_store_for_the_statuses_the_cache_understands() {
    let bare = policy("");
    let mu = [("cache-control", "max-age=3600, no-store, must-understand")];
    // A status whose caching rules the cache implements: stored.
    for status in [200, 203, 204, 301, 404, 410] {
        let e = admit_with(&bare, &[], status, &mu).unwrap_or_else(|r| panic!("{status}: {r:?}"));
        if status < 400 {
            assert_eq!(e.freshness_lifetime, Duration::from_secs(3600));
        }
    }
    // One it does not know: never stored, with or without `no-store`.
    for status in [299, 599, 206] {
        assert!(admit_with(&bare, &[], status, &mu).is_err(), "{status}");
    }
    let alone = [("cache-control", "max-age=3600, must-understand")];
    assert_eq!(
        admit_with(&bare, &[], 599, &alone).unwrap_err(),
        NoCacheReason::Status
    );
    // It lifts `no-store` only: `private` still holds, and so does a
    // `no-store` in a targeted field the cache could not read.
    let private = [(
        "cache-control",
        "max-age=60, no-store, private, must-understand",
    )];
    assert!(admit_with(&bare, &[], 200, &private).is_err());
    let cdn = [
        ("cache-control", "max-age=60, must-understand"),
        ("cdn-cache-control", "no-store, max-age=\"1\""),
    ];
    assert_eq!(
        admit_with(&bare, &[], 200, &cdn).unwrap_err(),
        NoCacheReason::ResponseNoStore
    );
    // A value the parser cannot read stays unreadable.
    let broken = [("cache-control", "must-understand, max-age=60, \"")];
    assert!(admit_with(&bare, &[], 200, &broken).is_err());
}

/// [`super::admit_part`] of a GET of `/p` with `req_headers`.
fn admit_part_with(
    policy: &crate::policy::Policy,
    req_headers: &[(&str, &str)],
    status: u16,
    headers: &[(&str, &str)],
) -> Result<StoredResponse, NoCacheReason> {
    with_origin(req_headers, status, headers, |req, origin| {
        super::admit_part(policy, req, origin)
    })
}

#[test]
fn a_part_is_stored_only_with_one_strict_content_range_and_the_usual_rules() {
    let p = policy("");
    let range = [("range", "bytes=4-9")];
    const CC: (&str, &str) = ("cache-control", "max-age=60");
    const CR: (&str, &str) = ("content-range", "bytes 4-9/10");
    let (cc, cr) = (CC, CR);
    let e = admit_part_with(&p, &range, 206, &[cc, cr, ("content-length", "6")]).unwrap();
    assert_eq!(e.status, 206);
    assert_eq!(
        e.header("content-range").map(|v| &v[..]),
        Some(&b"bytes 4-9/10"[..])
    );
    assert_eq!(e.freshness_lifetime, Duration::from_secs(60));
    type Headers = &'static [(&'static str, &'static str)];
    let refused: &[(Headers, u16, Headers, NoCacheReason)] = &[
        (&[], 200, &[CC], NoCacheReason::Status),
        (&[], 206, &[CC], NoCacheReason::Status),
        (&[], 206, &[CC, CR, CR], NoCacheReason::Status),
        (
            &[],
            206,
            &[CC, ("content-range", "bytes 4-9/*")],
            NoCacheReason::Status,
        ),
        (
            &[],
            206,
            &[CC, ("content-range", "bytes 9-4/10")],
            NoCacheReason::Status,
        ),
        // The body the length announces is not the part's.
        (
            &[],
            206,
            &[CC, CR, ("content-length", "5")],
            NoCacheReason::Status,
        ),
        (
            &[],
            206,
            &[CC, CR, ("content-encoding", "gzip")],
            NoCacheReason::Status,
        ),
        (
            &[],
            206,
            &[CC, ("content-type", "multipart/byteranges; boundary=x")],
            NoCacheReason::Status,
        ),
        (
            &[],
            206,
            &[("cache-control", "no-store"), CR],
            NoCacheReason::ResponseNoStore,
        ),
        (
            &[],
            206,
            &[("cache-control", "private, max-age=60"), CR],
            NoCacheReason::Private,
        ),
        (
            &[],
            206,
            &[CC, CR, ("set-cookie", "a=b")],
            NoCacheReason::SetCookie,
        ),
        (&[], 206, &[CC, CR, ("vary", "*")], NoCacheReason::VaryStar),
        (
            &[("authorization", "Bearer x")],
            206,
            &[CC, CR],
            NoCacheReason::Authorization,
        ),
    ];
    for (req, status, headers, want) in refused {
        assert_eq!(
            admit_part_with(&p, req, *status, headers).unwrap_err(),
            *want,
            "{status} {headers:?}"
        );
    }
    // `identity` is no coding; a `Vary` is kept.
    let e = admit_part_with(
        &p,
        &range,
        206,
        &[cc, cr, ("content-encoding", "identity"), ("vary", "accept")],
    )
    .unwrap();
    assert_eq!(e.vary, ["accept"]);
    // The plain rules still refuse every 206.
    assert_eq!(
        admit_with(&p, &range, 206, &[cc, cr]).unwrap_err(),
        NoCacheReason::Status
    );
}
