//! Responses from stored entries (304s included) and the headers the cache
//! adds to responses: `X-Cache` and `Cache-Status`; counting outcomes.

use std::time::SystemTime;

use crate::field::FieldName;
use bytes::Bytes;

use super::partial;
use super::RangeReply;
use super::{CachePlan, CachedBody, HttpCache};
use crate::compress;
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::cache_status::{self, Forward, OriginFailure, XCache};
use crate::http::conditional;
use crate::http::encoding::{
    gzip_etag, representation_headers, takes_cache_gzip, varies_by_encoding,
};
use crate::http::range::{self, Validators};
use crate::request::RequestView;
use crate::settings::Settings;

/// A response built from a stored entry, for the adapter to send.
#[derive(Debug)]
#[non_exhaustive]
pub struct CachedResponse {
    /// Status (304 when the request's conditionals matched, 206 or 416
    /// when it asked for a range).
    pub status: u16,
    /// Headers, lower-case names, including `age`, `x-cache` and `content-length`.
    pub headers: Vec<(FieldName, Bytes)>,
    /// Body (empty for HEAD and 304).
    pub body: CachedBody,
}

impl HttpCache {
    /// Builds the response for `req` from `entry`: a 304 when the request's
    /// conditionals match, the stored gzip for clients that accept it, the
    /// identity body otherwise; of a complete 200, the ranges the request
    /// asks for (206, 416); with the headers `settings` name. `None` if a
    /// compressed body does not decode.
    pub(crate) fn respond(
        &self,
        settings: &Settings,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        x_cache: XCache,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        self.respond_after(settings, entry, req, x_cache, now, None)
    }

    /// [`HttpCache::respond`], for a stale entry standing in for an origin
    /// that `failed` (stale-if-error): `Cache-Status` says the request was
    /// forwarded and what came back.
    pub(crate) fn respond_after(
        &self,
        settings: &Settings,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        x_cache: XCache,
        now: SystemTime,
        failed: Option<OriginFailure>,
    ) -> Option<CachedResponse> {
        let age_d = entry.age(now);
        let age = age_d.as_secs().to_string();
        let status = settings.cache_status_name().map(|name| {
            // Remaining freshness, negative once stale (RFC 9211 2.2).
            let fresh = i64::try_from(entry.freshness_lifetime.as_secs()).unwrap_or(i64::MAX);
            let ttl = fresh.saturating_sub(i64::try_from(age_d.as_secs()).unwrap_or(i64::MAX));
            let v = cache_status::served(name, x_cache, failed, ttl);
            ("cache-status".into(), Bytes::from(v))
        });
        // The representation this request gets: the gzip the cache made
        // for clients that take it, unless the response or the request
        // forbids transformation; the origin's identity bytes otherwise.
        let varies = varies_by_encoding(entry);
        let gzip = varies && takes_cache_gzip(req);
        let mut headers: Vec<(FieldName, Bytes)> = Vec::with_capacity(entry.headers.len() + 5);
        let etag = match gzip {
            true => entry.etag.as_deref().and_then(gzip_etag),
            false => entry.etag.clone(),
        };
        if conditional::not_modified_as(req, entry, etag.as_deref()) {
            const KEEP: [&str; 7] = [
                "cache-control",
                "content-location",
                "date",
                "etag",
                "expires",
                "last-modified",
                "vary",
            ];
            representation_headers(entry, gzip, varies, |n| KEEP.contains(&n), &mut headers);
            headers.push(("age".into(), Bytes::from(age)));
            headers.push((
                "x-cache".into(),
                Bytes::from_static(x_cache.as_str().as_bytes()),
            ));
            headers.extend(status);
            return Some(CachedResponse {
                status: 304,
                headers,
                body: CachedBody::empty(),
            });
        }
        let head = req.method.eq_ignore_ascii_case("HEAD");
        let decoded = entry.compression == BodyEncoding::Gzip && !gzip;
        // A range of the representation this request gets: of the gzip
        // for a client that takes it, of the identity bytes otherwise.
        let part = self.stored_part(entry, req, gzip, decoded, etag.as_deref());
        if let Some(p) = part.as_ref().filter(|p| p.status == 416) {
            headers.extend(p.headers.iter().map(|(n, v)| ((*n).into(), v.clone())));
            headers.push(("age".into(), Bytes::from(age)));
            headers.push((
                "x-cache".into(),
                Bytes::from_static(x_cache.as_str().as_bytes()),
            ));
            headers.extend(status);
            return Some(CachedResponse {
                status: 416,
                headers,
                body: CachedBody::empty(),
            });
        }
        let (body, len) = if decoded {
            // HEAD needs only the length, which the gzip trailer gives.
            let decoded = match head {
                true => {
                    compress::gzip_content_length(&entry.body).map(|n| (CachedBody::empty(), n))
                }
                false => self.gunzipped(entry).map(|b| {
                    let n = b.len();
                    (b, n)
                }),
            };
            let Some(decoded) = decoded else {
                self.inner.stats.corrupt_entry();
                if let Some(left_out) = self.inner.quiet.corrupt.admit() {
                    tracing::warn!(left_out, "stored gzip body does not decompress");
                }
                return None;
            };
            decoded
        } else {
            if gzip {
                headers.push(("content-encoding".into(), Bytes::from_static(b"gzip")));
            }
            (
                CachedBody::from(entry.body.clone()),
                entry.body.len() as u64,
            )
        };
        // A complete 200 says the cache answers ranges of it (of a GET),
        // whatever the origin said of its own.
        let complete = entry.status == 200 && (head || req.method == "GET");
        let (code, body) = match part {
            Some(p) => {
                let replaced = |n: &str| !p.headers.iter().any(|(h, _)| *h == n);
                representation_headers(entry, gzip, varies, replaced, &mut headers);
                headers.extend(p.headers.into_iter().map(|(n, v)| (n.into(), v)));
                let body = if head { body } else { body.sliced(p.slicer) };
                (206, body)
            }
            None => {
                let keep = |n: &str| !(complete && n == "accept-ranges");
                representation_headers(entry, gzip, varies, keep, &mut headers);
                headers.push(("content-length".into(), Bytes::from(len.to_string())));
                if complete {
                    headers.push(("accept-ranges".into(), Bytes::from_static(b"bytes")));
                }
                (entry.status, body)
            }
        };
        headers.push(("age".into(), Bytes::from(age)));
        headers.push((
            "x-cache".into(),
            Bytes::from_static(x_cache.as_str().as_bytes()),
        ));
        headers.extend(status);
        let body = if head { CachedBody::empty() } else { body };
        Some(CachedResponse {
            status: code,
            headers,
            body,
        })
    }

    /// The 206 a stored part (`entry`, a 206 stored by
    /// [`admit_part`](crate::http::admission::admit_part)) gives `req`:
    /// only a GET whose `Range` asks for bytes that all lie within the
    /// part, whose `If-Range` holds against the part's validators, and
    /// that has no precondition or validator of its own. `None` (the
    /// origin answers) for anything else: a request for the whole, a HEAD,
    /// a range reaching past the part, one the cache would ignore.
    pub(crate) fn respond_part(
        &self,
        settings: &Settings,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        x_cache: XCache,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        const CONDITIONALS: [&str; 4] = [
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
        ];
        if req.method != "GET"
            || entry.status != 206
            || entry.compression != BodyEncoding::Identity
            || CONDITIONALS.iter().any(|h| req.headers.first(h).is_some())
        {
            return None;
        }
        let (part, len) = range::stored_part(entry.header("content-range")?)?;
        if entry.body.len() as u64 != part.len() {
            return None;
        }
        let validators = Validators {
            etag: entry.etag.as_deref(),
            last_modified: entry.last_modified.as_deref(),
            date: entry.header("date").map(|d| &d[..]),
            dates_strong: true,
        };
        let ranges = match range::for_request(req, len, &validators) {
            range::Ranges::Partial(ranges) if range::all_within(&ranges, part) => ranges,
            _ => return None,
        };
        let content_type = entry.header("content-type").map(|t| &t[..]);
        let mut p = partial::part(range::Ranges::Partial(ranges), len, content_type)?;
        p.slicer = p.slicer.starting_at(part.start);
        let mut headers: Vec<(FieldName, Bytes)> = Vec::with_capacity(entry.headers.len() + 5);
        let replaced = |n: &str| n != "content-range" && !p.headers.iter().any(|(h, _)| *h == n);
        representation_headers(entry, false, false, replaced, &mut headers);
        headers.extend(p.headers.into_iter().map(|(n, v)| (n.into(), v)));
        headers.push((
            "age".into(),
            Bytes::from(entry.age(now).as_secs().to_string()),
        ));
        headers.push((
            "x-cache".into(),
            Bytes::from_static(x_cache.as_str().as_bytes()),
        ));
        headers.extend(settings.cache_status_name().map(|name| {
            let fresh = i64::try_from(entry.freshness_lifetime.as_secs()).unwrap_or(i64::MAX);
            let age = i64::try_from(entry.age(now).as_secs()).unwrap_or(i64::MAX);
            let v = cache_status::served(name, x_cache, None, fresh.saturating_sub(age));
            ("cache-status".into(), Bytes::from(v))
        }));
        Some(CachedResponse {
            status: 206,
            headers,
            body: CachedBody::from(entry.body.clone()).sliced(p.slicer),
        })
    }

    /// The 206 or 416 that `entry` gives `req` when it asks for a range of
    /// the representation it gets (the cache's gzip when `gzip`, the
    /// identity bytes decompressed when `decoded`, else the stored bytes),
    /// whose validator is `etag`; `None` when the whole answers.
    fn stored_part(
        &self,
        entry: &StoredResponse,
        req: &RequestView<'_>,
        gzip: bool,
        decoded: bool,
        etag: Option<&[u8]>,
    ) -> Option<RangeReply> {
        if entry.status != 200
            || !range::has_range(req.headers)
            || entry.header("content-range").is_some()
        {
            return None;
        }
        let len = match decoded {
            // The length the gzip trailer gives; a corrupt body is found,
            // and counted, when it is read.
            true => compress::gzip_content_length(&entry.body)?,
            false => entry.body.len() as u64,
        };
        // A range of the identity bytes of a gzip entry decompresses up to
        // its end: past this size a one-byte range would cost what a whole
        // answer costs, for the price of one byte. Such clients get the
        // whole (`Range` may be ignored, RFC 9110 14.2).
        if decoded && len > DECODED_RANGE_LIMIT {
            return None;
        }
        let validators = Validators {
            etag,
            last_modified: entry.last_modified.as_deref(),
            date: entry.header("date").map(|d| &d[..]),
            // The cache's gzip of a response may differ, byte for byte,
            // from its gzip of the same response stored again.
            dates_strong: !gzip,
        };
        let ranges = range::for_request(req, len, &validators);
        partial::part(ranges, len, entry.header("content-type").map(|t| &t[..]))
    }

    /// The headers the cache adds to a response from the origin, each to
    /// be set (replacing the origin's): `X-Cache` and, unless turned off,
    /// RFC 9211 `Cache-Status` (`uip-cache; fwd=uri-miss; stored`,
    /// `fwd=bypass; detail=no_policy`, ...). `upstream` are the response's
    /// own `Cache-Status` values, from caches nearer the origin: ours is
    /// added after them, as RFC 9211 asks. By the settings the cache runs
    /// on now.
    pub fn forward_headers<'u>(
        &self,
        f: Forward,
        upstream: impl IntoIterator<Item = &'u [u8]>,
    ) -> impl Iterator<Item = (&'static str, Bytes)> {
        forward_headers(&self.settings(), f, upstream)
    }

    /// The `Cache-Status` of a response the cache makes up itself (the 504
    /// to `only-if-cached`): `detail` says why.
    pub(crate) fn own_status(
        &self,
        settings: &Settings,
        detail: &str,
    ) -> Option<(FieldName, Bytes)> {
        settings.cache_status_name().map(|name| {
            (
                "cache-status".into(),
                Bytes::from(cache_status::own(name, detail)),
            )
        })
    }

    /// Counts a request's outcome. Bypasses are counted with their reason by
    /// [`CacheStats::bypass`]; revalidations by [`CacheStats::revalidation`].
    pub(crate) fn count(&self, plan: &CachePlan, outcome: XCache) {
        let stats = &self.inner.stats;
        let policy = plan.policy.map(|i| (i, self.policy(plan).name()));
        match outcome {
            XCache::Hit => stats.policy_hit(policy),
            XCache::Stale => stats.policy_stale(policy),
            XCache::Miss | XCache::Expired => stats.policy_miss(policy),
            XCache::Bypass => stats.policy_bypass(policy),
        }
    }
}

/// [`HttpCache::forward_headers`] by `settings`.
pub(crate) fn forward_headers<'u>(
    settings: &Settings,
    f: Forward,
    upstream: impl IntoIterator<Item = &'u [u8]>,
) -> impl Iterator<Item = (&'static str, Bytes)> {
    let status = settings.cache_status_name().map(|name| {
        let v = cache_status::forwarded(name, f, upstream);
        ("cache-status", Bytes::from(v))
    });
    std::iter::once(("x-cache", Bytes::from_static(f.x_cache.as_str().as_bytes()))).chain(status)
}

/// The largest identity length of a gzip-stored entry whose ranges are
/// answered to clients that do not take gzip.
const DECODED_RANGE_LIMIT: u64 = 1 << 20;
