//! One list of header changes for an adapter to apply.

use bytes::Bytes;

use crate::request::HeaderSource;
use crate::OriginHeaders;
use crate::{Forward, HttpCache, XCache};

/// One change to a header map.
///
/// Exhaustive on purpose: a new kind of change must make every adapter
/// apply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Remove every field of this name (any case; a name that is not a
    /// valid field name is nothing to remove).
    Remove(&'a str),
    /// Set this field to this one value, replacing any it has. The name is
    /// lower case and a valid field name (adapters may take it as a static
    /// header name); a value that is not valid in a field is not set.
    Set(&'static str, Bytes),
}

/// Header changes to apply in order ([`HeaderEdit`]); iterate over it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "the edits do nothing until the adapter applies them"]
pub struct HeaderEdits<'a> {
    edits: Vec<HeaderEdit<'a>>,
}

impl<'a> HeaderEdits<'a> {
    /// No changes.
    pub fn new() -> Self {
        HeaderEdits::default()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The changes, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, HeaderEdit<'a>> {
        self.edits.iter()
    }

    pub(crate) fn remove(&mut self, name: &'a str) {
        self.edits.push(HeaderEdit::Remove(name));
    }

    pub(crate) fn set(&mut self, name: &'static str, value: impl Into<Bytes>) {
        self.edits.push(HeaderEdit::Set(name, value.into()));
    }
}

impl<'a> IntoIterator for HeaderEdits<'a> {
    type Item = HeaderEdit<'a>;
    type IntoIter = std::vec::IntoIter<HeaderEdit<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.edits.into_iter()
    }
}

impl<'a> FromIterator<HeaderEdit<'a>> for HeaderEdits<'a> {
    fn from_iter<I: IntoIterator<Item = HeaderEdit<'a>>>(iter: I) -> Self {
        HeaderEdits {
            edits: iter.into_iter().collect(),
        }
    }
}

/// The request to the origin: the client's validators removed, then a
/// stale entry's set ([`crate::FetchTicket::origin_header_changes`]).
impl From<OriginHeaders> for HeaderEdits<'static> {
    fn from(changes: OriginHeaders) -> Self {
        let mut edits = HeaderEdits {
            edits: Vec::with_capacity(changes.remove.len() + changes.set.len()),
        };
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
        let mut edits = HeaderEdits {
            edits: Vec::with_capacity(hidden.len() + 2),
        };
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
