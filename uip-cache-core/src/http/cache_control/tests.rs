use super::*;

fn cc(s: &str) -> CacheControl {
    CacheControl::parse([s.as_bytes()])
}

#[test]
fn table() {
    let cases: &[(&str, CacheControl)] = &[
        (
            "max-age=60",
            CacheControl {
                max_age: Some(60),
                ..Default::default()
            },
        ),
        (
            "MAX-AGE=60, Public",
            CacheControl {
                max_age: Some(60),
                public: true,
                ..Default::default()
            },
        ),
        (
            "max-age=\"30\"",
            CacheControl {
                max_age: Some(30),
                ..Default::default()
            },
        ),
        (
            "max-age=abc",
            CacheControl {
                max_age: Some(0),
                ..Default::default()
            },
        ),
        (
            "max-age=-1",
            CacheControl {
                max_age: Some(0),
                ..Default::default()
            },
        ),
        (
            "max-age=99999999999999999999999",
            CacheControl {
                max_age: Some(crate::http::date::MAX_DELTA_SECONDS),
                ..Default::default()
            },
        ),
        (
            "s-maxage=10, max-age=5",
            CacheControl {
                s_maxage: Some(10),
                max_age: Some(5),
                ..Default::default()
            },
        ),
        (
            "no-store",
            CacheControl {
                no_store: true,
                ..Default::default()
            },
        ),
        (
            "no-cache=\"set-cookie, x-a\"",
            CacheControl {
                no_cache: true,
                ..Default::default()
            },
        ),
        (
            "private=\"x\", max-age=9",
            CacheControl {
                private: true,
                max_age: Some(9),
                ..Default::default()
            },
        ),
        (
            "must-revalidate,proxy-revalidate",
            CacheControl {
                must_revalidate: true,
                proxy_revalidate: true,
                ..Default::default()
            },
        ),
        (
            "max-stale",
            CacheControl {
                max_stale: Some(None),
                ..Default::default()
            },
        ),
        (
            "max-stale=20",
            CacheControl {
                max_stale: Some(Some(20)),
                ..Default::default()
            },
        ),
        (
            "min-fresh=5, only-if-cached",
            CacheControl {
                min_fresh: Some(5),
                only_if_cached: true,
                ..Default::default()
            },
        ),
        (
            "stale-while-revalidate=30, stale-if-error=600",
            CacheControl {
                stale_while_revalidate: Some(30),
                stale_if_error: Some(600),
                ..Default::default()
            },
        ),
        ("unknown, foo=bar, , immutable", CacheControl::default()),
        ("", CacheControl::default()),
    ];
    for (text, want) in cases {
        assert_eq!(cc(text), *want, "{text}");
    }
}

#[test]
fn from_headers_reads_every_value_like_parse() {
    let headers = [
        ("Cache-Control", "max-age=10, public"),
        ("x-other", "no-store"),
        ("cache-control", "no-cache"),
    ];
    let cc = CacheControl::from_headers(&headers);
    assert_eq!(
        cc,
        CacheControl::parse([&b"max-age=10, public"[..], &b"no-cache"[..]])
    );
    assert!(cc.no_cache && cc.public && !cc.no_store);
    assert_eq!(
        CacheControl::from_headers(&[("a", "b")]),
        CacheControl::default()
    );
}

#[test]
fn targeted_fields_must_be_valid_structured_fields() {
    for ok in [
        "max-age=60",
        "no-store",
        "max-age=60, private",
        "s-maxage=5;x=1",
        "a=?1, b=\"s\", c=tok",
        r#"a="x\"y, z", private"#,
    ] {
        assert!(is_valid_targeted(ok), "{ok}");
    }
    for bad in [
        "max-age=10000, &&&&&",
        "max-age=\"10000\"",
        "Max-Age=1",
        "max-age=1.5",
        "max-age=-1",
        "x=\"open",
        "max-age =1",
        "max-age= 1",
        r#"a="\x""#,
    ] {
        assert!(!is_valid_targeted(bad), "{bad}");
    }
}

#[test]
fn several_header_values_combine() {
    let c = CacheControl::parse([&b"max-age=10"[..], &b"no-cache"[..]]);
    assert_eq!(c.max_age, Some(10));
    assert!(c.no_cache);
    let bad = CacheControl::parse([&b"max-age=10"[..], &[0xff, 0xfe][..]]);
    assert!(bad.unparsable && bad.no_store, "{bad:?}");
}

#[test]
fn quoted_pairs_do_not_hide_what_follows() {
    for text in [
        r#"max-age=60, x="a\"b", private"#,
        r#"max-age=60, x="a\\", private"#,
        r#"max-age=60, x="\"", private"#,
        r#"max-age=60, x="a,b\\\"c, d=\"e", private"#,
        "max-age=60, x=\"\t\u{e9}\", private",
    ] {
        let c = cc(text);
        assert!(c.private && !c.unparsable, "{text}: {c:?}");
        assert_eq!(c.max_age, Some(60), "{text}");
    }
    // Directive names inside a quoted string are not directives.
    let c = cc(r#"x="\", no-store, private=\"", max-age=5"#);
    assert!(!c.no_store && !c.private && !c.unparsable, "{c:?}");
    assert_eq!(c.max_age, Some(5));
    // An escaped argument is read unescaped.
    assert_eq!(cc(r#"max-age="\6\0""#).max_age, Some(60));
}

#[test]
fn what_cannot_be_read_with_certainty_is_no_store() {
    for text in [
        r#"max-age=60, x="open, private"#,
        r#"max-age=60, x="a\"#,
        "max-age=60; private",
        "max-age =60",
        "max-age= 60",
        "max-age=",
        "=60",
        "max age=60",
        "max-age=60 public",
        "max-age=60, @",
        r#"max-age="60"x, private"#,
        "max-age=60, \u{1}",
        "max-age=60, x=\"\u{7f}\"",
        "max-age=60, x=\"a\nb\"",
        "max-age=6\u{e9}",
    ] {
        let c = cc(text);
        assert!(c.unparsable && c.no_store, "{text:?}: {c:?}");
    }
    // One bad value among several taints them all.
    let c = CacheControl::parse([&b"public, max-age=60"[..], &b"x=\"y"[..]]);
    assert!(c.unparsable && c.no_store && c.public);
    // Empty elements and white space around commas are fine.
    for text in [" , max-age=1 ,\tpublic ,", "", " ", ",,"] {
        assert!(!cc(text).unparsable, "{text:?}");
    }
}

mod properties {
    use super::super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A directive's name and argument, owned.
    type Owned = (Vec<u8>, Option<Vec<u8>>);

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    /// Bytes a quoted-string may carry (HTAB, SP, VCHAR, obs-text).
    fn quotable() -> impl Strategy<Value = Vec<u8>> {
        vec(
            prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
            0..24,
        )
    }

    /// `bytes` as a quoted-string: `"` and `\\` always escaped, any
    /// other byte escaped where `escape_all` says.
    fn quote(bytes: &[u8], escape_all: bool) -> Vec<u8> {
        let mut out = vec![b'"'];
        for &b in bytes {
            if b == b'"' || b == b'\\' || escape_all {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    }

    fn ows() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")]
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(v in vec(any::<u8>(), 0..96)) {
            let c = CacheControl::parse([&v[..]]);
            prop_assert!(!c.unparsable || c.no_store);
            let _ = Directives::new(&v).count();
            let _ = is_valid_targeted(&String::from_utf8_lossy(&v));
        }

        #[test]
        fn cache_control_like_text_never_panics(
            v in r#"([a-z-]{0,8}(=("[^"]{0,6}"?|[0-9a-z]{0,4}))?[ ,;\\"]{0,2}){0,6}"#
        ) {
            let c = CacheControl::parse([v.as_bytes()]);
            prop_assert!(!c.unparsable || c.no_store);
            let _ = is_valid_targeted(&v);
        }

        #[test]
        fn a_directive_after_any_quoted_string_is_found(
            before in vec((token(), quotable(), any::<bool>()), 0..4),
            after in prop_oneof![Just("private"), Just("no-store"), Just("PRIVATE")],
            (pre, post) in (ows(), ows()),
        ) {
            let mut value = Vec::new();
            for (name, arg, escape_all) in &before {
                value.extend_from_slice(name.as_bytes());
                value.push(b'=');
                value.extend(quote(arg, *escape_all));
                value.extend_from_slice(format!("{pre},{post}").as_bytes());
            }
            value.extend_from_slice(after.as_bytes());
            let c = CacheControl::parse([&value[..]]);
            prop_assert!(!c.unparsable, "{}", String::from_utf8_lossy(&value));
            if after == "no-store" {
                prop_assert!(c.no_store);
            } else {
                prop_assert!(c.private, "{}", String::from_utf8_lossy(&value));
            }
        }

        #[test]
        fn directive_lists_round_trip(
            list in vec((token(), proptest::option::of((quotable(), any::<u8>()))), 0..6),
            (pre, post) in (ows(), ows()),
        ) {
            let mut value = Vec::new();
            for (i, (name, arg)) in list.iter().enumerate() {
                if i > 0 {
                    value.extend_from_slice(format!("{pre},{post}").as_bytes());
                }
                value.extend_from_slice(name.as_bytes());
                if let Some((arg, how)) = arg {
                    value.push(b'=');
                    // A token argument as a token, now and then.
                    if how % 3 == 0 && !arg.is_empty() && arg.iter().all(|&b| is_tchar(b)) {
                        value.extend_from_slice(arg);
                    } else {
                        value.extend(quote(arg, how % 2 == 0));
                    }
                }
            }
            let parsed: Result<Vec<Owned>, Unparsable> = Directives::new(&value)
                .map(|d| d.map(|d| (d.name.to_vec(), d.arg.map(|a| a.into_owned()))))
                .collect();
            let want: Vec<Owned> = list
                .iter()
                .map(|(n, a)| (n.as_bytes().to_vec(), a.as_ref().map(|(a, _)| a.clone())))
                .collect();
            prop_assert_eq!(parsed, Ok(want), "{}", String::from_utf8_lossy(&value));
        }

        #[test]
        fn known_directives_round_trip(
            max_age in proptest::option::of(0u64..1 << 31),
            s_maxage in proptest::option::of(0u64..1 << 31),
            swr in proptest::option::of(0u64..1 << 31),
            flags in vec(any::<bool>(), 6),
            quoted in any::<bool>(),
            extension in proptest::option::of(quotable()),
        ) {
            let want = CacheControl {
                max_age,
                s_maxage,
                stale_while_revalidate: swr,
                no_store: flags[0],
                no_cache: flags[1],
                private: flags[2],
                public: flags[3],
                must_revalidate: flags[4],
                proxy_revalidate: flags[5],
                ..Default::default()
            };
            let mut parts: Vec<Vec<u8>> = Vec::new();
            if let Some(e) = &extension {
                parts.push([&b"ext="[..], &quote(e, quoted)].concat());
            }
            let secs = |n: &str, v: u64| {
                if quoted { format!("{n}=\"{v}\"") } else { format!("{n}={v}") }.into_bytes()
            };
            parts.extend(max_age.map(|v| secs("max-age", v)));
            parts.extend(s_maxage.map(|v| secs("s-maxage", v)));
            parts.extend(swr.map(|v| secs("stale-while-revalidate", v)));
            let names = ["no-store", "no-cache", "private", "public", "must-revalidate", "proxy-revalidate"];
            for (on, name) in flags.iter().zip(names) {
                if *on {
                    parts.push(name.as_bytes().to_vec());
                }
            }
            let value = parts.join(&b", "[..]);
            prop_assert_eq!(CacheControl::parse([&value[..]]), want, "{}", String::from_utf8_lossy(&value));
        }
    }
}
