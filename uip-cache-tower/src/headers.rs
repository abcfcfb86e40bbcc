use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{Extensions, Method, Uri};
use std::borrow::Cow;

use uip_cache_core::{
    field_name, Connection, FieldName, HeaderEdit, HeaderEdits, HeaderSource, HttpCache,
    RequestView,
};

/// Core's header lookup over an `http` 1.x header map.
pub(crate) struct HeaderMapRef<'a>(pub(crate) &'a HeaderMap);

/// Maps with at most this many fields are searched by comparing names,
/// not through the map's hash: a lookup by `&str` parses and hashes the
/// name first, which costs more than comparing it with a few fields, and
/// a hit looks up a dozen names most requests do not carry.
const SCAN_MAX: usize = 16;

impl HeaderMapRef<'_> {
    fn small(&self) -> bool {
        self.0.len() <= SCAN_MAX
    }
}

/// Whether a field's name is `name` (any case: the map's names are lower
/// case, and a name that is no valid field name matches none).
fn named(field: &HeaderName, name: &str) -> bool {
    let field = field.as_str();
    field.len() == name.len() && field.eq_ignore_ascii_case(name)
}

impl HeaderSource for HeaderMapRef<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        if self.small() {
            for (field, v) in self.0 {
                if named(field, name) {
                    f(v.as_bytes());
                }
            }
            return;
        }
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        if self.small() {
            return self
                .0
                .iter()
                .find(|(field, _)| named(field, name))
                .map(|(_, v)| v.as_bytes());
        }
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

/// The URI the client sent. Under axum's `Router::nest` the inner router
/// sees the path without the nest prefix; keying on that would let one layer
/// shared by two nested routers mix their entries, so the original URI
/// (`axum::extract::OriginalUri`) is used when it is there.
pub(crate) fn client_uri<'a>(uri: &'a Uri, extensions: &'a Extensions) -> &'a Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) = extensions.get() {
        return original;
    }
    let _ = extensions;
    uri
}

/// The facts of the connection a request came on: a
/// [`Connection`] extension (the server's, or one a front end inserts),
/// else axum's `ConnectInfo<SocketAddr>` for the peer and an
/// [`http::uri::Scheme`] extension (a TLS acceptor's) for TLS. Never the
/// request target's scheme, which is the client's word. A peer not known is
/// not trusted.
pub(crate) fn connection(extensions: &Extensions) -> Connection {
    if let Some(c) = extensions.get::<Connection>() {
        return *c;
    }
    let tls = extensions.get::<Scheme>() == Some(&Scheme::HTTPS);
    #[cfg(feature = "axum")]
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    #[cfg(not(feature = "axum"))]
    let peer = None;
    Connection::new(peer, tls)
}

/// Makes the request the inner service sees agree with its key, before
/// anything reads it:
/// - an absolute-form target (or HTTP/2's `:scheme` and `:authority`)
///   becomes origin-form with its authority as `Host` (RFC 9112 section
///   3.2.2), so that no extractor reads a scheme or host the client wrote
///   into the target;
/// - the forwarding headers core says to remove go: all of them from a peer
///   not in `server.trusted_proxies` (axum-extra's `Host` and `Scheme` read
///   `Forwarded` and `X-Forwarded-*` first, while the key holds `Host`).
pub(crate) fn guard(cache: &HttpCache, parts: &mut http::request::Parts) {
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            if let Ok(uri) = Uri::builder().path_and_query(path).build() {
                parts.headers.insert(http::header::HOST, host);
                parts.uri = uri;
            }
        }
    }
    let conn = connection(&parts.extensions);
    let strip = cache
        .client_origin(&conn, None, &HeaderMapRef(&parts.headers))
        .strip();
    if parts.headers.keys().any(|n| strip.contains(n.as_str())) {
        // Every spelling of the names (`X_Forwarded_Host` too).
        let names: Vec<http::HeaderName> = parts
            .headers
            .keys()
            .filter(|n| strip.contains(n.as_str()))
            .cloned()
            .collect();
        for name in names {
            parts.headers.remove(name);
        }
    }
}

/// Core's view of a request, with the scheme and host core decides from
/// the connection.
pub(crate) fn view<'a>(
    cache: &HttpCache,
    method: &'a Method,
    uri: &'a Uri,
    extensions: &'a Extensions,
    headers: &'a HeaderMapRef<'a>,
) -> RequestView<'a> {
    let client = client_uri(uri, extensions);
    let target = client.authority().or(uri.authority()).map(|a| a.as_str());
    let origin = cache.client_origin(&connection(extensions), target, headers);
    RequestView::new(method.as_str(), client.path(), headers)
        .query(client.query())
        .origin(origin)
}

/// The header list of a response, names lower case, for storing.
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
            HeaderEdit::Remove(name) => drop(map.remove(name)),
            HeaderEdit::Set(name, value) => {
                if let Ok(v) = HeaderValue::from_maybe_shared(value) {
                    // A static name is not copied, as a `&str` one is.
                    if is_lower_token(name) {
                        map.insert(HeaderName::from_static(name), v);
                    } else {
                        map.insert(name, v);
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

/// Appends stored headers to a map, skipping any that are not valid HTTP.
pub(crate) fn extend(map: &mut HeaderMap, headers: Vec<(FieldName, Bytes)>) {
    map.reserve(headers.len());
    for (n, v) in headers {
        let name = match n {
            // Static names (core's literals) are taken as they are, never
            // copied; `from_static` panics on anything but a lower-case
            // token, so that is checked first.
            Cow::Borrowed(s) if is_lower_token(s) => Ok(HeaderName::from_static(s)),
            n => HeaderName::from_bytes(n.as_bytes()),
        };
        if let (Ok(n), Ok(v)) = (name, HeaderValue::from_maybe_shared(v)) {
            map.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A static name of any shape neither panics nor gets past the
        /// checks a name from stored bytes gets.
        #[test]
        fn any_static_name_is_taken_as_http_would(name in "[ -~]{0,12}|[a-z-]{1,12}") {
            let name: &'static str = Box::leak(name.into_boxed_str());
            let mut map = HeaderMap::new();
            extend(&mut map, vec![(Cow::Borrowed(name), Bytes::from_static(b"v"))]);
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => prop_assert_eq!(map.get(n).map(|v| v.as_bytes()), Some(&b"v"[..])),
                Err(_) => prop_assert!(map.is_empty()),
            }
        }

        /// A small map searched by comparing names answers as the map's
        /// own lookup does: any case, repeated fields in order, names that
        /// are no field name.
        #[test]
        fn a_scanned_lookup_answers_as_the_map_does(
            fields in proptest::collection::vec((0..4usize, "[a-z]{0,3}"), 0..=SCAN_MAX),
            asked in "[a-zA-Z -]{0,12}",
        ) {
            const NAMES: [&str; 4] = ["cache-control", "x-http-method", "pragma", "a"];
            let mut map = HeaderMap::new();
            for (i, value) in &fields {
                map.append(NAMES[*i], HeaderValue::from_str(value).unwrap());
            }
            prop_assert!(HeaderMapRef(&map).small());
            let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
            names.push(NAMES[1].to_ascii_uppercase());
            names.push(asked);
            for name in &names {
                let want: Vec<&[u8]> = map.get_all(name.as_str()).iter().map(|v| v.as_bytes()).collect();
                let mut got = Vec::new();
                HeaderMapRef(&map).for_each_value(name, &mut |v| got.push(v.to_vec()));
                prop_assert_eq!(&got, &want);
                let scanned = HeaderMapRef(&map);
                prop_assert_eq!(scanned.first(name), map.get(name.as_str()).map(HeaderValue::as_bytes));
            }
        }
    }
}
