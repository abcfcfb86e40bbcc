//! Validation (RFC 9111 section 4.3): the client's conditionals the cache
//! answers from a stored entry with a 304 (RFC 9110 section 13), and what
//! an origin's 304 does to the entry it validated.

use crate::field::FieldName;
use bytes::Bytes;

use super::admission::{admit, OriginResponse, NOT_STORED, PER_CLIENT};
use super::date::{http_date, parse_http_date};
use crate::entry::StoredResponse;
use crate::policy::Policy;
use crate::request::{HeaderList, RequestView};
use crate::stats::NoCacheReason;

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

/// Whether the request's `If-None-Match` / `If-Modified-Since` match the entry,
/// so a 304 answers it (RFC 9110 section 13.2.2). Only GET and HEAD, and only
/// from a stored 2xx (RFC 9110 section 13.2.1).
pub fn not_modified(req: &RequestView<'_>, entry: &StoredResponse) -> bool {
    not_modified_as(req, entry, entry.etag.as_deref())
}

/// [`not_modified`] for the representation of `entry` whose validator is
/// `etag`: a gzip body the cache made has its own
/// ([`super::encoding::gzip_etag`]), and `If-None-Match` is compared with
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
    // Without `Last-Modified`, the stored response's `Date`, or else the
    // time it was received, stands in for it (RFC 9111 section 4.3.2): a
    // response generated after `since` may have changed since, one
    // generated at or before it has not.
    let last = entry
        .last_modified
        .as_deref()
        .and_then(parse_http_date)
        .or_else(|| entry.header("date").and_then(|v| parse_http_date(v)))
        .unwrap_or(entry.stored_at);
    last <= since
}

#[cfg(test)]
mod tests;
