use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{Extensions, Method, Uri};
use std::borrow::Cow;

use uip_cache_core::{field_name, FieldName, HeaderSource, RequestView};

/// Core's header lookup over an `http` 1.x header map.
pub(crate) struct HeaderMapRef<'a>(pub(crate) &'a HeaderMap);

impl HeaderSource for HeaderMapRef<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for v in self.0.get_all(name) {
            f(v.as_bytes());
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

/// The request's host: from the URI, else the `Host` header.
pub(crate) fn authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
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

/// The scheme the client used, as the server knows it: an
/// [`http::uri::Scheme`] request extension (set by the server or a TLS
/// acceptor), else `http`. The request target's own scheme is the
/// client's word and is not trusted.
pub(crate) fn scheme(extensions: &Extensions) -> &str {
    extensions.get::<Scheme>().map_or("http", Scheme::as_str)
}

/// Core's view of a request.
pub(crate) fn view<'a>(
    method: &'a Method,
    uri: &'a Uri,
    extensions: &'a Extensions,
    headers: &'a HeaderMapRef<'a>,
) -> RequestView<'a> {
    let client = client_uri(uri, extensions);
    RequestView::new(method.as_str(), client.path(), headers)
        .query(client.query())
        .scheme(Some(scheme(extensions)))
        .authority(authority(client, headers.0).or_else(|| authority(uri, headers.0)))
}

/// The header list of a response, names lower case, for storing.
pub(crate) fn header_list(headers: &HeaderMap) -> Vec<(FieldName, Bytes)> {
    headers
        .iter()
        .map(|(n, v)| (field_name(n.as_str()), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// Appends stored headers to a map, skipping any that are not valid HTTP.
pub(crate) fn extend(map: &mut HeaderMap, headers: Vec<(FieldName, Bytes)>) {
    map.reserve(headers.len());
    for (n, v) in headers {
        let name = match n {
            // Core's static names are literals of its own, all valid
            // lower-case tokens: taken as they are, never copied.
            Cow::Borrowed(s) => Ok(HeaderName::from_static(s)),
            Cow::Owned(s) => HeaderName::from_bytes(s.as_bytes()),
        };
        if let (Ok(n), Ok(v)) = (name, HeaderValue::from_maybe_shared(v)) {
            map.append(n, v);
        }
    }
}
