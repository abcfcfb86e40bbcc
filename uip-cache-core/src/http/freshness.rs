//! Freshness (RFC 9111 section 4.2): how old a response is, how long the
//! origin says it stays fresh, and what a stored response may be used for
//! now.

use std::time::{Duration, SystemTime};

use super::cache_control::CacheControl;
use super::date::{clamp, parse_http_date};
use crate::entry::StoredResponse;
use crate::request::HeaderSource;

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
    serves_when_unreachable(entry, req, now, Duration::ZERO)
}

/// Whether `entry` may be served because the origin could not be reached,
/// closed the connection without an answer or did not answer in time: as
/// [`serves_on_error`], with a stale window of at least `unreachable`
/// (RFC 9111 section 4.2.4 lets a disconnected cache serve stale; never
/// past `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`).
pub fn serves_when_unreachable(
    entry: &StoredResponse,
    req: &CacheControl,
    now: SystemTime,
    unreachable: Duration,
) -> bool {
    if entry.no_cache || req.no_cache {
        return false;
    }
    entry.is_fresh(now)
        || (!entry.must_revalidate && entry.staleness(now) < entry.stale_if_error.max(unreachable))
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

/// The age of a response when it was received (RFC 9111 section 4.2.3),
/// from its `Age` and `Date` and the time it took to arrive; every term is
/// clamped, so no sum below can overflow.
pub(super) fn initial_age(
    headers: &dyn HeaderSource,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = age_header(headers);
    let apparent_age = date
        .and_then(|d| response_time.duration_since(d).ok())
        .map(clamp)
        .unwrap_or_default();
    let response_delay = clamp(
        response_time
            .duration_since(request_time)
            .unwrap_or_default(),
    );
    clamp(apparent_age.max(age_value + response_delay))
}

/// Freshness lifetime from the origin (RFC 9111 section 4.2.1): `s-maxage`,
/// `max-age`, else `Expires` against `Date` (or the time the response
/// arrived). An Expires that is not a date means already expired.
/// `targeted`: the directives came from a targeted field, which replaces
/// `Expires` as well.
pub(super) fn origin_lifetime(
    cc: &CacheControl,
    targeted: bool,
    headers: &dyn HeaderSource,
    date: Option<SystemTime>,
    response_time: SystemTime,
) -> Option<Duration> {
    cc.s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            // A targeted field replaces Expires as well (RFC 9213 section 2.1).
            let expires = if targeted {
                None
            } else {
                headers.first("expires")
            };
            expires.map(|v| {
                parse_http_date(v)
                    .and_then(|exp| exp.duration_since(date.unwrap_or(response_time)).ok())
                    .map(clamp)
                    .unwrap_or_default()
            })
        })
}

/// Where an entry's freshness lifetime comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifetime {
    /// The origin's `max-age`, `s-maxage` or `Expires`.
    Origin,
    /// The policy's `ttl`.
    Policy,
    /// A tenth of the time since `Last-Modified`.
    Heuristic,
}

/// Heuristic freshness (RFC 9111 section 4.2.2): a tenth of the time since
/// `Last-Modified`, at most a day, as most caches do.
pub(super) fn heuristic_lifetime(date: SystemTime, last_modified: Option<&[u8]>) -> Duration {
    last_modified
        .and_then(parse_http_date)
        .and_then(|lm| date.duration_since(lm).ok())
        .map(|d| (d / 10).min(Duration::from_secs(86_400)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
