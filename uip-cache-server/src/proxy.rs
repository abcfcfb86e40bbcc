//! The upstream side of the reverse proxy: a Tower service that forwards a
//! request to the backend over a pooled keep-alive connection and streams
//! both bodies, as nginx's `proxy_pass` does.
//!
//! - an `http://` backend is spoken to in HTTP/1.1 over connections of
//!   the proxy's own pool (see `pool.rs`: one task per connection, a
//!   connection reused only once its response was read whole);
//!
//! - hop-by-hop headers (RFC 9110 section 7.6.1, and those named by
//!   `Connection`) are dropped both ways;
//! - `Via` is added both ways; the forwarding headers are the proxy's own:
//!   the cache layer in front has removed those of clients outside
//!   `server.trusted_proxies` (see [`uip_cache_core::forwarding`]), and
//!   core's [`upstream_edits`] set `X-Forwarded-For` (the peer appended to
//!   what a trusted proxy sent, as nginx's `$proxy_add_x_forwarded_for`),
//!   `X-Forwarded-Proto` and `X-Forwarded-Host` to the scheme and host the
//!   cache keyed on, and `Forwarded` (RFC 7239) where a trusted proxy did
//!   not send it; the client's `Host` goes to the backend unchanged;
//! - the backend's 1xx interim responses (103 Early Hints, ...) go on to
//!   an HTTP/1.1 client when the request carries [`Interims`] (see
//!   [`crate::interim`]); they never reach the cache;
//! - a backend that cannot be reached answers 502, one that does not send
//!   its response headers in time 504, each with a short plain body (the
//!   cache serves a stale entry instead when stale-if-error allows);
//! - an `https://` backend is reached over TLS, verified (see
//!   [`crate::tls::client`]); HTTP/2 when it offers `h2` by ALPN. A
//!   certificate that does not verify is a 502 and a log line saying why,
//!   never a connection without verification.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use uip_cache_core::forwarding::upstream_edits;
use uip_cache_core::{Connection, HeaderEdit, HeaderEdits, OriginUnreachable};

use crate::interim::Interims;
use crate::tls::client::{default_client_config, tls_failure, UpstreamConnector};

mod chunked;
mod idle;
mod pool;
mod raw;

pub(crate) use chunked::{Chunked, Decoded};
pub(crate) use raw::RawPool;

pub use pool::PooledBody;

/// The body of a proxied response: the backend's, streamed, or a short
/// error of the proxy's own.
pub type ProxyBody = Either<BackendBody, Full<Bytes>>;

/// A backend's response body, streamed: from a connection of the proxy's
/// own pool (`http://` backends), which goes back to the pool once the
/// body is read whole, or from the shared client (`https://` backends).
#[derive(Debug)]
pub struct BackendBody(BackendBodyKind);

#[derive(Debug)]
enum BackendBodyKind {
    Pooled(PooledBody),
    Shared(Incoming),
}

impl http_body::Body for BackendBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            BackendBodyKind::Pooled(b) => Pin::new(b).poll_frame(cx),
            BackendBodyKind::Shared(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BackendBodyKind::Pooled(b) => b.is_end_stream(),
            BackendBodyKind::Shared(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            BackendBodyKind::Pooled(b) => b.size_hint(),
            BackendBodyKind::Shared(b) => b.size_hint(),
        }
    }
}

/// The body of a proxied request: the client's, streamed, or none (a warm
/// request the proxy makes itself).
#[derive(Debug, Default)]
pub enum RequestBody {
    /// The client's body.
    Client(Incoming),
    /// The client's body, with the time it keeps the proxy waiting bounded
    /// by `server.send_timeout` (what the server passes on).
    Watched(crate::slow::ClientBody),
    /// No body.
    #[default]
    Empty,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Watched(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) => b.is_end_stream(),
            RequestBody::Watched(b) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RequestBody::Client(b) => b.size_hint(),
            RequestBody::Watched(b) => b.size_hint(),
            RequestBody::Empty => http_body::SizeHint::with_exact(0),
        }
    }
}

/// What the upstream receives: the client's body as the cache layer hands
/// it on (untouched, or the exact bytes it buffered to key on).
pub type UpstreamBody = uip_cache_tower::RequestBody<RequestBody>;

const VIA: &str = "1.1 uip-cache";

/// The log lines of failed upstream requests, which every request would
/// write while a backend is down or slow: at most one a second of each
/// kind for all backends together (see [`uip_cache_core::quiet`]), on both
/// the general path and the fast loop's relay. The lines left out are
/// counted in the next one; what they said (their backend, their error)
/// is not kept.
pub(crate) mod quiet {
    use uip_cache_core::quiet::Quiet;

    /// A request that could not be sent or answered.
    pub(crate) static FAILED: Quiet = Quiet::new();
    /// A response that did not come within the upstream timeout.
    pub(crate) static TIMED_OUT: Quiet = Quiet::new();
    /// A TLS handshake that failed.
    pub(crate) static TLS: Quiet = Quiet::new();
    /// A chunked body that broke its coding.
    pub(crate) static CHUNKED: Quiet = Quiet::new();
}

/// Hop-by-hop headers, never forwarded (RFC 9110 section 7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Forwards requests to one backend. Cloned for every request (the
/// service stack is), so it is one shared allocation: a clone is one
/// counter, not the client's many.
#[derive(Clone)]
pub struct Upstream(Arc<UpstreamInner>);

struct UpstreamInner {
    transport: Transport,
    base: Uri,
    /// The `Host` of a request that has none (an HTTP/1.0 client's): the
    /// backend's authority, without the scheme's default port.
    host: Option<HeaderValue>,
    timeout: Duration,
    /// Bare sockets to an `http://` backend, for the fast loop's relay.
    raw: Option<RawPool>,
}

/// How requests reach the backend.
enum Transport {
    /// `http://`: HTTP/1.1 on connections of the proxy's own pool.
    Pooled(pool::Pool),
    /// `https://`: hyper-util's client, for TLS and HTTP/2 by ALPN.
    Shared(Box<Client<UpstreamConnector, UpstreamBody>>),
}

/// Idle upstream connections kept for reuse, at most.
const UPSTREAM_IDLE: usize = 256;

/// How long an idle upstream connection is kept for reuse: less than the
/// 5 s after which Node.js and Apache close idle keep-alive connections.
/// A request written on a connection just as its backend closes it fails
/// (502) with no way to tell whether the backend saw it, so it is not
/// sent again; a connection idle for longer than the backend keeps it is
/// never reused, so that race cannot start.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

impl Upstream {
    /// A pooled client for `base` (`http://host:port`, or `https://` with
    /// the webpki roots), giving up on a connection after
    /// `connect_timeout` (502) and on response headers after `timeout`
    /// (504).
    pub fn new(base: Uri, connect_timeout: Duration, timeout: Duration) -> Self {
        Upstream::with_tls(base, connect_timeout, timeout, default_client_config())
    }

    /// [`Upstream::new`], with `tls` for an `https://` base (see
    /// [`crate::tls::client::client_config`]).
    pub fn with_tls(
        base: Uri,
        connect_timeout: Duration,
        timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        let connector = UpstreamConnector::new(tls, connect_timeout);
        // Connections in use follow the requests in flight (the listener
        // bounds those); idle ones are kept at most UPSTREAM_IDLE_TIMEOUT,
        // and at most UPSTREAM_IDLE of them, so a burst does not leave
        // sockets behind.
        let (transport, raw) = if base.scheme_str() == Some("https") {
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
                .pool_max_idle_per_host(UPSTREAM_IDLE)
                .build(connector);
            (Transport::Shared(Box::new(client)), None)
        } else {
            // hyper's connections, and bare sockets for the fast loop's
            // relay, each pool with the same bounds.
            let raw = RawPool::new(
                base.clone(),
                connector.clone(),
                UPSTREAM_IDLE,
                UPSTREAM_IDLE_TIMEOUT,
            );
            let pool = pool::Pool::new(
                base.clone(),
                connector,
                UPSTREAM_IDLE,
                UPSTREAM_IDLE_TIMEOUT,
            );
            (Transport::Pooled(pool), Some(raw))
        };
        let host = base.host().and_then(|h| {
            let value = match base.port_u16() {
                Some(p) if p != 80 => format!("{h}:{p}"),
                _ => h.to_owned(),
            };
            HeaderValue::from_str(&value).ok()
        });
        Upstream(Arc::new(UpstreamInner {
            transport,
            base,
            host,
            timeout,
            raw,
        }))
    }

    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.0.base.scheme_str().unwrap_or("http"))
            .authority(self.0.base.authority().map_or("localhost", |a| a.as_str()))
            .path_and_query(path)
            .build()
    }

    /// The backend's URL, `http://host:port` or `https://host:port`.
    pub fn base(&self) -> &Uri {
        &self.0.base
    }

    /// Bare sockets to the backend when it is `http://` (for the fast
    /// loop's relay, which speaks HTTP/1.1 on them itself).
    pub(crate) fn raw(&self) -> Option<&RawPool> {
        self.0.raw.as_ref()
    }

    /// How long the backend has to send a response head (then 504).
    pub(crate) fn timeout(&self) -> Duration {
        self.0.timeout
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.0.base)
            .field("timeout", &self.0.timeout)
            .finish_non_exhaustive()
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names
/// (never `Host` or the body's framing, which a client could otherwise use
/// to make the backend see another request than the cache keyed).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over their few names costs less
    // than a lookup for each hop-by-hop name.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let tokens = || {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    // `Connection: keep-alive`, as most backends send, names nothing
    // that is not removed below.
    let hop = |t: &str| {
        HOP_BY_HOP
            .iter()
            .any(|n| t.eq_ignore_ascii_case(n.as_str()))
    };
    if tokens().any(|t| !t.is_empty() && !hop(t)) {
        let named: Vec<HeaderName> = tokens()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .filter(|n| *n != header::HOST && *n != header::CONTENT_LENGTH)
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Makes a client request unambiguous before the cache keys it: exactly one
/// `Host`; an absolute-form target becomes origin-form with its authority as
/// `Host` (RFC 9112 section 3.2.2); hop-by-hop headers go. The cache and the
/// backend then see the same host and headers. `Err` is the answer to send.
#[allow(clippy::result_large_err)]
pub fn normalize<B>(req: &mut Request<B>) -> Result<(), Response<ProxyBody>> {
    if req.method() == http::Method::CONNECT {
        return Err(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not proxied",
        ));
    }
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "more than one Host header",
        ));
    }
    if let Some(authority) = req.uri().authority().cloned() {
        let Ok(host) = HeaderValue::from_str(authority.as_str()) else {
            return Err(error_response(StatusCode::BAD_REQUEST, "invalid authority"));
        };
        req.headers_mut().insert(header::HOST, host);
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        match Uri::builder().path_and_query(path).build() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return Err(error_response(StatusCode::BAD_REQUEST, "invalid target")),
        }
    }
    // HTTP/2 clients may split cookies over several fields; an HTTP/1
    // backend gets them as one (RFC 9113 section 8.2.3).
    if req.headers().get_all(header::COOKIE).iter().count() > 1 {
        let joined: Vec<&[u8]> = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        match HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
            Ok(v) => {
                req.headers_mut().insert(header::COOKIE, v);
            }
            Err(_) => return Err(error_response(StatusCode::BAD_REQUEST, "invalid cookie")),
        }
    }
    strip_hop_by_hop(req.headers_mut());
    Ok(())
}

/// Marks `resp`, an answer of the proxy's own, as standing for an origin
/// that could not be reached, so that the cache may answer with a stale
/// entry instead (see [`uip_cache_core::OriginUnreachable`]).
pub(crate) fn unreachable(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    resp.extensions_mut().insert(OriginUnreachable);
    resp
}

/// The body of a short plain-text answer of the proxy's own.
pub(crate) fn error_text(status: StatusCode, message: &str) -> Bytes {
    Bytes::from(format!(
        "{} {}: {message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    ))
}

/// What a 502 says when no connection to the backend could be opened.
pub(crate) const REFUSED: &str = "the upstream refused the connection";
/// What a 502 says when the connection failed before a whole response
/// head.
pub(crate) const CONNECTION_FAILED: &str = "the upstream connection failed";
/// What a 504 says when no response head came within the timeout.
pub(crate) const TIMED_OUT: &str = "the upstream did not answer in time";

/// Whether `name` is a hop-by-hop field, never forwarded (RFC 9110
/// section 7.6.1).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_str()))
}

/// A short plain-text answer of the proxy's own.
pub fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(error_text(status, message))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl tower::Service<Request<UpstreamBody>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<UpstreamBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(req).await) })
    }
}

/// Core's header lookup over the request on its way to the backend.
pub(crate) struct Fields<'a>(pub(crate) &'a HeaderMap);

impl uip_cache_core::HeaderSource for Fields<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

/// Applies core's header edits to a map.
fn apply(headers: &mut HeaderMap, edits: HeaderEdits<'_>) {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => drop(headers.remove(name)),
            HeaderEdit::Set(name, value) => {
                if let Ok(v) = HeaderValue::from_maybe_shared(value) {
                    // A static name is not copied, as a `&str` one is.
                    if is_lower_token(name) {
                        headers.insert(HeaderName::from_static(name), v);
                    } else {
                        headers.insert(name, v);
                    }
                }
            }
        }
    }
}

/// Whether `s` is a non-empty run of `a-z`, `0-9` and `-` of HTTP's
/// length: a name `HeaderName::from_static` takes.
fn is_lower_token(s: &str) -> bool {
    (1..=usize::from(u16::MAX)).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Upstream {
    async fn forward(&self, mut req: Request<UpstreamBody>) -> Response<ProxyBody> {
        let client = req.extensions().get::<Connection>().copied();
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        // Only a trusted proxy's forwarding headers are still here (the
        // cache layer removed everyone else's): core says how they go on,
        // with ours naming the scheme and host the cache keyed on.
        let edits = upstream_edits(client, &Fields(headers));
        apply(headers, edits);
        headers.append(header::VIA, HeaderValue::from_static(VIA));
        *req.version_mut() = http::Version::HTTP_11;
        // The backend's 1xx go on to an HTTP/1.1 client, never into the
        // response the cache sees (see crate::interim).
        if let Some(interims) = req.extensions_mut().remove::<Interims>() {
            hyper::ext::on_informational(&mut req, move |res| {
                let mut headers = res.headers().clone();
                headers.append(header::VIA, HeaderValue::from_static(VIA));
                interims.send(res.status(), headers);
            });
        }
        let sent = match &self.0.transport {
            Transport::Pooled(pool) => {
                // Origin-form, as an HTTP/1.1 backend reads it.
                if req.uri().authority().is_some() || req.uri().path().is_empty() {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let Ok(target) = Uri::builder().path_and_query(path).build() else {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            "the request target is not valid",
                        );
                    };
                    *req.uri_mut() = target;
                }
                if let (false, Some(host)) =
                    (req.headers().contains_key(header::HOST), &self.0.host)
                {
                    req.headers_mut().insert(header::HOST, host.clone());
                }
                match tokio::time::timeout(self.0.timeout, pool.send(req)).await {
                    Ok(Ok(resp)) => Ok(resp.map(|b| BackendBody(BackendBodyKind::Pooled(b)))),
                    Ok(Err(pool::SendError::Connect(e))) => Err(Failure::Connect(e)),
                    Ok(Err(pool::SendError::Request(e))) => Err(Failure::Request(Box::new(e))),
                    Err(_) => Err(Failure::Timeout),
                }
            }
            Transport::Shared(client) => {
                let Ok(target) = self.target(req.uri()) else {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "the request target is not valid",
                    );
                };
                *req.uri_mut() = target;
                match tokio::time::timeout(self.0.timeout, client.request(req)).await {
                    Ok(Ok(resp)) => Ok(resp.map(|b| BackendBody(BackendBodyKind::Shared(b)))),
                    Ok(Err(e)) if e.is_connect() => Err(Failure::Connect(Box::new(e))),
                    Ok(Err(e)) => Err(Failure::Request(Box::new(e))),
                    Err(_) => Err(Failure::Timeout),
                }
            }
        };
        match sent {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                // A transfer coding frames the body, whatever length is
                // also given: that length goes (RFC 9112 section 6.3), or
                // the client would wait for bytes that never come.
                if parts.headers.contains_key(header::TRANSFER_ENCODING) {
                    parts.headers.remove(header::CONTENT_LENGTH);
                }
                // A length given in several fields (equal, or hyper's
                // client would have refused them) goes on once: hyper's
                // server closes the connection rather than write a HEAD's
                // answer with two.
                let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
                if let (Some(first), Some(_)) = (lengths.next().cloned(), lengths.next()) {
                    parts.headers.insert(header::CONTENT_LENGTH, first);
                }
                strip_hop_by_hop(&mut parts.headers);
                parts
                    .headers
                    .append(header::VIA, HeaderValue::from_static(VIA));
                Response::from_parts(parts, Either::Left(body))
            }
            Err(Failure::Timeout) => {
                if let Some(left_out) = quiet::TIMED_OUT.admit() {
                    tracing::warn!(upstream = %self.0.base, timeout = ?self.0.timeout, left_out, "upstream timed out");
                }
                unreachable(error_response(StatusCode::GATEWAY_TIMEOUT, TIMED_OUT))
            }
            Err(Failure::Connect(e)) => self.failed(&*e, true),
            Err(Failure::Request(e)) => self.failed(&*e, false),
        }
    }

    /// The answer to a request the backend could not be reached for:
    /// `connect` when no connection could be opened (the request never
    /// reached it).
    fn failed(
        &self,
        e: &(dyn std::error::Error + Send + Sync + 'static),
        connect: bool,
    ) -> Response<ProxyBody> {
        if let Some(why) = tls_failure(e) {
            if let Some(left_out) = quiet::TLS.admit() {
                tracing::error!(
                    upstream = %self.0.base,
                    error = %why,
                    left_out,
                    "upstream TLS handshake failed (certificate not verified or refused): answering 502"
                );
            }
            let mut resp = unreachable(error_response(
                StatusCode::BAD_GATEWAY,
                "the upstream's TLS connection could not be verified",
            ));
            // A handshake that failed while connecting: the request
            // never reached it, another backend of the route may
            // take it.
            if connect {
                resp.extensions_mut().insert(crate::routes::ConnectFailed);
            }
            return resp;
        }
        if let Some(left_out) = quiet::FAILED.admit() {
            tracing::warn!(upstream = %self.0.base, error = %e, left_out, "upstream request failed");
        }
        if connect {
            let mut resp = unreachable(error_response(StatusCode::BAD_GATEWAY, REFUSED));
            // The request never reached it: another backend of the
            // route may take it.
            resp.extensions_mut().insert(crate::routes::ConnectFailed);
            resp
        } else {
            // Reset, or closed before a whole response head.
            unreachable(error_response(StatusCode::BAD_GATEWAY, CONNECTION_FAILED))
        }
    }
}

/// Why a request got no response from its backend.
enum Failure {
    /// No connection: the request never reached the backend.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed with the request on it.
    Request(Box<dyn std::error::Error + Send + Sync>),
    /// No response head within the timeout.
    Timeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_host() {
        let mut r = req("http://victim.example/x?y=1", &[("host", "other.example")]);
        normalize(&mut r).unwrap();
        assert_eq!(r.uri().to_string(), "/x?y=1");
        assert_eq!(r.headers()["host"], "victim.example");
    }

    #[test]
    fn two_hosts_and_connect_are_refused() {
        let mut r = req("/", &[("host", "a"), ("host", "b")]);
        assert_eq!(normalize(&mut r).unwrap_err().status(), 400);
        let mut r = Request::builder()
            .method("CONNECT")
            .uri("example.com:443")
            .body(())
            .unwrap();
        assert_eq!(normalize(&mut r).unwrap_err().status(), 405);
    }

    #[test]
    fn connection_named_headers_go_before_the_cache_sees_them_but_never_host() {
        let mut r = req(
            "/",
            &[
                ("host", "a"),
                ("accept-language", "fr"),
                ("connection", "accept-language, host, keep-alive"),
                ("keep-alive", "5"),
                ("te", "trailers"),
            ],
        );
        normalize(&mut r).unwrap();
        let h = r.headers();
        assert!(h.get("accept-language").is_none());
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
        assert!(h.get("te").is_none());
        assert_eq!(h["host"], "a");
    }

    #[test]
    fn split_cookies_are_joined_into_one_field() {
        let mut r = req(
            "/",
            &[("host", "a"), ("cookie", "a=1"), ("cookie", "session=x")],
        );
        normalize(&mut r).unwrap();
        let all: Vec<_> = r.headers().get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; session=x"]);
    }
}
