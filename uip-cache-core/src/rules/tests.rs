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
    let list: Vec<(String, Bytes)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), Bytes::from(v.to_string())))
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
    let names: Vec<_> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
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
    assert!(!serves_on_error(&e, now));
    e.stale_if_error = Duration::from_secs(50);
    assert!(serves_on_error(&e, now));
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
fn locations_on_the_same_host_only() {
    assert_eq!(same_host_path("/items/7", None), Some("/items/7".into()));
    assert_eq!(
        same_host_path("http://api.local/items/7?x=1", Some("api.local")),
        Some("/items/7?x=1".into())
    );
    assert_eq!(
        same_host_path("https://API.local", Some("api.local")),
        Some("/".into())
    );
    assert_eq!(
        same_host_path("http://other.host/items", Some("api.local")),
        None
    );
    assert_eq!(same_host_path("items/7", Some("api.local")), None);
}
