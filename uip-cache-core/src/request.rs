//! The framework-free view of a request that adapters build.
//!
//! actix-web 4 and axum use different `http` crate versions, so core never takes
//! `http` types: an adapter fills a [`RequestView`] from its own request, with
//! header lookup through [`HeaderSource`], and gets plain values back.

use std::fmt;

use crate::field::FieldName;
use bytes::Bytes;

/// Header lookup by lower-case name, implemented by each adapter over its own
/// header map (and here over simple lists for tests and tools).
pub trait HeaderSource {
    /// Calls `f` with every value of header `name` (lower case), in order.
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8]));

    /// The first value of header `name`, if any.
    fn first(&self, name: &str) -> Option<&[u8]>;
}

fn pairs_for_each<'p, N: AsRef<str> + 'p, V: AsRef<[u8]> + 'p>(
    pairs: impl Iterator<Item = &'p (N, V)>,
    name: &str,
    f: &mut dyn FnMut(&[u8]),
) {
    for (n, v) in pairs {
        if n.as_ref().eq_ignore_ascii_case(name) {
            f(v.as_ref());
        }
    }
}

fn pairs_first<'p, N: AsRef<str> + 'p, V: AsRef<[u8]> + 'p>(
    mut pairs: impl Iterator<Item = &'p (N, V)>,
    name: &str,
) -> Option<&'p [u8]> {
    pairs
        .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// Header lists for tests and tools: `[("accept", "text/html")]`.
impl<N: AsRef<str>, V: AsRef<[u8]>, const L: usize> HeaderSource for [(N, V); L] {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        pairs_for_each(self.iter(), name, f);
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        pairs_first(self.iter(), name)
    }
}

/// Header lists built at run time (values as text or bytes).
impl<N: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(N, V)> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        pairs_for_each(self.iter(), name, f);
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        pairs_first(self.iter(), name)
    }
}

/// Header lookup over (lower-case name, raw value) pairs, the form entries
/// and the request flow keep headers in.
#[derive(Clone, Copy, Debug)]
pub struct HeaderList<'a>(pub &'a [(FieldName, Bytes)]);

impl HeaderSource for HeaderList<'_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (n, v) in self.0 {
            if n.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }
}

/// What core needs to know about a request.
///
/// ```
/// use uip_cache_core::RequestView;
///
/// let headers = [("accept", "application/json")];
/// let req = RequestView::new("GET", "/ngsi-ld/v1/entities", &headers)
///     .query(Some("type=Camera"))
///     .authority(Some("broker.local"));
/// assert_eq!(req.method, "GET");
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The method, as sent (`GET`, `HEAD`, ...).
    pub method: &'a str,
    /// `http` or `https`, when known.
    pub scheme: Option<&'a str>,
    /// Host and port, when known.
    pub authority: Option<&'a str>,
    /// The path, as sent (not percent-decoded).
    pub path: &'a str,
    /// The raw query without `?`.
    pub query: Option<&'a str>,
    /// Header lookup.
    pub headers: &'a (dyn HeaderSource + Sync),
    /// The body, when the policy keys on it and the adapter buffered it.
    pub body: Option<&'a [u8]>,
    /// Whether the request came through a trusted proxy, whose forwarding
    /// headers reach the application: the key then also holds those that
    /// change what it builds ([`crate::forwarding::keyed_from_trusted`]).
    pub via_trusted_proxy: bool,
    /// Whether the request has a body, as far as the adapter knows without
    /// reading it (an HTTP/2 request need not announce its length). Core
    /// also looks at `Content-Length` and `Transfer-Encoding`; a GET or
    /// HEAD with a body the key does not hold bypasses the cache.
    pub has_body: bool,
}

impl<'a> RequestView<'a> {
    /// A request with a method, a path and headers; the rest is set by the
    /// consuming setters below.
    pub fn new(method: &'a str, path: &'a str, headers: &'a (dyn HeaderSource + Sync)) -> Self {
        RequestView {
            method,
            scheme: None,
            authority: None,
            path,
            query: None,
            headers,
            body: None,
            via_trusted_proxy: false,
            has_body: false,
        }
    }

    /// Sets the raw query (without `?`); an empty query is the same as none.
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query.filter(|q| !q.is_empty());
        self
    }

    /// Sets the scheme.
    #[must_use]
    pub fn scheme(mut self, scheme: Option<&'a str>) -> Self {
        self.scheme = scheme;
        self
    }

    /// Sets the authority (host and port).
    #[must_use]
    pub fn authority(mut self, authority: Option<&'a str>) -> Self {
        self.authority = authority;
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: Option<&'a [u8]>) -> Self {
        self.body = body;
        self
    }

    /// Says whether the request has a body (the `has_body` field).
    #[must_use]
    pub fn has_body(mut self, has_body: bool) -> Self {
        self.has_body = has_body;
        self
    }
}

impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_len", &self.body.map(<[u8]>::len))
            .field("via_trusted_proxy", &self.via_trusted_proxy)
            .field("has_body", &self.has_body)
            .finish_non_exhaustive()
    }
}
