//! A pure `Cache-Control` parser (RFC 9111 section 5.2).
//!
//! The grammar is RFC 9111's `#cache-directive` with RFC 9110's list,
//! token and quoted-string rules (section 5.6): a directive is a token,
//! optionally `=` and a token or a quoted-string, in which `\` quotes the
//! next character (a quoted-pair, section 5.6.4); optional white space
//! around commas; empty list elements are allowed. Directive names are
//! case-insensitive; unknown directives are ignored; a directive whose
//! argument does not parse is read in the cautious way (an unparsable
//! `max-age` means stale, a qualified `no-cache="x"` or `private="x"` means
//! the whole response).
//!
//! A value that does not follow the grammar (an unterminated quoted
//! string, a character outside tokens and quoted strings, white space
//! inside a directive, a missing argument after `=`, ...) cannot be read
//! with certainty: a directive such as `private` may be hidden in what
//! could not be read. Such a value sets [`CacheControl::unparsable`] and
//! [`CacheControl::no_store`], never ignored: a response is then not
//! stored, a request not answered from the cache.

use std::borrow::Cow;

use crate::request::HeaderSource;

/// The directives of one or more `Cache-Control` header values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age=N` (seconds).
    pub max_age: Option<u64>,
    /// `s-maxage=N` (seconds): shared caches only.
    pub s_maxage: Option<u64>,
    /// `no-store`; also set when a value is [`unparsable`](Self::unparsable).
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
    /// A value did not follow the `Cache-Control` grammar, so what it says
    /// is not known for certain; [`no_store`](Self::no_store) is set with it.
    pub unparsable: bool,
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
        let cc = self;
        for directive in Directives::new(value) {
            let Ok(Directive { name, arg }) = directive else {
                cc.unparsable = true;
                cc.no_store = true;
                return;
            };
            let arg = arg.as_deref();
            let secs = || arg.map(parse_seconds);
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("max-age") {
                cc.max_age = Some(secs().unwrap_or(0));
            } else if is("s-maxage") {
                cc.s_maxage = Some(secs().unwrap_or(0));
            } else if is("no-store") {
                cc.no_store = true;
            } else if is("no-cache") {
                cc.no_cache = true;
            } else if is("private") {
                cc.private = true;
            } else if is("public") {
                cc.public = true;
            } else if is("must-revalidate") {
                cc.must_revalidate = true;
            } else if is("proxy-revalidate") {
                cc.proxy_revalidate = true;
            } else if is("max-stale") {
                cc.max_stale = Some(arg.map(parse_seconds));
            } else if is("min-fresh") {
                cc.min_fresh = Some(secs().unwrap_or(0));
            } else if is("only-if-cached") {
                cc.only_if_cached = true;
            } else if is("stale-while-revalidate") {
                cc.stale_while_revalidate = Some(secs().unwrap_or(0));
            } else if is("stale-if-error") {
                cc.stale_if_error = Some(secs().unwrap_or(0));
            } else if is("no-transform") {
                cc.no_transform = true;
            }
        }
    }
}

/// A value that does not follow the `Cache-Control` grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unparsable;

/// One cache directive: its name as sent, and its argument with the
/// quoting of a quoted-string undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) arg: Option<Cow<'a, [u8]>>,
}

/// The directives of one field value, in order; an `Err` ends the list
/// (nothing after it is read).
pub(crate) struct Directives<'a> {
    value: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Directives<'a> {
    pub(crate) fn new(value: &'a [u8]) -> Self {
        Directives {
            value,
            pos: 0,
            done: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.value.get(self.pos).copied()
    }

    fn token(&mut self) -> Result<&'a [u8], Unparsable> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(Unparsable);
        }
        Ok(&self.value[start..self.pos])
    }

    /// A quoted-string, the opening quote already read.
    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, Unparsable> {
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let c = self.peek().ok_or(Unparsable)?;
            self.pos += 1;
            match c {
                b'"' => {
                    return Ok(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(&self.value[start..self.pos - 1]),
                    })
                }
                b'\\' => {
                    let q = self.peek().filter(|&q| is_quotable(q)).ok_or(Unparsable)?;
                    let before = &self.value[start..self.pos - 1];
                    self.pos += 1;
                    owned.get_or_insert_with(|| before.to_vec()).push(q);
                }
                c if is_qdtext(c) => {
                    if let Some(v) = owned.as_mut() {
                        v.push(c);
                    }
                }
                _ => return Err(Unparsable),
            }
        }
    }

    fn directive(&mut self) -> Result<Directive<'a>, Unparsable> {
        let name = self.token()?;
        let arg = if self.peek() == Some(b'=') {
            self.pos += 1;
            if self.peek() == Some(b'"') {
                self.pos += 1;
                Some(self.quoted()?)
            } else {
                Some(Cow::Borrowed(self.token()?))
            }
        } else {
            None
        };
        // Then optional white space, and a comma or the end.
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        match self.peek() {
            None => {}
            Some(b',') => self.pos += 1,
            Some(_) => return Err(Unparsable),
        }
        Ok(Directive { name, arg })
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = Result<Directive<'a>, Unparsable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // Empty elements and white space before an element.
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
        self.peek()?;
        let d = self.directive();
        self.done = d.is_err();
        Some(d)
    }
}

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// `qdtext` (RFC 9110 section 5.6.4): what stands unquoted in a quoted-string.
fn is_qdtext(c: u8) -> bool {
    matches!(c, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What a quoted-pair may quote: HTAB, SP, VCHAR, obs-text.
fn is_quotable(c: u8) -> bool {
    matches!(c, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
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
        let v = split_outside_quotes(v, b';').next().unwrap_or("");
        if v.starts_with('"') {
            return is_sf_string(v);
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
    split_outside_quotes(text, b',').all(|member| {
        let member = split_outside_quotes(member, b';')
            .next()
            .unwrap_or("")
            .trim();
        match member.split_once('=') {
            None => key_ok(member),
            // No white space around `=` (RFC 8941 section 3.2).
            Some((k, v)) => {
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
fn parse_seconds(s: &[u8]) -> u64 {
    super::date::parse_delta_seconds(s).unwrap_or(0)
}

/// Splits at `sep` outside quoted strings (a `\\` inside one quotes the
/// next character), trimmed, empty parts left out.
fn split_outside_quotes(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.bytes().enumerate() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            (false, _, c) if c == sep => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// A Structured Field string (RFC 8941 section 3.3.3): printable ASCII
/// in double quotes, where `\\` escapes only `"` and `\\`.
fn is_sf_string(v: &str) -> bool {
    let Some(inner) = v.strip_prefix('"') else {
        return false;
    };
    let mut bytes = inner.bytes();
    while let Some(c) = bytes.next() {
        match c {
            b'"' => return bytes.next().is_none(),
            b'\\' => {
                if !matches!(bytes.next(), Some(b'"' | b'\\')) {
                    return false;
                }
            }
            0x20..=0x7e => {}
            _ => return false,
        }
    }
    false
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
}
