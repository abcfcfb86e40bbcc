use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{serves_on_error, serves_when_unreachable, usability, Usability};
use crate::entry::StoredResponse;
use crate::http::cache_control::CacheControl;
use crate::http::testing::{admit_with, policy};
use crate::policy::Policy;
use crate::stats::NoCacheReason;

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

#[test]
fn an_unreachable_origin_gets_the_longer_window_but_never_past_revalidation() {
    let now = SystemTime::now();
    let mut e = StoredResponse::new(200, Bytes::new());
    e.stored_at = now - Duration::from_secs(100);
    e.freshness_lifetime = Duration::from_secs(10);
    let none = CacheControl::default();
    let window = Duration::from_secs(120);
    assert!(
        serves_when_unreachable(&e, &none, now, window),
        "90 s stale < 120"
    );
    assert!(!serves_when_unreachable(
        &e,
        &none,
        now,
        Duration::from_secs(90)
    ));
    assert!(!serves_when_unreachable(&e, &none, now, Duration::ZERO));
    assert!(!serves_on_error(&e, &none, now), "a 5xx is not unreachable");
    e.stale_if_error = Duration::from_secs(600);
    assert!(serves_when_unreachable(&e, &none, now, Duration::ZERO));
    let req_no_cache = CacheControl {
        no_cache: true,
        ..CacheControl::default()
    };
    assert!(!serves_when_unreachable(&e, &req_no_cache, now, window));
    e.no_cache = true;
    assert!(!serves_when_unreachable(&e, &none, now, window));
    e.no_cache = false;
    e.must_revalidate = true;
    assert!(!serves_when_unreachable(&e, &none, now, window));
}

#[test]
fn entries_are_kept_for_the_unreachable_window_only_when_it_could_serve() {
    let mut e = StoredResponse::new(200, Bytes::new());
    e.freshness_lifetime = Duration::from_secs(2);
    let plain = e.storage_ttl();
    assert_eq!(e.storage_ttl_with_unreachable(Duration::ZERO), plain);
    assert_eq!(
        e.storage_ttl_with_unreachable(Duration::from_secs(60)),
        Duration::from_secs(62)
    );
    e.must_revalidate = true;
    assert_eq!(
        e.storage_ttl_with_unreachable(Duration::from_secs(60)),
        plain
    );
    e.must_revalidate = false;
    e.no_cache = true;
    assert_eq!(
        e.storage_ttl_with_unreachable(Duration::from_secs(60)),
        plain
    );
    e.no_cache = false;
    e.stale_if_error = Duration::from_secs(600);
    assert_eq!(
        e.storage_ttl_with_unreachable(Duration::from_secs(60)),
        e.storage_ttl(),
        "never shorter than its own stale window"
    );
    assert!(e.storage_ttl_with_unreachable(Duration::MAX) <= Duration::from_secs(1 << 31));
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
