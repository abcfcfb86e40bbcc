//! The header changes core hands an adapter: those of a response on its
//! way out, and those of the request to the origin.

use crate::field::HeaderEdits;
use crate::request::HeaderSource;
use crate::OriginHeaders;
use crate::{Forward, HttpCache, XCache};

/// The request to the origin: the client's validators removed, then a
/// stale entry's set ([`crate::FetchTicket::origin_header_changes`]).
impl From<OriginHeaders> for HeaderEdits<'static> {
    fn from(changes: OriginHeaders) -> Self {
        let mut edits = HeaderEdits::with_capacity(changes.remove.len() + changes.set.len());
        for name in changes.remove {
            edits.remove(name);
        }
        for (name, value) in changes.set {
            edits.set(name, value);
        }
        edits
    }
}

impl Forward {
    /// An origin response the cache records for storing as it streams
    /// ([`crate::After::Record`]).
    pub fn recorded(x_cache: XCache) -> Self {
        Forward::new(x_cache, true, None)
    }
}

impl HttpCache {
    /// How to change the headers of an origin response before it goes to
    /// the client: remove those the cache consumes
    /// ([`HttpCache::hidden_response_headers`]), then set `X-Cache` and
    /// `Cache-Status` ([`HttpCache::forward_headers`], after the
    /// response's own `Cache-Status` values, read from `headers`).
    pub fn response_edits(&self, f: Forward, headers: &dyn HeaderSource) -> HeaderEdits<'_> {
        let hidden = self.hidden_response_headers();
        let mut edits = HeaderEdits::with_capacity(hidden.len() + 2);
        for name in hidden {
            edits.remove(name);
        }
        // The upstream values left once the hidden headers are gone.
        let mut upstream: Vec<Vec<u8>> = Vec::new();
        if !hidden
            .iter()
            .any(|h| h.eq_ignore_ascii_case("cache-status"))
        {
            headers.for_each_value("cache-status", &mut |v| upstream.push(v.to_vec()));
        }
        for (name, value) in self.forward_headers(f, upstream.iter().map(Vec::as_slice)) {
            edits.set(name, value);
        }
        edits
    }
}
