use super::*;
use proptest::prelude::*;

fn key_of(
    spec: &KeySpec,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &str)],
) -> CacheKey {
    let headers = headers.to_vec();
    spec.key(
        &RequestView::new(method, path, &headers)
            .query(query)
            .authority(Some("h"))
            .scheme(Some("http")),
        &[],
    )
}

#[test]
fn shape_and_determinism() {
    let spec = KeySpec::default();
    let k = key_of(&spec, "GET", "/e", Some("a=1"), &[]);
    assert_eq!(k.as_str().len(), "cache:".len() + 64);
    assert!(k.as_str()[6..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(k, key_of(&spec, "GET", "/e", Some("a=1"), &[]));
    let custom = KeySpec::new(
        &KeyConfig {
            prefix: "x:".into(),
            include_host: true,
        },
        &[],
    );
    assert!(key_of(&custom, "GET", "/e", None, &[])
        .as_str()
        .starts_with("x:"));
}

#[test]
fn seed_separator_collisions_cannot_happen() {
    // With a `|` join these two would have hashed the same text.
    let spec = KeySpec::new(&KeyConfig::default(), &["x".into()]);
    let a = key_of(&spec, "GET", "/p|x=1", None, &[]);
    let b = key_of(&spec, "GET", "/p", Some("x=1"), &[]);
    assert_ne!(a, b);
    let c = key_of(&KeySpec::default(), "GET", "/p", Some("a=1%26b%3D2"), &[]);
    let d = key_of(&KeySpec::default(), "GET", "/p", Some("a=1&b=2"), &[]);
    assert_ne!(c, d);
}

#[test]
fn host_scheme_method_class_and_headers() {
    let spec = KeySpec::default();
    let h: [(&str, &str); 0] = [];
    let base = RequestView::new("GET", "/e", &h);
    let k = |r: RequestView<'_>| spec.key(&r, &[]);
    assert_ne!(
        k(base.authority(Some("a.example"))),
        k(base.authority(Some("b.example")))
    );
    assert_eq!(
        k(base.authority(Some("A.example"))),
        k(base.authority(Some("a.example"))),
        "host is case-insensitive"
    );
    assert_ne!(k(base.scheme(Some("http"))), k(base.scheme(Some("https"))));
    assert_eq!(
        k(base),
        k(RequestView::new("HEAD", "/e", &h)),
        "HEAD shares GET entries"
    );
    assert_ne!(k(base), k(RequestView::new("POST", "/e", &h)));
    let no_host = KeySpec::new(
        &KeyConfig {
            prefix: "cache:".into(),
            include_host: false,
        },
        &[],
    );
    assert_eq!(
        no_host.key(&base.authority(Some("a")), &[]),
        no_host.key(&base.authority(Some("b")), &[])
    );
}

/// Without the host in the key, `http` and `https` still never share an
/// entry: an origin's answer to a plain request (such as its redirect to
/// `https`) would otherwise answer the TLS clients of the same path.
#[test]
fn keys_without_the_host_still_hold_the_scheme() {
    let h: [(&str, &str); 0] = [];
    let base = RequestView::new("GET", "/e", &h);
    let no_host = KeySpec::new(
        &KeyConfig {
            prefix: "cache:".into(),
            include_host: false,
        },
        &[],
    );
    assert_ne!(
        no_host.key(&base.scheme(Some("http")), &[]),
        no_host.key(&base.scheme(Some("https")), &[])
    );
    assert_eq!(
        no_host.key(&base, &[]),
        no_host.key(&base.scheme(Some("http")), &[]),
        "no scheme known is http"
    );
}

#[test]
fn accept_is_always_keyed_and_missing_differs_from_empty() {
    let spec = KeySpec::default();
    let json = key_of(&spec, "GET", "/e", None, &[("Accept", "application/json")]);
    let ld = key_of(
        &spec,
        "GET",
        "/e",
        None,
        &[("accept", "application/ld+json")],
    );
    let none = key_of(&spec, "GET", "/e", None, &[]);
    let empty = key_of(&spec, "GET", "/e", None, &[("accept", "")]);
    assert_ne!(json, ld);
    assert_ne!(none, empty);
    assert_ne!(json, none);
    // Headers not keyed do not matter.
    assert_eq!(
        none,
        key_of(&spec, "GET", "/e", None, &[("user-agent", "x")])
    );
}

#[test]
fn response_vary_headers_join_the_key() {
    let spec = KeySpec::default();
    static EN: [(&str, &str); 1] = [("accept-language", "en")];
    static FR: [(&str, &str); 1] = [("accept-language", "fr")];
    let (en, fr) = (&EN, &FR);
    let r = |h: &'static [(&'static str, &'static str); 1]| RequestView::new("GET", "/e", h);
    assert_eq!(spec.key(&r(en), &[]), spec.key(&r(fr), &[]));
    let vary = vec!["accept-language".to_string()];
    assert_ne!(spec.key(&r(en), &vary), spec.key(&r(fr), &vary));
}

/// A selecting header matches a stored variant in its normal form (RFC
/// 9111 section 4.1): white space around list commas, field lines combined,
/// the case and weights of `Accept-Language`; never its order, nor the
/// white space of a cookie.
#[test]
fn selecting_headers_match_in_normal_form() {
    let spec = KeySpec::default();
    let vary = [
        "accept-language".to_string(),
        "cookie".to_string(),
        "x-foo".to_string(),
    ];
    let k = |h: &[(&str, &str)]| {
        let h = h.to_vec();
        spec.key(&RequestView::new("GET", "/e", &h), &vary)
    };
    let base = k(&[
        ("accept-language", "en, de"),
        ("x-foo", "1,2"),
        ("cookie", "a=1"),
    ]);
    for same in [
        [
            ("accept-language", "eN, De"),
            ("x-foo", " 1, 2 "),
            ("cookie", "a=1"),
        ],
        [
            ("accept-language", " en ,   de"),
            ("x-foo", "1 ,2"),
            ("cookie", " a=1 "),
        ],
        [
            ("accept-language", "en;q=1.0, de"),
            ("x-foo", "1,2"),
            ("cookie", "a=1"),
        ],
    ] {
        assert_eq!(k(&same), base, "{same:?}");
    }
    // Lines combined.
    assert_eq!(
        k(&[
            ("accept-language", "en"),
            ("accept-language", "de"),
            ("x-foo", "1"),
            ("x-foo", "2"),
            ("cookie", "a=1")
        ]),
        base
    );
    for other in [
        [
            ("accept-language", "de, en"),
            ("x-foo", "1,2"),
            ("cookie", "a=1"),
        ],
        [
            ("accept-language", "en, de;q=0.5"),
            ("x-foo", "1,2"),
            ("cookie", "a=1"),
        ],
        [
            ("accept-language", "en, de"),
            ("x-foo", "1 2"),
            ("cookie", "a=1"),
        ],
        [
            ("accept-language", "en, de"),
            ("x-foo", "\"1, 2\""),
            ("cookie", "a=1"),
        ],
        [
            ("accept-language", "en, de"),
            ("x-foo", "1,2"),
            ("cookie", "a=1, b"),
        ],
    ] {
        assert_ne!(k(&other), base, "{other:?}");
    }
    let c = |v: &str| k(&[("cookie", v)]);
    assert_ne!(c("a=1, b=2"), c("a=1,b=2"), "a cookie is keyed as sent");
}

#[test]
fn body_hash_when_asked() {
    let spec = KeySpec::new(&KeyConfig::default(), &["body".into()]);
    assert!(spec.uses_body());
    let h: [(&str, &str); 0] = [];
    let r = |b: Option<&'static [u8]>| RequestView::new("POST", "/sparql", &h).body(b);
    assert_ne!(
        spec.key(&r(Some(b"SELECT 1")), &[]),
        spec.key(&r(Some(b"SELECT 2")), &[])
    );
    assert_ne!(spec.key(&r(Some(b"")), &[]), spec.key(&r(None), &[]));
    assert_eq!(spec.key(&r(Some(b"q")), &[]), spec.key(&r(Some(b"q")), &[]));
    // Without `body` in vary_by the body is ignored.
    let plain = KeySpec::default();
    assert_eq!(
        plain.key(&r(Some(b"SELECT 1")), &[]),
        plain.key(&r(Some(b"SELECT 2")), &[])
    );
}

#[test]
fn explicit_vary_forms() {
    let q = KeySpec::new(&KeyConfig::default(), &["query:type".into()]);
    assert_eq!(
        key_of(&q, "GET", "/e", Some("type=A"), &[("type", "1")]),
        key_of(&q, "GET", "/e", Some("type=A"), &[("type", "2")])
    );
    let h = KeySpec::new(&KeyConfig::default(), &["header:X-Tenant".into()]);
    assert_ne!(
        key_of(&h, "GET", "/e", None, &[("x-tenant", "a")]),
        key_of(&h, "GET", "/e", None, &[("x-tenant", "b")])
    );
    // header-only vary_by keeps every query parameter.
    assert_ne!(
        key_of(&h, "GET", "/e", Some("a=1"), &[]),
        key_of(&h, "GET", "/e", Some("a=2"), &[])
    );
}

fn token() -> impl Strategy<Value = String> {
    "[a-z0-9_%.-]{0,8}"
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    // Distinct names: reordering then changes no name's value order.
    proptest::collection::btree_map("[a-z]{1,6}", token(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

fn join(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

proptest! {
    #[test]
    fn parameter_order_does_not_matter(p in params(), seed in any::<u64>()) {
        let mut shuffled = p.clone();
        // A deterministic shuffle driven by the seed.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        let spec = KeySpec::default();
        let (a, b) = (join(&p), join(&shuffled));
        prop_assert_eq!(key_of(&spec, "GET", "/e", Some(&a), &[]), key_of(&spec, "GET", "/e", Some(&b), &[]));
    }

    #[test]
    fn any_differing_keyed_part_gives_a_different_key(
        path1 in "/[a-z/]{0,10}", path2 in "/[a-z/]{0,10}",
        p1 in params(), p2 in params(),
        acc1 in proptest::option::of(token()), acc2 in proptest::option::of(token()),
        host1 in "[a-z]{1,5}", host2 in "[a-z]{1,5}",
        body1 in proptest::collection::vec(any::<u8>(), 0..8), body2 in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let spec = KeySpec::new(&KeyConfig::default(), &["body".into(), "header:x-t".into()]);
        let h1: Vec<(&str, &str)> = acc1.iter().map(|a| ("accept", a.as_str())).collect();
        let h2: Vec<(&str, &str)> = acc2.iter().map(|a| ("accept", a.as_str())).collect();
        let (q1, q2) = (join(&p1), join(&p2));
        let r1 = RequestView::new("GET", &path1, &h1).query(Some(&q1)).authority(Some(&host1)).body(Some(&body1));
        let r2 = RequestView::new("GET", &path2, &h2).query(Some(&q2)).authority(Some(&host2)).body(Some(&body2));
        let same = path1 == path2 && p1 == p2 && acc1 == acc2 && host1 == host2 && body1 == body2;
        prop_assert_eq!(spec.key(&r1, &[]) == spec.key(&r2, &[]), same);
    }

    #[test]
    fn vary_by_exclusions_are_ignored_and_inclusions_are_not(
        kept in token(), kept2 in token(), ignored1 in token(), ignored2 in token(),
    ) {
        let spec = KeySpec::new(&KeyConfig::default(), &["type".into()]);
        let k = |t: &str, o: &str| key_of(&spec, "GET", "/e", Some(&format!("offset={o}&type={t}")), &[]);
        prop_assert_eq!(k(&kept, &ignored1), k(&kept, &ignored2));
        prop_assert_eq!(k(&kept, &ignored1) == k(&kept2, &ignored1), kept == kept2);
    }
}

#[test]
fn a_trusted_proxys_prefix_and_port_are_keyed_and_nobody_elses_change_the_key() {
    let spec = KeySpec::default();
    let key = |headers: &[(&str, &str)], trusted: bool| {
        let headers = headers.to_vec();
        let mut v = RequestView::new("GET", "/e", &headers)
            .authority(Some("h"))
            .scheme(Some("http"));
        v.via_trusted_proxy = trusted;
        spec.key(&v, &[])
    };
    let plain = key(&[], false);
    assert_eq!(key(&[], true), plain, "nothing forwarded: the same entry");
    let a = key(&[("x-forwarded-prefix", "/a")], true);
    let b = key(&[("x-forwarded-prefix", "/b")], true);
    let port = key(&[("x-forwarded-port", "8443")], true);
    let url = key(&[("x-original-url", "/other")], true);
    assert!(a != b && a != plain && port != plain && url != plain && a != port);
    // Per-client addresses never split entries.
    assert_eq!(
        key(
            &[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "1.2.3.4")],
            true
        ),
        plain
    );
    // A request no trusted proxy sent is keyed as before (adapters removed
    // its forwarding headers anyway).
    assert_eq!(key(&[("x-forwarded-prefix", "/a")], false), plain);
}

#[test]
fn the_key_of_parts_is_another_key_with_the_same_prefix() {
    let spec = KeySpec::default();
    let h: [(&str, &str); 0] = [];
    let key = spec.key(&RequestView::new("GET", "/a", &h), &[]);
    let part = key.part();
    assert_ne!(part, key);
    assert_eq!(part, key.part(), "the same for every request");
    assert_eq!(part.as_str().len(), key.as_str().len());
    assert!(part.as_str().starts_with("cache:"));
    assert_ne!(part.part(), part);
    let other = spec.key(&RequestView::new("GET", "/b", &h), &[]);
    assert_ne!(other.part(), part);
}

/// Keys are what stores hold entries under, across versions (a disk or
/// Redis store outlives the process): these requests keep these keys.
#[test]
fn keys_stay_as_stored_by_earlier_versions() {
    let spec = KeySpec::new(
        &KeyConfig::default(),
        &["x-tenant".to_owned(), "accept-language".to_owned()],
    );
    let headers = [
        ("Accept", "application/json"),
        ("X-Tenant", "a"),
        ("Accept-Language", "de, en;q=0.5"),
    ];
    let req = RequestView::new("GET", "/e/1", &headers)
        .query(Some("x-tenant=7&b=2"))
        .authority(Some("API.Example:8080"))
        .scheme(Some("https"));
    let plain = spec.key(&req, &[]);
    let varied = spec.key(&req, &["content-type".to_owned(), "accept".to_owned()]);
    let target = spec.target_tag(&req);
    assert_eq!(
        [plain.as_str(), varied.as_str(), target.as_str()],
        [
            "cache:4f6a2b7243c2214243eacfdd230f7e48692c91c81e61ff0b010cf314d883644b",
            "cache:55425caf376490e76e14d6f36c6736a7705ede3a591699780d702194f7729baf",
            "target:1cc9995fd0e1019a8a9d8ab0d22d2b0d"
        ]
    );
}

proptest! {
    #[test]
    fn hashing_in_lower_case_is_hashing_the_lowered_copy(bytes in proptest::collection::vec(any::<u8>(), 0..300), tag in any::<u8>()) {
        let mut a = Sha256::new();
        field_lower(&mut a, tag, &bytes);
        let mut b = Sha256::new();
        field(&mut b, tag, &bytes.to_ascii_lowercase());
        prop_assert_eq!(a.finalize(), b.finalize());
    }
}
