//! Translation between actix-web's types and core's: header lookup and
//! edits, the view core decides on, cached responses, and the request body
//! core reads to key on. Nothing here decides; core does.

use std::fmt;

use actix_web::body::MessageBody;
use actix_web::dev::{ConnectionInfo, Payload, ServiceRequest};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::StreamExt;
use uip_cache_core::{
    field_name, BodyRead, BodyReader, CachedResponse, Connection, FieldName, HeaderEdit,
    HeaderEdits, HeaderSource, HttpCache, Refresh, RequestView,
};

use crate::body::CacheBody;

/// Core's header lookup over an actix header map.
pub(crate) struct Headers<'a>(pub(crate) &'a HeaderMap);

impl HeaderSource for Headers<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

/// The header list of a message, names lower case, for storing.
pub(crate) fn header_list(headers: &HeaderMap) -> Vec<(FieldName, Bytes)> {
    headers
        .iter()
        .map(|(n, v)| (field_name(n.as_str()), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// Applies core's header edits to a map.
pub(crate) fn apply(map: &mut HeaderMap, edits: HeaderEdits<'_>) {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    map.remove(n);
                }
            }
            HeaderEdit::Set(name, value) => {
                if let Ok(v) = HeaderValue::from_maybe_shared(value) {
                    map.insert(HeaderName::from_static(name), v);
                }
            }
        }
    }
}

/// The facts of the connection as the server knows them: the peer, and
/// TLS from the listener (`AppConfig::secure`), never the scheme of the
/// client's absolute-form target.
fn connection(req: &ServiceRequest) -> Connection {
    Connection::new(req.peer_addr(), req.app_config().secure())
}

/// Makes the request the app sees agree with its key, before anything
/// reads it:
/// - an absolute-form target (or HTTP/2's `:scheme` and `:authority`)
///   becomes origin-form with its authority as `Host` (RFC 9112 section
///   3.2.2): `ConnectionInfo` would take the scheme from the target and the
///   host from `Host`;
/// - the forwarding headers core says to remove go: all of them from a peer
///   not in `server.trusted_proxies` (`ConnectionInfo` reads `Forwarded` and
///   `X-Forwarded-*` before `Host`, while the key holds `Host`).
pub(crate) fn guard(cache: &HttpCache, req: &mut ServiceRequest) {
    use actix_web::HttpMessage;

    let mut changed = false;
    if let Some(authority) = req.uri().authority() {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = actix_web::http::Uri::builder().path_and_query(pq).build();
        if let (Ok(host), Ok(uri)) = (HeaderValue::from_str(authority.as_str()), uri) {
            req.headers_mut().insert(HOST, host);
            req.head_mut().uri = uri;
            changed = true;
        }
    }
    let strip = cache
        .client_origin(&connection(req), None, &Headers(req.headers()))
        .strip();
    if req.headers().keys().any(|n| strip.contains(n.as_str())) {
        // Every spelling of the names (`X_Forwarded_Host` too).
        let names: Vec<_> = req
            .headers()
            .keys()
            .filter(|n| strip.contains(n.as_str()))
            .cloned()
            .collect();
        for name in names {
            req.headers_mut().remove(name);
        }
        changed = true;
    }
    if changed {
        // An outer middleware may have read the connection info already;
        // the app reads it again from what is left.
        req.extensions_mut().remove::<ConnectionInfo>();
    }
}

/// Core's view of a request, with the scheme and host core decides from
/// the connection, or, for a refresh this middleware sent, from its marker.
pub(crate) fn view<'a>(
    cache: &HttpCache,
    req: &'a ServiceRequest,
    headers: &'a Headers<'a>,
    refresh: Option<Refresh>,
) -> RequestView<'a> {
    let target = req.uri().authority().map(|a| a.as_str());
    let origin = cache.client_origin(&connection(req), target, headers);
    let origin = refresh.map_or(origin, |r| r.origin(origin));
    RequestView::new(req.method().as_str(), req.path(), headers)
        .query(req.uri().query())
        .origin(origin)
}

pub(crate) fn from_cached<B: MessageBody>(
    r: CachedResponse,
    head: bool,
) -> HttpResponse<CacheBody<B>> {
    let len = r.body.len();
    let stored_len = r
        .headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(len);
    let body = if head {
        CacheBody::head(stored_len)
    } else {
        CacheBody::cached(r.body)
    };
    let mut res = HttpResponse::with_body(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        body,
    );
    for (n, v) in r.headers {
        // actix computes Content-Length from the body itself.
        if n == CONTENT_LENGTH.as_str() {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(&v),
        ) {
            res.headers_mut().append(n, v);
        }
    }
    res
}

/// A stale entry standing in for an inner service's error
/// (stale-if-error): actix renders it as the response. Rendered once: its
/// body may be read as it is sent (a large gzip entry decompressed for a
/// client without gzip), so it is taken, not copied.
#[derive(Debug)]
pub(crate) struct StaleOnError(std::sync::Mutex<Option<CachedResponse>>, StatusCode, bool);

impl StaleOnError {
    pub(crate) fn new(r: CachedResponse, head: bool) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
        StaleOnError(std::sync::Mutex::new(Some(r)), status, head)
    }
}

impl fmt::Display for StaleOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the origin failed; a stale entry answered (stale-if-error)")
    }
}

impl actix_web::ResponseError for StaleOnError {
    fn status_code(&self) -> StatusCode {
        self.1
    }

    fn error_response(&self) -> HttpResponse {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match taken {
            Some(r) => from_cached::<actix_web::body::BoxBody>(r, self.2).map_into_boxed_body(),
            // Rendered before: the origin's failure, without the entry.
            None => HttpResponse::new(StatusCode::BAD_GATEWAY),
        }
    }
}

/// The payload stream actix takes back (`Payload::Stream`).
type PayloadStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>,
>;

/// Reads the request body as core's [`BodyReader`] decides, up to `limit`
/// bytes: the bytes when it ends within them (and the request gets exactly
/// them back as its payload); `None` when it does not (a larger
/// `Content-Length` is not read at all), the request's payload then being
/// what was read followed by the rest.
pub(crate) async fn read_payload(req: &mut ServiceRequest, limit: u64) -> Option<Bytes> {
    use actix_web::HttpMessage;

    let reader = BodyReader::new(limit, &Headers(req.headers()))?;
    let mut payload = req.take_payload();
    let rest: PayloadStream = match reader.read(|cx| payload.poll_next_unpin(cx)).await {
        BodyRead::Whole(bytes) => {
            req.set_payload(Payload::from(bytes.clone()));
            return Some(bytes);
        }
        BodyRead::Partial(read) => {
            Box::pin(futures_util::stream::once(std::future::ready(Ok(read))).chain(payload))
        }
        BodyRead::Failed(read, e) => Box::pin(futures_util::stream::iter([Ok(read), Err(e)])),
    };
    req.set_payload(Payload::Stream { payload: rest });
    None
}
