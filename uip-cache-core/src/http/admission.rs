//! Admission (RFC 9111 section 3): whether a response may be stored under a
//! policy, and the entry to store: its freshness, stale windows,
//! validators, tags and the headers kept.

use std::time::{Duration, SystemTime};

use crate::field::FieldName;
use bytes::Bytes;

use super::cache_control::{is_consumed, response_cache_control, CacheControl};
use super::date::{clamp, http_date};
use super::freshness::{self, heuristic_lifetime, Lifetime};
use super::range::{self, ByteRange};
use super::request::has_range_or_precondition;
use crate::config::TtlMode;
use crate::entry::StoredResponse;
use crate::policy::Policy;
use crate::request::{HeaderSource, RequestView};
use crate::stats::NoCacheReason;

/// Headers that describe one connection, never stored or forwarded from a cache
/// (RFC 9110 section 7.6.1), plus the ones the cache computes itself.
pub(super) const NOT_STORED: [&str; 13] = [
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
    admit_checked(policy, req, resp, cc, targeted)
}

/// Decides whether a 206 may be stored as a part of its representation
/// (RFC 9111 section 3.3), under the key of parts
/// ([`CacheKey::part`](crate::CacheKey::part)): a 206 with exactly one
/// `Content-Range` of the strict form `bytes first-last/length`
/// ([`range::stored_part`]), no `Content-Encoding` but `identity`, and a
/// `Content-Length`, when it has one, that is the part's length. Then
/// every rule of [`admit`] applies as to a 200 of the same representation
/// (freshness, `no-store`, `private`, `Vary`, credentials, cookies); the
/// entry keeps the status 206 and its `Content-Range`. A multipart 206 is
/// never stored.
pub fn admit_part(
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
) -> Result<StoredResponse, NoCacheReason> {
    if resp.status != 206 || part_of(resp.headers).is_none() {
        return Err(NoCacheReason::Status);
    }
    let (cc, targeted) = response_cache_control(resp.headers, policy.cache_control_targets());
    let whole = OriginResponse {
        status: 200,
        ..*resp
    };
    let mut entry = admit_checked(policy, req, &whole, cc, targeted)?;
    entry.status = 206;
    Ok(entry)
}

/// The part a 206's headers say it holds and the complete length, when it
/// may be stored: see [`admit_part`].
pub fn part_of(headers: &dyn HeaderSource) -> Option<(ByteRange, u64)> {
    let mut ranges = 0;
    headers.for_each_value("content-range", &mut |_| ranges += 1);
    if ranges != 1 {
        return None;
    }
    let (part, len) = range::stored_part(headers.first("content-range")?)?;
    let mut coded = false;
    headers.for_each_value("content-encoding", &mut |v| {
        coded |= v.split(|&b| b == b',').any(|c| {
            !c.trim_ascii().is_empty() && !c.trim_ascii().eq_ignore_ascii_case(b"identity")
        })
    });
    if coded {
        return None;
    }
    let mut lengths = 0;
    let mut length_ok = true;
    headers.for_each_value("content-length", &mut |v| {
        lengths += 1;
        length_ok &= std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            == Some(part.len());
    });
    (lengths <= 1 && length_ok).then_some((part, len))
}

/// The rules of [`admit`] past its status and range checks.
fn admit_checked(
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
    cc: CacheControl,
    targeted: bool,
) -> Result<StoredResponse, NoCacheReason> {
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
    // `must-understand` (RFC 9111 section 5.2.2.3): only a cache that
    // understands the status's caching rules may store the response, and
    // one that does ignores the `no-store` sent for the others.
    let understood = understands_status(resp.status);
    if cc.must_understand && !understood {
        return Err(NoCacheReason::Status);
    }
    if cc.no_store && !(cc.must_understand && understood) {
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

    // Age when received (RFC 9111 section 4.2.3), and the freshness
    // lifetime from the origin (section 4.2.1).
    let date = http_date(resp.headers, "date");
    let initial_age =
        freshness::initial_age(resp.headers, date, resp.request_time, resp.response_time);
    let origin_lifetime =
        freshness::origin_lifetime(&cc, targeted, resp.headers, date, resp.response_time);

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

/// The final statuses whose caching rules (RFC 9110 section 15, RFC 9111)
/// this cache implements, for `must-understand`: the heuristically
/// cacheable ones it stores (206 is not stored whole, 304 only updates) and
/// the redirects it stores on explicit freshness.
const UNDERSTOOD_STATUSES: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// Whether `must-understand` lets a response with `status` be stored.
pub fn understands_status(status: u16) -> bool {
    UNDERSTOOD_STATUSES.contains(&status)
}

/// A 200 that does not claim to be a part (`Content-Range`).
pub(crate) fn is_complete_200(resp: &OriginResponse<'_>) -> bool {
    resp.status == 200 && resp.headers.first("content-range").is_none()
}

/// Whether the response is a server-sent event stream (never ends, never stored).
fn is_event_stream(headers: &dyn HeaderSource) -> bool {
    headers.first("content-type").is_some_and(|v| {
        v.trim_ascii_start()
            .get(..17)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// Response headers meant for one client, never stored from a 304.
pub const PER_CLIENT: [&str; 2] = ["set-cookie", "set-cookie2"];

#[cfg(test)]
mod tests;
