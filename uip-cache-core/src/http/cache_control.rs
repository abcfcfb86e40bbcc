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
    /// `must-understand` (RFC 9111 section 5.2.2.3): store the response
    /// only if its status's caching rules are understood, and then ignore
    /// `no-store` (see [`admission`](super::admission)).
    pub must_understand: bool,
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
            } else if is("must-understand") {
                cc.must_understand = true;
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

/// The request's caching directives: `Cache-Control`, or `Pragma: no-cache`
/// when there is no `Cache-Control` (RFC 9111 section 5.4).
pub fn request_cache_control(headers: &dyn HeaderSource) -> CacheControl {
    let mut cc = CacheControl::from_headers(headers);
    if headers.first("cache-control").is_none() {
        let mut pragma_no_cache = false;
        headers.for_each_value("pragma", &mut |v| {
            pragma_no_cache |= v
                .split(|&b| b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-cache"));
        });
        cc.no_cache = pragma_no_cache;
    }
    cc
}

/// The response's caching directives for this cache: those of the first
/// targeted field present (RFC 9213: `CDN-Cache-Control`, ...), which then
/// replace `Cache-Control`, else `Cache-Control`. The flag says whether a
/// targeted field was used. A targeted field that is not a valid
/// Structured Field is ignored (RFC 9213 section 2.1), except that a
/// `private` or `no-store` in it, or its not being readable as
/// `Cache-Control` at all, still holds: the cautious reading.
pub fn response_cache_control(
    headers: &dyn HeaderSource,
    targets: &[String],
) -> (CacheControl, bool) {
    // What an invalid targeted field says that restricts sharing; it is
    // otherwise ignored, as RFC 9213 section 2.1 asks.
    let mut restrictions = CacheControl::default();
    for t in targets {
        if headers.first(t).is_some() {
            let mut values = Vec::new();
            headers.for_each_value(t, &mut |v| values.push(v.to_vec()));
            let valid = values
                .iter()
                .all(|v| std::str::from_utf8(v).is_ok_and(is_valid_targeted));
            let cc = CacheControl::parse(values.iter().map(Vec::as_slice));
            if valid {
                return (cc, true);
            }
            // The cautious reading: a `private` or `no-store` in it, or
            // one it may hide (what cannot be read), still holds.
            restrictions.no_store |= cc.no_store;
            restrictions.private |= cc.private;
            restrictions.unparsable |= cc.unparsable;
        }
    }
    let mut cc = CacheControl::from_headers(headers);
    // A `no-store` read from an invalid targeted field is not the one a
    // `must-understand` beside it may lift.
    if restrictions.no_store {
        cc.must_understand = false;
    }
    cc.no_store |= restrictions.no_store;
    cc.private |= restrictions.private;
    cc.unparsable |= restrictions.unparsable;
    (cc, false)
}

/// Whether a response header is for this cache alone and never passed on:
/// `Surrogate-Control` when this cache obeys it (surrogates consume it).
/// `CDN-Cache-Control` is passed on, for the caches further down (RFC 9213).
pub fn is_consumed(name: &str, targets: &[String]) -> bool {
    name == "surrogate-control" && targets.iter().any(|t| t == name)
}

#[cfg(test)]
mod tests;
