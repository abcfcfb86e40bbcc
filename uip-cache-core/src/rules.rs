//! RFC 9111 shared-cache rules: whether a stored response may be used, whether
//! a response may be stored and for how long, conditional requests, and which
//! headers are end-to-end.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::cache_control::CacheControl;
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
pub fn serves_on_error(entry: &StoredResponse, now: SystemTime) -> bool {
    entry.is_fresh(now) || (!entry.must_revalidate && entry.staleness(now) < entry.stale_if_error)
}

/// Headers that describe one connection, never stored or forwarded from a cache
/// (RFC 9110 section 7.6.1), plus the ones the cache computes itself.
const NOT_STORED: [&str; 12] = [
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
    pub header_list: &'a [(String, Bytes)],
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
        header_list: &'a [(String, Bytes)],
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

fn header_str(h: &dyn HeaderSource, name: &str) -> Option<String> {
    h.first(name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|s| s.trim().to_owned())
}

fn parse_date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()
}

fn http_date(h: &dyn HeaderSource, name: &str) -> Option<SystemTime> {
    h.first(name).and_then(parse_date)
}

/// Decides whether a response may be stored under `policy`, and with which
/// freshness, stale windows, validators and headers: the entry to store,
/// without its body (recorded while it streams).
pub fn admit(
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
) -> Result<StoredResponse, NoCacheReason> {
    let cc = CacheControl::from_headers(resp.headers);

    if resp.status == 206 || !policy.allows_status(resp.status) {
        return Err(NoCacheReason::Status);
    }
    if cc.no_store {
        return Err(NoCacheReason::ResponseNoStore);
    }
    if cc.private {
        return Err(NoCacheReason::Private);
    }
    if resp.headers.first("set-cookie").is_some() {
        return Err(NoCacheReason::SetCookie);
    }
    // RFC 9111 section 3.5: a shared cache stores responses to authenticated
    // requests only when the response says it may.
    if req.headers.first("authorization").is_some()
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NoCacheReason::Authorization);
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
    if vary_star {
        return Err(NoCacheReason::VaryStar);
    }
    vary.sort();

    // Age when received (RFC 9111 section 4.2.3).
    let date = http_date(resp.headers, "date");
    let age_value = header_str(resp.headers, "age")
        .and_then(|a| a.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let apparent_age = date
        .and_then(|d| resp.response_time.duration_since(d).ok())
        .unwrap_or_default();
    let response_delay = resp
        .response_time
        .duration_since(resp.request_time)
        .unwrap_or_default();
    let initial_age = apparent_age.max(age_value + response_delay);

    // Freshness lifetime (RFC 9111 section 4.2.1), or the policy's TTL.
    let origin_lifetime = cc
        .s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            http_date(resp.headers, "expires").map(|exp| {
                exp.duration_since(date.unwrap_or(resp.response_time))
                    .unwrap_or_default()
            })
        })
        .or_else(|| header_str(resp.headers, "expires").map(|_| Duration::ZERO));
    let lifetime = match (policy.ttl_mode(), policy.ttl(), origin_lifetime) {
        (TtlMode::Override, Some(ttl), _) => ttl,
        (_, _, Some(origin)) => origin,
        (_, Some(ttl), None) => ttl,
        (_, None, None) => Duration::ZERO,
    };
    let etag = resp.headers.first("etag").map(Bytes::copy_from_slice);
    let last_modified = resp
        .headers
        .first("last-modified")
        .map(Bytes::copy_from_slice);
    let has_validator = etag.is_some() || last_modified.is_some();
    let no_cache = cc.no_cache && policy.ttl_mode() != TtlMode::Override;
    if lifetime.is_zero() && !(has_validator && (no_cache || origin_lifetime.is_some())) {
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
        .filter(|(n, _)| !NOT_STORED.contains(&n.as_str()) && !connection_named.contains(n))
        .cloned()
        .collect();

    let secs = |v: Option<u64>, policy: Option<Duration>| {
        v.map(Duration::from_secs).or(policy).unwrap_or_default()
    };
    let entry = StoredResponse {
        status: resp.status,
        headers,
        body: Bytes::new(),
        compression: crate::entry::BodyEncoding::Identity,
        stored_at: resp.response_time,
        initial_age,
        freshness_lifetime: lifetime,
        stale_while_revalidate: secs(cc.stale_while_revalidate, policy.stale_while_revalidate()),
        stale_if_error: secs(cc.stale_if_error, policy.stale_if_error()),
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
        no_cache,
        etag,
        last_modified,
        vary,
        tags: Vec::new(),
    };
    Ok(entry)
}

/// Updates a stored entry with a 304's headers and freshness (RFC 9111 section 4.3.4).
pub fn freshen(
    entry: &mut StoredResponse,
    policy: &Policy,
    req: &RequestView<'_>,
    resp: &OriginResponse<'_>,
) {
    let mut headers = entry.headers.clone();
    for (name, value) in resp.header_list {
        if NOT_STORED.contains(&name.as_str()) || name == "content-encoding" {
            continue;
        }
        headers.retain(|(n, _)| n != name);
        headers.push((name.clone(), value.clone()));
    }
    // Reuse admit() for the freshness arithmetic on the merged headers.
    let merged = HeaderList(&headers);
    let status = entry.status;
    let view = OriginResponse {
        status,
        headers: &merged,
        header_list: &headers,
        ..*resp
    };
    if let Ok(fresh) = admit(policy, req, &view) {
        let body = std::mem::take(&mut entry.body);
        let (compression, tags) = (entry.compression, std::mem::take(&mut entry.tags));
        *entry = fresh;
        entry.body = body;
        entry.compression = compression;
        entry.tags = tags;
    } else {
        entry.headers = headers;
        entry.stored_at = resp.response_time;
    }
}

/// Whether the request's `If-None-Match` / `If-Modified-Since` match the entry,
/// so a 304 answers it (RFC 9110 section 13.2.2). Only GET and HEAD.
pub fn not_modified(req: &RequestView<'_>, entry: &StoredResponse) -> bool {
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD")) {
        return false;
    }
    let mut inm = Vec::new();
    req.headers
        .for_each_value("if-none-match", &mut |v| inm.push(v.to_vec()));
    if !inm.is_empty() {
        let Some(etag) = &entry.etag else {
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
        .and_then(parse_date)
        .or_else(|| entry.header("date").and_then(|v| parse_date(v)));
    last.is_some_and(|last| last <= since)
}

/// Whether the client accepts gzip (`Accept-Encoding` lists gzip or `*` with q > 0).
pub fn accepts_gzip(headers: &dyn HeaderSource) -> bool {
    let mut ok = false;
    headers.for_each_value("accept-encoding", &mut |v| {
        for item in v.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let q_zero = parts.any(|p| {
                let p = p.trim_ascii();
                p.len() >= 2
                    && p[..2].eq_ignore_ascii_case(b"q=")
                    && std::str::from_utf8(&p[2..])
                        .ok()
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        == Some(0.0)
            });
            if (coding.eq_ignore_ascii_case(b"gzip") || coding == b"*") && !q_zero {
                ok = true;
            }
        }
    });
    ok
}

/// The path (and query) of a `Location` / `Content-Location` on the request's
/// own host, for invalidation after an unsafe request; other hosts' URLs are
/// not ours to invalidate (RFC 9111 section 4.4).
pub fn same_host_path(location: &str, host: Option<&str>) -> Option<String> {
    if location.starts_with('/') {
        return Some(location.to_owned());
    }
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
        .then_some(path)
}

/// Whether a method is unsafe and, on success, invalidates its target (RFC 9111 section 4.4).
pub fn is_unsafe(method: &str) -> bool {
    !["GET", "HEAD", "OPTIONS", "TRACE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

#[cfg(test)]
mod tests;
