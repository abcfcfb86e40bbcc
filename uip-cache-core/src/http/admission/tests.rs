use super::*;
use crate::{CacheConfig, PolicySet};

fn policy(yaml_fields: &str) -> Policy {
    let c = CacheConfig::from_yaml_str(&format!(
        "policies:\n  - name: p\n    pattern: /p\n{yaml_fields}"
    ))
    .unwrap();
    PolicySet::compile(&c)
        .unwrap()
        .iter()
        .next()
        .unwrap()
        .clone()
}

fn admit_with(
    policy: &Policy,
    req_headers: &[(&str, &str)],
    status: u16,
    headers: &[(&str, &str)],
) -> Result<StoredResponse, NoCacheReason> {
    let req_h = req_headers.to_vec();
    let req = RequestView::new("GET", "/p", &req_h);
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let list: Vec<(FieldName, Bytes)> = headers
        .iter()
        .map(|(n, v)| (n.to_string().into(), Bytes::from(v.to_string())))
        .collect();
    let now = SystemTime::now();
    admit(
        policy,
        &req,
        &OriginResponse::new(status, &h, &list, now, now),
    )
}

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
fn freshness_sources_and_ttl_modes() {
    let with_ttl = policy("    ttl: 60\n");
    let no_ttl = policy("");
    let overriding = policy("    ttl: 60\n    ttl_mode: override\n");
    let fresh = |p: &Policy, h: &[(&str, &str)]| {
        admit_with(p, &[], 200, h).map(|e| e.freshness_lifetime.as_secs())
    };
    assert_eq!(
        fresh(&with_ttl, &[]),
        Ok(60),
        "policy ttl when the origin is silent"
    );
    assert_eq!(
        fresh(&with_ttl, &[("cache-control", "max-age=5")]),
        Ok(5),
        "origin wins by default"
    );
    assert_eq!(
        fresh(&with_ttl, &[("cache-control", "max-age=5, s-maxage=7")]),
        Ok(7),
        "s-maxage first"
    );
    assert_eq!(
        fresh(&overriding, &[("cache-control", "max-age=5")]),
        Ok(60),
        "override"
    );
    assert_eq!(fresh(&no_ttl, &[]), Err(NoCacheReason::NoFreshness));
    assert_eq!(fresh(&no_ttl, &[("cache-control", "max-age=9")]), Ok(9));
    let date = httpdate::fmt_http_date(SystemTime::now());
    let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let e = fresh(&no_ttl, &[("date", &date), ("expires", &expires)]).unwrap();
    assert!((118..=120).contains(&e), "{e}");
    assert_eq!(
        fresh(&no_ttl, &[("expires", "0")]),
        Err(NoCacheReason::NoFreshness),
        "invalid Expires is stale"
    );
    // no-cache with a validator is stored, to be revalidated each time.
    let e = admit_with(
        &no_ttl,
        &[],
        200,
        &[("cache-control", "no-cache"), ("etag", "\"v\"")],
    )
    .unwrap();
    assert!(e.no_cache);
}

#[test]
fn age_stale_windows_and_revalidation_flags() {
    let p = policy("    ttl: 60\n    stale_while_revalidate: 10\n");
    let e = admit_with(
        &p,
        &[],
        200,
        &[
            ("age", "20"),
            (
                "cache-control",
                "max-age=60, stale-if-error=99, must-revalidate",
            ),
        ],
    )
    .unwrap();
    assert!(e.initial_age >= Duration::from_secs(20));
    assert_eq!(e.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(e.stale_if_error, Duration::from_secs(99));
    assert!(e.must_revalidate);
    assert!(
        admit_with(&p, &[], 200, &[("cache-control", "s-maxage=5")])
            .unwrap()
            .must_revalidate
    );
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
fn usability_follows_request_directives() {
    let now = SystemTime::now();
    let mut e = StoredResponse::new(200, Bytes::new());
    e.stored_at = now - Duration::from_secs(30);
    e.freshness_lifetime = Duration::from_secs(60);
    let cc = |s: &str| CacheControl::parse([s.as_bytes()]);
    assert_eq!(usability(&e, &cc(""), now), Usability::Fresh);
    assert_eq!(usability(&e, &cc("max-age=10"), now), Usability::Stale);
    assert_eq!(usability(&e, &cc("min-fresh=40"), now), Usability::Stale);
    assert_eq!(usability(&e, &cc("no-cache"), now), Usability::Stale);
    e.stored_at = now - Duration::from_secs(70);
    assert_eq!(usability(&e, &cc(""), now), Usability::Stale);
    assert_eq!(
        usability(&e, &cc("max-stale=20"), now),
        Usability::StaleAccepted
    );
    assert_eq!(usability(&e, &cc("max-stale=5"), now), Usability::Stale);
    e.stale_while_revalidate = Duration::from_secs(30);
    assert_eq!(usability(&e, &cc(""), now), Usability::StaleWhileRevalidate);
    e.must_revalidate = true;
    assert_eq!(usability(&e, &cc("max-stale"), now), Usability::Stale);
    e.must_revalidate = false;
    e.stale_if_error = Duration::from_secs(5);
    assert!(!serves_on_error(&e, &CacheControl::default(), now));
    e.stale_if_error = Duration::from_secs(50);
    assert!(serves_on_error(&e, &CacheControl::default(), now));
}

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
fn accept_encoding() {
    let a = |v: &str| accepts_gzip(&vec![("accept-encoding", v)]);
    assert!(a("gzip"));
    assert!(a("br, GZIP;q=0.5"));
    assert!(a("*"));
    assert!(!a("gzip;q=0"));
    assert!(!a("br, deflate"));
    assert!(!accepts_gzip(&Vec::<(String, String)>::new()));
}

#[test]
fn locations_on_the_same_origin_only() {
    let t = |l: &str, a: Option<&str>| same_origin_target(l, Some("http"), a, "/items/7");
    assert_eq!(t("/items/7", None), Some("/items/7".into()));
    assert_eq!(
        t("http://api.local/items/7?x=1", Some("api.local")),
        Some("/items/7?x=1".into())
    );
    assert_eq!(t("HTTP://API.local", Some("api.local")), Some("/".into()));
    assert_eq!(
        t("http://api.local:80/a", Some("api.local")),
        Some("/a".into())
    );
    assert_eq!(
        t("http://u@api.local/a#f", Some("api.local")),
        Some("/a".into())
    );
    assert_eq!(t("http://api.local:8080/a", Some("api.local")), None);
    assert_eq!(t("http://api.local/a", Some("api.local:8080")), None);
    assert_eq!(
        t("http://api.local:8080/a", Some("API.local:8080")),
        Some("/a".into())
    );
    // The scheme is not compared (the purge does not tell schemes apart);
    // each side's default port is its own scheme's.
    assert_eq!(
        t("https://api.local/items", Some("api.local")),
        Some("/items".into())
    );
    assert_eq!(
        t("https://api.local:443/i", Some("api.local:80")),
        Some("/i".into())
    );
    assert_eq!(t("https://api.local:80/i", Some("api.local")), None);
    // Another host or port, or no authority to compare with: not ours.
    assert_eq!(t("http://other.host/items", Some("api.local")), None);
    assert_eq!(t("//other.host/items", Some("api.local")), None);
    assert_eq!(t("https://other.host/items", Some("api.local")), None);
    assert_eq!(t("http://api.local/items", None), None);
    assert_eq!(t("http:items", Some("api.local")), None);
    assert_eq!(t("mailto:a@api.local", Some("api.local")), None);
    assert_eq!(t("", Some("api.local")), None);
    assert_eq!(t("#frag", Some("api.local")), None);
    // Relative references resolve against the target.
    assert_eq!(t("8", None), Some("/items/8".into()));
    assert_eq!(t("./8?a=1", None), Some("/items/8?a=1".into()));
    assert_eq!(t("../../../x", None), Some("/x".into()));
    assert_eq!(t("?page=2", None), Some("/items/7?page=2".into()));
    assert_eq!(t("/a/b/../c/./d/..", None), Some("/a/c/".into()));
    assert_eq!(t("//api.local", Some("api.local")), Some("/".into()));
}

// ===== rules from the correctness review =====

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

#[test]
fn a_validator_alone_is_stored_to_be_revalidated() {
    let bare = policy("");
    let e = admit_with(&bare, &[], 200, &[("etag", "\"a\"")]).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::ZERO);
    assert!(!e.is_fresh(SystemTime::now()));
    assert!(e.storage_ttl() >= crate::entry::REVALIDATION_GRACE);
    assert_eq!(
        admit_with(&bare, &[], 200, &[]).unwrap_err(),
        NoCacheReason::NoFreshness
    );
    // A max-age of a second keeps a validated entry long enough to revalidate.
    let e = admit_with(
        &bare,
        &[],
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"a\"")],
    )
    .unwrap();
    assert!(e.storage_ttl() >= crate::entry::REVALIDATION_GRACE);
}

#[test]
fn heuristic_freshness_from_last_modified() {
    let bare = policy("");
    let now = SystemTime::now();
    let lm = httpdate::fmt_http_date(now - Duration::from_secs(1000));
    let date = httpdate::fmt_http_date(now);
    let e = admit_with(&bare, &[], 200, &[("last-modified", &lm), ("date", &date)]).unwrap();
    assert!((99..=101).contains(&e.freshness_lifetime.as_secs()));
}

#[test]
fn expires_in_every_format_and_case_and_invalid_means_stale() {
    let bare = policy("");
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
    let rfc850 = {
        // "Sunday, 06-Nov-94 08:49:37 GMT" shape with the real date.
        let t = crate::http::date::parse_http_date(later.as_bytes()).unwrap();
        let imf = httpdate::fmt_http_date(t);
        let parts: Vec<&str> = imf.split(' ').collect();
        let day = match parts[0] {
            "Mon," => "Monday,",
            "Tue," => "Tuesday,",
            "Wed," => "Wednesday,",
            "Thu," => "Thursday,",
            "Fri," => "Friday,",
            "Sat," => "Saturday,",
            _ => "Sunday,",
        };
        format!(
            "{day} {}-{}-{} {} GMT",
            parts[1],
            parts[2],
            &parts[3][2..],
            parts[4]
        )
    };
    for exp in [later.clone(), later.to_ascii_uppercase(), rfc850] {
        let e = admit_with(&bare, &[], 200, &[("expires", &exp), ("date", &date)]).unwrap();
        assert!(
            (119..=120).contains(&e.freshness_lifetime.as_secs()),
            "{exp}"
        );
    }
    assert_eq!(
        admit_with(&bare, &[], 200, &[("expires", "0"), ("date", &date)]).unwrap_err(),
        NoCacheReason::NoFreshness
    );
}

#[test]
fn age_lists_take_their_first_member_and_huge_values_clamp() {
    let bare = policy("");
    let e = admit_with(
        &bare,
        &[],
        200,
        &[("cache-control", "max-age=600"), ("age", "10, 50")],
    )
    .unwrap();
    assert_eq!(e.initial_age.as_secs(), 10);
    let e = admit_with(
        &bare,
        &[],
        200,
        &[
            (
                "cache-control",
                "max-age=99999999999999999999, stale-while-revalidate=99999999999999999999",
            ),
            ("age", "18446744073709551615"),
        ],
    )
    .unwrap();
    assert_eq!(e.freshness_lifetime, crate::http::date::MAX_DELTA);
    assert_eq!(e.initial_age, crate::http::date::MAX_DELTA);
    assert!(!e.is_fresh(SystemTime::now()));
    assert!(e.storage_ttl() <= crate::http::date::MAX_DELTA);
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
fn stale_if_error_does_not_override_no_cache_or_must_revalidate() {
    let now = SystemTime::now();
    let mut e = StoredResponse::new(200, Bytes::new());
    e.stored_at = now - Duration::from_secs(100);
    e.freshness_lifetime = Duration::from_secs(10);
    e.stale_if_error = Duration::from_secs(600);
    let none = CacheControl::default();
    assert!(serves_on_error(&e, &none, now));
    let req_no_cache = CacheControl {
        no_cache: true,
        ..CacheControl::default()
    };
    assert!(!serves_on_error(&e, &req_no_cache, now));
    e.no_cache = true;
    assert!(!serves_on_error(&e, &none, now));
    e.no_cache = false;
    e.must_revalidate = true;
    assert!(!serves_on_error(&e, &none, now));
}

fn origin_304<'a>(
    list: &'a [(FieldName, Bytes)],
    h: &'a Vec<(String, String)>,
    now: SystemTime,
) -> OriginResponse<'a> {
    OriginResponse::new(304, h, list, now, now)
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

// ===== one request must not make an error everyone's answer (CPDoS) =====

#[test]
fn an_error_lives_on_a_policy_ttl_only_when_listed_and_then_for_negative_ttl() {
    // The origin's 405 to `X-HTTP-Method-Override: DELETE`, no freshness.
    let ttl = policy("    ttl: 60\n");
    assert_eq!(
        admit_with(&ttl, &[], 405, &[]).unwrap_err(),
        NoCacheReason::Status
    );
    let over = policy("    ttl: 60\n    ttl_mode: override\n");
    assert_eq!(
        admit_with(&over, &[], 405, &[("cache-control", "max-age=600")]).unwrap_err(),
        NoCacheReason::Status
    );
    // Listed: on the TTL, for at most negative_ttl.
    let listed = policy("    ttl: 60\n    statuses: [200, 404]\n    negative_ttl: 5s\n");
    let e = admit_with(&listed, &[], 404, &[]).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(5));
    assert_eq!(
        admit_with(&listed, &[], 200, &[])
            .unwrap()
            .freshness_lifetime,
        Duration::from_secs(60)
    );
    assert_eq!(
        admit_with(&listed, &[], 405, &[]).unwrap_err(),
        NoCacheReason::Status
    );
    // The origin's own freshness on an error: capped too.
    let e = admit_with(&ttl, &[], 405, &[("cache-control", "max-age=3600")]).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(10));
    let e = admit_with(&ttl, &[], 404, &[("cache-control", "max-age=3")]).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(3));
    // Heuristic freshness (no ttl): the RFC's list, errors capped.
    let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(86_400));
    for status in [404, 405, 410, 414, 501] {
        let e = admit_with(&policy(""), &[], status, &[("last-modified", &lm)]).unwrap();
        assert_eq!(e.freshness_lifetime, Duration::from_secs(10), "{status}");
    }
    // negative_ttl 0: an error is never fresh; without a validator, not kept.
    let never = policy("    negative_ttl: 0\n");
    assert_eq!(
        admit_with(&never, &[], 404, &[("cache-control", "max-age=60")]).unwrap_err(),
        NoCacheReason::NoFreshness
    );
}

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
fn method_overrides_and_request_bodies_are_seen() {
    let h = [("x-http-method-override", "DELETE")];
    assert!(has_method_override(&RequestView::new("GET", "/p", &h)));
    for name in ["X-HTTP-Method", "x-method-override"] {
        let h = [(name, "PUT")];
        assert!(
            has_method_override(&RequestView::new("GET", "/p", &h)),
            "{name}"
        );
    }
    let none: [(&str, &str); 0] = [];
    for q in [
        "_method=DELETE",
        "a=1&_METHOD=put",
        "%5Fmethod=DELETE",
        "a&_method",
    ] {
        let v = RequestView::new("GET", "/p", &none).query(Some(q));
        assert!(has_method_override(&v), "{q}");
    }
    for q in [
        "method=x",
        "a_method=x",
        "_methods=x",
        "x=_method",
        "%5Fmethod%",
    ] {
        let v = RequestView::new("GET", "/p", &none).query(Some(q));
        assert!(!has_method_override(&v), "{q}");
    }
    assert!(!has_method_override(&RequestView::new("GET", "/p", &none)));

    assert!(!carries_body(&RequestView::new("GET", "/p", &none)));
    assert!(carries_body(
        &RequestView::new("GET", "/p", &none).has_body(true)
    ));
    for (n, v, body) in [
        ("content-length", "0", false),
        ("content-length", "00", false),
        ("content-length", "12", true),
        ("content-length", "x", true),
        ("content-length", "", true),
        ("transfer-encoding", "chunked", true),
    ] {
        let h = [(n, v)];
        assert_eq!(
            carries_body(&RequestView::new("GET", "/p", &h)),
            body,
            "{n}: {v}"
        );
    }
}

#[test]
fn the_stale_windows_of_an_error_are_capped_at_negative_ttl() {
    let p = policy("    ttl: 60\n    stale_while_revalidate: 300\n    stale_if_error: 600\n");
    let cc = (
        "cache-control",
        "max-age=3600, stale-while-revalidate=900, stale-if-error=900",
    );
    let e = admit_with(&p, &[], 404, &[cc]).unwrap();
    assert_eq!(e.freshness_lifetime, Duration::from_secs(10));
    assert_eq!(e.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(e.stale_if_error, Duration::from_secs(10));
    // A 200 keeps its windows.
    let e = admit_with(&p, &[], 200, &[cc]).unwrap();
    assert_eq!(e.stale_while_revalidate, Duration::from_secs(900));
    assert_eq!(e.stale_if_error, Duration::from_secs(900));
}

#[test]
fn method_override_headers_spelt_with_underscores_are_seen() {
    // CGI, WSGI and Rack servers read `X_HTTP_Method_Override` as
    // `X-HTTP-Method-Override` (both are HTTP_X_HTTP_METHOD_OVERRIDE).
    for name in [
        "X_HTTP_Method_Override",
        "x-http_method-override",
        "X_HTTP_METHOD",
        "x_method-override",
        "X-Method_Override",
    ] {
        let h = [(name, "DELETE")];
        assert!(
            has_method_override(&RequestView::new("GET", "/p", &h)),
            "{name}"
        );
    }
    for name in ["x-http-method-overrides", "x_http_method_", "xhttp-method"] {
        let h = [(name, "DELETE")];
        assert!(
            !has_method_override(&RequestView::new("GET", "/p", &h)),
            "{name}"
        );
    }
}
