//! A pure `Cache-Control` parser (RFC 9111 section 5.2).
//!
//! Directive names are case-insensitive; unknown directives are ignored; a
//! directive whose argument does not parse is read in the cautious way (an
//! unparsable `max-age` means stale, a qualified `no-cache="x"` or
//! `private="x"` means the whole response).

use crate::request::HeaderSource;

/// The directives of one or more `Cache-Control` header values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age=N` (seconds).
    pub max_age: Option<u64>,
    /// `s-maxage=N` (seconds): shared caches only.
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`: stored responses must be revalidated before use.
    pub no_cache: bool,
    /// `private`: not for shared caches.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `max-stale` (request): `Some(None)` for any staleness, `Some(Some(n))` for up to n seconds.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N` (request).
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `no-transform`: intermediaries must not change the content
    /// (RFC 9110 section 7.7), so the cache does not compress it.
    pub no_transform: bool,
}

impl CacheControl {
    /// Parses every value of a `Cache-Control` header.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut cc = CacheControl::default();
        for value in values {
            cc.merge(value);
        }
        cc
    }

    /// Parses the `Cache-Control` values of a header source as they are
    /// visited, without copying them.
    pub fn from_headers(headers: &dyn HeaderSource) -> Self {
        let mut cc = CacheControl::default();
        headers.for_each_value("cache-control", &mut |v| cc.merge(v));
        cc
    }

    /// Adds the directives of one header value.
    fn merge(&mut self, value: &[u8]) {
        let Ok(text) = std::str::from_utf8(value) else {
            return;
        };
        let cc = self;
        for directive in split_directives(text) {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let secs = || arg.map(parse_seconds);
            match name.to_ascii_lowercase().as_str() {
                "max-age" => cc.max_age = Some(secs().unwrap_or(0)),
                "s-maxage" => cc.s_maxage = Some(secs().unwrap_or(0)),
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "max-stale" => cc.max_stale = Some(arg.map(parse_seconds)),
                "min-fresh" => cc.min_fresh = Some(secs().unwrap_or(0)),
                "only-if-cached" => cc.only_if_cached = true,
                "stale-while-revalidate" => cc.stale_while_revalidate = Some(secs().unwrap_or(0)),
                "stale-if-error" => cc.stale_if_error = Some(secs().unwrap_or(0)),
                "no-transform" => cc.no_transform = true,
                _ => {}
            }
        }
    }
}

/// Whether a targeted cache-control field (RFC 9213) is a valid Structured
/// Field dictionary whose delta-seconds directives are integers; an invalid
/// one is ignored as a whole (RFC 9213 section 2.1).
///
/// Only what cache directives can contain is checked (keys, integers,
/// decimals, tokens, strings, booleans, parameters); written here because
/// the rest of the Structured Fields grammar never appears in these fields.
pub fn is_valid_targeted(text: &str) -> bool {
    let key_ok = |k: &str| {
        let mut b = k.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'*')
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
    };
    let item_ok = |v: &str| {
        let v = v.split(';').next().unwrap_or("");
        if let Some(inner) = v.strip_prefix('"') {
            return inner.ends_with('"');
        }
        if v == "?0" || v == "?1" {
            return true;
        }
        let digits = v.strip_prefix('-').unwrap_or(v);
        if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return digits.bytes().filter(|&c| c == b'.').count() <= 1;
        }
        let mut b = v.bytes();
        matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'*')
            && b.all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))
    };
    split_directives(text).all(|member| {
        let member = member.split(';').next().unwrap_or("").trim();
        match member.split_once('=') {
            None => key_ok(member),
            Some((k, v)) => {
                let (k, v) = (k.trim(), v.trim());
                let needs_integer = matches!(
                    k,
                    "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
                );
                key_ok(k)
                    && item_ok(v)
                    && (!needs_integer || (!v.is_empty() && v.bytes().all(|c| c.is_ascii_digit())))
            }
        }
    })
}

/// Delta-seconds; anything unparsable is 0 (the cautious reading), and values
/// too large are clamped at 2^31 (RFC 9111 section 1.2.2).
fn parse_seconds(s: &str) -> u64 {
    crate::date::parse_delta_seconds(s.as_bytes()).unwrap_or(0)
}

/// Splits at commas that are not inside a quoted string.
fn split_directives(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
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
                    max_age: Some(crate::date::MAX_DELTA_SECONDS),
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
        ] {
            assert!(!is_valid_targeted(bad), "{bad}");
        }
    }

    #[test]
    fn several_header_values_combine() {
        let c = CacheControl::parse([&b"max-age=10"[..], &b"no-cache"[..]]);
        assert_eq!(c.max_age, Some(10));
        assert!(c.no_cache);
        assert_eq!(
            CacheControl::parse([&[0xff, 0xfe][..]]),
            CacheControl::default()
        );
    }
}
