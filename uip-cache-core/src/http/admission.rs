//! RFC 9111 shared-cache rules: whether a stored response may be used, whether
//! a response may be stored and for how long, conditional requests, and which
//! headers are end-to-end.

use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use super::cache_control::CacheControl;
use super::date::clamp;
use crate::config::TtlMode;
use crate::entry::StoredResponse;
use crate::policy::Policy;
use crate::request::{HeaderList, HeaderSource, RequestView};
use crate::stats::NoCacheReason;

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

/// What a stored response may be used for, now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usability {
    /// Fresh: serve it.
    Fresh,
    /// Stale, but the client accepts it (`max-stale`): serve it as stale.
    StaleAccepted,
    /// Stale within stale-while-revalidate: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Must be revalidated (or refetched) before use.
    Stale,
}

/// Decides whether `entry` may answer a request with directives `req`.
pub fn usability(entry: &StoredResponse, req: &CacheControl, now: SystemTime) -> Usability {
    if entry.no_cache || req.no_cache {
        return Usability::Stale;
    }
    let age = entry.age(now);
    if req
        .max_age
        .is_some_and(|max| age > Duration::from_secs(max))
    {
        return Usability::Stale;
    }
    if age < entry.freshness_lifetime {
        let left = entry.freshness_lifetime - age;
        return match req.min_fresh {
            Some(min) if left < Duration::from_secs(min) => Usability::Stale,
            _ => Usability::Fresh,
        };
    }
    if entry.must_revalidate {
        return Usability::Stale;
    }
    let staleness = age - entry.freshness_lifetime;
    match req.max_stale {
        Some(None) => return Usability::StaleAccepted,
        Some(Some(max)) if staleness <= Duration::from_secs(max) => {
            return Usability::StaleAccepted
        }
        _ => {}
    }
    if staleness < entry.stale_while_revalidate {
        Usability::StaleWhileRevalidate
    } else {
        Usability::Stale
    }
}

/// Whether `entry` may be served because the origin failed (stale-if-error).
/// Never when it must be revalidated before every use (`no-cache`, from the
/// response or the request) or once stale when `must-revalidate` says so.
pub fn serves_on_error(entry: &StoredResponse, req: &CacheControl, now: SystemTime) -> bool {
    if entry.no_cache || req.no_cache {
        return false;
    }
    entry.is_fresh(now) || (!entry.must_revalidate && entry.staleness(now) < entry.stale_if_error)
}

/// Headers that describe one connection, never stored or forwarded from a cache
/// (RFC 9110 section 7.6.1), plus the ones the cache computes itself.
const NOT_STORED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "age",
    "x-cache",
    "cache-status",
    "content-length",
];

/// What the origin answered, as seen by the rules.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct OriginResponse<'a> {
    /// Status code.
    pub status: u16,
    /// Header lookup.
    pub headers: &'a (dyn HeaderSource + Sync),
    /// Every header, in order, for storing.
    pub header_list: &'a [(FieldName, Bytes)],
    /// When the request was sent.
    pub request_time: SystemTime,
    /// When the response arrived.
    pub response_time: SystemTime,
}

impl<'a> OriginResponse<'a> {
    /// A response with its headers and timing.
    pub fn new(
        status: u16,
        headers: &'a (dyn HeaderSource + Sync),
        header_list: &'a [(FieldName, Bytes)],
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        OriginResponse {
            status,
            headers,
            header_list,
            request_time,
            response_time,
        }
    }
}

impl std::fmt::Debug for OriginResponse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginResponse")
            .field("status", &self.status)
            .field("headers", &self.header_list.len())
            .finish_non_exhaustive()
    }
}

fn http_date(h: &dyn HeaderSource, name: &str) -> Option<SystemTime> {
    h.first(name).and_then(super::date::parse_http_date)
}

/// The `Age` of a response: the first member of the first `Age` header,
/// clamped; an invalid one is ignored (RFC 9111 section 5.1).
fn age_header(h: &dyn HeaderSource) -> Duration {
    h.first("age")
        .and_then(|v| {
            let first = v.split(|&b| b == b',').next()?.trim_ascii();
            super::date::parse_delta_seconds(first)
        })
        .map(Duration::from_secs)
        .unwrap_or_default()
}

/// Where an entry's freshness lifetime comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    /// The origin's `max-age`, `s-maxage` or `Expires`.
    Origin,
    /// The policy's `ttl`.
    Policy,
    /// A tenth of the time since `Last-Modified`.
    Heuristic,
}

/// Whether the request makes the response unfit to share whatever the
/// policy says: `Authorization` without explicit permission (RFC 9111
/// section 3.5), `Cookie` without explicit shared freshness unless the key
/// holds the cookie. A policy TTL never stands in for the origin's
/// permission: `must-revalidate` and `max-age` count only when the origin's
/// own lifetime is the one used. (`no-store`, `private` and `Set-Cookie`
/// are refused by [`admit`] before any lifetime is chosen.)
fn shared_storage_forbidden(
    policy: &Policy,
    req: &RequestView<'_>,
    cc: &CacheControl,
    vary: &[String],
    lifetime: Lifetime,
) -> Option<NoCacheReason> {
    let origin = lifetime == Lifetime::Origin;
    if req.headers.first("authorization").is_some()
        && !(cc.public || cc.s_maxage.is_some() || (cc.must_revalidate && origin))
    {
        return Some(NoCacheReason::Authorization);
    }
    // A response to a request with cookies may depend on them: it is shared
    // only when the origin says so, or when entries are keyed on the cookie.
    let origin_shares =
        cc.public || cc.s_maxage.is_some() || (cc.max_age.is_some_and(|a| a > 0) && origin);
    let keyed_on_cookie =
        policy.key_spec().keys_header("cookie") || vary.iter().any(|v| v == "cookie");
    if req.headers.first("cookie").is_some() && !origin_shares && !keyed_on_cookie {
        return Some(NoCacheReason::Cookie);
    }
    None
}

/// Decides whether a response may be stored under `policy`, and with which
/// freshness, stale windows, validators and headers: the entry to store,
/// without its body (recorded while it streams).
///
/// Any final status with explicit freshness from the origin (`max-age`,
/// `s-maxage`, `Expires`) may be stored on it; the policy's `statuses` say
/// which may be stored on the policy's TTL (by default no error status),
/// and heuristic freshness is for the heuristically cacheable statuses and
/// `public` responses (RFC 9111 sections 3 and 4.2.2). An error status (400
/// and above) is fresh for at most the policy's `negative_ttl`, whatever
/// gave it freshness.
///
/// The answer to a request with `Range`, `If-Match`,
/// `If-Unmodified-Since` or `If-Range` is stored only when it is a complete
/// 200: a 416 or 412 is that request's answer, not the plain key's.
/// A `Cache-Control` that cannot be read with certainty is `no-store`.
pub fn admit(
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
) -> Result<StoredResponse, NoCacheReason> {
    let (cc, targeted) = response_cache_control(resp.headers, policy.cache_control_targets());

    if resp.status == 206 || resp.status == 304 || !(200..=599).contains(&resp.status) {
        return Err(NoCacheReason::Status);
    }
    if has_range_or_precondition(req.headers) && !is_complete_200(resp) {
        return Err(NoCacheReason::RangeOrPrecondition);
    }
    let mut vary = Vec::new();
    let mut vary_star = false;
    resp.headers.for_each_value("vary", &mut |v| {
        for name in v.split(|&b| b == b',') {
            let name = String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase();
            if name == "*" {
                vary_star = true;
            } else if !name.is_empty() && !vary.contains(&name) {
                vary.push(name);
            }
        }
    });
    if cc.unparsable {
        return Err(NoCacheReason::UnparsableCacheControl);
    }
    if cc.no_store {
        return Err(NoCacheReason::ResponseNoStore);
    }
    if cc.private {
        return Err(NoCacheReason::Private);
    }
    if PER_CLIENT.iter().any(|h| resp.headers.first(h).is_some()) {
        return Err(NoCacheReason::SetCookie);
    }
    if is_event_stream(resp.headers) {
        return Err(NoCacheReason::Streaming);
    }
    if vary_star {
        return Err(NoCacheReason::VaryStar);
    }
    vary.sort();

    // Age when received (RFC 9111 section 4.2.3); every term is clamped, so
    // no sum below can overflow.
    let date = http_date(resp.headers, "date");
    let age_value = age_header(resp.headers);
    let apparent_age = date
        .and_then(|d| resp.response_time.duration_since(d).ok())
        .map(clamp)
        .unwrap_or_default();
    let response_delay = clamp(
        resp.response_time
            .duration_since(resp.request_time)
            .unwrap_or_default(),
    );
    let initial_age = clamp(apparent_age.max(age_value + response_delay));

    // Freshness lifetime from the origin (RFC 9111 section 4.2.1). An
    // Expires that is not a date means already expired.
    let origin_lifetime = cc
        .s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            // A targeted field replaces Expires as well (RFC 9213 section 2.1).
            let expires = if targeted {
                None
            } else {
                resp.headers.first("expires")
            };
            expires.map(|v| {
                super::date::parse_http_date(v)
                    .and_then(|exp| exp.duration_since(date.unwrap_or(resp.response_time)).ok())
                    .map(clamp)
                    .unwrap_or_default()
            })
        });
    let etag = resp.headers.first("etag").map(Bytes::copy_from_slice);
    let last_modified = resp
        .headers
        .first("last-modified")
        .map(Bytes::copy_from_slice);
    // Any final status may be stored on the origin's explicit freshness; the
    // policy's statuses say which may live on its TTL; heuristic freshness
    // is for the heuristically cacheable statuses and for `public`
    // responses (RFC 9111 sections 3, 4.2.2).
    let listed = policy.allows_status(resp.status);
    let (lifetime, source) = match (policy.ttl_mode(), policy.ttl(), origin_lifetime) {
        (TtlMode::Override, Some(ttl), _) if listed => (ttl, Lifetime::Policy),
        (TtlMode::Override, Some(_), _) => return Err(NoCacheReason::Status),
        (_, _, Some(origin)) => (origin, Lifetime::Origin),
        (_, Some(ttl), None) if listed => (ttl, Lifetime::Policy),
        (_, None, None) if policy.allows_heuristic(resp.status) || cc.public => (
            heuristic_lifetime(date.unwrap_or(resp.response_time), last_modified.as_deref()),
            Lifetime::Heuristic,
        ),
        _ => return Err(NoCacheReason::Status),
    };
    // An error is one request's bad luck (or an attacker's doing) as often
    // as the resource's state: never everyone's answer for long.
    let lifetime = if resp.status >= 400 {
        lifetime.min(policy.negative_ttl())
    } else {
        lifetime
    };
    if let Some(reason) = shared_storage_forbidden(policy, req, &cc, &vary, source) {
        return Err(reason);
    }
    let lifetime = clamp(lifetime);
    let has_validator = etag.is_some() || last_modified.is_some();
    let no_cache = cc.no_cache && policy.ttl_mode() != TtlMode::Override;
    // A response that is stale at once is still worth keeping when it can be
    // revalidated, or when the origin asked for revalidation on every use.
    if lifetime.is_zero() && !has_validator {
        return Err(NoCacheReason::NoFreshness);
    }

    // Connection-named headers are hop-by-hop too.
    let mut connection_named = Vec::new();
    resp.headers.for_each_value("connection", &mut |v| {
        for n in v.split(|&b| b == b',') {
            connection_named.push(String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase());
        }
    });
    let headers = resp
        .header_list
        .iter()
        .filter(|(n, _)| {
            !NOT_STORED.contains(&&**n)
                && !connection_named.iter().any(|c| c == n)
                && !is_consumed(n, policy.cache_control_targets())
                && (policy.forwards_tag_headers() || !policy.tag_headers().iter().any(|t| t == n))
        })
        .cloned()
        .collect();

    // The stale windows of an error are capped like its freshness, or an
    // error one request caused would stay servable (stale) for everyone.
    let error_cap = |d: Duration| {
        if resp.status >= 400 {
            d.min(policy.negative_ttl())
        } else {
            d
        }
    };
    let secs = |v: Option<u64>, policy: Option<Duration>| {
        clamp(v.map(Duration::from_secs).or(policy).unwrap_or_default())
    };
    let entry = StoredResponse {
        status: resp.status,
        headers,
        body: Bytes::new(),
        compression: crate::entry::BodyEncoding::Identity,
        stored_at: resp.response_time,
        initial_age,
        freshness_lifetime: lifetime,
        stale_while_revalidate: error_cap(secs(
            cc.stale_while_revalidate,
            policy.stale_while_revalidate(),
        )),
        stale_if_error: error_cap(secs(cc.stale_if_error, policy.stale_if_error())),
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
        no_cache,
        etag,
        last_modified,
        vary,
        tags: origin_tags(resp.headers, policy.tag_headers()),
    };
    Ok(entry)
}

/// At most this many tags from an origin's tag headers, each at most
/// [`MAX_ORIGIN_TAG_LEN`] bytes: a hostile origin cannot blow up the indexes.
pub const MAX_ORIGIN_TAGS: usize = 64;
/// The longest tag taken from an origin's tag headers.
pub const MAX_ORIGIN_TAG_LEN: usize = 256;

/// The tags an origin gives in its tag headers (`Surrogate-Key: a b`,
/// `Cache-Tag: a,b`): printable, bounded in number and length.
pub fn origin_tags(headers: &dyn HeaderSource, names: &[String]) -> Vec<String> {
    let mut tags = Vec::new();
    for name in names {
        headers.for_each_value(name, &mut |v| {
            for t in v.split(|&b| b == b' ' || b == b',' || b == b'\t') {
                if tags.len() < MAX_ORIGIN_TAGS
                    && !t.is_empty()
                    && t.len() <= MAX_ORIGIN_TAG_LEN
                    && t.iter().all(|b| b.is_ascii_graphic())
                {
                    tags.push(String::from_utf8_lossy(t).into_owned());
                }
            }
        });
    }
    tags.sort();
    tags.dedup();
    tags
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
                .all(|v| std::str::from_utf8(v).is_ok_and(super::cache_control::is_valid_targeted));
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
    cc.no_store |= restrictions.no_store;
    cc.private |= restrictions.private;
    cc.unparsable |= restrictions.unparsable;
    (cc, false)
}

/// Whether the request asks for part of the representation (`Range`,
/// `If-Range`) or sets a precondition the origin evaluates (`If-Match`,
/// `If-Unmodified-Since`): its answer may be for it alone (206, 416, 412).
/// `If-None-Match` and `If-Modified-Since` are not here: the cache removes
/// them from what it sends the origin and answers them itself.
pub fn has_range_or_precondition(headers: &dyn HeaderSource) -> bool {
    ["range", "if-range", "if-match", "if-unmodified-since"]
        .iter()
        .any(|h| headers.first(h).is_some())
}

/// A 200 that does not claim to be a part (`Content-Range`).
fn is_complete_200(resp: &OriginResponse<'_>) -> bool {
    resp.status == 200 && resp.headers.first("content-range").is_none()
}

/// Request headers with which frameworks let a client say the method is
/// another one (Express's method-override, Symfony, ASP.NET Core, Go's
/// gorilla/handlers, OData, IBM): the origin may answer a GET as a DELETE.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Every spelling of [`METHOD_OVERRIDE_HEADERS`] with any of its `-` as `_`
/// (lower case: header lookups ignore case).
static METHOD_OVERRIDE_SPELLINGS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| {
        let mut all = Vec::new();
        for name in METHOD_OVERRIDE_HEADERS {
            let dashes: Vec<usize> = name.match_indices('-').map(|(i, _)| i).collect();
            for mask in 0..1u32 << dashes.len() {
                let mut b = name.as_bytes().to_vec();
                for (k, &i) in dashes.iter().enumerate() {
                    if mask & (1 << k) != 0 {
                        b[i] = b'_';
                    }
                }
                all.push(String::from_utf8(b).unwrap_or_default());
            }
        }
        all
    });

/// Whether the request says its method is another one: a method-override
/// header, or a `_method` query parameter (Rails, Laravel, Symfony, Spring
/// and Rack read it; some for GET too). Such a request bypasses the cache:
/// the answer is not the GET's.
///
/// The headers are matched with `_` taken as `-` (`X_HTTP_Method_Override`):
/// CGI, WSGI and Rack servers fold both into one `HTTP_...` variable.
pub fn has_method_override(req: &RequestView<'_>) -> bool {
    METHOD_OVERRIDE_SPELLINGS
        .iter()
        .any(|h| req.headers.first(h).is_some())
        || req.query.is_some_and(|q| {
            q.split('&').any(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                percent_decoded_eq(name, "_method")
            })
        })
}

/// Whether `raw`, percent-decoded, is `name` (ASCII, any case).
fn percent_decoded_eq(raw: &str, name: &str) -> bool {
    let mut raw = raw.bytes();
    let mut want = name.bytes();
    loop {
        let got = match raw.next() {
            Some(b'%') => {
                let hex = |b: Option<u8>| (b? as char).to_digit(16);
                match (hex(raw.next()), hex(raw.next())) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return false,
                }
            }
            Some(b'+') => b' ',
            Some(b) => b,
            None => return want.next().is_none(),
        };
        if !want.next().is_some_and(|w| w.eq_ignore_ascii_case(&got)) {
            return false;
        }
    }
}

/// Whether the request carries a body: the adapter says so
/// (the `has_body` field of [`RequestView`]), or `Transfer-Encoding` or a
/// `Content-Length` other than 0 does (one that does not parse counts).
pub fn carries_body(req: &RequestView<'_>) -> bool {
    if req.has_body || req.headers.first("transfer-encoding").is_some() {
        return true;
    }
    let mut body = false;
    req.headers.for_each_value("content-length", &mut |v| {
        body |= v.split(|&b| b == b',').any(|n| {
            let n = n.trim_ascii();
            n.is_empty() || !n.iter().all(|&d| d == b'0')
        });
    });
    body
}

/// Whether a response header is for this cache alone and never passed on:
/// `Surrogate-Control` when this cache obeys it (surrogates consume it).
/// `CDN-Cache-Control` is passed on, for the caches further down (RFC 9213).
pub fn is_consumed(name: &str, targets: &[String]) -> bool {
    name == "surrogate-control" && targets.iter().any(|t| t == name)
}

/// Whether the response is a server-sent event stream (never ends, never stored).
fn is_event_stream(headers: &dyn HeaderSource) -> bool {
    headers.first("content-type").is_some_and(|v| {
        v.trim_ascii_start()
            .get(..17)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// Heuristic freshness (RFC 9111 section 4.2.2): a tenth of the time since
/// `Last-Modified`, at most a day, as most caches do.
fn heuristic_lifetime(date: SystemTime, last_modified: Option<&[u8]>) -> Duration {
    last_modified
        .and_then(super::date::parse_http_date)
        .and_then(|lm| date.duration_since(lm).ok())
        .map(|d| (d / 10).min(Duration::from_secs(86_400)))
        .unwrap_or_default()
}

/// What a 304 does to the stored entry it validated.
#[derive(Debug)]
#[non_exhaustive]
pub enum Freshened {
    /// Store the updated entry.
    Store,
    /// The 304 forbids keeping it (`no-store`, `private`, ...): remove the
    /// entry; the updated response still answers this one request.
    Remove(NoCacheReason),
    /// The 304 answered a request carrying credentials the key does not hold
    /// (`Cookie`, `Authorization`) and is not fit to share: it describes this
    /// client's answer, not the shared entry, which is left as it is (neither
    /// updated nor removed). The updated response answers this one request.
    Keep(NoCacheReason),
}

/// Whether `req` carries credentials (`Cookie`, `Authorization`) that the
/// entry's key does not hold: the origin's answer to it may be this client's
/// alone, so it must not change an entry other clients share.
fn unkeyed_credentials(policy: &Policy, req: &RequestView<'_>, vary: &[String]) -> bool {
    ["cookie", "authorization"].iter().any(|&h| {
        req.headers.first(h).is_some()
            && !policy.key_spec().keys_header(h)
            && !vary.iter().any(|v| v == h)
    })
}

/// Updates a stored entry with a 304's headers and freshness (RFC 9111
/// section 4.3.4). Per-client headers of the 304 (`Set-Cookie`) are not
/// merged: they go to the client that caused the revalidation only, and
/// neither block the update nor remove the entry.
///
/// Only the response decides to remove a shared entry: a 304 unfit to share
/// because of this request's unkeyed credentials (or one naming another
/// validator, which for such a request may be this client's representation)
/// leaves it alone ([`Freshened::Keep`]), else any client could evict
/// entries by revalidating them with a cookie.
pub fn freshen(
    entry: &mut StoredResponse,
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
) -> Freshened {
    let per_client = unkeyed_credentials(policy, req, &entry.vary);
    let unfit = |reason| {
        if per_client {
            Freshened::Keep(reason)
        } else {
            Freshened::Remove(reason)
        }
    };
    // A 304 naming another validator validated another representation
    // (RFC 9111 section 4.3.4): the stored one must not take its headers.
    if let Some(new) = resp.headers.first("etag") {
        let opaque = |t: &[u8]| {
            let t = t.trim_ascii();
            t.strip_prefix(b"W/").unwrap_or(t).to_vec()
        };
        if entry
            .etag
            .as_deref()
            .is_none_or(|old| opaque(old) != opaque(new))
        {
            return unfit(NoCacheReason::Invalidated);
        }
    }
    let merged_in =
        |n: &str| !(NOT_STORED.contains(&n) || PER_CLIENT.contains(&n) || n == "content-encoding");
    let mut headers: Vec<(FieldName, Bytes)> = entry
        .headers
        .iter()
        .filter(|(n, _)| !resp.header_list.iter().any(|(u, _)| u == n && merged_in(u)))
        .cloned()
        .collect();
    headers.extend(
        resp.header_list
            .iter()
            .filter(|(n, _)| merged_in(n))
            .cloned(),
    );
    // The merged headers carry the 304's directives (a `no-store` or
    // `private` there forbids keeping the entry) and none of its per-client
    // headers; admit() decides on them as on a new response.
    let merged = HeaderList(&headers);
    // Reuse admit() for the freshness arithmetic on the merged headers.
    let view = OriginResponse {
        status: entry.status,
        headers: &merged,
        header_list: &headers,
        ..*resp
    };
    match admit(policy, req, &view) {
        Ok(fresh) => {
            let body = std::mem::take(&mut entry.body);
            let (compression, tags) = (entry.compression, std::mem::take(&mut entry.tags));
            *entry = fresh;
            entry.body = body;
            entry.compression = compression;
            entry.tags = tags;
            Freshened::Store
        }
        Err(reason) => {
            entry.headers = headers;
            unfit(reason)
        }
    }
}

/// Response headers meant for one client, never stored from a 304.
pub const PER_CLIENT: [&str; 2] = ["set-cookie", "set-cookie2"];

/// Whether the request's `If-None-Match` / `If-Modified-Since` match the entry,
/// so a 304 answers it (RFC 9110 section 13.2.2). Only GET and HEAD, and only
/// from a stored 2xx (RFC 9110 section 13.2.1).
pub fn not_modified(req: &RequestView<'_>, entry: &StoredResponse) -> bool {
    not_modified_as(req, entry, entry.etag.as_deref())
}

/// [`not_modified`] for the representation of `entry` whose validator is
/// `etag`: a gzip body the cache made has its own
/// ([`crate::compress::gzip_etag`]), and `If-None-Match` is compared with
/// the validator of the representation the request would get.
pub fn not_modified_as(req: &RequestView<'_>, entry: &StoredResponse, etag: Option<&[u8]>) -> bool {
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD"))
        || !(200..300).contains(&entry.status)
    {
        return false;
    }
    let mut inm = Vec::new();
    req.headers
        .for_each_value("if-none-match", &mut |v| inm.push(v.to_vec()));
    if !inm.is_empty() {
        let Some(etag) = etag else {
            return false;
        };
        let weak = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
        let ours = weak(etag.trim_ascii());
        return inm.iter().any(|v| {
            v.split(|&b| b == b',').any(|t| {
                let t = t.trim_ascii();
                t == b"*" || weak(t) == ours
            })
        });
    }
    let Some(since) = http_date(req.headers, "if-modified-since") else {
        return false;
    };
    let last = entry
        .last_modified
        .as_deref()
        .and_then(super::date::parse_http_date)
        .or_else(|| {
            entry
                .header("date")
                .and_then(|v| super::date::parse_http_date(v))
        });
    last.is_some_and(|last| last <= since)
}

/// Whether the client accepts gzip: an explicit `gzip` (or `x-gzip`) item
/// decides by its q-value, else `*` does (RFC 9110 section 12.5.3).
pub fn accepts_gzip(headers: &dyn HeaderSource) -> bool {
    let (mut gzip, mut star) = (None, None);
    headers.for_each_value("accept-encoding", &mut |v| {
        for item in v.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let mut q_zero = false;
            for p in parts {
                let p = p.trim_ascii();
                if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                    q_zero = std::str::from_utf8(&p[2..])
                        .ok()
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0);
                }
            }
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || !q_zero);
            } else if coding == b"*" {
                star = Some(star.unwrap_or(false) || !q_zero);
            }
        }
    });
    gzip.or(star).unwrap_or(false)
}

/// The path and query (`/path?query`) a `Location` / `Content-Location`
/// value names, resolved against the request's target (RFC 3986 section 5),
/// when it is on the target's host and port: RFC 9111 section 4.4 forbids
/// invalidating a URI of another origin. `None` for another host or port, for
/// a scheme other than `http` and `https`, for an absolute URI when the
/// target's authority is unknown, and for an empty reference (the target
/// itself, invalidated anyway).
///
/// The scheme is not compared: the purge does not tell schemes apart (see
/// [`KeySpec::target_tag`](crate::KeySpec::target_tag)), and behind a proxy
/// that ends TLS the origin writes `https` URLs for requests the cache sees
/// over `http`. Default ports count as absent (`:80` for `http`, `:443` for
/// `https`, each for its own scheme).
///
/// ```
/// use uip_cache_core::http::admission::same_origin_target;
///
/// let t = |l| same_origin_target(l, Some("https"), Some("api.example"), "/items/7");
/// assert_eq!(t("/items/8?x=1").as_deref(), Some("/items/8?x=1"));
/// assert_eq!(t("https://API.example:443/a").as_deref(), Some("/a"));
/// assert_eq!(t("../lists/1").as_deref(), Some("/lists/1"));
/// assert_eq!(t("https://victim.example/items/7"), None);
/// assert_eq!(t("//victim.example/items/7"), None);
/// assert_eq!(t("https://api.example:8443/items/7"), None);
/// ```
pub fn same_origin_target(
    location: &str,
    scheme: Option<&str>,
    authority: Option<&str>,
    target_path: &str,
) -> Option<String> {
    let scheme = scheme.unwrap_or("http");
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    if location.is_empty() {
        return None;
    }
    let (loc_scheme, rest) = match location.split_once(':') {
        Some((s, rest))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(s), rest)
        }
        _ => (None, location),
    };
    if loc_scheme
        .is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
    {
        return None;
    }
    let reference = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let ours = authority.map(|a| origin_authority(a, scheme))?;
            if origin_authority(&after[..end], loc_scheme.unwrap_or(scheme)) != ours {
                return None;
            }
            match &after[end..] {
                "" => "/",
                r => r,
            }
        }
        // `http:path` without `//` names no authority: not one we can compare.
        None if loc_scheme.is_some() => return None,
        None => rest,
    };
    let (path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else if path.is_empty() {
        // `?q`: the target's path with another query.
        target_path.to_owned()
    } else {
        // A relative path: merged with the target's directory.
        let dir = &target_path[..target_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{path}", if dir.is_empty() { "/" } else { dir })
    };
    let mut out = remove_dot_segments(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// An authority as an origin compares it: without user information, lower
/// case, without the scheme's default port.
fn origin_authority(authority: &str, scheme: &str) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    match host.strip_suffix(default) {
        Some(h) => h.to_owned(),
        None => host.strip_suffix(':').map_or(host.clone(), str::to_owned),
    }
}

/// RFC 3986 section 5.2.4, for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path.to_owned();
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether a method is unsafe and, on success, invalidates its target (RFC 9111 section 4.4).
pub fn is_unsafe(method: &str) -> bool {
    // Method names are case-sensitive (RFC 9110 section 9.1): `get` is not
    // GET, and a method of unknown safety counts as unsafe.
    !["GET", "HEAD", "OPTIONS", "TRACE"].contains(&method)
}

#[cfg(test)]
mod tests;
