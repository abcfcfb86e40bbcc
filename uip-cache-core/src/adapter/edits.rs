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
    /// ([`Settings::hidden_response_headers`](crate::Settings::hidden_response_headers)),
    /// then set `X-Cache` and `Cache-Status` ([`HttpCache::forward_headers`],
    /// after the response's own `Cache-Status` values, read from
    /// `headers`). By the settings the cache runs on now.
    pub fn response_edits(&self, f: Forward, headers: &dyn HeaderSource) -> HeaderEdits<'_> {
        let settings = self.settings();
        let hidden = settings.hidden_response_headers();
        let mut edits = HeaderEdits::with_capacity(hidden.len() + 2);
        for &name in hidden {
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
        let forward =
            crate::cache::forward_headers(&settings, f, upstream.iter().map(Vec::as_slice));
        for (name, value) in forward {
            edits.set(name, value);
        }
        edits
    }
}
