//! The cache's own response headers: `X-Cache`, and RFC 9211
//! `Cache-Status` with what it keeps of the values caches nearer the origin
//! wrote.

use std::fmt::Write as _;

use crate::stats::NoCacheReason;

/// The value of the `X-Cache` response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XCache {
    /// Served from a fresh entry.
    Hit,
    /// Fetched from the origin (and stored if allowed).
    Miss,
    /// Served from a stale entry (stale-while-revalidate, stale-if-error, max-stale).
    Stale,
    /// The cache was not used.
    Bypass,
    /// An entry had expired; the origin was asked (revalidated or refetched).
    Expired,
}

impl XCache {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            XCache::Hit => "HIT",
            XCache::Miss => "MISS",
            XCache::Stale => "STALE",
            XCache::Bypass => "BYPASS",
            XCache::Expired => "EXPIRED",
        }
    }
}

/// How a response from the origin relates to the cache: what its `X-Cache`
/// and RFC 9211 `Cache-Status` headers say ([`HttpCache::forward_headers`](crate::HttpCache::forward_headers)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forward {
    /// `MISS`, `EXPIRED`, `BYPASS` or `STALE`.
    pub x_cache: XCache,
    /// Whether the cache records the response for storing.
    pub stored: bool,
    /// Why it is not stored, or why the cache was bypassed.
    pub detail: Option<NoCacheReason>,
}

impl Forward {
    /// A forwarded response.
    pub fn new(x_cache: XCache, stored: bool, detail: Option<NoCacheReason>) -> Self {
        Forward {
            x_cache,
            stored,
            detail,
        }
    }

    /// A request that bypassed the cache for `reason`.
    pub fn bypass(reason: NoCacheReason) -> Self {
        Self::new(XCache::Bypass, false, Some(reason))
    }

    /// RFC 9211's `fwd` parameter: why the request went to the origin.
    fn fwd(&self) -> &'static str {
        match (self.x_cache, self.detail) {
            (XCache::Bypass, Some(NoCacheReason::Method | NoCacheReason::MethodOverride)) => {
                "method"
            }
            (
                XCache::Bypass,
                Some(NoCacheReason::RequestNoStore | NoCacheReason::UnparsableCacheControl),
            ) => "request",
            (XCache::Bypass, _) => "bypass",
            (XCache::Expired | XCache::Stale, _) => "stale",
            _ => "uri-miss",
        }
    }
}

/// How the origin failed when a stale entry answers in its place.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OriginFailure {
    /// It answered with this server error.
    Status(u16),
    /// No answer: refused, reset or timed out.
    Unreachable,
}

/// Whether every quoted string in a structured-field value is closed, so
/// that a member appended after it is not read as part of a string.
fn closed_quotes(v: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for b in v.bytes() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// The `Cache-Status` value (named `name`) of a response served from an
/// entry with `ttl` seconds of freshness left (negative once stale, RFC
/// 9211 section 2.2): a hit, an entry the origin revalidated
/// ([`XCache::Expired`]), or a stale entry standing in for an origin that
/// `failed` (stale-if-error), which says the request was forwarded and what
/// came back.
pub(crate) fn served(
    name: &str,
    x_cache: XCache,
    failed: Option<OriginFailure>,
    ttl: i64,
) -> String {
    match (x_cache, failed) {
        // A revalidated entry: the origin said 304.
        (XCache::Expired, _) => format!("{name}; fwd=stale; fwd-status=304"),
        (_, Some(OriginFailure::Status(s))) => {
            format!("{name}; fwd=stale; fwd-status={s}; ttl={ttl}")
        }
        (_, Some(OriginFailure::Unreachable)) => {
            format!("{name}; fwd=stale; ttl={ttl}; detail=origin-unreachable")
        }
        _ => {
            // Every hit makes one: sized once (`format!` grows it twice).
            let mut v = String::with_capacity(name.len() + 32);
            let _ = write!(v, "{name}; hit; ttl={ttl}");
            v
        }
    }
}

/// The `Cache-Status` value (named `name`) of a response from the origin,
/// `f` saying how it relates to the cache (`uip-cache; fwd=uri-miss;
/// stored`, `fwd=bypass; detail=no_policy`, ...). `upstream` are the
/// response's own `Cache-Status` values, from caches nearer the origin: ours
/// is added after them, as RFC 9211 asks.
pub(crate) fn forwarded<'u>(
    name: &str,
    f: Forward,
    upstream: impl IntoIterator<Item = &'u [u8]>,
) -> String {
    // Values that are not text are dropped, not passed on.
    let mut passed: Vec<&str> = Vec::new();
    for u in upstream {
        if let Some(u) = std::str::from_utf8(u).ok().map(str::trim) {
            if !u.is_empty()
                && u.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                && closed_quotes(u)
                && !u.ends_with(',')
            {
                passed.push(u);
            }
        }
    }
    let detail = f.detail.map(|d| d.as_str());
    let ours = [
        name,
        "; fwd=",
        f.fwd(),
        if f.stored { "; stored" } else { "" },
        if detail.is_some() { "; detail=" } else { "" },
        detail.unwrap_or(""),
    ];
    // One allocation of the exact size: the value becomes a header's
    // bytes as it is.
    let len = passed.iter().map(|u| u.len() + 2).sum::<usize>()
        + ours.iter().map(|p| p.len()).sum::<usize>();
    let mut v = String::with_capacity(len);
    for u in passed {
        v.push_str(u);
        v.push_str(", ");
    }
    ours.iter().for_each(|p| v.push_str(p));
    v
}

/// The `Cache-Status` value (named `name`) of a response the cache makes up
/// itself (the 504 to `only-if-cached`): `detail` says why.
pub(crate) fn own(name: &str, detail: &str) -> String {
    format!("{name}; detail={detail}")
}

#[cfg(test)]
mod tests {
    use super::closed_quotes;
    use proptest::prelude::*;

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    #[test]
    fn upstream_members_with_open_strings_are_recognised() {
        assert!(closed_quotes("cdn; hit; ttl=40"));
        assert!(closed_quotes(r#"cdn; detail="a, \"b\"""#));
        assert!(!closed_quotes(r#"cdn; detail="x"#));
        assert!(!closed_quotes(r#"cdn; detail="x\""#));
    }

    proptest! {
        #[test]
        fn a_quoted_string_is_closed_and_one_more_quote_opens_it(s in "[ -~]{0,40}") {
            let q = quote(&s);
            let closed = format!("a; detail={q}");
            let open = format!("a; detail={q}; b=\"");
            prop_assert!(closed_quotes(&closed));
            prop_assert!(!closed_quotes(&open));
        }
    }
}
